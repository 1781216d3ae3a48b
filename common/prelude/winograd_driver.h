// The one Winograd F(MxM, 3x3) driver for the 3x3, stride-1, "same" layers (Lavin & Gray 2016)
// behind winograd.h (F(2x2,3x3)) and winograd4.h (F(4x4,3x3)): each MxM output tile is
// A^T [ (G g G^T) . (B^T d B) ] A for its NxN input patch d (N = M + 2), so the channel sums become
// N*N independent GEMMs, one per position xi of the transformed tile. Here: the forward pass (also
// the stride-1 data gradient, the forward pass of dy with the flipped filter); the filter gradient
// is in winograd_driver_wgrad.h. Written once over a transform traits type F (wino::F2x2,
// wino4::F4x4) that transforms one column or row of a tile, channels in the lanes:
//   F::M, F::N            output and input tile edges (N = M + 2; M divides 4)
//   F::g(g[3], u[N])      u = G g     (filter)          F::bt(z[N], r[N])   r = B^T z  (input)
//   F::at(m[N], y[M])     y = A^T m   (output)          F::a(y[M], w[N])    w = A y    (output gradient)
//   F::gt(s[N], u[3])     u = G^T s   (filter gradient)
//
// Dimension legend (one sample; d = conv::Shape with K = 3, s = 1, p = 1; NN = N*N)
//   th x tw tiles (T = th*tw), th = ceil(Ho/M).
//   xw [C][Hw][Ww]   the padded input: Hw = the M th + 2 rows the tiles read and M zero rows (a
//                    phantom tile row when two rows share a vector); Ww = the M tw + 2 columns the
//                    tiles read, rounded to 16; then kOverRead floats.
//   xl [M th + 2][Ww][C]  the padded input, channels contiguous (the channels-last path).
//   U [NN][C][Op]    transformed filter, output channels in lanes (Op = O rounded up to kOB = 2 kL).
//   V [NN][C][Tp]    transformed input, tiles contiguous (Tp = T + kTileSlack), or on the
//                    channels-last path (C a multiple of kL, at most kMaxCols columns) Vc [NN][Tp][C].
//   P [NN][Tp][Op]   the GEMM products, output channels contiguous; the output transform stores
//                    4x4 pixel blocks ((4/M)x(4/M) tiles) of kL channels straight into y [O][Ho][Wo].
// Every *_floats size is width-independent (max_over_widths), so the compiler plans scratch without
// knowing the width; the layouts (op, kRows, register blocks) are the module's width's.
// Determinism: fixed loops only; each output element is one fixed sequence of operations.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "conv.h"
#include "simd_shim.h"
#include "winograd_gemm.h"

namespace ddpm::winograd {

using batch = simd::batch;
using conv::Shape;
using simd::align_floats;
using simd::max_over_widths;
inline constexpr int kTileSlack = 16;  // >= the largest MR - 1: the last block's tiles read it
static_assert(kTileSlack >= kMR - 1 && kTileSlack >= 8 - 1);
inline constexpr int kMaxCols = 66;   // input columns of a tile row on the channels-last path
inline constexpr int kOverRead = 48;  // floats after xw that the lane gathers may read (not use)
template <class F>
inline constexpr int kNN = F::N * F::N;  // GEMMs per sample

inline bool applies(const Shape& d) {
  return d.K == 3 && d.s == 1 && d.p == 1 && d.Ho == d.H && d.Wo == d.W && d.O >= 16;
}

template <class F>
inline int tiles_h(const Shape& d) { return (d.Ho + F::M - 1) / F::M; }
template <class F>
inline int tiles_w(const Shape& d) { return (d.Wo + F::M - 1) / F::M; }
template <class F>
inline int64_t ntiles(const Shape& d) { return int64_t(tiles_h<F>(d)) * tiles_w<F>(d); }
template <class F>
inline int64_t tp(const Shape& d) { return ntiles<F>(d) + kTileSlack; }
// Output channels padded to the channel block at width L (the same as conv.h's filter gradient,
// whose transposed dy the filter gradients read).
template <int L>
constexpr int64_t op_w(const Shape& d) { return conv::grad_out_pad_w<L>(d); }
inline int64_t op(const Shape& d) { return op_w<kL>(d); }
template <class F>
inline int xl_rows(const Shape& d) { return F::M * tiles_h<F>(d) + 2; }
template <class F>
inline int hw_(const Shape& d) { return xl_rows<F>(d) + F::M; }
template <class F>
inline int ww_(const Shape& d) { return int(align_floats(F::M * tiles_w<F>(d) + 2)); }

template <class F>
inline int64_t filter_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(kNN<F> * d.C * op_w<L>(d)); });
}
template <class F>
inline int64_t xw_floats(const Shape& d) { return align_floats(int64_t(d.C) * hw_<F>(d) * ww_<F>(d) + kOverRead); }
template <class F>
inline int64_t v_floats(const Shape& d) { return align_floats(kNN<F> * d.C * tp<F>(d)); }
template <class F>
inline int64_t p_floats(const Shape& d) {
  return max_over_widths([&]<int L>() { return align_floats(kNN<F> * tp<F>(d) * op_w<L>(d)); });
}
template <class F>
inline int64_t xl_floats(const Shape& d) { return align_floats(int64_t(d.C) * xl_rows<F>(d) * ww_<F>(d)); }
// Scratch of one slice: xw, V, P (which first holds xl, see forward_sample).
template <class F>
inline int64_t slice_floats(const Shape& d) {
  return xw_floats<F>(d) + v_floats<F>(d) + std::max(p_floats<F>(d), xl_floats<F>(d));
}

