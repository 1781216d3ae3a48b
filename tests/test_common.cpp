// Tests of the base library common/: the atomic file writer (the one used for
// checkpoints, modules, samples and the module cache).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common/atomic_file.h"
#include "common/diag.h"

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
