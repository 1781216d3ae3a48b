// Winograd F(4x4, 3x3) convolutions for the 3x3, stride-1, "same" layers at 28x28 (Lavin & Gray
// 2016, interpolation points 0, +-1, +-2, inf): each 4x4 output tile is A^T [ (G g G^T) . (B^T d B) ] A,
// so the channel sums become 36 independent GEMMs (one per position xi of the 6x6 transformed tile)
// with 4x fewer multiplies than the direct convolution in conv.h (F(2x2,3x3) in winograd.h: 2.25x).
// The transforms also touch fewer values per output (2.25 against 4). Used for the forward pass and
// the stride-1 data gradient (the forward pass of dy with the flipped filter) where worthwhile()
// says so; the filter gradient stays on winograd_wgrad.h.
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1)
//   th x tw tiles (T = th*tw), th = ceil(Ho/4); the padded input xw is [C][4th+6][Ww].
//   U [36][C][Op]   transformed filter, output channels in lanes (Op = O rounded up to 2 kL).
//   V [36][C][Tp]   transformed input, tiles contiguous (Tp = T + kTileSlack).
//   M [36][Tp][Op]  the 36 GEMM results, output channels contiguous; each tile's 4x4 x 16-channel
//                   result is transposed in registers and stored straight into y [O][Ho][Wo].
// Determinism: fixed loops only; each output element is one fixed sequence of operations.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "winograd.h"

namespace ddpm::wino4 {

using batch = simd::batch;
using conv::Shape;
using wino::kL;
using wino::kOB;
using wino::kTileSlack;

inline bool applies(const Shape& d) { return wino::applies(d); }
inline bool channels_last(const Shape& d);
// The channels-last path at every width (C a multiple of 16, so of every kL): the planning
// predicate, which must not depend on the width the module will be built for.
inline bool channels_last_any_width(const Shape& d);
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

inline int tiles_h(const Shape& d) { return (d.Ho + 3) / 4; }
inline int tiles_w(const Shape& d) { return (d.Wo + 3) / 4; }
inline int64_t ntiles(const Shape& d) { return int64_t(tiles_h(d)) * tiles_w(d); }
inline int64_t tp(const Shape& d) { return ntiles(d) + kTileSlack; }
inline int64_t op(const Shape& d) { return wino::op(d); }
// Rows: the 4th+2 the tiles read, and 4 more of zeros for a phantom last tile row (two tile rows
// share a vector). Columns: the 4tw+2 the tiles read, rounded to 16, and 48 floats of room for
// the 32-float loads from column offsets up to 5 (they run into the next row, or the slack).
inline int hw_(const Shape& d) { return 4 * tiles_h(d) + 6; }
inline int ww_(const Shape& d) { return int(wino::align_floats(4 * tiles_w(d) + 2)); }

using wino::align_floats;
inline int64_t filter_floats(const Shape& d) {
  return wino::max_over_widths([&]<int L>() { return align_floats(36 * d.C * wino::op_w<L>(d)); });
}
inline int64_t xw_floats(const Shape& d) { return align_floats(int64_t(d.C) * hw_(d) * ww_(d) + 48); }
inline int64_t v_floats(const Shape& d) { return align_floats(36 * d.C * tp(d)); }
inline int64_t m_floats(const Shape& d) {
  return wino::max_over_widths([&]<int L>() { return align_floats(36 * tp(d) * wino::op_w<L>(d)); });
}
// The channels-last copy of the padded input (rows the tiles read), [rows * Ww][C].
inline int64_t xl_floats(const Shape& d) { return align_floats(int64_t(d.C) * (4 * tiles_h(d) + 2) * ww_(d)); }
// Scratch of one slice: xw, V, M (which first holds the channels-last input, see forward_sample).
inline int64_t slice_floats(const Shape& d) {
  return xw_floats(d) + v_floats(d) + std::max(m_floats(d), xl_floats(d));
}

// U[xi][c][o] = (G g G^T)[xi], as wino::pack_filter, with
// G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
inline void pack_filter(const Shape& d, const float* w, bool flip, float* U, int c0 = 0, int c1 = -1) {
  wino::pack_filter_tiles<6>(
      d, w, flip, U,
      [](const batch g[3], batch u[6]) {
        const batch q(0.25f), s6(1.f / 6), s12(1.f / 12), s24(1.f / 24);
        const batch a = g[0] + g[2];
        u[0] = q * g[0];
        u[1] = -s6 * (a + g[1]);
        u[2] = -s6 * (a - g[1]);
        const batch b = xsimd::fma(s24, g[0], s6 * g[2]);
        u[3] = xsimd::fma(s12, g[1], b);
        u[4] = xsimd::fnma(s12, g[1], b);
        u[5] = g[2];
      },
      c0, c1);
}

// r = B^T z for the 6 values z of one column (or row) of an input tile:
// B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1].
__attribute__((always_inline)) inline void bt6(const batch z[6], batch r[6]) {
  const batch f4(4.f), f5(-5.f), m4(-4.f), two(2.f);
  r[0] = xsimd::fma(f4, z[0], xsimd::fma(f5, z[2], z[4]));
  const batch t1 = xsimd::fma(m4, z[2], z[4]), t2 = xsimd::fma(m4, z[1], z[3]);
  r[1] = t1 + t2;
  r[2] = t1 - t2;
  const batch t3 = z[4] - z[2], t4 = two * (z[3] - z[1]);
  r[3] = t3 + t4;
  r[4] = t3 - t4;
  r[5] = xsimd::fma(f4, z[1], xsimd::fma(f5, z[3], z[5]));
}

// y = A^T m for the 6 values m of one column (or row) of a transformed tile:
// A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
__attribute__((always_inline)) inline void at6(const batch m[6], batch y[4]) {
  const batch s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  y[0] = m[0] + s12 + s34;
  y[1] = xsimd::fma(batch(2.f), d34, d12);
  y[2] = xsimd::fma(batch(4.f), s34, s12);
  y[3] = xsimd::fma(batch(8.f), d34, d12) + m[5];
}

// Lanes [0, tw) hold p[0], p[4], ..., p[4tw-4] and lanes [tw, 2tw) hold q[0], q[4], ...: two rows
// of tiles in one vector, for rows of at most 8 tiles (32 floats read from each of p and q).
struct Stride4Lanes2 {
  int tw;
#if defined(__AVX512F__)
  __m512i idx;
  __mmask16 hi;
#endif
  explicit Stride4Lanes2(int tw_) : tw(tw_) {
#if defined(__AVX512F__)
    alignas(64) int ix[16];
    for (int l = 0; l < 16; ++l) ix[l] = l < tw ? 4 * l : l < 2 * tw ? 4 * (l - tw) : 0;
    idx = _mm512_load_si512(ix);
    // (Only used when 2 tw <= 16; wider rows take the one-row path, and the shift must stay < 32.)
    hi = 2 * tw <= 16 ? static_cast<__mmask16>(((1u << (2 * tw)) - 1u) & ~((1u << tw) - 1u)) : __mmask16(0);
#endif
  }
  batch operator()(const float* p, const float* q) const {
#if defined(__AVX512F__)
    if constexpr (kL == 16) {
      const __m512 a = _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16));
      const __m512 b = _mm512_permutex2var_ps(_mm512_loadu_ps(q), idx, _mm512_loadu_ps(q + 16));
      return _mm512_mask_blend_ps(hi, a, b);
    }
#endif
    alignas(64) float t[kL] = {};
    for (int l = 0; l < kL && l < 2 * tw; ++l) t[l] = l < tw ? p[4 * l] : q[4 * (l - tw)];
    return batch::load_aligned(t);
  }
};