// The channels-last input path at this width, and at every width (C a multiple of 16, so of every
// kL): the planning predicate, which must not depend on the width the module will be built for.
template <class F>
inline bool channels_last(const Shape& d) { return d.C % kL == 0 && F::M * tiles_w<F>(d) + 2 <= kMaxCols; }
template <class F>
inline bool channels_last_any_width(const Shape& d) { return d.C % simd::kWidest == 0 && F::M * tiles_w<F>(d) + 2 <= kMaxCols; }

// U[xi][c][o] = (G g G^T)[xi] for g = w[o][c] (or, with flip, the data-gradient filter
// w[c][o][2-kh][2-kw] of the convolution with d.C = its O and d.O = its C; see conv::pack_filter).
// Output channels run along the lanes (channels O .. Op-1 come out zero). Input channels
// [c0, c1) only (c1 < 0: to C), so that callers can split the work by channel.
template <class F>
inline void pack_filter(const Shape& d, const float* w, bool flip, float* U, int c0 = 0, int c1 = -1) {
  constexpr int N = F::N;
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
        F::g(col, t[j]);
      }
      for (int i = 0; i < N; ++i) {  // row i of (G g) G^T
        const batch row[3] = {t[0][i], t[1][i], t[2][i]};
        batch u[N];
        F::g(row, u);
        for (int j = 0; j < N; ++j) u[j].store_aligned(U + (int64_t(i * N + j) * d.C + c) * Op + o0);
      }
    }
}

// ---- tiles-in-lanes input transform (any C; rows wider than kMaxCols) ----

// Lanes [0, n) hold p[0], p[S], ..., p[S(n-1)] (one tile row; other lanes are not stored). AVX-512
// with S = 2: one permute of 32 floats (the columns past the row's end run into the next row, or
// into xw's kOverRead floats).
template <int S>
inline batch stride_lanes(const float* p, int n) {
#if defined(__AVX512F__)
  if constexpr (kL == 16 && S == 2) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16));
  }
#endif
  alignas(64) float t[kL] = {};
  for (int l = 0; l < n; ++l) t[l] = p[S * l];
  return batch::load_aligned(t);
}

// Lanes [0, tw) hold p[0], p[S], ..., p[S(tw-1)] and lanes [tw, 2tw) hold q[0], q[S], ...: two rows
// of tiles in one vector, for rows of at most 8 tiles. AVX-512: one permute of p's and q's first 16
// floats when S * 7 < 16, else one permute of 32 floats per row and a blend (built once per transform).
template <int S>
struct StrideLanes2 {
  static_assert(S * 7 < 32, "two 16-float loads per row");
  static constexpr bool kOnePermute = S * 7 < 16;
  int tw;
#if defined(__AVX512F__)
  __m512i idx;
  __mmask16 hi;
#endif
  explicit StrideLanes2(int tw_) : tw(tw_) {
#if defined(__AVX512F__)
    alignas(64) int ix[16];
    for (int l = 0; l < 16; ++l) ix[l] = l < tw ? S * l : l < 2 * tw ? (kOnePermute ? 16 : 0) + S * (l - tw) : 0;
    idx = _mm512_load_si512(ix);
    // (Only used when 2 tw <= 16; wider rows take the one-row path, and the shift must stay < 32.)
    hi = 2 * tw <= 16 ? static_cast<__mmask16>(((1u << (2 * tw)) - 1u) & ~((1u << tw) - 1u)) : __mmask16(0);
#endif
  }
  batch operator()(const float* p, const float* q) const {
#if defined(__AVX512F__)
    if constexpr (kL == 16 && kOnePermute) return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(q));
    if constexpr (kL == 16 && !kOnePermute) {
      const __m512 a = _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_loadu_ps(p + 16));
      const __m512 b = _mm512_permutex2var_ps(_mm512_loadu_ps(q), idx, _mm512_loadu_ps(q + 16));
      return _mm512_mask_blend_ps(hi, a, b);
    }
