// Winograd F(2x2, 3x3) filter gradient of the 3x3, stride-1, "same" layers (the adjoint of
// winograd.h's forward pass). With U = G g G^T and V_t = B^T d_t B for input tile t, the forward
// pass is Y_t = A^T (U . V_t) A, so
//   dL/dU = sum over tiles t (and samples) of (A dY_t A^T) . V_t      (16 GEMMs, one per xi)
//   dL/dg = G^T (dL/dU) G,
// 2.25x fewer multiplies than conv.h's direct filter gradient.
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1; T, Tp, Op as in
// winograd.h; Cp = C rounded up to kRows)
//   V  [16][C][Tp]   transformed input, as in the forward pass (tiles contiguous).
//   W  [16][Tp][Op]  transformed output gradient A dY_t A^T, output channels contiguous (lanes).
//   S  [16][Cp][Op]  this slice's dL/dU, summed over its samples; slices are added in order and
//                    transformed into dw [O][C][3][3] by sum_and_transform.
// Determinism: each S element is one fixed sequence of FMAs over the slice's samples and tiles.
#pragma once
#include "winograd.h"

namespace ddpm::wino {

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
inline int64_t w_floats(const Shape& d) {
  return std::max(max_over_widths([&]<int L>() { return align_floats(16 * tp(d) * op_w<L>(d)); }), xl_floats(d));
}
inline int64_t s_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(16 * cp_w<L>(d) * op_w<L>(d)); });
}
// Scratch of one slice: xw, V (as in the forward pass), dyT (conv.h's [Ho*Wo][Op] transpose), W,
// then S (the partial).
inline int64_t wgrad_slice_floats(const Shape& d) {
  return xw_floats(d) + v_floats(d) + conv::dyt_floats(d) + w_floats(d) + s_floats(d);
}
inline int64_t wgrad_partial_offset(const Shape& d) { return wgrad_slice_floats(d) - s_floats(d); }

// W[xi][t][o] = (A dY_t A^T)[xi] from dyT [Ho*Wo][Op] (pixels outside the output are zero).
inline void grad_transform(const Shape& d, const float* dyT, float* W) {
  const int th = tiles_h(d), tw = tiles_w(d);
  const int64_t Op = op(d), ws = tp(d) * Op;
  for (int i = 0; i < th; ++i)
    for (int j = 0; j < tw; ++j)
      for (int64_t o = 0; o < Op; o += kL) {
        batch y[2][2];
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const int h = 2 * i + a, w = 2 * j + b;
            y[a][b] = h < d.Ho && w < d.Wo ? batch::load_aligned(dyT + (int64_t(h) * d.Wo + w) * Op + o) : batch(0.f);
          }
        // A = [[1,0],[1,1],[1,-1],[0,-1]]: rows r = A y, then columns.
        const batch r[4][2] = {{y[0][0], y[0][1]},
                               {y[0][0] + y[1][0], y[0][1] + y[1][1]},
                               {y[0][0] - y[1][0], y[0][1] - y[1][1]},
                               {-y[1][0], -y[1][1]}};
        float* dst = W + (int64_t(i) * tw + j) * Op + o;
        for (int a = 0; a < 4; ++a) {
          r[a][0].store_aligned(dst + (a * 4 + 0) * ws);
          (r[a][0] + r[a][1]).store_aligned(dst + (a * 4 + 1) * ws);
          (r[a][0] - r[a][1]).store_aligned(dst + (a * 4 + 2) * ws);
          (-r[a][1]).store_aligned(dst + (a * 4 + 3) * ws);
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
      for (int v = 0; v < kNV; ++v) acc[r][v] = xsimd::fma(a, bv[v], acc[r][v]);
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
      to_channels_last(d.C, hw_(d), ww_(d), 2 * tiles_h(d) + 2, xl_cols(d), xw, W);  // W is free until grad_transform
      input_transform_cl(d, W, V);
      grad_transform(d, dyT, W);
      for (int xi = 0; xi < 16; ++xi)
        for (int64_t ob = 0; ob < Op; ob += kOB)
          for (int64_t c0 = 0; c0 < d.C; c0 += kRows)  // C is a multiple of kL, so of kRows
            wgrad_block<true>(T, V + xi * Tp * d.C + c0, d.C, kRows, W + xi * Tp * Op + ob, Op, S + (xi * Cp + c0) * Op + ob,
                        b == b0);
      continue;
    }
    input_transform(d, xw, V);
    grad_transform(d, dyT, W);
    for (int xi = 0; xi < 16; ++xi)
      for (int64_t ob = 0; ob < Op; ob += kOB)
        for (int64_t c0 = 0; c0 < Cp; c0 += kRows)
          wgrad_block<false>(T, V + (xi * d.C + std::min<int64_t>(c0, d.C - 1)) * Tp, Tp, int(std::min<int64_t>(kRows, d.C - c0)),
                      W + xi * Tp * Op + ob, Op, S + (xi * Cp + c0) * Op + ob, b == b0);
  }
}

// dw[o][c][kh][kw] = (G^T S G)[kh][kw] with S = the n slices' partials (stride floats apart)
// added in slice order, 16 output channels at a time (lanes), for N x N transformed tiles:
// gt(s, u) computes the 3 values u = G^T s of N values s. Shared with winograd4_wgrad.h.
// Input channels [c0, c1) only (c1 < 0: to C), as pack_filter_tiles.
template <int N, class GT>
inline void sum_and_transform_tiles(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw, GT&& gt,
                                    int c0 = 0, int c1 = -1) {
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
        gt(col, r);
        for (int i = 0; i < 3; ++i) u[i][j] = r[i];
      }
      alignas(64) float out[9][kL];
      for (int i = 0; i < 3; ++i) {
        batch r[3];
        gt(u[i], r);
        for (int k = 0; k < 3; ++k) r[k].store_aligned(out[i * 3 + k]);
      }
      for (int l = 0; l < kL && o0 + l < d.O; ++l)
        for (int k = 0; k < 9; ++k) dw[((o0 + l) * d.C + c) * 9 + k] = out[k][l];
    }
}

// F(2x2,3x3): G^T = [[1, .5, .5, 0], [0, .5, -.5, 0], [0, .5, .5, 1]].
inline void sum_and_transform(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw, int c0 = 0,
                              int c1 = -1) {
  sum_and_transform_tiles<4>(
      d, parts, n, stride, dw,
      [](const batch s[4], batch u[3]) {
        const batch h(0.5f), p = h * (s[1] + s[2]);
        u[0] = s[0] + p;
        u[1] = h * (s[1] - s[2]);
        u[2] = p + s[3];
      },
      c0, c1);
}

}  // namespace ddpm::wino
