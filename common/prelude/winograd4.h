// Winograd F(4x4, 3x3) for the 3x3, stride-1, "same" layers (interpolation points 0, +-1, +-2,
// inf): the transform traits F4x4 of the shared driver (winograd_driver.h) and the ddpm::wino4
// forward-pass API that the compiler and the generated modules call (the filter gradient's is in
// winograd4_wgrad.h). 36 GEMMs per sample, 4x fewer multiplies than the direct convolution in conv.h
// (F(2x2,3x3) in winograd.h: 2.25x), and the transforms touch fewer values per output (2.25 against
// 4). Used for the forward pass and the stride-1 data gradient (the forward pass of dy with the
// flipped filter) where worthwhile() says so, for the filter gradient where worthwhile_wgrad() does.
//
// Dimension legend: winograd_driver.h's with M = 4, N = 6 (4x4 output tiles, 6x6 input patches):
// th = ceil(Ho/4), U [36][C][Op], V [36][C][Tp], P [36][Tp][Op].
#pragma once
#include "winograd.h"
#include "winograd_driver.h"

namespace ddpm::wino4 {

using batch = simd::batch;
using conv::Shape;

// The F(4x4,3x3) transforms, one column or row at a time.
struct F4x4 {
  static constexpr int M = 4, N = 6;
  // u = G g, G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
  [[gnu::always_inline]] static void g(const batch g[3], batch u[6]) {
    const batch q(0.25f), s6(1.f / 6), s12(1.f / 12), s24(1.f / 24);
    const batch a = g[0] + g[2];
    u[0] = q * g[0];
    u[1] = -s6 * (a + g[1]);
    u[2] = -s6 * (a - g[1]);
    const batch b = simd::fma(s24, g[0], s6 * g[2]);
    u[3] = simd::fma(s12, g[1], b);
    u[4] = simd::fnma(s12, g[1], b);
    u[5] = g[2];
  }
  // r = B^T z,
  // B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
  [[gnu::always_inline]] static void bt(const batch z[6], batch r[6]) {
    const batch f4(4.f), f5(-5.f), m4(-4.f), two(2.f);
    r[0] = simd::fma(f4, z[0], simd::fma(f5, z[2], z[4]));
    const batch t1 = simd::fma(m4, z[2], z[4]), t2 = simd::fma(m4, z[1], z[3]);
    r[1] = t1 + t2;
    r[2] = t1 - t2;
    const batch t3 = z[4] - z[2], t4 = two * (z[3] - z[1]);
    r[3] = t3 + t4;
    r[4] = t3 - t4;
    r[5] = simd::fma(f4, z[1], simd::fma(f5, z[3], z[5]));
  }
  // y = A^T m, A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
  [[gnu::always_inline]] static void at(const batch m[6], batch y[4]) {
    const batch s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    y[0] = m[0] + s12 + s34;
    y[1] = simd::fma(batch(2.f), d34, d12);
    y[2] = simd::fma(batch(4.f), s34, s12);
    y[3] = simd::fma(batch(8.f), d34, d12) + m[5];
  }
  // w = A y, A = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1].
  [[gnu::always_inline]] static void a(const batch y[4], batch w[6]) {
    const batch e = y[0] + y[2], o = y[1] + y[3];
    const batch e2 = simd::fma(batch(4.f), y[2], y[0]), o2 = simd::fma(batch(8.f), y[3], batch(2.f) * y[1]);
    w[0] = y[0];
    w[1] = e + o;
    w[2] = e - o;
    w[3] = e2 + o2;
    w[4] = e2 - o2;
    w[5] = y[3];
  }
  // u = G^T s, G^T = [1/4 -1/6 -1/6 1/24 1/24 0; 0 -1/6 1/6 1/12 -1/12 0; 0 -1/6 -1/6 1/6 1/6 1].
  [[gnu::always_inline]] static void gt(const batch s[6], batch u[3]) {
    const batch q(0.25f), s6(1.f / 6), s12(1.f / 12), s24(1.f / 24);
    const batch p12 = s[1] + s[2], p34 = s[3] + s[4];
    u[0] = simd::fma(q, s[0], simd::fma(s24, p34, -s6 * p12));
    u[1] = simd::fma(s6, s[2] - s[1], s12 * (s[3] - s[4]));
    u[2] = simd::fma(s6, p34 - p12, s[5]);
  }
};

inline bool applies(const Shape& d) { return winograd::applies(d); }
inline bool channels_last(const Shape& d) { return winograd::channels_last<F4x4>(d); }
// The channels-last path at every width: the planning predicate (see winograd_driver.h).
inline bool channels_last_any_width(const Shape& d) { return winograd::channels_last_any_width<F4x4>(d); }
// Where it beats F(2x2,3x3) and conv.h (bench_conv, 1 thread). Forward and data gradient: the
// 28x28 layers (7x7 whole tiles per plane), and with the channels-last input path also 14x14
// and 7x7, although their 4x4 tiles cover 16x16 and 8x8 (1.31x padding): 11% faster than
// F(2x2,3x3) at 14x14 and 8% than the direct kernel at 7x7. Filter gradient: 28x28 only (at
// 14x14 it is 4-5% slower than F(2x2,3x3)).
inline bool worthwhile(const Shape& d) {
  return applies(d) && d.C >= 16 && ((d.Ho >= 28 && d.Ho % 4 == 0 && d.Wo % 4 == 0) || (channels_last_any_width(d) && d.Ho >= 7));
}
inline bool worthwhile_wgrad(const Shape& d) {
  return applies(d) && d.Ho >= 28 && d.Ho % 4 == 0 && d.Wo % 4 == 0 && d.C >= 16;
}

inline int64_t filter_floats(const Shape& d) { return winograd::filter_floats<F4x4>(d); }
inline int64_t slice_floats(const Shape& d) { return winograd::slice_floats<F4x4>(d); }

inline void pack_filter(const Shape& d, const float* w, bool flip, float* U, int c0 = 0, int c1 = -1) {
  winograd::pack_filter<F4x4>(d, w, flip, U, c0, c1);
}
template <class Fill, class Epi>
inline void forward_range(const Shape& d, const float* U, float* y, int64_t b0, int64_t b1, float* scratch, Fill&& fill,
                          Epi&& epi) {
  winograd::forward_range<F4x4>(d, U, y, b0, b1, scratch, std::forward<Fill>(fill), std::forward<Epi>(epi));
}

}  // namespace ddpm::wino4