#endif
    alignas(64) float t[kL] = {};
    for (int l = 0; l < kL && l < 2 * tw; ++l) t[l] = l < tw ? p[S * l] : q[S * (l - tw)];
    return batch::load_aligned(t);
  }
};

// The transform of one vector of tiles (load(a, b) = input value (a, b) of each lane's NxN patch);
// `n` tiles are stored from dst (V[0][c][first tile]), V[xi] xstride apart.
template <class F, class Load>
inline void transform_tiles(Load&& load, float* dst, int64_t xstride, int n) {
  constexpr int N = F::N;
  alignas(64) float tt[N][N][kL];  // tt[a][b] = (B^T d)[a][b]
  for (int b = 0; b < N; ++b) {
    batch z[N], r[N];
#pragma GCC unroll 8
    for (int a = 0; a < N; ++a) z[a] = load(a, b);
    F::bt(z, r);
#pragma GCC unroll 8
    for (int a = 0; a < N; ++a) r[a].store_aligned(tt[a][b]);
  }
  for (int a = 0; a < N; ++a) {  // v = (B^T d) B, row a at a time
    batch z[N], r[N];
#pragma GCC unroll 8
    for (int b = 0; b < N; ++b) z[b] = batch::load_aligned(tt[a][b]);
    F::bt(z, r);
#pragma GCC unroll 8
    for (int b = 0; b < N; ++b) simd::store_partial(dst + (a * N + b) * xstride, r[b], n);
  }
}

// V[xi][c][t] = (B^T d B)[xi] for the NxN input patch d of tile t (rows M i.., columns M j..).
// Tiles run along the lanes: two whole rows of up to kL/2 tiles, or kL of a tile row at a time.
template <class F>
inline void input_transform(const Shape& d, const float* xw, float* V) {
  constexpr int M = F::M;
  const int th = tiles_h<F>(d), tw = tiles_w<F>(d), Hw = hw_<F>(d), Ww = ww_<F>(d);
  const int64_t Tp = tp<F>(d), xstride = int64_t(d.C) * Tp;
  const StrideLanes2<M> two(tw);
  for (int c = 0; c < d.C; ++c) {
    const float* xc = xw + int64_t(c) * Hw * Ww;
    float* vc = V + int64_t(c) * Tp;
    if (2 * tw <= kL) {
      for (int i = 0; i < th; i += 2) {
        // Row i+1 past the last tile row reads xw's zero rows; those lanes are not stored.
        const float* x0 = xc + int64_t(M * i) * Ww;
        const float* x1 = x0 + M * Ww;
        transform_tiles<F>([&](int a, int b) { return two(x0 + a * Ww + b, x1 + a * Ww + b); }, vc + int64_t(i) * tw,
                           xstride, tw * std::min(2, th - i));
      }
      continue;
    }
    for (int i = 0; i < th; ++i)
      for (int j0 = 0; j0 < tw; j0 += kL) {
        const int n = std::min(kL, tw - j0);
        const float* x0 = xc + int64_t(M * i) * Ww + M * j0;
        transform_tiles<F>([&](int a, int b) { return stride_lanes<M>(x0 + a * Ww + b, n); }, vc + int64_t(i) * tw + j0,
                           xstride, n);
      }
  }
}

// ---- channels-last input transform (C a multiple of kL) ----

