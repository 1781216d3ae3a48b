// Quality during training (ddpm-train --eval-every, runtime/eval_every.h): the
// quality lines in metrics.jsonl at the expected steps and quality.png; training
// bitwise the same with and without evaluations (also under mpirun, where only
// rank 0 evaluates); --resume appends and keeps the old lines; images need the
// tool's metric callback (a user error without one, lines with one); bad flags are
// one-line errors with exit status 2.
#include <doctest/doctest.h>

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/eval_every.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "test_runs.h"
#include "test_shell.h"

namespace fs = std::filesystem;
using ddpm_test::file_bytes;
using ddpm_test::run_shell;
using ddpm_test::tool_path;
using ddpm_test::user_error_of;

namespace {

std::vector<nlohmann::json> lines_of(const fs::path& metrics) {
  std::vector<nlohmann::json> v;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line));
  return v;
}

std::vector<nlohmann::json> quality_lines(const fs::path& run) {
  std::vector<nlohmann::json> q;
  for (auto& j : lines_of(run / "metrics.jsonl"))
    if (j.contains("quality")) q.push_back(j);
  return q;
}

size_t loss_lines(const fs::path& run) {
  size_t n = 0;
  for (auto& j : lines_of(run / "metrics.jsonl")) n += j.contains("loss");
  return n;
}

// The width and height of a PNG read back with Cairo (0 x 0 if it is not one).
std::pair<int, int> png_size(const fs::path& p) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(p.c_str());
  std::pair<int, int> wh{0, 0};
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS)
    wh = {cairo_image_surface_get_width(s), cairo_image_surface_get_height(s)};
  cairo_surface_destroy(s);
  return wh;
}

// 64 random 1x2x2 "images" for tests/specs/tiny_image.ddpm.
fs::path tiny_images(const fs::path& dir) {
  fs::create_directories(dir);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(64 * 4);
  for (float& v : x) v = u(rng);
  const fs::path p = dir / "img.npy";
  ddpm::write_npy(p.string(), x.data(), {64, 1, 2, 2});
  return p;
}

}  // namespace

TEST_CASE("eval every: moons writes finite swd at every N steps and the end, quality.png, and the same weights") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "moons");
  ddpm::TrainConfig c = ddpm_test::run_config("models/moons.ddpm", "moons", dir / "eval", 130, 32, 7);
  c.log_every = 10;
  c.eval_every = 50;
  c.eval_samples = 500;
  REQUIRE(ddpm::train(c) == 0);
  const std::vector<nlohmann::json> q = quality_lines(c.out);
  REQUIRE(q.size() == 3);
  const int64_t want_steps[] = {50, 100, 130};
  for (size_t i = 0; i < q.size(); ++i) {
    CAPTURE(q[i].dump());
    CHECK(q[i]["step"] == want_steps[i]);
    const nlohmann::json& e = q[i]["quality"];
    CHECK(e["metric"] == "swd");
    REQUIRE(e["value"].is_number());
    CHECK(std::isfinite(e["value"].get<double>()));
    CHECK(e["value"].get<double>() > 0);
    CHECK(e["samples"] == 500);
    CHECK(e["sampler"] == "ddim");
    CHECK(e["sampler_steps"] == 50);
    CHECK(e["seconds"].get<double>() >= 0);
    CHECK(q[i]["elapsed_s"].get<double>() >= 0);
    CHECK(e.contains("floor") == (i == 0));  // the floor once, in the first line
  }
  const double floor = q[0]["quality"]["floor"].get<double>();
  CHECK(floor > 0);
  CHECK(floor < 0.2);
  CHECK(loss_lines(c.out) == 13);  // the loss lines are all still there
  CHECK(png_size(fs::path(c.out) / "quality.png") == std::pair<int, int>{800, 600});

  // The same run without evaluations has the same bits.
  ddpm::TrainConfig plain = ddpm_test::run_config("models/moons.ddpm", "moons", dir / "plain", 130, 32, 7);
  plain.log_every = 10;
  REQUIRE(ddpm::train(plain) == 0);
  ddpm_test::require_same_checkpoint(c.out, plain.out);
  CHECK(quality_lines(plain.out).empty());
  CHECK(!fs::exists(fs::path(plain.out) / "quality.png"));
}

