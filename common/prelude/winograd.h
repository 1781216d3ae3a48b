// Winograd F(2x2, 3x3) convolutions for the 3x3, stride-1, "same" layers (Lavin & Gray 2016):
// each 2x2 output tile is A^T [ (G g G^T) . (B^T d B) ] A, so the channel sums become 16
// independent GEMMs (one per position xi of the 4x4 transformed tile) with 2.25x fewer
// multiplies than the direct convolution in conv.h. Used for the forward pass and for the
// stride-1 data gradient (the forward pass of dy with the flipped filter); the filter gradient
// is in winograd_wgrad.h.
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1)
//   th x tw tiles (T = th*tw), th = ceil(Ho/2); the padded input xw is [C][2th+2][2tw+2].
//   U [16][C][Op]   transformed filter, output channels in lanes (Op = O rounded up to kOB = 2 kL).
//   V [16][C][Tp]   transformed input, tiles contiguous (Tp = T + kTileSlack).
//   M [16][Tp][Op]  the 16 GEMM results, output channels contiguous.
//   The output transform takes 2x2 tiles (a 4x4 pixel block) at a time, transposes the block's
//   16 pixels x kL channels in registers and stores it straight into y [O][Ho][Wo].
// Register blocks of the GEMMs per width (gemm_block: MR tiles x NV channel vectors): 14 x 2 or
// 7 x 4 with AVX-512's 32 registers; 6 x 2 with 16 (AVX2, SSE): 12 accumulators, 2 filter vectors
// and the broadcast, as the 6 x 16 AVX2 kernels of BLIS and libxsmm.
// Determinism: fixed loops only; each output element is one fixed sequence of operations.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "conv.h"
#include "simd_shim.h"

namespace ddpm::wino {

using batch = simd::batch;
using conv::Shape;
inline constexpr int kL = static_cast<int>(simd::kLanes);
// GEMM register block: kMR tiles x kNV channel vectors (the default; gemms() picks per shape).
inline constexpr int kMR = kL == 16 ? 14 : 6, kNV = conv::kGradNV, kOB = conv::kGradOB;
inline constexpr int kTileSlack = 16;  // >= the largest MR - 1: the last block's tiles read it
static_assert(kTileSlack >= kMR - 1 && kTileSlack >= 7 - 1);
using simd::align_floats;
using simd::max_over_widths;

inline bool applies(const Shape& d) {
  return d.K == 3 && d.s == 1 && d.p == 1 && d.Ho == d.H && d.Wo == d.W && d.O >= 16;
}
// Where it beats conv.h's direct kernel (bench_conv, 1 thread): 1.3-1.6x at 14x14 and 28x28 with
// 32-128 input channels; slower at 7x7 (16 tiles fill 28 register rows, transforms use 4 of 16
// lanes) and for the 1-channel stem (the transforms outweigh the 9-tap GEMM).
inline bool worthwhile(const Shape& d) { return applies(d) && d.Ho >= 14 && d.C >= 16; }

inline int tiles_h(const Shape& d) { return (d.Ho + 1) / 2; }
inline int tiles_w(const Shape& d) { return (d.Wo + 1) / 2; }
inline int64_t ntiles(const Shape& d) { return int64_t(tiles_h(d)) * tiles_w(d); }
inline int64_t tp(const Shape& d) { return ntiles(d) + kTileSlack; }
// Output channels padded to the channel block at width L (the same as conv.h's filter gradient,
// whose transposed dy the filter gradients read).
template <int L>
constexpr int64_t op_w(const Shape& d) { return conv::grad_out_pad_w<L>(d); }
inline int64_t op(const Shape& d) { return op_w<kL>(d); }
inline int hw_(const Shape& d) { return 2 * tiles_h(d) + 2; }
// Row length of xw: the 2tw+2 columns the tiles read, rounded to 16, plus room for the 32-float
// loads of even_lanes (two AVX-512 vectors; narrower widths read less).
inline int ww_(const Shape& d) { return int(align_floats(2 * tiles_w(d) + 2)) + 32; }

inline int64_t filter_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(16 * d.C * op_w<L>(d)); });
}
inline int64_t xw_floats(const Shape& d) { return align_floats(int64_t(d.C) * hw_(d) * ww_(d)); }
inline int64_t v_floats(const Shape& d) { return align_floats(16 * d.C * tp(d)); }
inline int64_t m_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(16 * tp(d) * op_w<L>(d)); });
}
// Scratch of one slice: xw, V, M.
inline int64_t slice_floats(const Shape& d) { return xw_floats(d) + v_floats(d) + m_floats(d); }

