// Tests of the run directory under misuse: a second ddpm-train on the same --out
// is refused, and ddpm-train killed with SIGKILL at random moments while it
// writes checkpoints always leaves a checkpoint that --resume accepts (the old
// one or the new one, never a torn file). The kill test runs the real
// build/tools/ddpm-train binary on the compiled moons module.
#include <doctest/doctest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/diag.h"
#include "common/file_lock.h"
#include "runtime/safetensors.h"
#include "runtime/train.h"
#include "test_support.h"

extern char** environ;

namespace fs = std::filesystem;
using ddpm_test::moons_module;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-rundir" / name;
  fs::remove_all(p);
  fs::create_directories(p.parent_path());
  return p;
}

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
  return pid;
}

}  // namespace

TEST_CASE("rundir: a second ddpm-train on the same --out is refused with a one-line error") {
  fs::path d = fresh_dir("locked");
  fs::create_directories(d);
  ddpm::TrainConfig c;
  c.model = moons_module();
  c.data = "moons";
  c.steps = 20;
  c.batch = 16;
  c.out = d.string();
  c.quiet = true;
  std::string err;
  {
    auto held = ddpmc::FileLock::try_lock((d / "train.lock").string());
    REQUIRE(held.has_value());
    try {
      ddpm::train(c);
    } catch (const ddpmc::UserError& e) {
      err = e.what();
    }
    // While held, another lock attempt fails too.
    CHECK(!ddpmc::FileLock::try_lock((d / "train.lock").string()).has_value());
  }
  CHECK(err.find("is in use by another ddpm-train (pid " + std::to_string(getpid()) + ")") != std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  CHECK(!fs::exists(d / "checkpoint.safetensors"));
  // Released: the run goes ahead.
  CHECK(ddpm::train(c) == 0);
  CHECK(fs::exists(d / "checkpoint.safetensors"));
}

TEST_CASE("rundir: SIGKILL during checkpoint writes always leaves a checkpoint --resume accepts") {
  const fs::path d = fresh_dir("sigkill");
  const std::string ckpt = (d / "checkpoint.safetensors").string();
  const std::string train = std::string(DDPM_BINARY_DIR) + "/tools/ddpm-train";
  std::mt19937 rng(20261128);
  std::uniform_int_distribution<int> pause_us(0, 60000);
  const int kRounds = 40;
  int64_t last_step = 0;
  for (int round = 0; round < kRounds; ++round) {
    // A checkpoint after every step: most of the wall time is spent writing them.
    std::vector<std::string> args = {train, moons_module(), "--data", "moons", "--steps", "100000000",
                                     "--batch", "64", "--threads", "1", "--ckpt-every", "1",
                                     "--log-every", "100000", "-q", "--out", d.string()};
    if (round > 0) args.push_back("--resume");
    pid_t pid = spawn(args);
    // Wait until the run is writing checkpoints (its first one, or a newer one).
    auto t0 = std::chrono::steady_clock::now();
    const auto start_time = fs::exists(ckpt) ? fs::last_write_time(ckpt) : fs::file_time_type::min();
    int status = 0;
    bool exited = false;
    while (!exited && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60)) {
      std::error_code ec;
      if (fs::exists(ckpt, ec) && fs::last_write_time(ckpt, ec) > start_time) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      exited = waitpid(pid, &status, WNOHANG) == pid;
    }
    REQUIRE_MESSAGE(!exited, "ddpm-train exited early in round ", round, " (status ", status, ")");
    std::this_thread::sleep_for(std::chrono::microseconds(pause_us(rng)));
    kill(pid, SIGKILL);
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));

    // The checkpoint is whole: it parses and validates, and its step never goes back.
    ddpm::SafeTensors ck;
    REQUIRE_NOTHROW(ck = ddpm::read_safetensors(ckpt));
    const int64_t step = std::stoll(ck.metadata.at("step"));
    CHECK(step >= last_step);
    last_step = step;
  }
  MESSAGE("after ", kRounds, " kills the checkpoint is at step ", last_step);
  // And the run finishes from it.
  pid_t pid = spawn({train, moons_module(), "--data", "moons", "--steps", std::to_string(last_step + 3), "--batch",
                     "64", "--threads", "1", "-q", "--resume", "--out", d.string()});
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(ddpm::read_safetensors(ckpt).metadata.at("step") == std::to_string(last_step + 3));
}

namespace {

// Runs `cmd` under strace and checks that every rename it does moves a file it
// fsynced first, and fsyncs the target's directory after. Returns the renamed
// targets.
std::vector<std::string> renames_after_fsync(const std::string& cmd, const fs::path& log) {
  // LeakSanitizer cannot run under ptrace; the ASan build turns it off here.
  const std::string st = "ASAN_OPTIONS=detect_leaks=0 strace -f -y -e trace=fsync,rename,renameat,renameat2 -o '" +
                         log.string() + "' " + cmd;
  REQUIRE(std::system(st.c_str()) == 0);
  std::ifstream in(log);
  std::string line;
  std::vector<std::string> fsynced, renamed;
  while (std::getline(in, line)) {
    auto f = line.find("fsync(");
    if (f != std::string::npos) {
      auto a = line.find('<', f), b = line.find('>', a);
      if (a != std::string::npos && b != std::string::npos) fsynced.push_back(line.substr(a + 1, b - a - 1));
      continue;
    }
    auto r = line.find("rename(\"");
    if (r == std::string::npos) continue;
    auto a = r + 8, b = line.find('"', a);
    auto c = line.find('"', b + 1) + 1, d = line.find('"', c);
    const std::string from = line.substr(a, b - a), to = line.substr(c, d - c);
    CHECK_MESSAGE(std::find(fsynced.begin(), fsynced.end(), from) != fsynced.end(), "renamed without fsync: ", from);
    renamed.push_back(to);
  }
  // The last rename's directory is fsynced after it.
  if (!renamed.empty()) CHECK(fsynced.back() == fs::path(renamed.back()).parent_path().string());
  return renamed;
}

}  // namespace

TEST_CASE("rundir: module and checkpoint files are fsynced before their rename") {
  REQUIRE_MESSAGE(std::system("strace -V > /dev/null 2>&1") == 0, "strace is missing; tools/deps.sh installs it");
  const fs::path d = fresh_dir("fsync");
  fs::create_directories(d);
  const std::string bin = std::string(DDPM_BINARY_DIR) + "/tools/";
  auto renamed = renames_after_fsync("'" + bin + "ddpm-train' '" + moons_module() +
                                         "' --steps 3 --batch 8 --threads 1 -q --out '" + (d / "run").string() + "'",
                                     d / "train.strace");
  auto has = [&](const fs::path& p) { return std::find(renamed.begin(), renamed.end(), p.string()) != renamed.end(); };
  CHECK(has(d / "run" / "module.so"));
  CHECK(has(d / "run" / "checkpoint.safetensors"));
  // `ddpmc compile -o` copies the cached module out the same way.
  renamed = renames_after_fsync("'" + bin + "ddpmc' compile '" + ddpm_test::source_path("models/moons.ddpm") +
                                    "' --cache-dir '" + ddpm_test::test_build_options().cache_dir + "' -o '" +
                                    (d / "out.so").string() + "' 2> /dev/null",
                                d / "compile.strace");
  CHECK(has(d / "out.so"));
}
