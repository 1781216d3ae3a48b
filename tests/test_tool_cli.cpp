// Tests of the tools' command lines and messages, run as a user would run them:
// --version on every tool, one error prefix ("TOOL: error:") and exit status 2 for
// every bad command line, ddpmc's unknown commands, `ddpmc compile -o DIR`, an
// argument error under mpirun printed once by rank 0, and messages that used to
// mislead (CR-only specs, FLOP units, a float out of range, "1 steps").
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "common/diag.h"
#include "compiler/driver.h"
#include "test_runs.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

struct Out {
  int status = -1;
  std::string text;  // stdout and stderr
};

Out sh(const std::string& cmd) {
  Out o;
  if (FILE* p = popen(("(" + cmd + ") 2>&1").c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) o.text += buf;
    const int rc = pclose(p);
    o.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  }
  return o;
}

std::string tool(const std::string& name) { return fmt::format("'{}/tools/{}'", DDPM_BINARY_DIR, name); }

std::string moons() { return ddpm_test::source_path("models/moons.ddpm"); }

std::string test_cache() { return std::string(DDPM_TEST_CACHE); }

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Two ranks under mpirun. As in test_dist.cpp, LeakSanitizer is off in them: OpenMPI
// keeps its allocations until exit.
std::string mpirun() {
  return fmt::format("env ASAN_OPTIONS=detect_leaks=0 {} --allow-run-as-root --oversubscribe -np 2", DDPM_MPIEXEC);
}