// U[xi][c][o] = (G g G^T)[xi] for g = w[o][c] (or, with flip, the data-gradient filter
// w[c][o][2-kh][2-kw] of the convolution with d.C = its O and d.O = its C; see conv::pack_filter),
// for N x N transformed tiles: gcol(g, u) computes the N values u = G g of 3 values g. Output
// channels run along the lanes (channels O .. Op-1 come out zero). Shared with winograd4.h.
// Input channels [c0, c1) only (c1 < 0: to C), so that callers can split the work by channel.
template <int N, class GCol>
inline void pack_filter_tiles(const Shape& d, const float* w, bool flip, float* U, GCol&& gcol, int c0 = 0, int c1 = -1) {
  const int64_t Op = op(d);
  for (int c = c0; c < (c1 < 0 ? d.C : c1); ++c)
    for (int64_t o0 = 0; o0 < Op; o0 += kL) {
      batch g[3][3], t[3][N];  // t[j] = G g[.][j] (column j of G g)
      for (int kh = 0; kh < 3; ++kh)
        for (int kw = 0; kw < 3; ++kw) {
          alignas(64) float lane[kL] = {};
          for (int l = 0; l < kL && o0 + l < d.O; ++l) {
            const int64_t o = o0 + l;
            lane[l] = flip ? w[((int64_t(c) * d.O + o) * 3 + (2 - kh)) * 3 + (2 - kw)] : w[((o * d.C + c) * 3 + kh) * 3 + kw];
          }
          g[kh][kw] = batch::load_aligned(lane);
        }
      for (int j = 0; j < 3; ++j) {
        const batch col[3] = {g[0][j], g[1][j], g[2][j]};
        gcol(col, t[j]);
      }
      for (int i = 0; i < N; ++i) {  // row i of (G g) G^T
        const batch row[3] = {t[0][i], t[1][i], t[2][i]};
        batch u[N];
        gcol(row, u);
        for (int j = 0; j < N; ++j) u[j].store_aligned(U + (int64_t(i * N + j) * d.C + c) * Op + o0);
      }
    }
}

// F(2x2,3x3): G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
inline void pack_filter(const Shape& d, const float* w, bool flip, float* U, int c0 = 0, int c1 = -1) {
  pack_filter_tiles<4>(
      d, w, flip, U,
      [](const batch g[3], batch u[4]) {
        const batch h(0.5f), a = g[0] + g[2];
        u[0] = g[0];
        u[1] = h * (a + g[1]);
        u[2] = h * (a - g[1]);
        u[3] = g[2];
      },
      c0, c1);
}

// The even lanes of the 32 floats at p: p[0], p[2], ..., p[30].
inline batch even_lanes(const float* p) {
#if defined(__AVX512F__)
  if constexpr (kL == 16) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16));
  }
#endif
  alignas(64) float t[kL];
  for (int l = 0; l < kL; ++l) t[l] = p[2 * l];
  return batch::load_aligned(t);
}

// Lanes [0, tw) hold p[0], p[2], ..., p[2tw-2] and lanes [tw, 2tw) hold q[0], q[2], ...: two rows
// of tiles in one vector, for rows of at most 8 tiles (one 16-float load per row). The permutation
// is built once per transform.
struct EvenLanes2 {
  int tw;
#if defined(__AVX512F__)
  __m512i idx;
#endif
  explicit EvenLanes2(int tw_) : tw(tw_) {
#if defined(__AVX512F__)
    alignas(64) int ix[16];
    for (int l = 0; l < 16; ++l) ix[l] = l < tw ? 2 * l : l < 2 * tw ? 16 + 2 * (l - tw) : 0;
    idx = _mm512_load_si512(ix);
#endif
  }
  batch operator()(const float* p, const float* q) const {
#if defined(__AVX512F__)
    if constexpr (kL == 16) return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(q));
#endif
    alignas(64) float t[kL] = {};
    for (int l = 0; l < kL && l < 2 * tw; ++l) t[l] = l < tw ? p[2 * l] : q[2 * (l - tw)];
    return batch::load_aligned(t);
  }
};

