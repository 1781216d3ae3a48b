// ddpm-eval --quality and --accuracy run as the real build/tools/ddpm-eval on tiny runs.
// The 2-D cases and the one-line errors that come before any evaluator run on any
// branch; the cases marked "(supervised)" train tests/specs/tiny_classifier.ddpm, a
// supervised spec, and need the compiler of branch h17a: a classifier's --accuracy,
// --quality of a [1, 2, 2] image run under it (FID, precision/recall, classes; the
// reference statistics cached), a classifier given to --quality as the model, and an
// evaluator whose input shape is not the run's.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/npy.h"
#include "test_runs.h"
#include "test_shell.h"

namespace fs = std::filesystem;
using ddpm_test::run_shell;
using ddpm_test::tool_path;

namespace {

std::string cache() { return std::string(DDPM_TEST_CACHE); }

int eval(const std::string& args, std::string& out) {
  return run_shell(fmt::format("{} {} --threads 2 --cache-dir {}", tool_path("ddpm-eval"), args, cache()), out);
}

// 64 rows of [1, 2, 2] in [-1, 1] and their class: 1 when the mean is positive.
void write_images(const fs::path& x, const fs::path& y, std::vector<int64_t> shape = {64, 1, 2, 2}) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(64 * 4), lab(64);
  for (int i = 0; i < 64; ++i) {
    float s = 0;
    for (int j = 0; j < 4; ++j) s += v[(size_t)(i * 4 + j)] = u(rng);
    lab[(size_t)i] = s > 0 ? 1.0f : 0.0f;
  }
  ddpm::write_npy(x.string(), v.data(), shape);
  ddpm::write_npy(y.string(), lab.data(), {64});
}

fs::path train(const std::string& spec, const std::string& data, const fs::path& out, int steps,
               const std::string& extra = "") {
  std::string log;
  REQUIRE_MESSAGE(run_shell(fmt::format("{} {}/{} --data {} --steps {} --batch 16 --threads 2 -q --out {} --cache-dir {} {}",
                                        tool_path("ddpm-train"), DDPM_SOURCE_DIR, spec, data, steps, out.string(),
                                        cache(), extra),
                            log) == 0,
                  log);
  return out;
}

nlohmann::json quality_json(const fs::path& run) {
  return nlohmann::json::parse(ddpm_test::file_bytes(run / "eval.json"))["quality"];
}

}  // namespace

TEST_CASE("eval quality: a 2-D run gets the sliced Wasserstein distance and its floor") {
  const fs::path dir = ddpm_test::process_dir("eval-quality", "moons");
  const fs::path run = train("models/moons.ddpm", "moons", dir / "run", 200);
  std::string out;
  REQUIRE_MESSAGE(eval(fmt::format("{} --quality -n 400", run.string()), out) == 0, out);
  CHECK(out.find("sliced Wasserstein distance") != std::string::npos);
  CHECK(out.find("time: sampling") != std::string::npos);
  const nlohmann::json q = quality_json(run);
  CHECK(q["kind"] == "2d");
  CHECK(q["n"] == 400);
  CHECK(q["swd"].get<double>() > 0);
  CHECK(q["swd_floor"].get<double>() > 0);
  CHECK(q["swd_floor"].get<double>() < 0.2);  // two draws of 400 points of one set are close
  // --samples of the wrong shape: one line, exit 1.
  std::vector<float> bad(30, 0.0f);
  ddpm::write_npy((dir / "bad.npy").string(), bad.data(), {10, 3});
  CHECK(eval(fmt::format("{} --quality --samples {}", run.string(), (dir / "bad.npy").string()), out) == 1);
  CHECK(out.find("--samples") != std::string::npos);
  CHECK(out.find("[10, 3]") != std::string::npos);
}

TEST_CASE("eval quality: an image run without the evaluator's weights is a one-line error") {
  const fs::path dir = ddpm_test::process_dir("eval-quality", "noweights");
  fs::create_directories(dir);
  write_images(dir / "x.npy", dir / "y.npy");
  const fs::path run = train("tests/specs/tiny_image.ddpm", (dir / "x.npy").string(), dir / "run", 20);
  std::string out;
  CHECK(eval(fmt::format("{} --quality -n 50 --evaluator-weights {}", run.string(), (dir / "none.safetensors").string()),
             out) == 1);
  CHECK(out.find("evaluator weights") != std::string::npos);
  CHECK(out.find("do not exist") != std::string::npos);
  CHECK(eval(fmt::format("{} --quality --accuracy", run.string()), out) == 2);
  CHECK(eval(fmt::format("{} --bound --class all", run.string()), out) == 2);
}