// The transform of one vector of tiles (load(a, b) = input value (a, b) of each lane's 6x6
// patch); `n` tiles are stored from dst (V[0][c][first tile]), V[xi] xstride apart.
template <class Load>
inline void transform_tiles(Load&& load, float* dst, int64_t xstride, int n) {
  alignas(64) float tt[6][6][kL];  // tt[a][b] = (B^T d)[a][b]
  for (int b = 0; b < 6; ++b) {
    batch z[6], r[6];
#pragma GCC unroll 6
    for (int a = 0; a < 6; ++a) z[a] = load(a, b);
    bt6(z, r);
#pragma GCC unroll 6
    for (int a = 0; a < 6; ++a) r[a].store_aligned(tt[a][b]);
  }
  for (int a = 0; a < 6; ++a) {  // v = (B^T d) B, row a at a time
    batch z[6], r[6];
#pragma GCC unroll 6
    for (int b = 0; b < 6; ++b) z[b] = batch::load_aligned(tt[a][b]);
    bt6(z, r);
#pragma GCC unroll 6
    for (int b = 0; b < 6; ++b) simd::store_partial(dst + (a * 6 + b) * xstride, r[b], n);
  }
}

// V[xi][c][t] = (B^T d B)[xi] for the 6x6 input patch d of tile t (rows 4i.., columns 4j..).
// Tiles run along the lanes: two whole rows of up to 8 tiles, or 16 of a tile row at a time.
inline void input_transform(const Shape& d, const float* xw, float* V) {
  const int th = tiles_h(d), tw = tiles_w(d), Hw = hw_(d), Ww = ww_(d);
  const int64_t Tp = tp(d), xstride = int64_t(d.C) * Tp;
  const Stride4Lanes2 two(tw);
  for (int c = 0; c < d.C; ++c) {
    const float* xc = xw + int64_t(c) * Hw * Ww;
    float* vc = V + int64_t(c) * Tp;
    if (2 * tw <= kL) {
      for (int i = 0; i < th; i += 2) {
        // Row i+1 past the last tile row reads zero rows; those lanes are not stored.
        const float* x0 = xc + int64_t(4 * i) * Ww;
        const float* x1 = x0 + 4 * Ww;
        transform_tiles([&](int a, int b) { return two(x0 + a * Ww + b, x1 + a * Ww + b); }, vc + int64_t(i) * tw,
                        xstride, tw * std::min(2, th - i));
      }
      continue;
    }
    for (int i = 0; i < th; ++i)
      for (int j0 = 0; j0 < tw; j0 += kL) {
        const int n = std::min(kL, tw - j0);
        const float* x0 = xc + int64_t(4 * i) * Ww + 4 * j0;
        transform_tiles(
            [&](int a, int b) {
              alignas(64) float t[kL] = {};
              for (int l = 0; l < n; ++l) t[l] = x0[a * Ww + b + 4 * l];
              return batch::load_aligned(t);
            },
            vc + int64_t(i) * tw + j0, xstride, n);
      }
  }
}

