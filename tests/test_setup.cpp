// Tests of the set-up commands (README "Set-up: two commands"): tools/demo.sh
// builds only the tools it runs, in a build configured without the tests and
// benchmarks, and installs only the tools' packages; tools/test.sh turns the
// tests and benchmarks back on. The CMake options DDPM_BUILD_TESTS and
// DDPM_BUILD_BENCHMARKS leave those targets out.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <fmt/format.h>

namespace fs = std::filesystem;

namespace {

std::string read(const std::string& rel) {
  std::ifstream in(fs::path(DDPM_SOURCE_DIR) / rel);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string run(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(("(" + cmd + ") 2>&1").c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  return out;
}

}  // namespace

TEST_CASE("setup: tools/demo.sh builds exactly the tools it runs, without the tests and benchmarks") {
  const std::string demo = read("tools/demo.sh");
  std::set<std::string> runs, built;
  const std::regex tool_call(R"(build/tools/([a-z-]+))");
  for (auto it = std::sregex_iterator(demo.begin(), demo.end(), tool_call); it != std::sregex_iterator(); ++it)
    runs.insert((*it)[1]);
  std::smatch m;
  REQUIRE(std::regex_search(demo, m, std::regex(R"(cmake --build build[^\n]*--target ([a-z -]+))")));
  std::istringstream targets(m[1].str());
  for (std::string t; targets >> t;) built.insert(t);
  CHECK(runs == std::set<std::string>{"ddpmc", "ddpm-train", "ddpm-sample"});
  CHECK(built == runs);
  CHECK(demo.find("-DDDPM_BUILD_TESTS=OFF") != std::string::npos);
  CHECK(demo.find("-DDDPM_BUILD_BENCHMARKS=OFF") != std::string::npos);
  CHECK(demo.find("tools/deps.sh --tests") == std::string::npos);

  const std::string test = read("tools/test.sh");
  CHECK(test.find("tools/deps.sh --tests") != std::string::npos);
  CHECK(test.find("-B build -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=ON -DDDPM_BUILD_BENCHMARKS=ON") !=
        std::string::npos);
  // The test packages are installed only with --tests.
  const std::string deps = read("tools/deps.sh");
  const size_t tests_branch = deps.find("if [ \"${1:-}\" = --tests ]");
  REQUIRE(tests_branch != std::string::npos);
  for (const char* p : {"doctest-dev", "libbenchmark-dev", "dataset-fashion-mnist", "clang"})
    CHECK(deps.find(p) > tests_branch);
}

TEST_CASE("setup: with DDPM_BUILD_TESTS and DDPM_BUILD_BENCHMARKS off the build has only the libraries and tools") {
  const fs::path dir = fs::path(DDPM_BINARY_DIR) / "test-setup" / "tools-only";
  fs::remove_all(dir);
  const std::string out = run(fmt::format(
      "cmake -S '{}' -B '{}' -DCMAKE_BUILD_TYPE=Release -DDDPM_BUILD_TESTS=OFF -DDDPM_BUILD_BENCHMARKS=OFF > /dev/null "
      "&& cmake --build '{}' --target help",
      DDPM_SOURCE_DIR, dir.string(), dir.string()));
  CAPTURE(out);
  CHECK(out.find("... ddpm-train") != std::string::npos);
  CHECK(out.find("... ddpmc") != std::string::npos);
  CHECK(out.find("ddpm_tests") == std::string::npos);
  CHECK(out.find("bench_") == std::string::npos);
  fs::remove_all(dir);
}
