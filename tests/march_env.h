// The tests' and benchmarks' target width (CMake's DDPM_MARCH, compiled in as DDPM_TEST_MARCH):
// modules they compile, in process or through the tools they start, use it too, by way of
// DDPMC_MARCH (compiler/cache.h), unless the caller already set DDPMC_MARCH. "native" sets nothing.
#pragma once
#include <cstdlib>
#include <cstring>

namespace ddpm_test {

// True in the narrower-width binaries (tests/CMakeLists.txt, DDPM_EXTRA_MARCHES). A file in
// DDPM_WIDTH_TESTS marks its cases that do not depend on the width (front end, run-time
// checks, sample quality) `* doctest::skip(ddpm_test::kNarrowerWidth)`: doctest neither lists
// nor runs skipped cases, so ctest registers them once, from the native binary.
#ifdef DDPM_TEST_NARROWER_WIDTH
inline constexpr bool kNarrowerWidth = true;
#else
inline constexpr bool kNarrowerWidth = false;
#endif

inline void use_test_march() {
#ifdef DDPM_TEST_MARCH
  if (std::strcmp(DDPM_TEST_MARCH, "native") != 0) setenv("DDPMC_MARCH", DDPM_TEST_MARCH, 0);
#endif
}

}  // namespace ddpm_test
