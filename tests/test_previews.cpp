// Previews during training are bounded and interruptible (runtime/previews.h):
// a sampler that reads its target step runs at most 50 steps; one that cannot
// skip steps runs them all and says so; and a run busy in a slow preview stops on
// Ctrl-C (acknowledged at once, a checkpoint written within 2 s, even when Ctrl-C
// is pressed again and again) and on --minutes. The stop tests run the real
// build/tools/ddpm-train binary and send it signals.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/module.h"
#include "runtime/previews.h"
#include "runtime/safetensors.h"
#include "test_runs.h"

extern char** environ;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::string module_of(const std::string& spec) {
  return ddpm_tools::module_for(std::string(DDPM_SOURCE_DIR) + "/" + spec,
                                std::string(DDPM_TEST_CACHE)).so;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ddpm-train on the slow-preview model with a preview after every step, its
// stderr in `err`.
pid_t spawn_slow_run(const fs::path& out, const fs::path& err, const std::vector<std::string>& extra) {
  std::vector<std::string> args = {std::string(DDPM_BINARY_DIR) + "/tools/ddpm-train",
                                   module_of("tests/specs/slow_preview.ddpm"),
                                   "--data", "moons", "--steps", "1000000", "--batch", "8", "--threads", "1",
                                   "--sample-every", "1", "--log-every", "1", "--ckpt-every", "0",
                                   "--out", out.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits until `err` holds `text` (true) or the process exits or 60 s pass (false).
bool wait_for_text(pid_t pid, const fs::path& err, const std::string& text) {
  const Clock::time_point t0 = Clock::now();
  while (seconds_since(t0) < 60) {
    if (read_text(err).find(text) != std::string::npos) return true;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Waits for the process to exit (its status), killing it after `limit` seconds (-1).
int wait_exit(pid_t pid, double limit) {
  const Clock::time_point t0 = Clock::now();
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (seconds_since(t0) > limit) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status;
}

int64_t checkpoint_step(const fs::path& run) {
  const fs::path ck = run / "checkpoint.safetensors";
  if (!fs::exists(ck)) return -1;
  return std::stoll(ddpm::read_safetensors(ck.string()).metadata.at("step"));
}

// Starts a slow-preview run, waits until it is inside a preview, sends `signals`
// SIGINTs 10 ms apart (the later ones arrive while it stops) and checks that it stops with a checkpoint within 2 s.
void stop_during_preview(const std::string& name, int signals) {
  const fs::path dir = ddpm_test::process_dir("test-previews", name);
  fs::create_directories(dir);
  const fs::path out = dir / "run", err = dir / "stderr.txt";
  const pid_t pid = spawn_slow_run(out, err, {});
  REQUIRE_MESSAGE(wait_for_text(pid, err, "parameters, batch 8"), read_text(err));
  // The first step takes milliseconds; its preview many seconds.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < signals; ++i) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    kill(pid, SIGINT);
  }
  const int status = wait_exit(pid, 60);
  const double took = seconds_since(t0);
  const std::string log = read_text(err);
  INFO("stderr: ", log);
  MESSAGE("stopped ", took, " s after the first SIGINT");
  REQUIRE(status != -1);
  CHECK(took < 2.0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(log.find("note: previews run sampler 'ddpm' over all 1000 steps") != std::string::npos);
  CHECK(log.find("stopping: finishing this step, then writing the checkpoint") != std::string::npos);
  CHECK(log.find("stopped by Ctrl-C") != std::string::npos);
  CHECK(checkpoint_step(out) >= 1);
}

}  // namespace

TEST_CASE("previews: ddim or a sampler that reads its target step runs at most 50 steps, else all steps") {
  const fs::path dir = ddpm_test::process_dir("test-previews", "choice");
  struct Want {
    const char* spec;
    const char* sampler;
    int steps;
  };
  // cond2d has only a guided DDIM (like fashion_cond.ddpm), moons its ddim,
  // ddpm_then_ode an ancestral sampler before one that can skip steps, and
  // slow_preview only an ancestral sampler that ignores s.
  for (const Want& w : {Want{"tests/specs/cond2d.ddpm", "cfg", 50}, Want{"models/moons.ddpm", "ddim", 50},
                        Want{"tests/specs/ddpm_then_ode.ddpm", "ode", 50},
                        Want{"tests/specs/slow_preview.ddpm", "ddpm", 1000}}) {
    CAPTURE(w.spec);
    ddpm::Module mod(module_of(w.spec));
    ddpm::AlignedFloats params(mod->param_floats);
    ddpm::init_params(mod.get(), 1, params.data());
    ddpm::SamplePreviews p(mod, dir.string(), params.data(), true);
    REQUIRE(p.enabled());
    CHECK(p.sampler() == w.sampler);
    CHECK(p.steps() == w.steps);
  }
}

TEST_CASE("previews: Ctrl-C during a slow preview writes the checkpoint within 2 s") {
  stop_during_preview("sigint", 1);
}

TEST_CASE("previews: Ctrl-C pressed three times during a slow preview still writes the checkpoint") {
  stop_during_preview("sigint3", 3);
}

TEST_CASE("previews: --minutes stops a run busy in a slow preview on time, with a checkpoint") {
  const fs::path dir = ddpm_test::process_dir("test-previews", "minutes");
  fs::create_directories(dir);
  const fs::path out = dir / "run", err = dir / "stderr.txt";
  const pid_t pid = spawn_slow_run(out, err, {"--minutes", "0.02"});  // 1.2 s
  REQUIRE_MESSAGE(wait_for_text(pid, err, "parameters, batch 8"), read_text(err));
  const Clock::time_point t0 = Clock::now();
  const int status = wait_exit(pid, 60);
  const double took = seconds_since(t0);
  const std::string log = read_text(err);
  INFO("stderr: ", log);
  REQUIRE(status != -1);
  CHECK(took < 1.2 + 3.0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(log.find("stopped by the time limit") != std::string::npos);
  CHECK(checkpoint_step(out) >= 1);
}