// xl[(r * Ww + x) * C + c] = xw[(c * Hw + r) * Ww + x] for rows r < rows and columns x < cols,
// the ones the tiles read (C a multiple of kL; cols <= Ww, a multiple of kL). kL x kL blocks
// transposed in registers; the last block of a row stores only its columns below cols (at 14x14
// F(4x4) reads 18 of Ww = 32 columns).
inline void to_channels_last(int C, int Hw, int Ww, int rows, int cols, const float* xw, float* xl) {
  const int64_t plane = int64_t(Hw) * Ww;
  for (int c0 = 0; c0 < C; c0 += kL)
    for (int r = 0; r < rows; ++r)
      for (int x0 = 0; x0 < cols; x0 += kL) {
        batch t[kL];
#pragma GCC unroll 16
        for (int l = 0; l < kL; ++l) t[l] = batch::load_unaligned(xw + (c0 + l) * plane + int64_t(r) * Ww + x0);
        simd::transpose(t);
        float* dst = xl + (int64_t(r) * Ww + x0) * C + c0;
        const int n = cols - x0;
#pragma GCC unroll 16
        for (int l = 0; l < kL; ++l)  // (unrolled, so t stays in registers)
          if (l < n) t[l].store_aligned(dst + int64_t(l) * C);
      }
}
template <class F>
inline void to_channels_last(const Shape& d, const float* xw, float* xl) {
  to_channels_last(d.C, hw_<F>(d), ww_<F>(d), xl_rows<F>(d), F::M * tiles_w<F>(d) + 2, xw, xl);
}

// Vc[xi][t][c] = (B^T d B)[xi] for tile t's NxN patch d, kL channels at a time, from xl. The column
// transforms B^T d of a tile row are shared by neighbouring tiles (tile j's last two columns are
// tile j+1's first two), so they are computed once per column into cols [M tw + 2][N] (one channel
// vector each) and the row transforms read them from there.
template <class F>
inline void input_transform_cl(const Shape& d, const float* xl, float* Vc) {
  constexpr int M = F::M, N = F::N;
  const int th = tiles_h<F>(d), tw = tiles_w<F>(d), Ww = ww_<F>(d), ncol = M * tw + 2;
  const int64_t C = d.C, xs = tp<F>(d) * C;
  alignas(64) batch cols[kMaxCols * N];
  for (int i = 0; i < th; ++i)
    for (int64_t c = 0; c < C; c += kL) {
      const float* x0 = xl + int64_t(M * i) * Ww * C + c;
      for (int x = 0; x < ncol; ++x) {
        batch z[N];
#pragma GCC unroll 8
        for (int a = 0; a < N; ++a) z[a] = batch::load_aligned(x0 + (int64_t(a) * Ww + x) * C);
        F::bt(z, cols + N * x);
      }
      for (int j = 0; j < tw; ++j) {
        float* v0 = Vc + (int64_t(i) * tw + j) * C + c;
#pragma GCC unroll 8
        for (int a = 0; a < N; ++a) {
          batch z[N], r[N];
#pragma GCC unroll 8
          for (int b = 0; b < N; ++b) z[b] = cols[N * (M * j + b) + a];
          F::bt(z, r);
#pragma GCC unroll 8
          for (int b = 0; b < N; ++b) r[b].store_aligned(v0 + (a * N + b) * xs);
        }
      }
    }
}

// ---- GEMMs ----

// One xi's GEMM in MR x NV blocks; tiles past T (up to MR - 1 of them) read Tp's slack and land
// in P's. `cl`: V holds the channels-last Vc [Tp][C], else [C][Tp].
template <class F, int MR, int NV>
inline void gemm_blocks(const Shape& d, bool cl, const float* Vx, const float* Ux, float* Px) {
  const int64_t T = ntiles<F>(d), Tp = tp<F>(d), Op = op(d);
  for (int64_t t0 = 0; t0 < T; t0 += MR)
    for (int64_t ob = 0; ob < Op; ob += NV * kL) {
      if (cl) gemm_block<MR, NV, true>(d.C, Vx + t0 * d.C, d.C, Ux + ob, Op, Px + t0 * Op + ob);
      else gemm_block<MR, NV>(d.C, Vx + t0, Tp, Ux + ob, Op, Px + t0 * Op + ob);
    }
}

