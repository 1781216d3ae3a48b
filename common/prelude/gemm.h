// Single-precision GEMM engine that generated modules call for every matmul and im2col convolution.
//
// Header-only. C[M,N] = op(A)[M,K] * op(B)[K,N], row-major, optionally accumulating into C, with a
// per-tile epilogue callback so callers can fuse bias / activation / residual work while a tile is hot.
// The engine never allocates: the caller passes `scratch` (gemm_scratch_floats(M,N,K) floats, 64-byte
// aligned, from the planned arena; an arena for several batch sizes takes gemm_scratch_floats_upto),
// which holds op(B) packed once up front (in parallel) plus one private A-packing area per parallel
// task. The microkernel normally reads A in place (with software prefetch), which measured faster
// than packing it; A is packed only when its row stride aliases in L1. B is read in place too when
// its rows run along N and do not alias in L1 (b_in_place).
//
// Dimension legend
//   M, N   rows / columns of C.           K    reduction length.
//   ta     A is stored [K,M] (lda >= M), else [M,K] (lda >= K).
//   tb     B is stored [N,K] (ldb >= K), else [K,N] (ldb >= N).
//   MR     rows of C a microkernel call produces; NR = NV * kLanes columns (NV vectors).
//   KC     K-block length: one NR-wide packed B micro-panel (KC x NR) stays in L1 across a tile's rows.
//   tile   a block of C' (up to kTileRows x kTileCols) computed start to finish by one task.
//
// Two narrow shapes skip the engine: N <= 4 with A's rows along k (dot products) and K <= 4
// (scaled rows of B); gemm_narrow.h computes them directly.
//
// Internally every call is rewritten to a canonical problem C'[M',N'] = A'[M',K] * B'[K,N'] with
// arbitrary element strides. When N is narrow (<= 8) and M is larger, the problem is transposed
// (C^T = op(B)^T op(A)^T) so the vector lanes run along M instead of being mostly padding.
//
// Determinism: C' is cut into a fixed grid of tiles that depends only on (M, N, K). Each tile is
// computed start to finish by one task with its K blocks in ascending order, so results are bitwise
// identical at any thread count. Tiles are grouped into at most kMaxTasks contiguous task ranges,
// run with tbb::parallel_for + static_partitioner; each task owns one A-packing area (by task id).
#pragma once
#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include "gemm_narrow.h"
#include "simd_shim.h"

