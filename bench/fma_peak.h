// The machine's fp32 FMA peak on one core, measured with plain xsimd: independent accumulator
// chains, no memory traffic. bench_kernels reports it; bench_conv divides by it for "% of peak".
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>

#include <xsimd/xsimd.hpp>

namespace ddpm_bench {

// 2 FMA pipes x 4 cycles latency need at least 8 independent chains; 12 leaves slack.
inline constexpr int kChains = 12;

// Plain xsimd (not the prelude's shim, which clashes with runtime/module.h in one translation unit).
using batch = xsimd::batch<float>;

[[gnu::noinline]] inline float fma_chains(int64_t iters, float seed) {
  batch acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = batch(seed + c);
  batch x(0.999999f), y(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = xsimd::fma(acc[c], x, y);
  }
  batch s = acc[0];
  for (int c = 1; c < kChains; ++c) s += acc[c];
  alignas(64) float lanes[batch::size];
  s.store_aligned(lanes);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

inline double flops_per_call(int64_t iters) { return 2.0 * kChains * batch::size * iters; }

// GFLOP/s of one core: the best of 30 short runs (about 0.1 s; the best, since a shared VM only
// ever slows it).
inline double fma_peak_gflops_1core() {
  static const double peak = [] {
    double best = 0;
    for (int rep = 0; rep < 30; ++rep) {
      constexpr int64_t iters = 1 << 20;
      auto t0 = std::chrono::steady_clock::now();
      volatile float sink = fma_chains(iters, 1.f + rep);
      (void)sink;
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, flops_per_call(iters) / s * 1e-9);
    }
    return best;
  }();
  return peak;
}

}  // namespace ddpm_bench