// All NN GEMMs of a sample. AVX-512: blocks that fit the tile count (7 x 64 channels when Op
// allows, as 14x14 F(2x2)'s and 28x28 F(4x4)'s 49 tiles would leave 7 of 56 rows of 14 x 2 idle;
// 8 x 2 on the channels-last path, whose rows each keep a pointer). 16 registers: gemm_tiles.
template <class F>
inline void gemms(const Shape& d, bool cl, const float* V, const float* U, float* P) {
  const int64_t T = ntiles<F>(d), Tp = tp<F>(d), Op = op(d);
  const bool by7 = T % 7 == 0 && T % 14 != 0, wide = by7 && Op % (4 * kL) == 0;
  for (int xi = 0; xi < kNN<F>; ++xi) {
    const float* Vx = V + int64_t(xi) * d.C * Tp;
    const float* Ux = U + int64_t(xi) * d.C * Op;
    float* Px = P + int64_t(xi) * Tp * Op;
    if constexpr (kL != 16) {
      gemm_tiles(T, Tp, d.C, cl, Vx, Ux, Op, Px);
      continue;
    }
    if (wide) gemm_blocks<F, 7, 4>(d, cl, Vx, Ux, Px);
    else if (T % 8 == 0) gemm_blocks<F, 8, 2>(d, cl, Vx, Ux, Px);
    else if (by7) gemm_blocks<F, 7, 2>(d, cl, Vx, Ux, Px);
    else if (cl) gemm_blocks<F, 8, 2>(d, cl, Vx, Ux, Px);
    else gemm_blocks<F, kMR, kNV>(d, cl, Vx, Ux, Px);
  }
}

// ---- output transform ----

// Stores a 4x4 pixel block at (i4, j4) of output channels [o, o + kL) into y [O][Ho][Wo]:
// px[4a + b] holds pixel (a, b), channels in lanes. With 16 lanes an in-register transpose makes
// each channel's block one vector (row a = 128-bit lane a); with 8, two 8x8 transposes make each
// channel's rows 0-1 and 2-3 one vector each; rows and columns past the output and channels past
// d.O are not stored.
inline void store_block4x4(const Shape& d, batch (&px)[16], float* y, int64_t o, int i4, int j4) {
  const int64_t HW = int64_t(d.Ho) * d.Wo;
  const int Wo = d.Wo;  // (a local: the stores to y may alias d)
  const int rows = std::min(4, d.Ho - i4), cols = std::min(4, Wo - j4), on = int(std::min<int64_t>(kL, d.O - o));
#if defined(__AVX512F__)
  if constexpr (kL == 16) {  // (AVX-512: batch is 16 lanes, so px is one kLanes x kLanes block)
    simd::transpose(px);
    for (int l = 0; l < on; ++l) {
      float* dst = y + (o + l) * HW + int64_t(i4) * Wo + j4;
      if (rows == 4 && cols == 4) {
        // Maskz extracts and a masked store: GCC 12's plain extract and cast trip
        // -Wmaybe-uninitialized (as in simd_shim.h's transpose). v: a register copy, as the
        // float stores may alias px (vector types may alias anything).
        const __m512 v = px[l];
        _mm_storeu_ps(dst, _mm512_maskz_extractf32x4_ps(0xF, v, 0));
        _mm_storeu_ps(dst + Wo, _mm512_maskz_extractf32x4_ps(0xF, v, 1));
        _mm_storeu_ps(dst + 2 * Wo, _mm512_maskz_extractf32x4_ps(0xF, v, 2));
        _mm_storeu_ps(dst + 3 * Wo, _mm512_maskz_extractf32x4_ps(0xF, v, 3));
        continue;
      }
      for (int a = 0; a < rows; ++a) simd::store_lanes(dst + a * Wo, px[l], 4 * a, cols);
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
      float* dst = y + (o + l) * HW + int64_t(i4) * Wo + j4;
      if (rows == 4 && cols == 4) {
        const __m256 a = lo[l], b = hi[l];
        _mm_storeu_ps(dst, _mm256_castps256_ps128(a));
        _mm_storeu_ps(dst + Wo, _mm256_extractf128_ps(a, 1));
        _mm_storeu_ps(dst + 2 * Wo, _mm256_castps256_ps128(b));
        _mm_storeu_ps(dst + 3 * Wo, _mm256_extractf128_ps(b, 1));
        continue;
      }
      for (int a = 0; a < rows; ++a) simd::store_lanes(dst + a * Wo, a < 2 ? lo[l] : hi[l], 4 * (a % 2), cols);
    }
    return;
  }
#endif
  alignas(64) float t[16][kL];
  for (int k = 0; k < 16; ++k) px[k].store_aligned(t[k]);
  for (int l = 0; l < on; ++l)
    for (int a = 0; a < rows; ++a)
      for (int b = 0; b < cols; ++b) y[(o + l) * HW + int64_t(i4 + a) * Wo + j4 + b] = t[4 * a + b][l];
}