// The transform of one vector of tiles: rows r0 (and r1, when two rows share the vector) of
// plane xc, tiles from column 2*j0; `n` tiles are stored from dst (V[0][c][first tile]).
template <class Load>
inline void transform_tiles(Load&& load, float* dst, int64_t xstride, int n) {
  batch t[4][4];
#pragma GCC unroll 4
  for (int b = 0; b < 4; ++b) {  // t = B^T d (over rows a), one column b at a time
    const batch d0 = load(0, b), d1 = load(1, b), d2 = load(2, b), d3 = load(3, b);
    t[0][b] = d0 - d2;
    t[1][b] = d1 + d2;
    t[2][b] = d2 - d1;
    t[3][b] = d1 - d3;
  }
#pragma GCC unroll 4
  for (int a = 0; a < 4; ++a) {  // v = t B (over columns b)
    simd::store_partial(dst + (a * 4 + 0) * xstride, t[a][0] - t[a][2], n);
    simd::store_partial(dst + (a * 4 + 1) * xstride, t[a][1] + t[a][2], n);
    simd::store_partial(dst + (a * 4 + 2) * xstride, t[a][2] - t[a][1], n);
    simd::store_partial(dst + (a * 4 + 3) * xstride, t[a][1] - t[a][3], n);
  }
}

// V[xi][c][t] = (B^T d B)[xi] for the 4x4 input patch d of tile t (rows 2i.., columns 2j..).
// Tiles run along the lanes: 16 of a tile row at a time, or two whole rows of up to 7 tiles.
inline void input_transform(const Shape& d, const float* xw, float* V) {
  const int th = tiles_h(d), tw = tiles_w(d), Hw = hw_(d), Ww = ww_(d);
  const int64_t Tp = tp(d), xstride = int64_t(d.C) * Tp;  // V[xi] is xstride apart
  const EvenLanes2 two(tw);
  for (int c = 0; c < d.C; ++c) {
    const float* xc = xw + int64_t(c) * Hw * Ww;
    float* vc = V + int64_t(c) * Tp;
    if (2 * tw <= kL) {
      for (int i = 0; i < th; i += 2) {
        // Row i+1 past the last tile row reads zero padding rows; those lanes are not stored.
        const float* x0 = xc + int64_t(2 * i) * Ww;
        const float* x1 = x0 + 2 * Ww;
        transform_tiles([&](int a, int b) { return two(x0 + a * Ww + b, x1 + a * Ww + b); },
                        vc + int64_t(i) * tw, xstride, tw * std::min(2, th - i));
      }
      continue;
    }
    for (int i = 0; i < th; ++i)
      for (int j0 = 0; j0 < tw; j0 += kL) {
        const float* x0 = xc + int64_t(2 * i) * Ww + 2 * j0;
        transform_tiles([&](int a, int b) { return even_lanes(x0 + a * Ww + b); }, vc + int64_t(i) * tw + j0, xstride,
                        std::min(kL, tw - j0));
      }
  }
}

// The padded input with channels contiguous, for the channels-last transforms (here and in
// winograd4.h): xl[(r * cols + x) * C + c] = xw[(c * Hw + r) * Ww + x] for rows r < rows and
// columns x < cols (C and cols multiples of kL, cols <= Ww). kL x kL blocks transposed in registers.
inline void to_channels_last(int C, int Hw, int Ww, int rows, int cols, const float* xw, float* xl) {
  const int64_t plane = int64_t(Hw) * Ww;
  for (int c0 = 0; c0 < C; c0 += kL)
    for (int r = 0; r < rows; ++r)
      for (int x0 = 0; x0 < cols; x0 += kL) {
        batch t[kL];
#pragma GCC unroll 16
        for (int l = 0; l < kL; ++l) t[l] = batch::load_unaligned(xw + (c0 + l) * plane + int64_t(r) * Ww + x0);
        simd::transpose(t);
#pragma GCC unroll 16
        for (int l = 0; l < kL; ++l) t[l].store_aligned(xl + (int64_t(r) * cols + x0 + l) * C + c0);
      }
}