namespace ddpm {

namespace gemm_detail {

using batch = simd::batch;
inline constexpr int kL = static_cast<int>(simd::kLanes);
inline constexpr int kMaxTasks = 8;      // A-packing areas in scratch; caps useful parallelism
inline constexpr int kKCMax = 256;       // K-block length: 256 x 32 floats = 32 KiB B micro-panel
inline constexpr int kKCSingle = 320;    // K up to this is done in one block (no C reload)
inline constexpr int kTileRows = 144;    // cap on rows per tile (A block MC x KC lives in L2)
inline constexpr int kTileCols = 256;    // cap on columns per tile
inline constexpr double kFlopsPerTile = 2.0e6;  // split problems until tiles are about this big (smaller pieces lose more to threading than they gain)
inline constexpr int kMaxWantTiles = 16;
inline constexpr int kPrefetchM = 128;   // A read as [K,M]: prefetch this many rows of C ahead
inline constexpr int kPrefetchK = 256;   // A read as [M,K]: prefetch this many k ahead in each row

// Microkernels MR x NV, per width. AVX-512 (32 zmm): 14x2, 7x4, 6x4, 8x3, 4x4, 2x4 (up to 28
// accumulators; 7x4's 28 leave room for 3 B vectors and the broadcast A element, so GCC reads the
// fourth B vector as the FMA's memory operand, an L1 hit, no vector spill). AVX2, SSE and NEON
// (16 registers on x86): 6x2, 4x3, 2x4, at most 12 accumulators plus the B vectors and one
// broadcast, as BLIS's and libxsmm's 6x16 AVX2 kernels.
enum class Kernel { k14x2, k7x4, k6x4, k8x3, k4x4, k2x4, k6x2, k4x3 };

// At 16 lanes, M' > 8: the candidate whose padded tile area ceil(M'/MR)*MR x ceil(N'/NR)*NR, divided
// by its relative speed per padded FLOP, is least; the first wins a tie. The speeds were measured
// on a Zen 4 with each kernel forced (bench_kernels' BM_gemm_kernel; also M 64..1024, N and K
// 64..256, A read either way): 7x4 runs 1-3% faster per padded FLOP than 14x2, 6x4 as fast. So the MLP's
// 256 x 128 layers take 7x4 (259 rows instead of 14x2's 266) and its 128 x 128 weight gradients
// 7x4 (133 rows instead of 140); N' <= 32 keeps 14x2, whose 32-wide panels do not pad it.
struct Candidate {
  Kernel kernel;
  int mr, nv;
  double speed;
};
inline constexpr Candidate kWide16[] = {{Kernel::k7x4, 7, 4, 1.02}, {Kernel::k14x2, 14, 2, 1.0}, {Kernel::k6x4, 6, 4, 1.0}};

// Everything about a call that depends only on (M, N, K): tiling, kernel choice, scratch layout.
struct Plan {
  bool swap = false;          // compute C^T = op(B)^T op(A)^T
  Kernel kernel = Kernel::k14x2;
  int mr = 14, nr = 32;       // microkernel tile
  int m = 0, n = 0, k = 0;    // canonical sizes M', N', K
  int kc = 0, nkb = 0;        // K block length and count
  int pm = 0, pn = 0;         // micro-panels along M' and N'
  int tm = 0, tn = 0;         // tile grid
  int ntiles = 0, ntasks = 0;
  std::size_t b_floats = 0;       // packed B' (all of it)
  std::size_t a_task_floats = 0;  // one task's A' packing area
  std::size_t scratch_floats = 0;
};

inline std::size_t round_up(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }
inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// First micro-panel of tile t when P panels are spread evenly over T tiles.
inline int split(int t, int P, int T) { return static_cast<int>(static_cast<int64_t>(t) * P / T); }

// Fills the tiling and scratch layout of a plan whose swap, sizes, kernel and mr/nr are set
// (make_plan_w's choice below; bench_kernels forces each kernel through it).
inline void tile_plan(Plan& p, int M, int N, int K) {
  if (M <= 0 || N <= 0) return;
  p.nkb = K <= kKCSingle ? (K > 0 ? 1 : 0) : ceil_div(K, kKCMax);
  p.kc = p.nkb ? ceil_div(K, p.nkb) : 0;
  p.pm = ceil_div(p.m, p.mr);
  p.pn = ceil_div(p.n, p.nr);
  int max_pm = std::max(1, kTileRows / p.mr), max_pn = std::max(1, kTileCols / p.nr);
  p.tm = ceil_div(p.pm, max_pm);
  p.tn = ceil_div(p.pn, max_pn);
  double flops = 2.0 * M * N * std::max(K, 1);
  int want = static_cast<int>(std::clamp(flops / kFlopsPerTile, 1.0, double(kMaxWantTiles)));
  if (want > 1 && want % 2) ++want;
  while (p.tm * p.tn < want || (p.tm * p.tn > 1 && (p.tm * p.tn) % 2 && p.tm * p.tn < 2 * kMaxWantTiles)) {
    bool can_m = p.tm < p.pm, can_n = p.tn < p.pn;
    if (can_m && (!can_n || p.pm / p.tm >= p.pn / p.tn)) {
      ++p.tm;
    } else if (can_n) {
      ++p.tn;
    } else {
      break;
    }
  }
  p.ntiles = p.tm * p.tn;
  p.ntasks = std::min(p.ntiles, kMaxTasks);

  int max_tile_panels = ceil_div(p.pm, p.tm);
  p.b_floats = round_up(static_cast<std::size_t>(p.pn) * p.nr * K, 16);
  p.a_task_floats = round_up(static_cast<std::size_t>(max_tile_panels) * p.mr * p.kc + 16, 16);
  p.scratch_floats = p.b_floats + p.a_task_floats * p.ntasks;
}

// The plan at width L (kL for the calls; every width for the scratch size).
template <int L>
inline Plan make_plan_w(int M, int N, int K) {
  Plan p;
  p.swap = N <= 8 && M > N;
  p.m = p.swap ? N : M;
  p.n = p.swap ? M : N;
  p.k = K;
  if (p.m <= 2) {
    p.kernel = Kernel::k2x4, p.mr = 2, p.nr = 4 * L;
  } else if (L != 16) {
    if (p.m <= 4) p.kernel = Kernel::k4x3, p.mr = 4, p.nr = 3 * L;
    else p.kernel = Kernel::k6x2, p.mr = 6, p.nr = 2 * L;
  } else if (p.m <= 4) {
    p.kernel = Kernel::k4x4, p.mr = 4, p.nr = 4 * L;
  } else if (p.m <= 8) {
    p.kernel = Kernel::k8x3, p.mr = 8, p.nr = 3 * L;
  } else {
    double best = 0;
    for (const Candidate& c : kWide16) {
      double area = double(ceil_div(p.m, c.mr) * c.mr) * double(ceil_div(p.n, c.nv * L) * c.nv * L) / c.speed;
      if (best == 0 || area < best) best = area, p.kernel = c.kernel, p.mr = c.mr, p.nr = c.nv * L;
    }
  }
  tile_plan(p, M, N, K);
  return p;
}

inline Plan make_plan(int M, int N, int K) { return make_plan_w<kL>(M, N, K); }

// Canonical operands: A'(m,k) = a[m*a_rs + k*a_cs], B'(k,n) = b[k*b_rs + n*b_cs],
// C'(m,n) = c[m*c_rs + n*c_cs]. In each pair one stride is 1.
struct Operands {
  const float* a;
  std::ptrdiff_t a_rs, a_cs;
  const float* b;
  std::ptrdiff_t b_rs, b_cs;
  float* c;
  std::ptrdiff_t c_rs, c_cs;
};

// The canonical operands of C = op(A) op(B) under plan pl (transposed when pl.swap).
inline Operands canonical(const Plan& pl, const float* A, int lda, bool ta, const float* B, int ldb, bool tb, float* C,
                          int ldc) {
  std::ptrdiff_t oa_rs = ta ? 1 : lda, oa_cs = ta ? lda : 1;  // op(A)(i,k) = A[i*oa_rs + k*oa_cs]
  std::ptrdiff_t ob_rs = tb ? 1 : ldb, ob_cs = tb ? ldb : 1;  // op(B)(k,j) = B[k*ob_rs + j*ob_cs]
  return pl.swap ? Operands{B, ob_cs, ob_rs, A, oa_cs, oa_rs, C, 1, ldc} : Operands{A, oa_rs, oa_cs, B, ob_rs, ob_cs, C, ldc, 1};
}

// dst[k*W + j] = src[j*s_w + k*s_k] for j < w (zero for w <= j < W), k < kc.
template <int W>
inline void pack_interleaved(float* __restrict dst, const float* __restrict src, std::ptrdiff_t s_w,
                             std::ptrdiff_t s_k, int w, int kc) {
  if (s_w == 1) {
    if (w == W) {
      for (int k = 0; k < kc; ++k) std::memcpy(dst + k * W, src + k * s_k, sizeof(float) * W);
    } else {
      for (int k = 0; k < kc; ++k) {
        for (int j = 0; j < w; ++j) dst[k * W + j] = src[k * s_k + j];
        for (int j = w; j < W; ++j) dst[k * W + j] = 0.f;
      }
    }
    return;
  }
  int k0 = 0;
  if (s_k == 1) {
    // Rows of the source run along k: transpose kL x kL blocks in registers.
    for (; k0 + kL <= kc; k0 += kL) {
      for (int g = 0; g < W; g += kL) {
        batch r[kL];
        int rows = std::clamp(w - g, 0, kL);
        for (int j = 0; j < rows; ++j) r[j] = batch::load_unaligned(src + (g + j) * s_w + k0);
        for (int j = rows; j < kL; ++j) r[j] = batch(0.f);
        simd::transpose(r);
        int lanes = std::min(kL, W - g);
        for (int kk = 0; kk < kL; ++kk) simd::store_partial(dst + (k0 + kk) * W + g, r[kk], lanes);
      }
    }
  }
  for (int k = k0; k < kc; ++k) {
    for (int j = 0; j < w; ++j) dst[k * W + j] = src[j * s_w + k * s_k];
    for (int j = w; j < W; ++j) dst[k * W + j] = 0.f;
  }
}

// How the microkernel reads A: packed (kc x MR interleaved), or straight from the caller's matrix
// with rows along k (stride a_rs between rows) or columns along m (stride a_cs between k steps).
enum class AMode { packed, rows_k, cols_m };

// acc(MR x NR) = A(MR x kc) * B-panel(kc x NR); then C = acc (overwrite) or C += acc for the
// valid mr x nr corner. Accumulators live in registers: 14x2 uses 28 of the 32 zmm registers,
// 6x2 12 of the 16 ymm registers.
// The A rows beyond mr are read only in packed mode (where they are zero padding).
template <int MR, int NV, AMode AM>
inline void microkernel(int kc, const float* __restrict a, std::ptrdiff_t a_stride, const float* __restrict b,
                        std::ptrdiff_t b_stride, float* c, std::ptrdiff_t rs, std::ptrdiff_t cs, int mr, int nr, bool overwrite) {
  constexpr int NR = NV * kL;
  batch acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = batch(0.f);
  const float* arow[MR];
  // Both loops over r unrolled, so the row pointers stay in registers.
  if constexpr (AM == AMode::rows_k) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) arow[r] = a + std::min(r, mr - 1) * a_stride;
  }
  for (int k = 0; k < kc; ++k) {
    if constexpr (AM == AMode::rows_k) {
      if (k % kL == 0)
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) __builtin_prefetch(arow[r] + k + kPrefetchK);
    }
    batch bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = batch::load_unaligned(b + k * b_stride + v * kL);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      float x;
      if constexpr (AM == AMode::packed) {
        x = a[k * MR + r];
      } else if constexpr (AM == AMode::rows_k) {
        x = arow[r][k];
      } else {
        if (r == 0) __builtin_prefetch(a + k * a_stride + kPrefetchM);
        x = a[k * a_stride + std::min(r, mr - 1)];
      }
      batch ar(x);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = simd::fma(ar, bv[v], acc[r][v]);
    }
  }
  if (mr == MR && nr == NR && cs == 1) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* p = c + r * rs + v * kL;
        batch out = overwrite ? acc[r][v] : batch::load_unaligned(p) + acc[r][v];
        out.store_unaligned(p);
      }
    return;
  }
  alignas(64) float tmp[MR * NR];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(tmp + r * NR + v * kL);
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nr; ++j) {
      float& dst = c[r * rs + j * cs];
      dst = overwrite ? tmp[r * NR + j] : dst + tmp[r * NR + j];
    }
}

