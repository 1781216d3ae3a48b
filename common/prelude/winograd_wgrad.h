// Winograd F(2x2, 3x3) filter gradient of the 3x3, stride-1, "same" layers (the adjoint of
// winograd.h's forward pass). With U = G g G^T and V_t = B^T d_t B for input tile t, the forward
// pass is Y_t = A^T (U . V_t) A, so
//   dL/dU = sum over tiles t (and samples) of (A dY_t A^T) . V_t      (16 GEMMs, one per xi)
//   dL/dg = G^T (dL/dU) G,
// 2.25x fewer multiplies than conv.h's direct filter gradient.
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1; T, Tp, Op as in
// winograd.h; Cp = C rounded up to kRows)
//   Vt [16][Tp][Cp]  transformed input, channels contiguous (broadcast along the register rows).
//   W  [16][Tp][Op]  transformed output gradient A dY_t A^T, output channels contiguous (lanes).
//   S  [16][Cp][Op]  this slice's dL/dU, summed over its samples; slices are added in order and
//                    transformed into dw [O][C][3][3] by sum_and_transform.
// Determinism: each S element is one fixed sequence of FMAs over the slice's samples and tiles.
#pragma once
#include "winograd.h"

namespace ddpm::wino {

inline constexpr int kRows = 8;  // channels per register block (8 x 32 output channels)

inline int64_t cp(const Shape& d) { return (d.C + kRows - 1) / kRows * kRows; }
inline int64_t vt_floats(const Shape& d) { return conv::round16(16 * tp(d) * cp(d)); }
inline int64_t w_floats(const Shape& d) { return conv::round16(16 * tp(d) * op(d)); }
inline int64_t s_floats(const Shape& d) { return conv::round16(16 * cp(d) * op(d)); }
// Scratch of one slice: xw, Vt, dyT (conv.h's [Ho*Wo][Op] transpose), W, then S (the partial).
inline int64_t wgrad_slice_floats(const Shape& d) {
  return xw_floats(d) + vt_floats(d) + conv::dyt_floats(d) + w_floats(d) + s_floats(d);
}
inline int64_t wgrad_partial_offset(const Shape& d) { return wgrad_slice_floats(d) - s_floats(d); }

// Vt[xi][t][c] = (B^T d_t B)[xi] of channel c. Tiles are vectorized as in input_transform; 16
// channels at a time are collected in blk[xi][channel][tile] and transposed in registers, so
// each tile's 16 channels are stored as one vector.
inline void input_transform_t(const Shape& d, const float* xw, float* Vt) {
  const int th = tiles_h(d), tw = tiles_w(d), Hw = hw_(d), Ww = ww_(d);
  const int64_t Cp = cp(d), xs = tp(d) * Cp;
  alignas(64) float blk[16][kL][kL];
  for (int c0 = 0; c0 < d.C; c0 += kL) {
    const int cn = std::min(kL, d.C - c0);
    for (int i = 0; i < th; ++i)
      for (int j0 = 0; j0 < tw; j0 += kL) {
        const int n = std::min(kL, tw - j0);
        for (int ci = 0; ci < kL; ++ci) {
          if (ci >= cn) {
            for (int xi = 0; xi < 16; ++xi) batch(0.f).store_aligned(blk[xi][ci]);
            continue;
          }
          const float* x0 = xw + int64_t(c0 + ci) * Hw * Ww + int64_t(2 * i) * Ww + 2 * j0;
          batch t[4][4];
#pragma GCC unroll 4
          for (int b = 0; b < 4; ++b) {  // as in input_transform
            const batch d0 = even_lanes(x0 + b), d1 = even_lanes(x0 + Ww + b), d2 = even_lanes(x0 + 2 * Ww + b),
                        d3 = even_lanes(x0 + 3 * Ww + b);
            t[0][b] = d0 - d2;
            t[1][b] = d1 + d2;
            t[2][b] = d2 - d1;
            t[3][b] = d1 - d3;
          }
#pragma GCC unroll 4
          for (int a = 0; a < 4; ++a) {
            (t[a][0] - t[a][2]).store_aligned(blk[a * 4 + 0][ci]);
            (t[a][1] + t[a][2]).store_aligned(blk[a * 4 + 1][ci]);
            (t[a][2] - t[a][1]).store_aligned(blk[a * 4 + 2][ci]);
            (t[a][1] - t[a][3]).store_aligned(blk[a * 4 + 3][ci]);
          }
        }
        float* dst = Vt + (int64_t(i) * tw + j0) * Cp + c0;
        for (int xi = 0; xi < 16; ++xi) {
          batch r[kL];
          for (int ci = 0; ci < kL; ++ci) r[ci] = batch::load_aligned(blk[xi][ci]);
          simd::transpose(r);  // r[l] = tile l's 16 channels
          for (int l = 0; l < n; ++l) simd::store_partial(dst + xi * xs + l * Cp, r[l], std::min<int>(kL, int(Cp) - c0));
        }
      }
  }
}

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

// S[c0..c0+7][o-block] (+)= sum over tiles t < T of Vt[t][c0 + r] * W[t][o-block].
inline void wgrad_block(int64_t T, const float* Vt, int64_t Cp, const float* W, int64_t Op, float* S, bool first) {
  batch acc[kRows][kNV];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) acc[r][v] = batch(0.f);
  for (int64_t t = 0; t < T; ++t) {
    batch bv[kNV];
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) bv[v] = batch::load_aligned(W + t * Op + v * kL);
    const float* vr = Vt + t * Cp;
    asm("" : "+r"(vr));
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      batch a(vr[r]);
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) acc[r][v] = xsimd::fma(a, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
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
  float* Vt = xw + xw_floats(d);
  float* dyT = Vt + vt_floats(d);
  float* W = dyT + conv::dyt_floats(d);
  float* S = W + w_floats(d);
  const int64_t T = ntiles(d), Tp = tp(d), Op = op(d), Cp = cp(d), ys = int64_t(d.O) * d.Ho * d.Wo;
  if (Cp > d.C)  // channels past C stay zero so the padded register rows add nothing
    for (int xi = 0; xi < 16; ++xi)
      for (int64_t t = 0; t < T; ++t) std::memset(Vt + (xi * Tp + t) * Cp + d.C, 0, sizeof(float) * (Cp - d.C));
  clear_tiles(d, xw);
  for (int64_t b = b0; b < b1; ++b) {
    pad_tiles(d, xw, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    input_transform_t(d, xw, Vt);
    conv::transpose_dy(d, dy + b * ys, dyT);
    grad_transform(d, dyT, W);
    for (int xi = 0; xi < 16; ++xi)
      for (int64_t ob = 0; ob < Op; ob += kOB)
        for (int64_t c0 = 0; c0 < Cp; c0 += kRows)
          wgrad_block(T, Vt + xi * Tp * Cp + c0, Cp, W + xi * Tp * Op + ob, Op, S + (xi * Cp + c0) * Op + ob, b == b0);
  }
}

// dw[o][c][kh][kw] = (G^T S G)[kh][kw] with S = the n slices' partials (stride floats apart)
// added in slice order.
inline void sum_and_transform(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw) {
  const int64_t Op = op(d), Cp = cp(d), ss = Cp * Op;
  for (int o = 0; o < d.O; ++o)
    for (int c = 0; c < d.C; ++c) {
      float s[4][4];
      for (int xi = 0; xi < 16; ++xi) {
        const int64_t at = xi * ss + int64_t(c) * Op + o;
        float acc = parts[at];
        for (int64_t k = 1; k < n; ++k) acc += parts[k * stride + at];
        s[xi / 4][xi % 4] = acc;
      }
      // G^T = [[1, .5, .5, 0], [0, .5, -.5, 0], [0, .5, .5, 1]]; u = G^T s (rows), then u G (columns).
      float u[3][4];
      for (int j = 0; j < 4; ++j) {
        u[0][j] = s[0][j] + 0.5f * (s[1][j] + s[2][j]);
        u[1][j] = 0.5f * (s[1][j] - s[2][j]);
        u[2][j] = 0.5f * (s[1][j] + s[2][j]) + s[3][j];
      }
      float* out = dw + (int64_t(o) * d.C + c) * 9;
      for (int i = 0; i < 3; ++i) {
        out[i * 3 + 0] = u[i][0] + 0.5f * (u[i][1] + u[i][2]);
        out[i * 3 + 1] = 0.5f * (u[i][1] - u[i][2]);
        out[i * 3 + 2] = 0.5f * (u[i][1] + u[i][2]) + u[i][3];
      }
    }
}

}  // namespace ddpm::wino
