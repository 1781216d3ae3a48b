// Winograd F(4x4, 3x3) filter gradient of the 3x3, stride-1, "same" layers where winograd4.h
// runs the forward pass (the adjoint of that pass, as winograd_wgrad.h is of F(2x2,3x3)). With
// U = G g G^T and V_t = B^T d_t B for input tile t, the forward pass is Y_t = A^T (U . V_t) A, so
//   dL/dU = sum over tiles t (and samples) of (A dY_t A^T) . V_t      (36 GEMMs, one per xi)
//   dL/dg = G^T (dL/dU) G,
// 4x fewer multiplies than conv.h's direct filter gradient (F(2x2,3x3): 2.25x).
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1; T, Tp, Op as in
// winograd4.h; Cp = C rounded up to wino::kRows)
//   V  [36][C][Tp]   transformed input, as in the forward pass (tiles contiguous).
//   W  [36][Tp][Op]  transformed output gradient A dY_t A^T, output channels contiguous (lanes).
//   S  [36][Cp][Op]  this slice's dL/dU, summed over its samples; slices are added in order and
//                    transformed into dw [O][C][3][3] by sum_and_transform.
// Determinism: each S element is one fixed sequence of FMAs over the slice's samples and tiles.
#pragma once
#include "winograd4.h"
#include "winograd_wgrad.h"