TEST_CASE("eval every: --resume appends quality lines, keeps the old ones and keeps the setting") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "resume");
  ddpm::TrainConfig c = ddpm_test::run_config("models/moons.ddpm", "moons", dir / "run", 150, 32, 5);
  c.log_every = 25;
  c.ckpt_every = 50;
  c.eval_every = 40;
  c.eval_samples = 300;
  c.stop_at = 90;
  REQUIRE(ddpm::train(c) == 0);
  std::vector<nlohmann::json> q = quality_lines(c.out);
  REQUIRE(q.size() == 3);  // 40, 80 and the end of this part, 90
  CHECK(q[2]["step"] == 90);
  const std::string before = file_bytes(fs::path(c.out) / "metrics.jsonl");
  REQUIRE(fs::exists(fs::path(c.out) / "quality.png"));
  const auto png_before = file_bytes(fs::path(c.out) / "quality.png");

  // Resumed with no evaluation flags: the checkpoint's --eval-every 40 stands.
  ddpm::TrainConfig r = c;
  r.eval_every = 0;
  r.eval_samples = 0;
  r.stop_at = 0;
  r.resume = true;
  r.given.clear();
  REQUIRE(ddpm::train(r) == 0);
  const std::string after = file_bytes(fs::path(c.out) / "metrics.jsonl");
  REQUIRE(after.size() > before.size());
  CHECK(after.compare(0, before.size(), before) == 0);  // nothing lost, nothing rewritten
  q = quality_lines(c.out);
  std::vector<int64_t> steps;
  for (auto& j : q) steps.push_back(j["step"].get<int64_t>());
  CHECK(steps == std::vector<int64_t>{40, 80, 90, 120, 150});  // + 120 and the end, 150
  REQUIRE(q.size() == 5);
  CHECK(q.back()["quality"]["samples"] == 300);
  CHECK(q[3]["quality"].contains("floor"));  // the first evaluation of the resumed process
  CHECK(file_bytes(fs::path(c.out) / "quality.png") != png_before);
  const ddpm::SafeTensors ck = ddpm::read_safetensors((fs::path(c.out) / "checkpoint.safetensors").string());
  CHECK(ck.metadata.at("eval_every") == "40");
  CHECK(ck.metadata.at("eval_samples") == "300");
}

TEST_CASE("eval every: images need the tool's metric: a user error without one, quality lines with one") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "images");
  const fs::path data = tiny_images(dir);
  ddpm::TrainConfig c = ddpm_test::run_config("tests/specs/tiny_image.ddpm", data.string(), dir / "none", 30, 16, 1);
  c.eval_every = 10;
  const std::string msg = user_error_of([&] { ddpm::train(c); });
  CHECK(msg.find("--eval-every on images needs the evaluator") != std::string::npos);
  CHECK(msg.find("samples (2-D points use the sliced Wasserstein distance)\nhint: drop --eval-every") !=
        std::string::npos);  // one line, then its hint
  CHECK(!fs::exists(dir / "none" / "checkpoint.safetensors"));

  // A stand-in metric (the mean of the samples) tests the plumbing.
  ddpm::TrainConfig w = ddpm_test::run_config("tests/specs/tiny_image.ddpm", data.string(), dir / "with", 30, 16, 1);
  w.eval_every = 10;
  w.eval_samples = 40;
  int calls = 0;
  w.image_quality_name = "mean";
  w.image_quality = [&](const float* x, int64_t n, int threads) {
    ++calls;
    CHECK(n == 40);
    CHECK(threads == 2);
    double s = 0;
    for (int64_t i = 0; i < n * 4; ++i) s += x[i];
    return ddpm::QualityValue{s / (double)(n * 4), ""};
  };
  REQUIRE(ddpm::train(w) == 0);
  CHECK(calls == 3);
  const std::vector<nlohmann::json> q = quality_lines(w.out);
  REQUIRE(q.size() == 3);
  for (size_t i = 0; i < q.size(); ++i) {
    CHECK(q[i]["step"] == 10 * (int64_t)(i + 1));
    CHECK(q[i]["quality"]["metric"] == "mean");
    CHECK(q[i]["quality"]["value"].is_number());
    CHECK(q[i]["quality"]["sampler"] == "ddpm");
    CHECK(q[i]["quality"]["sampler_steps"] == 50);  // it cannot skip steps: all T
    CHECK(!q[i]["quality"].contains("floor"));
  }
  CHECK(png_size(fs::path(w.out) / "quality.png").first == 800);
}

