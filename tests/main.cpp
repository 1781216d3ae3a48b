// doctest entry point for ddpm_tests (and the narrower-width kernel test binaries); the tests
// live in tests/test_*.cpp. Two additions to doctest's own main:
//  - a run in which no test case passes the filters fails: ctest runs one test case per process
//    by name (doctest_discover_tests), and a name the filter cannot match (doctest splits filters
//    at ',' and CMake lists at ';') would otherwise pass without running anything;
//  - modules the tests compile target the tests' own width (CMake's DDPM_MARCH, passed in as
//    DDPM_TEST_MARCH) unless DDPMC_MARCH is already set (march_env.h);
//  - the tools the tests run (ddpm-sample and ddpm-eval rebuild a run's module from its
//    checkpoint) use the build's test cache, not the user's, unless DDPM_CACHE_DIR is set.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

#include "march_env.h"

namespace {

unsigned g_passing_filters = 0;
bool g_run_ended = false;

// Records how many test cases passed the filters; reports nothing itself.
struct FilterCount : doctest::IReporter {
  explicit FilterCount(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& s) override {
    g_passing_filters = s.numTestCasesPassingFilters;
    g_run_ended = true;
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("filter_count", 1, FilterCount);

}  // namespace

int main(int argc, char** argv) {
  ddpm_test::use_test_march();
#ifdef DDPM_TEST_CACHE  // not in the aarch64 kernel tests (tests/cross), which run no tool
  setenv("DDPM_CACHE_DIR", DDPM_TEST_CACHE, /*overwrite=*/0);
#endif
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  if (ctx.shouldExit()) return rc;  // --help, --list-test-cases, ...
  if (g_run_ended && g_passing_filters == 0) {
    std::fprintf(stderr, "ddpm_tests: no test case matches the filters (a name with ',' or ';' is split by doctest/CMake)\n");
    return rc != 0 ? rc : 1;
  }
  return rc;
}