// B' is read in place (rows k at stride b_rs) when it runs along n, unless several MR panels of C'
// reuse it and its row stride is a multiple of 2 KiB (rows that fall into a few L1 sets); then only
// a partial last panel is packed. In place measured 1-6% faster than packing on the MLP's shapes at
// one thread (bench_kernels BM_gemm, Zen 4), and at two the serial packing of small problems went.
inline bool b_in_place(const Plan& pl, const Operands& op) {
  return op.b_cs == 1 && (pl.pm == 1 || op.b_rs % 512 != 0);
}

// Packs B' panels [p0, p1) of all K into bp: panel p at bp + p*K*NR, row k at + k*NR.
template <int NR>
inline void pack_b_panels(const Plan& pl, const Operands& op, float* bp, int p0, int p1) {
  for (int p = p0; p < p1; ++p) {
    int n0 = p * NR;
    if (b_in_place(pl, op) && n0 + NR <= pl.n) continue;
    pack_interleaved<NR>(bp + static_cast<std::size_t>(p) * pl.k * NR, op.b + n0 * op.b_cs, op.b_cs,
                         op.b_rs, std::min(NR, pl.n - n0), pl.k);
  }
}

template <class Epi>
inline void call_epi(const Plan& pl, Epi& epi, int m0, int m1, int n0, int n1) {
  if (pl.swap) {
    epi(n0, n1, m0, m1);
  } else {
    epi(m0, m1, n0, n1);
  }
}