TEST_CASE("eval every: bad --eval-every and --eval-samples are one-line errors with exit status 2") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "flags");
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm";
  for (const char* flags : {"--eval-every -5", "--eval-every 10 --eval-samples 0", "--eval-every 10 --eval-samples 100001"}) {
    CAPTURE(flags);
    std::string out;
    CHECK(run_shell(fmt::format("{} {} --steps 10 --out {} {}", tool_path("ddpm-train"), spec, (dir / "r").string(),
                                flags),
                    out) == 2);
    CHECK(out.find(std::string(flags).find("samples") != std::string::npos ? "--eval-samples must be 1 to 100000"
                                                                           : "--eval-every must be >= 0") !=
          std::string::npos);
    CHECK(out.rfind("ddpm-train: error: --eval-", 0) == 0);  // the error line, then the usage hint
    CHECK(std::count(out.begin(), out.end(), '\n') == 2);
    CHECK(!fs::exists(dir / "r"));
  }
  // The library says the same to its other callers.
  ddpm::TrainConfig c;
  c.model = "x.so";
  c.out = (dir / "lib").string();
  c.eval_samples = -1;
  CHECK(user_error_of([&] { ddpm::train(c); }).find("--eval-samples must be 1 to 100000") != std::string::npos);
}

TEST_CASE("eval every: under mpirun only rank 0 evaluates and the weights match one process without evaluations") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "mpi");
  fs::create_directories(dir);
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm";
  const std::string cache = std::string(DDPM_TEST_CACHE);
  const std::string flags = "--data moons --steps 60 --batch 32 --slices 2 --seed 4 --threads 1 -q --log-every 20";
  std::string out;
  REQUIRE_MESSAGE(run_shell(fmt::format("env ASAN_OPTIONS=detect_leaks=0 {} --allow-run-as-root --oversubscribe -np 2 "
                                        "{} {} {} --eval-every 25 --eval-samples 200 --out {} --cache-dir {}",
                                        DDPM_MPIEXEC, tool_path("ddpm-train"), spec, flags, (dir / "mpi").string(),
                                        cache),
                            out) == 0,
                  out);
  REQUIRE_MESSAGE(run_shell(fmt::format("{} {} {} --out {} --cache-dir {}", tool_path("ddpm-train"), spec, flags,
                                        (dir / "one").string(), cache),
                            out) == 0,
                  out);
  ddpm_test::require_same_checkpoint(dir / "mpi", dir / "one");
  const std::vector<nlohmann::json> q = quality_lines(dir / "mpi");
  REQUIRE(q.size() == 3);  // 25, 50, 60: once each, from rank 0 alone
  CHECK(q[0]["step"] == 25);
  CHECK(q[2]["step"] == 60);
  CHECK(loss_lines(dir / "mpi") == 3);
}

TEST_CASE("eval every: Ctrl-C during a slow evaluation stops within 2 s with a checkpoint and no quality line") {
  // slow_preview.ddpm's only sampler cannot skip steps: an evaluation of 2000
  // points runs all 1000 of them and takes many seconds. The shell starts the run,
  // waits until it is inside the first evaluation, sends SIGINT and times the stop.
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "sigint");
  fs::create_directories(dir);
  const fs::path run = dir / "run", err = dir / "stderr.txt";
  const std::string cmd = fmt::format(
      "{} {} --data moons --steps 1000000 --batch 8 --threads 1 --eval-every 1 --ckpt-every 0 --out {} "
      "--cache-dir {} 2> {} & pid=$!; "
      "for i in $(seq 600); do grep -q 'evaluation every' {} && break; sleep 0.1; done; sleep 1.5; "
      "t0=$(date +%s.%N); kill -INT $pid; wait $pid; rc=$?; t1=$(date +%s.%N); "
      "echo \"rc=$rc took=$(awk \"BEGIN {{ print $t1 - $t0 }}\")\"",
      tool_path("ddpm-train"), std::string(DDPM_SOURCE_DIR) + "/tests/specs/slow_preview.ddpm", run.string(),
      std::string(DDPM_TEST_CACHE), err.string(), err.string());
  std::string out;
  run_shell(cmd, out);
  const std::string log = file_bytes(err);
  INFO("shell: ", out, "stderr: ", log);
  CHECK(log.find("it cannot skip steps, so each evaluation runs all of them") != std::string::npos);
  REQUIRE(out.find("rc=130") != std::string::npos);
  const double took = std::stod(out.substr(out.find("took=") + 5));
  MESSAGE("stopped ", took, " s after SIGINT");
  CHECK(took < 2.0);
  CHECK(log.find("stopped by Ctrl-C") != std::string::npos);
  CHECK(fs::exists(run / "checkpoint.safetensors"));
  CHECK(quality_lines(run).empty());  // the abandoned evaluation wrote nothing
}