// One sample: y [O][Ho][Wo] from its padded input xw, with V and P as scratch.
template <class F>
inline void forward_sample(const Shape& d, const float* xw, const float* U, float* V, float* P, float* y) {
  constexpr int M = F::M, N = F::N, R = 4 / M;  // R x R tiles make one 4x4 pixel block
  static_assert(R * M == 4);
  const bool cl = channels_last<F>(d);
  if (cl) {
    to_channels_last<F>(d, xw, P);  // P is free until the GEMMs
    input_transform_cl<F>(d, P, V);
  } else {
    input_transform<F>(d, xw, V);
  }
  gemms<F>(d, cl, V, U, P);
  // Output transform, channels in lanes; tiles past the last row or column are zero.
  const int64_t Op = op(d), ms = tp<F>(d) * Op;
  const int th = tiles_h<F>(d), tw = tiles_w<F>(d);
  for (int i = 0; i < th; i += R)
    for (int j = 0; j < tw; j += R)
      for (int64_t o = 0; o < d.O; o += kL) {
        batch px[16];  // px[4a+b] = pixel (a, b) of the 4x4 block
#pragma GCC unroll 2
        for (int di = 0; di < R; ++di)
#pragma GCC unroll 2
          for (int dj = 0; dj < R; ++dj) {
            batch* q = px + 4 * M * di + M * dj;  // q[4a+b] = pixel (a, b) of tile (i+di, j+dj)
            if (i + di >= th || j + dj >= tw) {
              for (int a = 0; a < M; ++a)
                for (int b = 0; b < M; ++b) q[4 * a + b] = batch(0.f);
              continue;
            }
            const float* m = P + (int64_t(i + di) * tw + j + dj) * Op + o;
            batch s[M][N];  // s[a][b] = (A^T m)[a][b]
#pragma GCC unroll 8
            for (int b = 0; b < N; ++b) {
              batch col[N], r[M];
#pragma GCC unroll 8
              for (int a = 0; a < N; ++a) col[a] = batch::load_aligned(m + (a * N + b) * ms);
              F::at(col, r);
#pragma GCC unroll 4
              for (int a = 0; a < M; ++a) s[a][b] = r[a];
            }
#pragma GCC unroll 4
            for (int a = 0; a < M; ++a) F::at(s[a], q + 4 * a);
          }
        store_block4x4(d, px, y, o, M * i, M * j);
      }
}

// xw[c][h+1][w+1] = row (c, h) as written by fill(c, h, dst) (W floats). Everything else in xw
// (the zero border and the over-read room) is cleared once per call by clear_tiles: filling a
// sample never writes outside the interior, so it stays zero for the slice's other samples.
template <class F>
inline void clear_tiles(const Shape& d, float* xw) { std::memset(xw, 0, sizeof(float) * xw_floats<F>(d)); }
template <class F, class Fill>
inline void pad_tiles(const Shape& d, float* xw, Fill&& fill) {
  const int Hw = hw_<F>(d), Ww = ww_<F>(d);
  for (int c = 0; c < d.C; ++c)
    for (int h = 0; h < d.H; ++h) fill(c, h, xw + (int64_t(c) * Hw + h + 1) * Ww + 1);
}

// Samples [b0, b1) in order, as conv::forward_range (scratch: this slice's slice_floats).
template <class F, class Fill, class Epi>
inline void forward_range(const Shape& d, const float* U, float* y, int64_t b0, int64_t b1, float* scratch, Fill&& fill,
                          Epi&& epi) {
  float* xw = scratch;
  float* V = xw + xw_floats<F>(d);
  float* P = V + v_floats<F>(d);
  const int64_t ys = int64_t(d.O) * d.Ho * d.Wo;
  clear_tiles<F>(d, xw);
  for (int64_t b = b0; b < b1; ++b) {
    pad_tiles<F>(d, xw, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    forward_sample<F>(d, xw, U, V, P, y + b * ys);
    epi(b);
  }
}

}  // namespace ddpm::winograd
