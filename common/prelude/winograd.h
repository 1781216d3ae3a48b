// Winograd F(2x2, 3x3) for the 3x3, stride-1, "same" layers: the transform traits F2x2 of the
// shared driver (winograd_driver.h) and the ddpm::wino forward-pass API that the compiler and the
// generated modules call (the filter gradient's is in winograd_wgrad.h). 16 GEMMs per sample, 2.25x
// fewer multiplies than the direct convolution in conv.h (F(4x4,3x3) in winograd4.h: 4x). Used for
// the forward pass and the stride-1 data gradient (the forward pass of dy with the flipped filter)
// where worthwhile() says so and winograd4.h's does not.
//
// Dimension legend: winograd_driver.h's with M = 2, N = 4 (2x2 output tiles, 4x4 input patches):
// th = ceil(Ho/2), U [16][C][Op], V [16][C][Tp], P [16][Tp][Op].
#pragma once
#include "winograd_driver.h"

namespace ddpm::wino {

using batch = simd::batch;
using conv::Shape;

// The F(2x2,3x3) transforms (interpolation points 0, +-1, inf), one column or row at a time.
struct F2x2 {
  static constexpr int M = 2, N = 4;
  // u = G g, G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
  [[gnu::always_inline]] static void g(const batch g[3], batch u[4]) {
    const batch h(0.5f), a = g[0] + g[2];
    u[0] = g[0];
    u[1] = h * (a + g[1]);
    u[2] = h * (a - g[1]);
    u[3] = g[2];
  }
  // r = B^T z, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
  [[gnu::always_inline]] static void bt(const batch z[4], batch r[4]) {
    r[0] = z[0] - z[2];
    r[1] = z[1] + z[2];
    r[2] = z[2] - z[1];
    r[3] = z[1] - z[3];
  }
  // y = A^T m, A^T = [1 1 1 0; 0 1 -1 -1].
  [[gnu::always_inline]] static void at(const batch m[4], batch y[2]) {
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
  }
  // w = A y (A^T above, transposed).
  [[gnu::always_inline]] static void a(const batch y[2], batch w[4]) {
    w[0] = y[0];
    w[1] = y[0] + y[1];
    w[2] = y[0] - y[1];
    w[3] = -y[1];
  }
  // u = G^T s, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1].
  [[gnu::always_inline]] static void gt(const batch s[4], batch u[3]) {
    const batch h(0.5f), p = h * (s[1] + s[2]);
    u[0] = s[0] + p;
    u[1] = h * (s[1] - s[2]);
    u[2] = p + s[3];
  }
};

inline bool applies(const Shape& d) { return winograd::applies(d); }
// Where it beat conv.h's direct kernel (bench_conv, 1 thread): 1.3-1.6x at 14x14 and 28x28 with
// 32-128 input channels; not for the 1-channel stem (the transforms outweigh the 9-tap GEMM), nor
// at 7x7 before its forward pass took the channels-last path (64->64 forward now 252 us per 8
// samples against the direct kernel's 301-309 and winograd4.h's 282, which the plan picks).
inline bool worthwhile(const Shape& d) { return applies(d) && d.Ho >= 14 && d.C >= 16; }
inline bool channels_last(const Shape& d) { return winograd::channels_last<F2x2>(d); }

inline int64_t filter_floats(const Shape& d) { return winograd::filter_floats<F2x2>(d); }
inline int64_t slice_floats(const Shape& d) { return winograd::slice_floats<F2x2>(d); }

inline void pack_filter(const Shape& d, const float* w, bool flip, float* U, int c0 = 0, int c1 = -1) {
  winograd::pack_filter<F2x2>(d, w, flip, U, c0, c1);
}
template <class Fill, class Epi>
inline void forward_range(const Shape& d, const float* U, float* y, int64_t b0, int64_t b1, float* scratch, Fill&& fill,
                          Epi&& epi) {
  winograd::forward_range<F2x2>(d, U, y, b0, b1, scratch, std::forward<Fill>(fill), std::forward<Epi>(epi));
}

}  // namespace ddpm::wino
