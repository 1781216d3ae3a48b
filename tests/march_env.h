// The tests' and benchmarks' target width (CMake's DDPM_MARCH, compiled in as DDPM_TEST_MARCH):
// modules they compile, in process or through the tools they start, use it too, by way of
// DDPMC_MARCH (compiler/cache.h), unless the caller already set DDPMC_MARCH. "native" sets nothing.
#pragma once
#include <cstdlib>
#include <cstring>

namespace ddpm_test {

inline void use_test_march() {
#ifdef DDPM_TEST_MARCH
  if (std::strcmp(DDPM_TEST_MARCH, "native") != 0) setenv("DDPMC_MARCH", DDPM_TEST_MARCH, 0);
#endif
}

}  // namespace ddpm_test