// The channels-last input path (C a multiple of kL; used by the filter gradient, winograd_wgrad.h):
// Vc [16][Tp][C] (channels contiguous) from xl [(2th+2) * xl_cols][C]. The column transforms
// B^T d of a tile row are shared by neighbouring tiles (tile j's columns 2, 3 are tile j+1's 0, 1).
inline constexpr int kMaxCols = 66;  // input columns a tile row reads: widths up to 64
inline bool channels_last(const Shape& d) { return d.C % kL == 0 && 2 * tiles_w(d) + 2 <= kMaxCols; }
template <int L>
constexpr int xl_cols_w(const Shape& d) { return int(simd::round_up(2 * tiles_w(d) + 2, L)); }
inline int xl_cols(const Shape& d) { return xl_cols_w<kL>(d); }
inline int64_t xl_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(int64_t(d.C) * (2 * tiles_h(d) + 2) * xl_cols_w<L>(d)); });
}

inline void input_transform_cl(const Shape& d, const float* xl, float* Vc) {
  const int th = tiles_h(d), tw = tiles_w(d), cols = xl_cols(d), ncol = 2 * tw + 2;
  const int64_t C = d.C, xs = tp(d) * C;
  alignas(64) batch cb[kMaxCols * 4];  // cb[4x + a] = (B^T d)[a] of column x
  for (int i = 0; i < th; ++i)
    for (int64_t c = 0; c < C; c += kL) {
      const float* x0 = xl + int64_t(2 * i) * cols * C + c;
      for (int x = 0; x < ncol; ++x) {
        const batch d0 = batch::load_aligned(x0 + (0 * int64_t(cols) + x) * C), d1 = batch::load_aligned(x0 + (1 * int64_t(cols) + x) * C),
                    d2 = batch::load_aligned(x0 + (2 * int64_t(cols) + x) * C), d3 = batch::load_aligned(x0 + (3 * int64_t(cols) + x) * C);
        cb[4 * x + 0] = d0 - d2;
        cb[4 * x + 1] = d1 + d2;
        cb[4 * x + 2] = d2 - d1;
        cb[4 * x + 3] = d1 - d3;
      }
      for (int j = 0; j < tw; ++j) {
        float* v0 = Vc + (int64_t(i) * tw + j) * C + c;
        const batch* t = cb + 4 * (2 * j);  // t[4b + a] = (B^T d)[a][b]
#pragma GCC unroll 4
        for (int a = 0; a < 4; ++a) {
          (t[a] - t[8 + a]).store_aligned(v0 + (a * 4 + 0) * xs);
          (t[4 + a] + t[8 + a]).store_aligned(v0 + (a * 4 + 1) * xs);
          (t[8 + a] - t[4 + a]).store_aligned(v0 + (a * 4 + 2) * xs);
          (t[4 + a] - t[12 + a]).store_aligned(v0 + (a * 4 + 3) * xs);
        }
      }
    }
}

