// Tests of the base library common/: the atomic file writer (the one used for
// checkpoints, modules, samples and the module cache), diagnostics and the tools' progress line.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "common/progress_line.h"

namespace fs = std::filesystem;

namespace {

fs::path fresh(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-common" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("common: AtomicFile replaces the target only at commit, and never leaves a temp file") {
  fs::path dir = fresh("atomic");
  const std::string target = (dir / "out.bin").string();
  ddpmc::write_file_atomic(target, "old contents", "test file");
  CHECK(slurp(target) == "old contents");
  try {
    ddpmc::AtomicFile f(target, "test file");
    f.write("new", 3);
    CHECK(slurp(target) == "old contents");  // not yet committed
    throw std::runtime_error("interrupted");
  } catch (const std::runtime_error&) {
  }
  CHECK(slurp(target) == "old contents");
  CHECK(!fs::exists(target + ".tmp"));
  {
    ddpmc::AtomicFile f(target, "test file");
    f.write("new ", 4);
    f.write("contents", 8);
    f.commit();
  }
  CHECK(slurp(target) == "new contents");
  CHECK(!fs::exists(target + ".tmp"));
}

TEST_CASE("common: atomic writes into a missing directory are user errors naming the file") {
  fs::path dir = fresh("atomic-missing");
  const std::string target = (dir / "no" / "such" / "file").string();
  try {
    ddpmc::write_file_atomic(target, "x", "checkpoint");
    FAIL("expected a UserError");
  } catch (const ddpmc::UserError& e) {
    std::string msg = e.what();
    CHECK(msg.find("cannot write checkpoint '" + target + "'") != std::string::npos);
    CHECK(msg.find("hint:") != std::string::npos);
  }
  CHECK_THROWS_AS(ddpmc::durable_rename((dir / "absent.tmp").string(), target, "module"), ddpmc::UserError);
}

TEST_CASE("common: durable_rename moves a finished file over the target") {
  fs::path dir = fresh("durable");
  const fs::path tmp = dir / "m.so.tmp", target = dir / "m.so";
  std::ofstream(tmp, std::ios::binary) << "module bytes";
  std::ofstream(target, std::ios::binary) << "stale";
  ddpmc::durable_rename(tmp.string(), target.string(), "module");
  CHECK(slurp(target) == "module bytes");
  CHECK(!fs::exists(tmp));
}

TEST_CASE("common: diagnostics cap long source lines and escape non-printing bytes") {
  ddpmc::Sources sources;
  // A 10,000-byte line with the error at column 5001.
  std::string line(5000, 'a');
  line += "X" + std::string(4999, 'b');
  const ddpmc::SourceFile* f = sources.add("long.ddpm", line + "\n");
  std::string msg = ddpmc::format_diagnostic(ddpmc::Loc{f, 1, 5001}, "bad", "fix it");
  auto lines = [](const std::string& s) {
    std::vector<std::string> v;
    std::istringstream in(s);
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }(msg);
  REQUIRE(lines.size() == 4);
  CHECK(lines[1].size() < 200);
  CHECK(lines[1].rfind("  ...", 0) == 0);
  CHECK(lines[1].substr(lines[1].size() - 3) == "...");
  // The caret is under the X.
  CHECK(lines[1][lines[2].size() - 1] == 'X');

  // Binary bytes are escaped, UTF-8 is kept, and the caret still lines up.
  const ddpmc::SourceFile* g = sources.add("bin.ddpm", std::string("a\x01\xff\xc3\xa9 Y z\n"));
  msg = ddpmc::format_diagnostic(ddpmc::Loc{g, 1, 7}, "bad", "fix it");
  CHECK(msg.find("  a\\x01\\xff\xc3\xa9 Y z\n") != std::string::npos);
  CHECK(msg.find(std::string("\x01")) == std::string::npos);
  CHECK(msg.find("\n             ^\n") != std::string::npos);  // 2 + a + \x01 \xff é + space = 13 columns
  ddpmc::EchoedLine e = ddpmc::echo_source_line("\tx", 2);
  CHECK(e.caret == "\t");
}

namespace {

// Runs f with stderr (fd 2) pointing at fd, then restores it.
template <class F>
void with_stderr(int fd, F&& f) {
  std::fflush(stderr);
  const int saved = dup(2);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(fd, 2) == 2);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
}

// What a progress line on stderr said of due() at once and 0.3 s later; it then printed a and b
// and was finished twice (the second finish must write nothing).
struct Due {
  bool at_start, after_300ms;
};
Due two_lines(const char* a, const char* b) {
  ddpmc::ProgressLine p(false);
  Due d{p.due(), false};
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  d.after_300ms = p.due();
  p.print(a);
  p.print(b);
  p.finish();
  p.finish();
  return d;
}

}  // namespace

TEST_CASE("common: the progress line writes whole lines into a file and rewrites itself on a terminal") {
  using namespace std::chrono_literals;
  const fs::path dir = fresh("progress");
  {  // Into a file: a line per print, every 5 s at most, nothing left open.
    const fs::path log = dir / "stderr.txt";
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(fd >= 0);
    Due due{true, true};
    with_stderr(fd, [&] { due = two_lines("step 1/2", "step 2/2"); });
    close(fd);
    CHECK_FALSE(due.at_start);
    CHECK_FALSE(due.after_300ms);
    CHECK(slurp(log) == "step 1/2\nstep 2/2\n");
  }
  {  // On a terminal: every 0.25 s, each line over the last, one newline at the end.
    int master = -1, slave = -1;
    REQUIRE(openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
    termios raw{};
    REQUIRE(tcgetattr(slave, &raw) == 0);
    cfmakeraw(&raw);
    REQUIRE(tcsetattr(slave, TCSANOW, &raw) == 0);
    Due due{true, false};
    with_stderr(slave, [&] {
      due = two_lines("a", "b");
      ddpmc::ProgressLine quiet(true), silent(false);
      std::this_thread::sleep_for(300ms);
      CHECK_FALSE(quiet.due());
      quiet.finish();
      silent.finish();  // nothing printed: no newline
    });
    close(slave);
    std::string got;
    char buf[256];
    fcntl(master, F_SETFL, O_NONBLOCK);
    for (ssize_t n; (n = read(master, buf, sizeof buf)) > 0;) got.append(buf, (size_t)n);
    close(master);
    CHECK_FALSE(due.at_start);
    CHECK(due.after_300ms);
    CHECK(got == "\ra   \rb   \n");
  }
}