// Computes tile t of C' completely, then runs its epilogue.
template <int MR, int NV, class Epi>
inline void run_tile(const Plan& pl, const Operands& op, const float* bp, float* ap, int t,
                     bool accumulate, Epi& epi) {
  constexpr int NR = NV * kL;
  int ti = t / pl.tn, tj = t % pl.tn;
  int pm0 = split(ti, pl.pm, pl.tm), pm1 = split(ti + 1, pl.pm, pl.tm);
  int pn0 = split(tj, pl.pn, pl.tn), pn1 = split(tj + 1, pl.pn, pl.tn);
  int m0 = pm0 * MR, m1 = std::min(pm1 * MR, pl.m);
  int n0 = pn0 * NR, n1 = std::min(pn1 * NR, pl.n);
  if (pl.nkb == 0) {
    if (!accumulate)
      for (int i = m0; i < m1; ++i)
        for (int j = n0; j < n1; ++j) op.c[i * op.c_rs + j * op.c_cs] = 0.f;
  }
  for (int kb = 0; kb < pl.nkb; ++kb) {
    int k0 = kb * pl.kc, kc = std::min(pl.kc, pl.k - k0);
    // Reading A in place (one stride is always 1, software-prefetched) measured faster than packing
    // it at every model shape, even with many B panels per tile. Packing remains for [M,K] rows whose
    // stride is a multiple of 4 KiB, where all MR rows would fall into the same L1 set.
    bool direct = op.a_cs != 1 || op.a_rs % 1024 != 0;
    if (!direct) {
      for (int ip = pm0; ip < pm1; ++ip) {
        int i = ip * MR;
        pack_interleaved<MR>(ap + static_cast<std::size_t>(ip - pm0) * kc * MR,
                             op.a + i * op.a_rs + k0 * op.a_cs, op.a_rs, op.a_cs, std::min(MR, pl.m - i), kc);
      }
    }
    bool overwrite = kb == 0 && !accumulate;
    for (int jp = pn0; jp < pn1; ++jp) {
      int j = jp * NR, nr = std::min(NR, pl.n - j);
      const float* bpanel = bp + (static_cast<std::size_t>(jp) * pl.k + k0) * NR;
      std::ptrdiff_t b_stride = NR;
      if (b_in_place(pl, op) && nr == NR) {
        bpanel = op.b + k0 * op.b_rs + j;
        b_stride = op.b_rs;
      }
      for (int ip = pm0; ip < pm1; ++ip) {
        int i = ip * MR, mr = std::min(MR, pl.m - i);
        float* c = op.c + i * op.c_rs + j * op.c_cs;
        const float* a_in_place = op.a + i * op.a_rs + k0 * op.a_cs;
        if (!direct) {
          microkernel<MR, NV, AMode::packed>(kc, ap + static_cast<std::size_t>(ip - pm0) * kc * MR, MR, bpanel, b_stride, c,
                                             op.c_rs, op.c_cs, mr, nr, overwrite);
        } else if (op.a_cs == 1) {
          microkernel<MR, NV, AMode::rows_k>(kc, a_in_place, op.a_rs, bpanel, b_stride, c, op.c_rs, op.c_cs, mr, nr, overwrite);
        } else {
          microkernel<MR, NV, AMode::cols_m>(kc, a_in_place, op.a_cs, bpanel, b_stride, c, op.c_rs, op.c_cs, mr, nr, overwrite);
        }
      }
    }
  }
  call_epi(pl, epi, m0, m1, n0, n1);
}

