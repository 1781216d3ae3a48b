// The one place that hides xsimd version differences from the runtime and generated code.
//
// Debian ships xsimd 8.1, where the horizontal sum is `xsimd::hadd`; newer releases call it
// `reduce_add`. Everything else in ddpmc goes through `ddpm::simd::reduce_add` so a version bump
// touches only this file. It also fixes the SIMD width (`kLanes` floats per `xsimd::batch<float>`,
// 16 with AVX-512), the alignment every packed buffer and arena slice uses (`kAlign` bytes), and
// an aligned allocation helper for buffers that live outside the planned arena (tests, benches).
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <xsimd/xsimd.hpp>

namespace ddpm {

inline constexpr std::size_t kAlign = 64;

namespace simd {

using batch = xsimd::batch<float>;
inline constexpr std::size_t kLanes = batch::size;

inline float reduce_add(const batch& x) noexcept {
#if XSIMD_VERSION_MAJOR >= 9
  return xsimd::reduce_add(x);
#else
  return xsimd::hadd(x);
#endif
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