fs::path scratch(const std::string& name) {
  fs::path p = ddpm_test::process_dir("test-tool-cli", name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST_CASE("cli: every tool prints --version with the version, module ABI, compiler and CPU features") {
  for (const char* t : {"ddpmc", "ddpm-train", "ddpm-sample", "ddpm-eval"}) {
    Out o = sh(tool(t) + " --version");
    CAPTURE(o.text);
    CHECK(o.status == 0);
    CHECK(o.text.rfind(std::string(t) + " 0.", 0) == 0);
    CHECK(o.text.find(fmt::format("module ABI  {}", DDPM_ABI_VERSION)) != std::string::npos);
    CHECK(o.text.find("built with  ") != std::string::npos);
    CHECK(o.text.find("this CPU    ") != std::string::npos);
    const bool compiles = std::string(t) == "ddpmc" || std::string(t) == "ddpm-train";
    CHECK((o.text.find("modules     compiled by") != std::string::npos) == compiles);
  }
}

TEST_CASE("cli: ddpmc names a missing or unknown command instead of saying a subcommand is required") {
  Out o = sh(tool("ddpmc") + " bogus");
  CHECK(o.status == 2);
  CHECK(o.text.find("ddpmc: error: unknown command 'bogus'; the commands are check, compile and cache") !=
        std::string::npos);
  o = sh(tool("ddpmc"));
  CHECK(o.status == 2);
  CHECK(o.text.find("ddpmc: error: a command is required: check, compile or cache") != std::string::npos);
}

TEST_CASE("cli: bad command lines exit 2 and every tool's errors start with its name") {
  struct Case {
    std::string cmd, starts;
    int status;
  };
  const fs::path d = scratch("prefix");
  const Case cases[] = {
      {tool("ddpmc") + " check " + moons() + " --dump-after bogus", "ddpmc: error: --dump-after: unknown pass 'bogus'",
       2},
      {tool("ddpm-train") + " x.so --seed -1", "ddpm-train: error: --seed: must be a whole number from 0 to", 2},
      {tool("ddpm-sample") + " run --seed -1", "ddpm-sample: error: --seed: must be a whole number from 0 to", 2},
      {tool("ddpm-eval") + " run --bpd --seed 1.5", "ddpm-eval: error: --seed: must be a whole number from 0 to", 2},
      {tool("ddpmc") + " check " + (d / "missing.ddpm").string(), "ddpmc: error: ", 1},
      {tool("ddpm-train") + " " + (d / "missing.so").string() + " --out " + (d / "r").string(), "ddpm-train: error: ",
       1},
      {tool("ddpm-sample") + " " + (d / "no-run").string(), "ddpm-sample: error: ", 1},
  };
  for (const Case& c : cases) {
    Out o = sh(c.cmd);
    CAPTURE(c.cmd);
    CAPTURE(o.text);
    CHECK(o.status == c.status);
    CHECK(o.text.rfind(c.starts, 0) == 0);
  }
}

TEST_CASE("cli: ddpmc compile -o a directory is refused and leaves no temporary file behind") {
  const fs::path d = scratch("outdir");
  fs::create_directories(d / "target");
  Out o = sh(tool("ddpmc") + " compile " + moons() + " -o " + (d / "target").string() + " --cache-dir " + test_cache());
  CHECK(o.status == 2);
  CHECK(o.text.find("is a directory") != std::string::npos);
  // The builder itself, asked to write onto a directory, cleans up its copy.
  ddpmc::BuildOptions opt = ddpm_test::test_build_options();
  opt.output_so = (d / "target").string();
  CHECK_THROWS_AS(ddpmc::build_module(moons(), opt), ddpmc::UserError);
  for (const auto& e : fs::directory_iterator(d)) CHECK_MESSAGE(e.path().filename() == "target", e.path().string());
}

TEST_CASE("cli: under mpirun an argument error is printed once, by rank 0, with status 2 and no MPI error log") {
  const fs::path d = scratch("mpi");
  Out o = sh(fmt::format("{} {} {} --batch 255 --steps 10 --out {} --cache-dir {}", mpirun(), tool("ddpm-train"),
                         moons(), (d / "r").string(), test_cache()));
  CAPTURE(o.text);
  CHECK(o.status == 2);
  CHECK(count(o.text, "ddpm-train: error: --batch 255 is not a multiple of the slice count 2") == 1);
  CHECK(count(o.text, "error:") == 1);
  CHECK(o.text.find("ORTE_ERROR_LOG") == std::string::npos);
  CHECK(o.text.find("MPI_ABORT") == std::string::npos);
  o = sh(fmt::format("{} {} {} --seed -1", mpirun(), tool("ddpm-sample"), (d / "r").string()));
  CHECK(o.status == 2);
  CHECK(count(o.text, "ddpm-sample: error: --seed: must be a whole number") == 1);
  o = sh(fmt::format("{} {} --version", mpirun(), tool("ddpm-sample")));
  CHECK(o.status == 0);
  CHECK(count(o.text, "module ABI") == 1);
  // An input error every rank meets is printed once too.
  o = sh(fmt::format("{} -q {} {} --data {} --steps 10 --out {} --cache-dir {}", mpirun(), tool("ddpm-train"), moons(),
                     (d / "none.npy").string(), (d / "r").string(), test_cache()));
  CHECK(o.status == 1);
  CHECK(count(o.text, "error:") == 1);
}

TEST_CASE("messages: FLOP counts are printed at a readable unit") {
  CHECK(ddpmc::flops_text(60.391e6) == "60.391 MFLOP");
  CHECK(ddpmc::flops_text(258479.038e6) == "258.479 GFLOP");
  CHECK(ddpmc::flops_text(3.5e12) == "3.500 TFLOP");
  CHECK(ddpmc::flops_text(999.9999e6) == "1.000 GFLOP");
  CHECK(ddpmc::flops_text(12.5e3) == "12.500 kFLOP");
  CHECK(ddpmc::flops_text(12) == "12 FLOP");
}

TEST_CASE("messages: a spec with CR-only line endings is named as such, not as a spec without a loss block") {
  std::string text = "# a comment\rimport std\rdiffusion { steps = 100 }\r";
  try {
    ddpmc::check_spec_text("cr.ddpm", text);
    FAIL("a CR-only spec was accepted");
  } catch (const ddpmc::UserError& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.rfind("cr.ddpm:1:12: error: a carriage return without a line feed", 0) == 0);
    CHECK(msg.find("loss") == std::string::npos);
  }
  // CRLF files are fine.
  std::string crlf;
  for (char c : std::string("# a comment\nimport std\n")) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  try {
    ddpmc::check_spec_text("crlf.ddpm", crlf);
  } catch (const ddpmc::UserError& e) {
    CHECK(std::string(e.what()).find("carriage return") == std::string::npos);
  }
}

TEST_CASE("messages: ddpm-sample and ddpm-train say '1 step', and a float overflow is called by its name") {
  const fs::path d = scratch("sample");
  ddpm::TrainConfig c = ddpm_test::run_config("models/moons_solvers.ddpm", "moons", d / "run", 20, 32, 1);
  ddpm::train(c);
  Out o = sh(tool("ddpm-sample") + " " + (d / "run").string() + " --sampler ddim_eta --arg eta=1e39 -n 8 --no-png");
  CHECK(o.status == 1);
  CHECK(o.text.find("ddpm-sample: error: --arg eta: 1e39 is beyond the range of a float") != std::string::npos);
  o = sh(tool("ddpm-sample") + " " + (d / "run").string() + " --sampler ddim_eta --steps 1 -n 8 --no-png");
  CAPTURE(o.text);
  CHECK(o.status == 0);
  CHECK(o.text.find("(1 step, EMA weights") != std::string::npos);
  o = sh(fmt::format("{} {} --steps 1 --batch 8 --threads 2 --out {} --cache-dir {}", tool("ddpm-train"), moons(),
                     (d / "one").string(), test_cache()));
  CHECK(o.status == 0);
  CHECK(o.text.find("trained 1 step in") != std::string::npos);
}