template <int MR, int NV, class Epi>
inline void run(const Plan& pl, const Operands& op, bool accumulate, float* scratch, Epi& epi) {
  constexpr int NR = NV * kL;
  float* bp = scratch;
  float* abase = scratch + pl.b_floats;
  if (pl.nkb > 0) {
    // Packing in parallel pays from 8k floats of B, but not for a single tile (the N <= 8 problems
    // swapped to a few rows, whose transposing pack measured 2x slower split over two threads).
    if (static_cast<std::size_t>(pl.k) * pl.n >= (1u << 13) && pl.pn > 1 && pl.ntiles > 1) {
      tbb::parallel_for(
          tbb::blocked_range<int>(0, pl.pn),
          [&](const tbb::blocked_range<int>& r) { pack_b_panels<NR>(pl, op, bp, r.begin(), r.end()); },
          tbb::static_partitioner());
    } else {
      pack_b_panels<NR>(pl, op, bp, 0, pl.pn);
    }
  }
  auto task = [&](int task_id) {
    float* ap = abase + static_cast<std::size_t>(task_id) * pl.a_task_floats;
    int t0 = split(task_id, pl.ntiles, pl.ntasks), t1 = split(task_id + 1, pl.ntiles, pl.ntasks);
    for (int t = t0; t < t1; ++t) run_tile<MR, NV>(pl, op, bp, ap, t, accumulate, epi);
  };
  for_tasks(pl.ntasks, task);
}

}  // namespace gemm_detail

