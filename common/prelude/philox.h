// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//
// Every random number in ddpmc is a pure function of (seed, step, stream, element):
// the training step or sampler call, a per-call-site stream id assigned by the
// compiler, and the element's flat index in its tensor. So results never depend
// on thread count or evaluation order. This header is shared by the reference
// interpreter, the runtime and every generated module.
#pragma once
#include <cmath>
#include <cstdint>

namespace ddpm {

struct Philox4 {
  uint32_t v[4];
};

inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                             uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = (uint64_t)M0 * c0;
    uint64_t p1 = (uint64_t)M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

inline Philox4 philox_block(uint64_t seed, uint64_t step, uint32_t stream, uint64_t element) {
  return philox4x32_10((uint32_t)element, (uint32_t)(element >> 32) ^ (stream * 0x85EBCA6Bu),
                       (uint32_t)step, (uint32_t)(step >> 32), (uint32_t)seed,
                       (uint32_t)(seed >> 32) ^ stream);
}

// Uniform in the open interval (0, 1), 24 bits of mantissa.
inline double u32_to_open01(uint32_t u) { return ((u >> 8) + 0.5) * (1.0 / 16777216.0); }

inline double philox_uniform(uint64_t seed, uint64_t step, uint32_t stream, uint64_t element) {
  return u32_to_open01(philox_block(seed, step, stream, element).v[0]);
}

// Standard normal by Box-Muller from the first two words of the element's block.
inline double philox_normal(uint64_t seed, uint64_t step, uint32_t stream, uint64_t element) {
  Philox4 b = philox_block(seed, step, stream, element);
  double u1 = u32_to_open01(b.v[0]), u2 = u32_to_open01(b.v[1]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Integer uniform on {1, ..., T}.
inline int philox_step(uint64_t seed, uint64_t step, uint32_t stream, uint64_t element, int T) {
  int k = 1 + (int)(philox_uniform(seed, step, stream, element) * T);
  return k > T ? T : k;
}

}  // namespace ddpm