TEST_CASE("eval every: quality.png is drawn from the quality lines among others, and skips broken ones") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "plot");
  fs::create_directories(dir);
  {
    std::ofstream m(dir / "metrics.jsonl");
    m << "{\"step\": 10, \"loss\": 0.9, \"lr\": 0.001, \"steps_per_s\": 100.0, \"elapsed_s\": 0.1}\n";
    m << "{\"step\": 10, \"elapsed_s\": 0.1, \"quality\": {\"metric\": \"swd\", \"value\": 0.5, \"samples\": 10, "
         "\"sampler\": \"ddim\", \"sampler_steps\": 50, \"seconds\": 0.01, \"floor\": 0.02}}\n";
    m << "not json\n";
    m << "{\"step\": 20, \"elapsed_s\": 0.2, \"quality\": {\"metric\": \"swd\", \"value\": null}}\n";
    m << "{\"step\": 30, \"elapsed_s\": 0.3, \"quality\": {\"metric\": \"swd\", \"value\": 0.1}}\n";
  }
  ddpm::write_quality_plot(dir.string());
  CHECK(png_size(dir / "quality.png") == std::pair<int, int>{800, 600});
  // Nothing to draw: no file.
  const fs::path empty = dir / "empty";
  fs::create_directories(empty);
  std::ofstream(empty / "metrics.jsonl") << "{\"step\": 10, \"loss\": 0.9, \"lr\": 0.001}\n";
  ddpm::write_quality_plot(empty.string());
  CHECK(!fs::exists(empty / "quality.png"));
}

TEST_CASE("eval every: ddpm-train measures Fashion-MNIST samples by FID under the shipped evaluator") {
  const fs::path dir = ddpm_test::process_dir("test-eval-every", "fid");
  const std::string cache = std::string(DDPM_TEST_CACHE);
  auto train = [&](const std::string& spec, const std::string& data, const fs::path& out, std::string& log) {
    return run_shell(fmt::format("{} {}/tests/specs/{} --data {} --steps 20 --batch 16 --threads 2 --eval-every 10 "
                                 "--eval-samples 100 --out {} --cache-dir {}",
                                 tool_path("ddpm-train"), DDPM_SOURCE_DIR, spec, data, out.string(), cache),
                     log);
  };
  std::string log;
  REQUIRE_MESSAGE(train("tiny_fashion.ddpm", "fashion-mnist", dir / "run", log) == 0, log);
  const std::vector<nlohmann::json> q = quality_lines(dir / "run");
  REQUIRE(q.size() == 2);
  for (size_t i = 0; i < q.size(); ++i) {
    CHECK(q[i]["step"] == 10 * (int64_t)(i + 1));
    CHECK(q[i]["quality"]["metric"] == "fid");
    CHECK(q[i]["quality"]["samples"] == 100);
    CHECK(q[i]["quality"]["sampler"] == "ddim");
    REQUIRE(q[i]["quality"]["value"].is_number());
    CHECK(q[i]["quality"]["value"].get<double>() > 1.0);  // 20 steps of training are far from the data
  }
  CHECK(log.find("eval at step 10: fid ") != std::string::npos);
  CHECK(png_size(dir / "run" / "quality.png").first == 800);

  // A run whose images are not the evaluator's 28x28: one line before any step, nothing written.
  const fs::path data = tiny_images(dir);
  CHECK(train("tiny_image.ddpm", data.string(), dir / "small", log) == 1);
  CHECK(log.find("ddpm-train: error:") != std::string::npos);
  CHECK(log.find("[1, 28, 28]") != std::string::npos);
  CHECK(!fs::exists(dir / "small" / "checkpoint.safetensors"));
}