// Floats of 64-byte-aligned scratch that gemm(M, N, K, ...) needs, for any transpose flags and
// any width (the compiler plans it without knowing the module's width; simd_shim.h).
inline std::size_t gemm_scratch_floats(int M, int N, int K) {
  return static_cast<std::size_t>(simd::max_over_widths(
      [&]<int L>() { return static_cast<std::int64_t>(gemm_detail::make_plan_w<L>(M, N, K).scratch_floats); }));
}

// Scratch for gemm at every batch b in [1, B] when the batch scales one dimension: M = b * rows
// (K = other), or with batch_in_k K = b * rows (M = other). A module's arena for batch B serves
// every smaller call (a sampler's last chunk), and a plan's need is not monotone in M or K (a
// smaller M picks a microkernel with wider B panels; K = 320 is one block, 321 two), so the size
// is the largest over all of them. O(B) plans: for sizing an arena, not for a step.
inline std::size_t gemm_scratch_floats_upto(int B, int rows, int N, int other, bool batch_in_k) {
  std::size_t s = 0;
  for (int b = 1; b <= B; ++b)
    s = std::max(s, batch_in_k ? gemm_scratch_floats(other, N, b * rows) : gemm_scratch_floats(b * rows, N, other));
  return s;
}

// C[M,N] = op(A)[M,K] * op(B)[K,N] (or += when accumulate). epi(i0, i1, j0, j1) runs exactly once per
// output tile [i0,i1) x [j0,j1), after that tile is final, on the thread that computed it. The tiles
// cover C exactly once. With K == 0, C is zeroed (or left unchanged when accumulating).
template <class Epi>
void gemm(int M, int N, int K, const float* A, int lda, bool ta, const float* B, int ldb, bool tb, float* C,
          int ldc, bool accumulate, float* scratch, Epi&& epi) {
  using namespace gemm_detail;
  if (M <= 0 || N <= 0) return;
  assert(reinterpret_cast<std::uintptr_t>(scratch) % kAlign == 0 || gemm_scratch_floats(M, N, K) == 0);
  if (const Narrow path = narrow_path<kL>(M, N, K, ta); path != Narrow::none) {
    run_narrow(path, M, N, K, A, lda, ta, B, ldb, tb, C, ldc, accumulate, scratch, epi);
    return;
  }
  Plan pl = make_plan(M, N, K);
  Operands op = canonical(pl, A, lda, ta, B, ldb, tb, C, ldc);
  if constexpr (kL == 16) {
    switch (pl.kernel) {
      case Kernel::k14x2: run<14, 2>(pl, op, accumulate, scratch, epi); break;
      case Kernel::k7x4: run<7, 4>(pl, op, accumulate, scratch, epi); break;
      case Kernel::k6x4: run<6, 4>(pl, op, accumulate, scratch, epi); break;
      case Kernel::k8x3: run<8, 3>(pl, op, accumulate, scratch, epi); break;
      case Kernel::k4x4: run<4, 4>(pl, op, accumulate, scratch, epi); break;
      default: run<2, 4>(pl, op, accumulate, scratch, epi); break;
    }
  } else {
    switch (pl.kernel) {
      case Kernel::k6x2: run<6, 2>(pl, op, accumulate, scratch, epi); break;
      case Kernel::k4x3: run<4, 3>(pl, op, accumulate, scratch, epi); break;
      default: run<2, 4>(pl, op, accumulate, scratch, epi); break;
    }
  }
}

inline void gemm(int M, int N, int K, const float* A, int lda, bool ta, const float* B, int ldb, bool tb, float* C,
                 int ldc, bool accumulate, float* scratch) {
  gemm(M, N, K, A, lda, ta, B, ldb, tb, C, ldc, accumulate, scratch, [](int, int, int, int) {});
}

}  // namespace ddpm
