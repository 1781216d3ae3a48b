// The filter gradient of winograd_driver.h's forward pass (the adjoint of that pass), written once
// over the transform traits F (wino::F2x2, wino4::F4x4). With U = G g G^T and V_t = B^T d_t B for
// input tile t, the forward pass is Y_t = A^T (U . V_t) A, so
//   dL/dU = sum over tiles t (and samples) of (A dY_t A^T) . V_t      (NN GEMMs, one per xi)
//   dL/dg = G^T (dL/dU) G,
// 2.25x (F(2x2,3x3)) or 4x (F(4x4,3x3)) fewer multiplies than conv.h's direct filter gradient.
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1; T, Tp, Op, NN, xw, xl
// as in winograd_driver.h; Cp = C rounded up to kRows)
//   V  [NN][C][Tp]   transformed input, as in the forward pass (tiles contiguous), or Vc [NN][Tp][C]
//                    on the channels-last path.
//   W  [NN][Tp][Op]  transformed output gradient A dY_t A^T, output channels contiguous (lanes).
//   S  [NN][Cp][Op]  this slice's dL/dU, summed over its samples; slices are added in order and
//                    transformed into dw [O][C][3][3] by sum_and_transform.
// Determinism: each S element is one fixed sequence of FMAs over the slice's samples and tiles.
#pragma once
#include "winograd_driver.h"

namespace ddpm::winograd {

// Input channels per register block (kRows x kNV vectors of output channels): 8 x 2 = 16
// accumulators with AVX-512's 32 registers, 4 x 2 = 8 with 16. A divisor of kL (the channels-last
// path steps through C, a multiple of kL, by kRows).
template <int L>
inline constexpr int kRowsW = L == 16 ? 8 : 4;
inline constexpr int kRows = kRowsW<kL>;
static_assert(kL % kRows == 0);

template <int L>
constexpr int64_t cp_w(const Shape& d) { return simd::round_up(d.C, kRowsW<L>); }
inline int64_t cp(const Shape& d) { return cp_w<kL>(d); }
// W's region also holds the channels-last input before grad_transform writes it.
template <class F>
inline int64_t w_floats(const Shape& d) {
  return std::max(max_over_widths([&]<int L>() { return align_floats(kNN<F> * tp<F>(d) * op_w<L>(d)); }), xl_floats<F>(d));
}
template <class F>
inline int64_t s_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(kNN<F> * cp_w<L>(d) * op_w<L>(d)); });
}
// Scratch of one slice: xw, V (as in the forward pass), dyT (conv.h's [Ho*Wo][Op] transpose), W,
// then S (the partial).
template <class F>
inline int64_t wgrad_slice_floats(const Shape& d) {
  return xw_floats<F>(d) + v_floats<F>(d) + conv::dyt_floats(d) + w_floats<F>(d) + s_floats<F>(d);
}
template <class F>
inline int64_t wgrad_partial_offset(const Shape& d) { return wgrad_slice_floats<F>(d) - s_floats<F>(d); }

// W[xi][t][o] = (A dY_t A^T)[xi] from dyT [Ho*Wo][Op] (pixels outside the output are zero).
template <class F>
inline void grad_transform(const Shape& d, const float* dyT, float* W) {
  constexpr int M = F::M, N = F::N;
  const int th = tiles_h<F>(d), tw = tiles_w<F>(d);
  const int64_t Op = op(d), ws = tp<F>(d) * Op;
  for (int i = 0; i < th; ++i)
    for (int j = 0; j < tw; ++j)
      for (int64_t o = 0; o < Op; o += kL) {
        batch r[N][M];  // r[k][b] = (A dY)[k][b]
#pragma GCC unroll 4
        for (int b = 0; b < M; ++b) {
          batch y[M], w[N];
#pragma GCC unroll 4
          for (int a = 0; a < M; ++a) {
            const int h = M * i + a, x = M * j + b;
            y[a] = h < d.Ho && x < d.Wo ? batch::load_aligned(dyT + (int64_t(h) * d.Wo + x) * Op + o) : batch(0.f);
          }
          F::a(y, w);
#pragma GCC unroll 8
          for (int k = 0; k < N; ++k) r[k][b] = w[k];
        }
        float* dst = W + (int64_t(i) * tw + j) * Op + o;
#pragma GCC unroll 8
        for (int k = 0; k < N; ++k) {
          batch w[N];
          F::a(r[k], w);
#pragma GCC unroll 8
          for (int l = 0; l < N; ++l) w[l].store_aligned(dst + (k * N + l) * ws);
        }
      }
}

