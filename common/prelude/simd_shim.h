// The one place that hides xsimd version differences from the runtime and generated code.
//
// Debian ships xsimd 8.1, where the horizontal sum is `xsimd::hadd`; newer releases call it
// `reduce_add`. Everything else in ddpmc goes through `ddpm::simd::reduce_add` so a version bump
// touches only this file. It also fixes the SIMD width (`kLanes` floats per `xsimd::batch<float>`:
// 16 with AVX-512, 8 with AVX/AVX2, 4 with SSE and NEON), the alignment every packed buffer and arena
// slice uses (`kAlign` bytes), and an aligned allocation helper for buffers that live outside the
// planned arena (tests, benches). Register-level helpers that xsimd 8 lacks (an in-register
// kLanes x kLanes transpose, partial loads and stores) live here too, with intrinsics for each x86
// width and a portable fallback otherwise (NEON).
//
// Widths and scratch sizes: the compiler plans a module's scratch without knowing the width the
// module will be built for (DDPMC_MARCH, or the machine it runs on), so every `*_floats` size
// function in the prelude is the largest over kWidths of the layout at each width
// (max_over_widths); the kernels lay out their buffers for their own kLanes inside that room.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>
#include <xsimd/xsimd.hpp>

#include "align.h"

namespace ddpm {

inline constexpr std::size_t kAlign = 64;

namespace simd {

using batch = xsimd::batch<float>;
inline constexpr std::size_t kLanes = batch::size;
static_assert(kLanes == 4 || kLanes == 8 || kLanes == 16, "ddpmc's kernels are written for 4, 8 or 16 float lanes");

// The widths ddpmc's kernels are written for, and the largest of f.template operator()<L>() over
// them (f: a template lambda []<int L>() -> int64_t giving a buffer's floats at width L).
inline constexpr int kWidths[] = {4, 8, 16};
inline constexpr int kWidest = kWidths[2];
template <class F>
constexpr std::int64_t max_over_widths(F&& f) {
  return std::max({f.template operator()<kWidths[0]>(), f.template operator()<kWidths[1]>(),
                  f.template operator()<kWidths[2]>()});
}

// Whether simd::fma below is one fused instruction (AVX-512, AVX2's FMA3, AArch64's NEON) rather
// than a multiply and an add rounded twice (SSE4.2): error-free range reductions rely on it.
#if defined(__FMA__) || defined(__AVX512F__) || defined(__aarch64__)
inline constexpr bool kFusedFma = true;
#else
inline constexpr bool kFusedFma = false;
#endif

// a * b + c. xsimd 8.1 has no AVX-512 kernel for fma: its generic x * y + z is fused only where
// the compiler contracts it (GCC at -O2 in GNU mode, but not under -fsanitize=undefined), so the
// AVX-512 form is spelled out. Every prelude kernel calls these, never xsimd::fma, so a build's
// arithmetic does not depend on whether the compiler contracted.
inline batch fma(const batch& a, const batch& b, const batch& c) noexcept {
#if defined(__AVX512F__)
  if constexpr (kLanes == 16) return _mm512_fmadd_ps(a, b, c);
#endif
  return xsimd::fma(a, b, c);
}

// c - a * b, fused where simd::fma is (the same gap in xsimd 8.1 at AVX-512).
inline batch fnma(const batch& a, const batch& b, const batch& c) noexcept {
#if defined(__AVX512F__)
  if constexpr (kLanes == 16) return _mm512_fnmadd_ps(a, b, c);
#endif
  return xsimd::fnma(a, b, c);
}

inline float reduce_add(const batch& x) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_add(x);
#else
  return xsimd::hadd(x);
#endif
}

#if defined(__AVX2__)
// AVX2 lane mask: lanes [0, n) set (0 <= n <= 8), for maskload/maskstore.
inline __m256i lane_mask8(int n) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// Stores the first n (0 <= n <= kLanes) lanes of x to p. A whole vector takes a plain store:
// masked stores cost far more than stores on some CPUs (AMD Zen 2/3 microcode AVX2's vmaskmovps
// to memory), and callers pass n == kLanes on all but their edge blocks.
inline void store_partial(float* p, const batch& x, int n) noexcept {
  if (n == kLanes) {
    x.store_unaligned(p);
    return;
  }
#if defined(__AVX512F__)
  if constexpr (kLanes == 16) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), x);
    return;
  }
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
  if constexpr (kLanes == 8) {
    _mm256_maskstore_ps(p, lane_mask8(n), x);
    return;
  }
#endif
  alignas(64) float tmp[kLanes];
  x.store_aligned(tmp);
  std::memcpy(p, tmp, sizeof(float) * static_cast<std::size_t>(n));
}