// The channels-last input path, for C a multiple of kL (every U-Net layer it serves). The
// tiles-in-lanes transform above spends most of its time gathering every fourth column into
// lanes (two permutes and a blend per value); here the padded input is transposed once into
// xl [pixel][C] and each tile's 6x6 patch of kL channels is read with aligned vector loads.
//   xl [(4th+2) * Ww][C]   the padded input, channels contiguous.
//   Vc [36][Tp][C]         transformed input, channels contiguous (the GEMMs broadcast from
//                          each tile's row; same size as V).
using wino::kMaxCols;  // input columns a tile row reads: widths up to 64
inline bool channels_last(const Shape& d) { return d.C % kL == 0 && 4 * tiles_w(d) + 2 <= kMaxCols; }
inline bool channels_last_any_width(const Shape& d) { return d.C % 16 == 0 && 4 * tiles_w(d) + 2 <= kMaxCols; }

inline void to_channels_last(const Shape& d, const float* xw, float* xl) {
  wino::to_channels_last(d.C, hw_(d), ww_(d), 4 * tiles_h(d) + 2, ww_(d), xw, xl);
}

// Vc[xi][t][c] = (B^T d B)[xi] for tile t's 6x6 patch d, kL channels at a time. The column
// transforms B^T d of a tile row are shared by neighbouring tiles (tile j's columns 4 and 5 are
// tile j+1's 0 and 1), so they are computed once per column into cols [Ww][6] (one channel
// vector each) and the row transforms read them from there.
inline void input_transform_cl(const Shape& d, const float* xl, float* Vc) {
  const int th = tiles_h(d), tw = tiles_w(d), Ww = ww_(d), ncol = 4 * tw + 2;
  const int64_t C = d.C, xs = tp(d) * C;
  alignas(64) batch cols[kMaxCols * 6];
  for (int i = 0; i < th; ++i)
    for (int64_t c = 0; c < C; c += kL) {
      const float* x0 = xl + int64_t(4 * i) * Ww * C + c;
      for (int x = 0; x < ncol; ++x) {
        batch z[6];
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a) z[a] = batch::load_aligned(x0 + (int64_t(a) * Ww + x) * C);
        bt6(z, cols + 6 * x);
      }
      for (int j = 0; j < tw; ++j) {
        float* v0 = Vc + (int64_t(i) * tw + j) * C + c;
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a) {
          batch z[6], r[6];
#pragma GCC unroll 6
          for (int b = 0; b < 6; ++b) z[b] = cols[6 * (4 * j + b) + a];
          bt6(z, r);
#pragma GCC unroll 6
          for (int b = 0; b < 6; ++b) r[b].store_aligned(v0 + (a * 6 + b) * xs);
        }
      }
    }
}

// One xi's GEMM in MR x NV blocks; tiles past T (up to MR - 1 of them) read Tp's slack and land
// in M's. `cl`: V holds the channels-last Vc [Tp][C], else [C][Tp].
template <int MR, int NV>
inline void gemm_blocks(const Shape& d, bool cl, const float* Vx, const float* Ux, float* Mx) {
  const int64_t T = ntiles(d), Tp = tp(d), Op = op(d);
  for (int64_t t0 = 0; t0 < T; t0 += MR)
    for (int64_t ob = 0; ob < Op; ob += NV * kL) {
      if (cl) wino::gemm_block<MR, NV, true>(d.C, Vx + t0 * d.C, d.C, Ux + ob, Op, Mx + t0 * Op + ob);
      else wino::gemm_block<MR, NV>(d.C, Vx + t0, Tp, Ux + ob, Op, Mx + t0 * Op + ob);
    }
}