// Below 28x28 (the channels-last layers at 14x14) F(2x2,3x3) applies too, with 2x2 tiles that
// cover the plane exactly where the 4x4 ones cover 16x16, and which of the two is faster depends
// on the width (bench_conv, 1 thread, forward pass, us per 8 samples, F(2x2) against F(4x4)):
// at 8 lanes F(2x2,3x3) (Zen 3, AVX2: 64->64@14 868 against 982, 128->64@14 1,804 against
// 1,904); at 4 lanes they tie or F(4x4) wins (Zen 3, x86-64-v2: 2,141 against 2,154 and 4,427
// against 4,265); at 16 lanes F(4x4,3x3) by 11% (Zen 4, AVX-512). The compiler plans such a
// layer for both (ConvPath::WinogradByWidth: the larger scratch of the two) and emits calls to
// ddpm::wino_by_width, which forwards to the one for the module's width.
namespace ddpm::wino_by_width {

inline constexpr bool kF4x4 = simd::kLanes != 8;

template <class... A>
inline void pack_filter(A&&... a) {
  if constexpr (kF4x4)
    wino4::pack_filter(std::forward<A>(a)...);
  else
    wino::pack_filter(std::forward<A>(a)...);
}
template <class... A>
inline void forward_range(A&&... a) {
  if constexpr (kF4x4)
    wino4::forward_range(std::forward<A>(a)...);
  else
    wino::forward_range(std::forward<A>(a)...);
}

}  // namespace ddpm::wino_by_width