// Loads p[0 .. n) into the first n (0 <= n <= kLanes) lanes; the other lanes are zero and
// nothing past p[n-1] is read.
inline batch load_partial(const float* p, int n) noexcept {
#if defined(__AVX512F__)
  if constexpr (kLanes == 16) return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
#endif
#if defined(__AVX2__) && !defined(__AVX512F__)
  if constexpr (kLanes == 8) return _mm256_maskload_ps(p, lane_mask8(n));
#endif
  alignas(64) float tmp[kLanes] = {};
  std::memcpy(tmp, p, sizeof(float) * static_cast<std::size_t>(n));
  return batch::load_aligned(tmp);
}

// Stores lanes [first, first + n) of x to p[0 .. n) (first + n <= kLanes).
inline void store_lanes(float* p, const batch& x, int first, int n) noexcept {
#if defined(__AVX512F__)
  if constexpr (kLanes == 16) {
    _mm512_mask_storeu_ps(p - first, static_cast<__mmask16>(((1u << n) - 1u) << first), x);
    return;
  }
#endif
  alignas(64) float tmp[kLanes];
  x.store_aligned(tmp);
  std::memcpy(p, tmp + first, sizeof(float) * static_cast<std::size_t>(n));
}

// In-place transpose of a kLanes x kLanes block held as kLanes row vectors: afterwards r[i] lane j
// holds what r[j] lane i held before.
__attribute__((always_inline)) inline void transpose(batch (&r)[kLanes]) noexcept {
#if defined(__AVX512F__)
  if constexpr (kLanes == 16) {
    // maskz forms with a full mask: the plain intrinsics trip GCC 12's -Wmaybe-uninitialized.
    constexpr __mmask16 kAll = 0xFFFF;
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
      t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
    }
    // u[4q + 0..3] hold row groups {4q..4q+3} interleaved by column within each 128-bit lane.
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      u[4 * q + 0] = _mm512_maskz_shuffle_ps(kAll, t[4 * q], t[4 * q + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * q + 1] = _mm512_maskz_shuffle_ps(kAll, t[4 * q], t[4 * q + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * q + 2] = _mm512_maskz_shuffle_ps(kAll, t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * q + 3] = _mm512_maskz_shuffle_ps(kAll, t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      t[c] = _mm512_maskz_shuffle_f32x4(kAll, u[c], u[4 + c], 0x88);
      t[4 + c] = _mm512_maskz_shuffle_f32x4(kAll, u[c], u[4 + c], 0xdd);
      t[8 + c] = _mm512_maskz_shuffle_f32x4(kAll, u[8 + c], u[12 + c], 0x88);
      t[12 + c] = _mm512_maskz_shuffle_f32x4(kAll, u[8 + c], u[12 + c], 0xdd);
    }
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      r[c] = _mm512_maskz_shuffle_f32x4(kAll, t[c], t[8 + c], 0x88);
      r[8 + c] = _mm512_maskz_shuffle_f32x4(kAll, t[c], t[8 + c], 0xdd);
    }
    return;
  }
#endif
#if defined(__AVX__) && !defined(__AVX512F__)
  if constexpr (kLanes == 8) {
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    // u[4q + 0..3]: rows {4q..4q+3}, columns {0,4}, {1,5}, {2,6}, {3,7} within each 128-bit half.
#pragma GCC unroll 2
    for (int q = 0; q < 2; ++q) {
      u[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
      r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
    return;
  }
#endif
#if defined(__SSE__) && !defined(__AVX__)
  if constexpr (kLanes == 4) {
    __m128 a = r[0], b = r[1], c = r[2], d = r[3];
    _MM_TRANSPOSE4_PS(a, b, c, d);
    r[0] = a, r[1] = b, r[2] = c, r[3] = d;
    return;
  }
#endif
  alignas(64) float m[kLanes][kLanes];
  for (std::size_t i = 0; i < kLanes; ++i) r[i].store_aligned(m[i]);
  for (std::size_t i = 0; i < kLanes; ++i)
    for (std::size_t j = 0; j < i; ++j) std::swap(m[i][j], m[j][i]);
  for (std::size_t i = 0; i < kLanes; ++i) r[i] = batch::load_aligned(m[i]);
}

}  // namespace simd

struct AlignedFree {
  void operator()(float* p) const noexcept { std::free(p); }
};
using AlignedFloats = std::unique_ptr<float[], AlignedFree>;

// n floats aligned to kAlign bytes, uninitialised. n == 0 yields a valid, freeable pointer.
inline AlignedFloats aligned_alloc_floats(std::size_t n) {
  std::size_t bytes = (n * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  if (bytes == 0) bytes = kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p) throw std::bad_alloc();
  return AlignedFloats(static_cast<float*>(p));
}

}  // namespace ddpm