// All 36 GEMMs of a sample, in register blocks that fit the tile count (7 x 7 tiles at 28x28)
// with AVX-512's 32 registers, 6 tiles x 2 vectors with 16 (wino::kMR).
inline void gemms(const Shape& d, bool cl, const float* V, const float* U, float* M) {
  const int64_t T = ntiles(d), Tp = tp(d), Op = op(d);
  const bool by7 = T % 7 == 0 && T % 14 != 0, wide = by7 && Op % (4 * kL) == 0;
  for (int xi = 0; xi < 36; ++xi) {
    const float* Vx = V + int64_t(xi) * d.C * Tp;
    const float* Ux = U + int64_t(xi) * d.C * Op;
    float* Mx = M + int64_t(xi) * Tp * Op;
    if constexpr (kL != 16) {
      if (cl) wino::gemm_tiles<true>(T, d.C, Vx, d.C, Ux, Op, Mx);
      else wino::gemm_tiles<false>(T, d.C, Vx, Tp, Ux, Op, Mx);
      continue;
    }
    if (wide) gemm_blocks<7, 4>(d, cl, Vx, Ux, Mx);
    else if (T % 8 == 0) gemm_blocks<8, 2>(d, cl, Vx, Ux, Mx);
    else if (by7) gemm_blocks<7, 2>(d, cl, Vx, Ux, Mx);
    else if (cl) gemm_blocks<8, 2>(d, cl, Vx, Ux, Mx);
    else gemm_blocks<wino::kMR, wino::kNV>(d, cl, Vx, Ux, Mx);
  }
}

// One sample: y [O][Ho][Wo] from its padded input xw, with V and M as scratch.
inline void forward_sample(const Shape& d, const float* xw, const float* U, float* V, float* M, float* y) {
  const int64_t T = ntiles(d), Tp = tp(d), Op = op(d);
  if (channels_last(d)) {
    to_channels_last(d, xw, M);  // M is free until the GEMMs
    input_transform_cl(d, M, V);
  } else {
    input_transform(d, xw, V);
  }
  gemms(d, channels_last(d), V, U, M);
  // Output transform, channels in lanes; each tile's 4x4 pixels x 16 channels are stored straight
  // into y (wino::store_block4x4).
  const int64_t ms = Tp * Op, tw = tiles_w(d);
  for (int64_t t = 0; t < T; ++t) {
    const int i4 = 4 * int(t / tw), j4 = 4 * int(t % tw);
    for (int64_t o = 0; o < d.O; o += kL) {
      const float* m = M + t * Op + o;
      batch s[4][6];  // s[a][b] = (A^T m)[a][b]
#pragma GCC unroll 6
      for (int b = 0; b < 6; ++b) {
        batch col[6], r[4];
#pragma GCC unroll 6
        for (int a = 0; a < 6; ++a) col[a] = batch::load_aligned(m + (a * 6 + b) * ms);
        at6(col, r);
#pragma GCC unroll 4
        for (int a = 0; a < 4; ++a) s[a][b] = r[a];
      }
      batch px[16];  // px[4a+b] = pixel (a, b) of the tile, channels in lanes
#pragma GCC unroll 4
      for (int a = 0; a < 4; ++a) at6(s[a], px + 4 * a);
      wino::store_block4x4(d, px, y, o, i4, j4);
    }
  }
}

// xw[c][h+1][w+1] = row (c, h) as written by fill(c, h, dst) (W floats); the zero border and
// the over-read room are cleared once per call by clear_tiles (as in winograd.h).
inline void clear_tiles(const Shape& d, float* xw) { std::memset(xw, 0, sizeof(float) * xw_floats(d)); }
template <class Fill>
inline void pad_tiles(const Shape& d, float* xw, Fill&& fill) {
  const int Hw = hw_(d), Ww = ww_(d);
  for (int c = 0; c < d.C; ++c)
    for (int h = 0; h < d.H; ++h) fill(c, h, xw + (int64_t(c) * Hw + h + 1) * Ww + 1);
}

// Samples [b0, b1) in order, as conv::forward_range (scratch: this slice's slice_floats).
template <class Fill, class Epi>
inline void forward_range(const Shape& d, const float* U, float* y, int64_t b0, int64_t b1, float* scratch, Fill&& fill,
                          Epi&& epi) {
  float* xw = scratch;
  float* V = xw + xw_floats(d);
  float* M = V + v_floats(d);
  const int64_t ys = int64_t(d.O) * d.Ho * d.Wo;
  clear_tiles(d, xw);
  for (int64_t b = b0; b < b1; ++b) {
    pad_tiles(d, xw, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    forward_sample(d, xw, U, V, M, y + b * ys);
    epi(b);
  }
}

}  // namespace ddpm::wino4