// M[xi][t][o-block] = sum over c of V(t, c) * U[xi][c][o-block] for tiles t0 .. t0+MR-1 and
// NV vectors of output channels, for either layout of the transformed input: tiles contiguous
// (V [xi][c][t]; `stride` = Tp between channels) or channels last (Vc [xi][t][c]; `stride` = C
// between tiles, each register row broadcasting from its own tile's channel row).
template <int MR, int NV, bool ChannelsLast = false>
inline void gemm_block(int C, const float* V, int64_t stride, const float* U, int64_t Op, float* M) {
  const float* vr[MR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) vr[r] = V + (ChannelsLast ? int64_t(r) * stride : 0);
  batch acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = batch(0.f);
  for (int c = 0; c < C; ++c) {
    batch bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = batch::load_aligned(U + int64_t(c) * Op + v * kL);
    const float* vc = V + int64_t(c) * stride;
    asm("" : "+r"(vc));  // as in conv::fwd_kernel: fold each load into its FMA
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      batch a(ChannelsLast ? vr[r][c] : vc[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(a, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(M + r * Op + v * kL);
}

// One xi's GEMM over tiles [0, T) with 16-register blocks (AVX2, SSE, NEON): whole blocks of kMR
// tiles, then one block of the T % kMR left (no idle register rows: 49 tiles are 8 x 6 + 1, not
// 9 x 6, and the 4 tiles of a 7x7 map one block of 4, not 6). V is [C][Tp] (stride = Tp between
// channels) or, ChannelsLast, [Tp][C] (stride = C between tiles).
template <bool ChannelsLast>
inline void gemm_tiles(int64_t T, int C, const float* V, int64_t stride, const float* U, int64_t Op, float* M) {
  const int64_t tstep = ChannelsLast ? stride : 1, whole = T - T % kMR;
  for (int64_t t0 = 0; t0 < whole; t0 += kMR)
    for (int64_t ob = 0; ob < Op; ob += kOB)
      gemm_block<kMR, kNV, ChannelsLast>(C, V + t0 * tstep, stride, U + ob, Op, M + t0 * Op + ob);
  if (whole == T) return;
  const float* v = V + whole * tstep;
  float* m = M + whole * Op;
  for (int64_t ob = 0; ob < Op; ob += kOB) switch (T - whole) {
      case 1: gemm_block<1, kNV, ChannelsLast>(C, v, stride, U + ob, Op, m + ob); break;
      case 2: gemm_block<2, kNV, ChannelsLast>(C, v, stride, U + ob, Op, m + ob); break;
      case 3: gemm_block<3, kNV, ChannelsLast>(C, v, stride, U + ob, Op, m + ob); break;
      case 4: gemm_block<4, kNV, ChannelsLast>(C, v, stride, U + ob, Op, m + ob); break;
      default: gemm_block<5, kNV, ChannelsLast>(C, v, stride, U + ob, Op, m + ob); break;
    }
}
static_assert(kL == 16 || kMR == 6, "gemm_tiles' remainder cases are written for blocks of 6");

// All 16 GEMMs of a sample. AVX-512: blocks of 14 tiles x 32 channels, or 7 tiles x 64 channels
// when that wastes fewer register rows (14x14 outputs: 49 tiles = 7 x 7, not 4 x 14 with 7 idle).
// 16 registers: 6 tiles x 2 vectors.
inline void gemms(const Shape& d, const float* V, const float* U, float* M) {
  const int64_t T = ntiles(d), Tp = tp(d), Op = op(d);
  const bool wide = kL == 16 && Op % 64 == 0 && T % 7 == 0 && T % 14 != 0;
  for (int xi = 0; xi < 16; ++xi) {
    const float* Vx = V + int64_t(xi) * d.C * Tp;
    const float* Ux = U + int64_t(xi) * d.C * Op;
    float* Mx = M + int64_t(xi) * Tp * Op;
    if (wide) {
      for (int64_t t0 = 0; t0 < T; t0 += 7)
        for (int64_t ob = 0; ob < Op; ob += 4 * kL) gemm_block<7, 4>(d.C, Vx + t0, Tp, Ux + ob, Op, Mx + t0 * Op + ob);
    } else if constexpr (kL != 16) {
      gemm_tiles<false>(T, d.C, Vx, Tp, Ux, Op, Mx);
    } else {
      for (int64_t t0 = 0; t0 < T; t0 += kMR)
        for (int64_t ob = 0; ob < Op; ob += kOB) gemm_block<kMR, kNV>(d.C, Vx + t0, Tp, Ux + ob, Op, Mx + t0 * Op + ob);
    }
  }
}

// Stores a 4x4 pixel block at (i4, j4) of output channels [o, o + kL) into y [O][Ho][Wo]:
// px[4a + b] holds pixel (a, b), channels in lanes. With 16 lanes an in-register transpose makes
// each channel's block one vector (row a = 128-bit lane a); with 8, two 8x8 transposes make each
// channel's rows 0-1 and 2-3 one vector each; rows and columns past the output and channels past
// d.O are not stored.
inline void store_block4x4(const Shape& d, batch (&px)[16], float* y, int64_t o, int i4, int j4) {
  const int64_t HW = int64_t(d.Ho) * d.Wo;
  const int rows = std::min(4, d.Ho - i4), cols = std::min(4, d.Wo - j4), on = int(std::min<int64_t>(kL, d.O - o));
#if defined(__AVX512F__)
  if constexpr (kL == 16) {  // (AVX-512: batch is 16 lanes, so px is one kLanes x kLanes block)
    simd::transpose(px);
    for (int l = 0; l < on; ++l) {
      float* dst = y + (o + l) * HW + int64_t(i4) * d.Wo + j4;
      if (rows == 4 && cols == 4) {
        // Maskz extracts and a masked store: GCC 12's plain extract and cast trip
        // -Wmaybe-uninitialized (as in simd_shim.h's transpose).
        _mm_storeu_ps(dst, _mm512_maskz_extractf32x4_ps(0xF, px[l], 0));
        _mm_storeu_ps(dst + d.Wo, _mm512_maskz_extractf32x4_ps(0xF, px[l], 1));
        _mm_storeu_ps(dst + 2 * d.Wo, _mm512_maskz_extractf32x4_ps(0xF, px[l], 2));
        _mm_storeu_ps(dst + 3 * d.Wo, _mm512_maskz_extractf32x4_ps(0xF, px[l], 3));
        continue;
      }
      for (int a = 0; a < rows; ++a) simd::store_lanes(dst + a * d.Wo, px[l], 4 * a, cols);
    }
    return;
  }
#endif
#if defined(__AVX__) && !defined(__AVX512F__)
  if constexpr (kL == 8) {
    batch lo[8], hi[8];  // pixels 0-7 (rows 0, 1) and 8-15 (rows 2, 3)
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) lo[k] = px[k], hi[k] = px[8 + k];
    simd::transpose(lo);
    simd::transpose(hi);
    for (int l = 0; l < on; ++l) {
      float* dst = y + (o + l) * HW + int64_t(i4) * d.Wo + j4;
      if (rows == 4 && cols == 4) {
        const __m256 a = lo[l], b = hi[l];
        _mm_storeu_ps(dst, _mm256_castps256_ps128(a));
        _mm_storeu_ps(dst + d.Wo, _mm256_extractf128_ps(a, 1));
        _mm_storeu_ps(dst + 2 * d.Wo, _mm256_castps256_ps128(b));
        _mm_storeu_ps(dst + 3 * d.Wo, _mm256_extractf128_ps(b, 1));
        continue;
      }
      for (int a = 0; a < rows; ++a) simd::store_lanes(dst + a * d.Wo, a < 2 ? lo[l] : hi[l], 4 * (a % 2), cols);
    }
    return;
  }
#endif
  alignas(64) float t[16][kL];
  for (int k = 0; k < 16; ++k) px[k].store_aligned(t[k]);
  for (int l = 0; l < on; ++l)
    for (int a = 0; a < rows; ++a)
      for (int b = 0; b < cols; ++b) y[(o + l) * HW + int64_t(i4 + a) * d.Wo + j4 + b] = t[4 * a + b][l];
}

// One sample: y [O][Ho][Wo] from its padded input xw, with V and M as scratch.
inline void forward_sample(const Shape& d, const float* xw, const float* U, float* V, float* M, float* y) {
  const int64_t Tp = tp(d), Op = op(d);
  input_transform(d, xw, V);
  gemms(d, V, U, M);
  // Output transform, channels in lanes, for 2x2 tiles at a time: their 4x4 pixels x 16 channels
  // are stored straight into y (store_block4x4). Tiles past the last row or column are zero.
  const int64_t ms = Tp * Op;
  const int th = tiles_h(d), tw = tiles_w(d);
  for (int i = 0; i < th; i += 2)
    for (int j = 0; j < tw; j += 2)
      for (int64_t o = 0; o < d.O; o += kL) {
        batch px[16];  // px[4a+b] = pixel (a, b) of the 4x4 block
        for (int di = 0; di < 2; ++di)
          for (int dj = 0; dj < 2; ++dj) {
            batch* q = px + 8 * di + 2 * dj;
            if (i + di >= th || j + dj >= tw) {
              q[0] = q[1] = q[4] = q[5] = batch(0.f);
              continue;
            }
            const float* m = M + (int64_t(i + di) * tw + j + dj) * Op + o;
            batch s[2][4];
            for (int b = 0; b < 4; ++b) {
              const batch m0 = batch::load_aligned(m + (0 * 4 + b) * ms), m1 = batch::load_aligned(m + (1 * 4 + b) * ms),
                          m2 = batch::load_aligned(m + (2 * 4 + b) * ms), m3 = batch::load_aligned(m + (3 * 4 + b) * ms);
              s[0][b] = m0 + m1 + m2;
              s[1][b] = m1 - m2 - m3;
            }
            for (int a = 0; a < 2; ++a) {
              q[4 * a] = s[a][0] + s[a][1] + s[a][2];
              q[4 * a + 1] = s[a][1] - s[a][2] - s[a][3];
            }
          }
        store_block4x4(d, px, y, o, 2 * i, 2 * j);
      }
}

// xw[c][h+1][w+1] = row (c, h) as written by fill(c, h, dst) (W floats). Everything else in xw
// (the zero border and the over-read room) is cleared once per call by clear_tiles: filling a
// sample never writes outside the interior, so it stays zero for the slice's other samples.
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

}  // namespace ddpm::wino