namespace ddpm::wino4 {

inline int64_t cp(const Shape& d) { return wino::cp(d); }
// W's region also holds the channels-last input before grad_transform writes it.
inline int64_t w_floats(const Shape& d) {
  return std::max(wino::max_over_widths([&]<int L>() { return wino::align_floats(36 * tp(d) * wino::op_w<L>(d)); }),
                  xl_floats(d));
}
inline int64_t s_floats(const Shape& d) {
  return wino::max_over_widths([&]<int L>() { return wino::align_floats(36 * wino::cp_w<L>(d) * wino::op_w<L>(d)); });
}
// Scratch of one slice: xw, V (as in the forward pass), dyT (conv.h's [Ho*Wo][Op] transpose), W,
// then S (the partial).
inline int64_t wgrad_slice_floats(const Shape& d) {
  return xw_floats(d) + v_floats(d) + conv::dyt_floats(d) + w_floats(d) + s_floats(d);
}
inline int64_t wgrad_partial_offset(const Shape& d) { return wgrad_slice_floats(d) - s_floats(d); }

// w = A y for the 4 values y of one column (or row) of an output-gradient tile:
// A = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 0 0 0 1].
__attribute__((always_inline)) inline void a4(const batch y[4], batch w[6]) {
  const batch e = y[0] + y[2], o = y[1] + y[3];
  const batch e2 = xsimd::fma(batch(4.f), y[2], y[0]), o2 = xsimd::fma(batch(8.f), y[3], batch(2.f) * y[1]);
  w[0] = y[0];
  w[1] = e + o;
  w[2] = e - o;
  w[3] = e2 + o2;
  w[4] = e2 - o2;
  w[5] = y[3];
}

// W[xi][t][o] = (A dY_t A^T)[xi] from dyT [Ho*Wo][Op] (pixels outside the output are zero).
inline void grad_transform(const Shape& d, const float* dyT, float* W) {
  const int th = tiles_h(d), tw = tiles_w(d);
  const int64_t Op = op(d), ws = tp(d) * Op;
  for (int i = 0; i < th; ++i)
    for (int j = 0; j < tw; ++j)
      for (int64_t o = 0; o < Op; o += kL) {
        batch r[6][4];  // r[k][b] = (A dY)[k][b]
#pragma GCC unroll 4
        for (int b = 0; b < 4; ++b) {
          batch y[4], w[6];
#pragma GCC unroll 4
          for (int a = 0; a < 4; ++a) {
            const int h = 4 * i + a, x = 4 * j + b;
            y[a] = h < d.Ho && x < d.Wo ? batch::load_aligned(dyT + (int64_t(h) * d.Wo + x) * Op + o) : batch(0.f);
          }
          a4(y, w);
#pragma GCC unroll 6
          for (int k = 0; k < 6; ++k) r[k][b] = w[k];
        }
        float* dst = W + (int64_t(i) * tw + j) * Op + o;
#pragma GCC unroll 6
        for (int k = 0; k < 6; ++k) {
          batch w[6];
          a4(r[k], w);
#pragma GCC unroll 6
          for (int l = 0; l < 6; ++l) w[l].store_aligned(dst + (k * 6 + l) * ws);
        }
      }
}

// This slice's partial S over samples [b0, b1) in order; fill gives input rows as in
// forward_range, dy is the whole batch's output gradient.
template <class Fill>
inline void wgrad_range(const Shape& d, const float* dy, int64_t b0, int64_t b1, float* scratch, Fill&& fill) {
  float* xw = scratch;
  float* V = xw + xw_floats(d);
  float* dyT = V + v_floats(d);
  float* W = dyT + conv::dyt_floats(d);
  float* S = W + w_floats(d);
  const int64_t T = ntiles(d), Tp = tp(d), Op = op(d), Cp = cp(d), ys = int64_t(d.O) * d.Ho * d.Wo;
  clear_tiles(d, xw);
  for (int64_t b = b0; b < b1; ++b) {
    pad_tiles(d, xw, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    conv::transpose_dy(d, dy + b * ys, dyT);
    if (channels_last(d)) {
      to_channels_last(d, xw, W);  // W is free until grad_transform
      input_transform_cl(d, W, V);
      grad_transform(d, dyT, W);
      for (int xi = 0; xi < 36; ++xi)
        for (int64_t ob = 0; ob < Op; ob += kOB)
          for (int64_t c0 = 0; c0 < d.C; c0 += wino::kRows)  // C is a multiple of kL, so of kRows
            wino::wgrad_block<true>(T, V + xi * Tp * d.C + c0, d.C, wino::kRows, W + xi * Tp * Op + ob, Op,
                           S + (xi * Cp + c0) * Op + ob, b == b0);
      continue;
    }
    input_transform(d, xw, V);
    grad_transform(d, dyT, W);
    for (int xi = 0; xi < 36; ++xi)
      for (int64_t ob = 0; ob < Op; ob += kOB)
        for (int64_t c0 = 0; c0 < Cp; c0 += wino::kRows)
          wino::wgrad_block<false>(T, V + (xi * d.C + std::min<int64_t>(c0, d.C - 1)) * Tp, Tp,
                            int(std::min<int64_t>(wino::kRows, d.C - c0)), W + xi * Tp * Op + ob, Op,
                            S + (xi * Cp + c0) * Op + ob, b == b0);
  }
}

// dw[o][c][kh][kw] = (G^T S G)[kh][kw], as wino::sum_and_transform, with
// G^T = [1/4 -1/6 -1/6 1/24 1/24 0; 0 -1/6 1/6 1/12 -1/12 0; 0 -1/6 -1/6 1/6 1/6 1].
inline void sum_and_transform(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw, int c0 = 0,
                              int c1 = -1) {
  wino::sum_and_transform_tiles<6>(
      d, parts, n, stride, dw,
      [](const batch s[6], batch u[3]) {
        const batch q(0.25f), s6(1.f / 6), s12(1.f / 12), s24(1.f / 24);
        const batch p12 = s[1] + s[2], p34 = s[3] + s[4];
        u[0] = xsimd::fma(q, s[0], xsimd::fma(s24, p34, -s6 * p12));
        u[1] = xsimd::fma(s6, s[2] - s[1], s12 * (s[3] - s[4]));
        u[2] = xsimd::fma(s6, p34 - p12, s[5]);
      },
      c0, c1);
}

}  // namespace ddpm::wino4
