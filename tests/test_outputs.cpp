// Tests that nothing the tools write can destroy a run or another output of the
// same command (common/run_files.h): ddpm-sample's --out and --png and ddpmc
// compile's -o and --emit-cpp may not name a run's checkpoint, module, config or
// lock, an existing directory, the spec being compiled, or each other. Each is a
// command-line error (exit 2) before any work, and the run's files are unchanged.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "common/run_files.h"
#include "test_runs.h"
#include "test_shell.h"

namespace fs = std::filesystem;
using ddpm_test::file_bytes;
using ddpm_test::run_shell;
using ddpm_test::tool_path;

namespace {




// A small trained run, made once per test process.
const fs::path& trained_run() {
  static const fs::path dir = [] {
    fs::path d = ddpm_test::process_dir("test-outputs", "run");
    fs::remove_all(d);
    fs::create_directories(d.parent_path());
    std::string out;
    REQUIRE(run_shell(fmt::format("{} {}/models/moons.ddpm --steps 20 --batch 32 --threads 2 -q --out {}",
                            tool_path("ddpm-train"), DDPM_SOURCE_DIR, d.string()),
                out) == 0);
    return d;
  }();
  return dir;
}

}  // namespace

TEST_CASE("outputs: ddpm-sample refuses --out or --png on the run's own files and leaves them unchanged") {
  const fs::path r = trained_run();
  const std::string ck = file_bytes(r / "checkpoint.safetensors"), so = file_bytes(r / "module.so");
  REQUIRE(!ck.empty());
  const std::string sample = fmt::format("{} {} -n 8 --steps 5 --sampler ddim -q", tool_path("ddpm-sample"), r.string());
  std::string out;
  CHECK(run_shell(fmt::format("{} --out {}/checkpoint.safetensors", sample, r.string()), out) == 2);
  CHECK(out.find("would overwrite the run's own checkpoint.safetensors") != std::string::npos);
  CHECK(run_shell(fmt::format("{} --out {}/x.npy --png {}/module.so", sample, r.string(), r.string()), out) == 2);
  CHECK(out.find("--png") != std::string::npos);
  CHECK(out.find("module.so") != std::string::npos);
  CHECK(run_shell(fmt::format("{} --out {}/../{}/config.json", sample, r.string(), r.filename().string()), out) == 2);
  CHECK(run_shell(fmt::format("{} --out {}/train.lock --no-png", sample, r.string()), out) == 2);
  CHECK(file_bytes(r / "checkpoint.safetensors") == ck);
  CHECK(file_bytes(r / "module.so") == so);
  CHECK_FALSE(fs::exists(r / "x.npy"));

  // Two outputs on one file, and a directory as an output.
  CHECK(run_shell(fmt::format("{} --out {}/same.npy --png {}/same.npy", sample, r.string(), r.string()), out) == 2);
  CHECK(out.find("--out and --png both name") != std::string::npos);
  CHECK(run_shell(fmt::format("{} --out {}", sample, fs::temp_directory_path().string()), out) == 2);
  CHECK(out.find("is a directory") != std::string::npos);
  // A sound pair still works.
  CHECK(run_shell(fmt::format("{} --out {}/x.npy", sample, r.string()), out) == 0);
  CHECK(fs::exists(r / "x.npy"));
  CHECK(fs::exists(r / "x.png"));
}

TEST_CASE("outputs: ddpmc compile refuses -o on a directory, a run's module or the spec it reads") {
  const fs::path r = trained_run();
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm";
  const std::string spec_text = file_bytes(spec);
  const fs::path tmp = fs::path(DDPM_BINARY_DIR) / "test-outputs" / fmt::format("dir.{}", getpid());
  fs::create_directories(tmp);
  std::string out;
  CHECK(run_shell(fmt::format("{} compile {} -o {}", tool_path("ddpmc"), spec, tmp.string()), out) == 2);
  CHECK(out.find("is a directory") != std::string::npos);
  for (auto& e : fs::directory_iterator(tmp.parent_path()))  // no tmp file left beside it
    CHECK(e.path().filename().string().find(tmp.filename().string() + ".tmp") == std::string::npos);
  CHECK(run_shell(fmt::format("{} compile {} -o {}/module.so", tool_path("ddpmc"), spec, r.string()), out) == 2);
  CHECK(run_shell(fmt::format("{} compile {} -o {}/m.so --emit-cpp {}", tool_path("ddpmc"), spec, tmp.string(), spec), out) ==
        2);
  CHECK(out.find("would overwrite the spec it reads") != std::string::npos);
  CHECK(file_bytes(spec) == spec_text);
  fs::remove_all(tmp);
}

TEST_CASE("outputs: the check itself: run files, any run directory, inputs, duplicates") {
  const fs::path d = fs::path(DDPM_BINARY_DIR) / "test-outputs" / fmt::format("unit.{}", getpid());
  fs::remove_all(d);
  fs::create_directories(d / "run");
  fs::create_directories(d / "plain");
  std::ofstream(d / "run" / "checkpoint.safetensors") << "x";
  using ddpmc::output_problem;
  CHECK(output_problem({{"--out", (d / "run" / "module.so").string()}}) != "");   // a run found by its checkpoint
  CHECK(output_problem({{"--out", (d / "plain" / "module.so").string()}}) == "");  // not a run
  CHECK(output_problem({{"--out", (d / "plain" / "config.json").string()}}, (d / "plain").string()) != "");
  CHECK(output_problem({{"--out", (d / "run" / "samples.npy").string()}}) == "");
  CHECK(output_problem({{"-o", "a.so"}, {"--emit-cpp", "./a.so"}}) != "");
  CHECK(output_problem({{"-o", "a.so"}, {"--emit-cpp", ""}}) == "");
  CHECK(output_problem({{"-o", "x/../in.ddpm"}}, "", {{"spec", "in.ddpm"}}) != "");
  fs::remove_all(d);
}