// S[c0..c0+kRows-1][o-block] (+)= sum over tiles t < T of V(c0 + r, t) * W[t][o-block], for either
// layout of the transformed input: tiles contiguous (V [xi][c][t] of the forward pass, no transpose
// needed; `stride` = Tp between channel rows, one row pointer each) or channels last (Vc [xi][t][c];
// `stride` = C between tiles, the kRows channels of a tile neighbours). Rows at or past `rows`
// repeat the last channel and are not stored.
template <bool ChannelsLast>
inline void wgrad_block(int64_t T, const float* V, int64_t stride, int rows, const float* W, int64_t Op, float* S,
                        bool first) {
  const float* vr[kRows];
  for (int r = 0; r < kRows; ++r) vr[r] = V + std::min(r, rows - 1) * (ChannelsLast ? 1 : stride);
  batch acc[kRows][kNV];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) acc[r][v] = batch(0.f);
  for (int64_t t = 0; t < T; ++t) {
    batch bv[kNV];
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) bv[v] = batch::load_aligned(W + t * Op + v * kL);
    const float* vt = V + t * stride;  // channels last: tile t's channel row
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      batch a(ChannelsLast ? vt[r] : vr[r][t]);
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) acc[r][v] = simd::fma(a, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < rows; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) {
      float* p = S + r * Op + v * kL;
      (first ? acc[r][v] : batch::load_aligned(p) + acc[r][v]).store_aligned(p);
    }
}

// This slice's partial S over samples [b0, b1) in order; fill gives input rows as in
// forward_range, dy is the whole batch's output gradient.
template <class F, class Fill>
inline void wgrad_range(const Shape& d, const float* dy, int64_t b0, int64_t b1, float* scratch, Fill&& fill) {
  float* xw = scratch;
  float* V = xw + xw_floats<F>(d);
  float* dyT = V + v_floats<F>(d);
  float* W = dyT + conv::dyt_floats(d);
  float* S = W + w_floats<F>(d);
  const int64_t T = ntiles<F>(d), Tp = tp<F>(d), Op = op(d), Cp = cp(d), ys = int64_t(d.O) * d.Ho * d.Wo;
  clear_tiles<F>(d, xw);
  for (int64_t b = b0; b < b1; ++b) {
    pad_tiles<F>(d, xw, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    conv::transpose_dy(d, dy + b * ys, dyT);
    if (channels_last<F>(d)) {
      to_channels_last<F>(d, xw, W);  // W is free until grad_transform
      input_transform_cl<F>(d, W, V);
      grad_transform<F>(d, dyT, W);
      for (int xi = 0; xi < kNN<F>; ++xi)
        for (int64_t ob = 0; ob < Op; ob += kOB)
          for (int64_t c0 = 0; c0 < d.C; c0 += kRows)  // C is a multiple of kL, so of kRows
            wgrad_block<true>(T, V + xi * Tp * d.C + c0, d.C, kRows, W + xi * Tp * Op + ob, Op, S + (xi * Cp + c0) * Op + ob,
                              b == b0);
      continue;
    }
    input_transform<F>(d, xw, V);
    grad_transform<F>(d, dyT, W);
    for (int xi = 0; xi < kNN<F>; ++xi)
      for (int64_t ob = 0; ob < Op; ob += kOB)
        for (int64_t c0 = 0; c0 < Cp; c0 += kRows)
          wgrad_block<false>(T, V + (xi * d.C + std::min<int64_t>(c0, d.C - 1)) * Tp, Tp,
                             int(std::min<int64_t>(kRows, d.C - c0)), W + xi * Tp * Op + ob, Op,
                             S + (xi * Cp + c0) * Op + ob, b == b0);
  }
}

// dw[o][c][kh][kw] = (G^T S G)[kh][kw] with S = the n slices' partials (stride floats apart)
// added in slice order, kL output channels at a time (lanes). Input channels [c0, c1) only
// (c1 < 0: to C), as pack_filter.
template <class F>
inline void sum_and_transform(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw, int c0 = 0,
                              int c1 = -1) {
  constexpr int N = F::N;
  const int64_t Op = op(d), Cp = cp(d), ss = Cp * Op;
  for (int c = c0; c < (c1 < 0 ? d.C : c1); ++c)
    for (int64_t o0 = 0; o0 < d.O; o0 += kL) {
      batch sv[N][N];
      for (int xi = 0; xi < N * N; ++xi) {
        const int64_t at = xi * ss + int64_t(c) * Op + o0;
        batch acc = batch::load_aligned(parts + at);
        for (int64_t k = 1; k < n; ++k) acc += batch::load_aligned(parts + k * stride + at);
        sv[xi / N][xi % N] = acc;
      }
      batch u[3][N];  // u[.][j] = G^T s[.][j] (columns), then dw = u G (rows)
      for (int j = 0; j < N; ++j) {
        batch col[N], r[3];
        for (int i = 0; i < N; ++i) col[i] = sv[i][j];
        F::gt(col, r);
        for (int i = 0; i < 3; ++i) u[i][j] = r[i];
      }
      alignas(64) float out[9][kL];
      for (int i = 0; i < 3; ++i) {
        batch r[3];
        F::gt(u[i], r);
        for (int k = 0; k < 3; ++k) r[k].store_aligned(out[i * 3 + k]);
      }
      for (int l = 0; l < kL && o0 + l < d.O; ++l)
        for (int k = 0; k < 9; ++k) dw[((o0 + l) * d.C + c) * 9 + k] = out[k][l];
    }
}

}  // namespace ddpm::winograd