TEST_CASE("eval quality (supervised): a classifier's accuracy, and FID, precision and recall under it") {
  const fs::path dir = ddpm_test::process_dir("eval-quality", "supervised");
  fs::create_directories(dir);
  write_images(dir / "x.npy", dir / "y.npy");
  const std::string x = (dir / "x.npy").string(), y = (dir / "y.npy").string();
  const fs::path cls = train("tests/specs/tiny_classifier.ddpm", x, dir / "cls", 300, "--labels " + y);
  REQUIRE(fs::exists(cls / "weights.safetensors"));
  std::string out;
  // --accuracy of the run and of its weights file give the same line.
  REQUIRE_MESSAGE(eval(fmt::format("{} --accuracy --data {} --labels {}", cls.string(), x, y), out) == 0, out);
  CHECK(out.find("accuracy ") != std::string::npos);
  CHECK(out.find("/64) on ") != std::string::npos);
  const std::string by_run = out.substr(out.find("accuracy "));
  REQUIRE(eval(fmt::format("{} --accuracy --data {} --labels {}", (cls / "weights.safetensors").string(), x, y), out) ==
          0);
  CHECK(out.substr(out.find("accuracy ")) == by_run);

  // --quality of an image run under that evaluator.
  const fs::path run = train("tests/specs/tiny_image.ddpm", x, dir / "run", 100);
  const std::string ev = fmt::format("--evaluator {}/tests/specs/tiny_classifier.ddpm --evaluator-weights {}",
                                     DDPM_SOURCE_DIR, (cls / "weights.safetensors").string());
  REQUIRE_MESSAGE(eval(fmt::format("{} --quality -n 60 {}", run.string(), ev), out) == 0, out);
  CHECK(out.find("FID ") != std::string::npos);
  CHECK(out.find("precision ") != std::string::npos);
  CHECK(out.find("predicted classes:") != std::string::npos);
  const nlohmann::json q = quality_json(run);
  CHECK(q["fid_train"].get<double>() >= 0);
  CHECK(q["precision"].get<double>() >= 0);
  CHECK(q["precision"].get<double>() <= 1);
  CHECK(q["recall"].get<double>() <= 1);
  CHECK(q["predicted_classes"].size() == 2);
  CHECK(q["predicted_classes"][0].get<int>() + q["predicted_classes"][1].get<int>() == 60);
  // Run again: the same numbers, the reference statistics from the cache.
  REQUIRE(eval(fmt::format("{} --quality -n 60 {}", run.string(), ev), out) == 0);
  CHECK(quality_json(run)["fid_train"] == q["fid_train"]);
  CHECK(quality_json(run)["seconds"]["reference"].get<double>() == 0);
  // --samples: the same samples give the same FID.
  ddpm_test::run_shell(fmt::format("{} {} --sampler ddpm -n 60 --out {} --threads 2 -q --cache-dir {}",
                                   tool_path("ddpm-sample"), run.string(), (dir / "s.npy").string(), cache()),
                       out);
  REQUIRE_MESSAGE(eval(fmt::format("{} --quality --samples {} {} --json {}", run.string(), (dir / "s.npy").string(),
                                   ev, (dir / "q.json").string()),
                       out) == 0,
                  out);
  CHECK(nlohmann::json::parse(ddpm_test::file_bytes(dir / "q.json"))["n"] == 60);

  // A classifier is not a model to sample from.
  CHECK(eval(fmt::format("{} --quality {}", cls.string(), ev), out) == 1);
  CHECK(out.find("is a supervised model") != std::string::npos);
  // An evaluator of another input shape.
  write_images(dir / "x4.npy", dir / "y.npy", {64, 4});
  const fs::path flat =
      train("tests/specs/tiny_classifier_flat.ddpm", (dir / "x4.npy").string(), dir / "flat", 20, "--labels " + y);
  CHECK(eval(fmt::format("{} --quality -n 20 --evaluator {}/tests/specs/tiny_classifier_flat.ddpm --evaluator-weights {}",
                         run.string(), DDPM_SOURCE_DIR, (flat / "weights.safetensors").string()),
             out) == 1);
  CHECK(out.find("reads images of shape [4]") != std::string::npos);
}
