// Shared helpers for tests that compile real specs: a per-build module cache and
// deterministic test inputs.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "build.h"
#include "pipeline.h"

namespace ddpm_test {

inline std::string source_path(const std::string& rel) { return std::string(DDPM_SOURCE_DIR) + "/" + rel; }

inline ddpmc::BuildOptions test_build_options() {
  ddpmc::BuildOptions o;
  o.cache_dir = std::string(DDPM_TEST_CACHE);
  return o;
}

// models/moons.ddpm compiled through the test cache (once per test process).
inline const std::string& moons_module() {
  static const std::string so = ddpmc::build_module(source_path("models/moons.ddpm"), test_build_options()).so_path;
  return so;
}

inline std::vector<float> uniform_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// max |a - b| / max |b| over one tensor (0 when both are all zero).
inline double rel_error(const float* a, const double* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs((double)a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return den == 0 ? num : num / den;
}

}  // namespace ddpm_test
