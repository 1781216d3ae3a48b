// Tests of --resume restoring the run (runtime/resume.h): a plain
// `ddpm-train SPEC --out RUN --resume` continues with the checkpoint's settings,
// bit-identical to a run that was never stopped, from any path spelling of the
// spec and any current directory, in one process and under mpirun; a flag given on
// the command line overrides the checkpoint's value with a one-line note.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/diag.h"
#include "runtime/npy.h"
#include "runtime/resume.h"
#include "runtime/safetensors.h"
#include "test_shell.h"

namespace fs = std::filesystem;
using ddpm_test::file_bytes;
using ddpm_test::run_shell;
using ddpm_test::tool_path;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-resume" / name;
  fs::remove_all(p);
  fs::create_directories(p.parent_path());
  return p;
}



// The tensors of two checkpoints are bit-identical (the metadata differs: elapsed time).
bool same_weights(const fs::path& a, const fs::path& b) {
  auto ta = ddpm::read_safetensors((a / "checkpoint.safetensors").string()).tensors;
  auto tb = ddpm::read_safetensors((b / "checkpoint.safetensors").string()).tensors;
  return !ta.empty() && ta == tb;
}

// A cosine run with warm-up: every flag here differs from ddpm-train's defaults.
const char* kFlags = "--data swissroll --steps 60 --batch 32 --lr 3e-3 --lr-schedule cosine --warmup 10 --seed 7 "
                     "--ema-decay 0.99 --grad-clip 0.5 -q --threads 2";

}  // namespace

TEST_CASE("resume: a plain --resume of a cosine run from another directory and path spelling is bit-identical") {
  const fs::path straight = fresh_dir("straight"), stopped = fresh_dir("stopped");
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm";
  std::string out;
  REQUIRE(run_shell(fmt::format("{} {} {} --out {}", tool_path("ddpm-train"), spec, kFlags, straight.string()), out) == 0);
  REQUIRE(run_shell(fmt::format("{} {} {} --out {} --stop-at 25", tool_path("ddpm-train"), spec, kFlags, stopped.string()),
              out) == 0);
  CHECK(out.find("stopped at --stop-at 25") != std::string::npos);
  CHECK_FALSE(same_weights(straight, stopped));
  // From the tests folder, as ../models/./moons.ddpm, with no flags but --resume.
  REQUIRE(run_shell(fmt::format("cd {}/tests && {} ../models/./moons.ddpm --out {} --resume -q", DDPM_SOURCE_DIR,
                          tool_path("ddpm-train"), stopped.string()),
              out) == 0);
  INFO(out);
  CHECK(out.find("spec hash") == std::string::npos);
  CHECK(out.find("note:") == std::string::npos);  // nothing was overridden
  CHECK(same_weights(straight, stopped));
}

TEST_CASE("resume: under mpirun, with another spelling of the spec, the ranks agree and continue bit-identically") {
  const fs::path straight = fresh_dir("mpi-straight"), stopped = fresh_dir("mpi-stopped");
  std::string out;
  const std::string train = tool_path("ddpm-train");
  const std::string flags = std::string(kFlags) + " --slices 2";
  REQUIRE(run_shell(fmt::format("cd {} && {} models/moons.ddpm {} --out {}", DDPM_SOURCE_DIR, train, flags,
                          straight.string()),
              out) == 0);
  REQUIRE(run_shell(fmt::format("cd {} && {} models/moons.ddpm {} --out {} --stop-at 30", DDPM_SOURCE_DIR, train, flags,
                          stopped.string()),
              out) == 0);
  REQUIRE(run_shell(fmt::format("cd {} && env ASAN_OPTIONS=detect_leaks=0 {} --allow-run-as-root --oversubscribe -np 2 "
                          "{} {}/models/moons.ddpm --out {} --resume --threads 1 -q",
                          fs::temp_directory_path().string(), DDPM_MPIEXEC, train, DDPM_SOURCE_DIR, stopped.string()),
              out) == 0);
  INFO(out);
  CHECK(same_weights(straight, stopped));
}

TEST_CASE("resume: settings not given come from the checkpoint, given ones override it with a note") {
  ddpm::TrainConfig run;
  run.data = "swissroll";
  run.steps = 1000;
  run.batch = 64;
  run.slices = 2;
  run.seed = 9;
  run.opt.lr = 3e-3f;
  run.warmup = 100;
  run.lr_schedule = "constant";
  run.ema_decay = 0.99f;
  run.grad_clip = 0.5f;
  const auto meta = ddpm::training_settings(run);

  ddpm::TrainConfig cmd;  // the defaults, as a plain --resume passes them
  std::vector<std::string> notes;
  ddpm::TrainConfig r = ddpm::restore_settings(cmd, meta, "ck", notes);
  CHECK(notes.empty());
  CHECK(ddpm::training_settings(r) == meta);

  cmd.steps = 2000;  // a longer constant-rate run: still exact
  cmd.opt.lr = 1e-3f;
  cmd.batch = 64;  // given but equal: no note
  cmd.given = {"steps", "lr", "batch"};
  r = ddpm::restore_settings(cmd, meta, "ck", notes);
  CHECK(r.steps == 2000);
  CHECK(r.opt.lr == 1e-3f);
  CHECK(r.seed == 9);
  CHECK(r.warmup == 100);
  REQUIRE(notes.size() == 2);
  CHECK(notes[0] == "note: --steps 2000 overrides the checkpoint's 1000");
  CHECK(notes[1] == "note: --lr 0.001 overrides the checkpoint's 0.003; the rest of the run will differ from one "
                    "that was never interrupted");

  auto bad = meta;
  bad["batch"] = "-3";
  CHECK_THROWS_AS(ddpm::restore_settings(ddpm::TrainConfig{}, bad, "ck", notes), ddpmc::UserError);
  auto old = meta;  // a checkpoint from before steps were recorded keeps the command line's
  old.erase("steps");
  CHECK(ddpm::restore_settings(ddpm::TrainConfig{}, old, "ck", notes).steps == ddpm::TrainConfig{}.steps);
}

TEST_CASE("resume: a run trained on a relative .npy path resumes from another directory without --data") {
  // ddpm-train records data and label files by absolute path, so the run does not depend on
  // the directory it was started from.
  const fs::path dir = fresh_dir("relative-data"), elsewhere = fresh_dir("relative-data-elsewhere");
  fs::create_directories(dir);
  fs::create_directories(elsewhere);
  std::vector<float> x(2 * 64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  ddpm::write_npy((dir / "points.npy").string(), x.data(), {64, 2});
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm";
  std::string out;
  REQUIRE(run_shell(fmt::format("cd {} && {} {} --data points.npy --steps 20 --stop-at 10 --batch 16 -q --out run",
                                dir.string(), tool_path("ddpm-train"), spec),
                    out) == 0);
  const auto meta = ddpm::read_safetensors((dir / "run" / "checkpoint.safetensors").string()).metadata;
  auto it = meta.find("data");
  REQUIRE(it != meta.end());
  CHECK(it->second == (dir / "points.npy").lexically_normal().string());
  INFO(out);
  REQUIRE(run_shell(fmt::format("cd {} && {} {} --out {} --resume -q", elsewhere.string(), tool_path("ddpm-train"), spec,
                                (dir / "run").string()),
                    out) == 0);
  const auto done = ddpm::read_safetensors((dir / "run" / "checkpoint.safetensors").string()).metadata;
  CHECK(done.at("step") == "20");
}
