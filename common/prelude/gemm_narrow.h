// The two GEMM shapes that gemm.h's blocked engine serves badly, computed directly.
//
// Header-only; gemm() (gemm.h) sends a call here when narrow_path() says so, and the blocked
// engine takes everything else.
//   dot    N <= 4 columns, op(A) stored with its rows along k (ta false), K >= kLanes: a network's
//          output layer (the MLP's [B,128] x [128,2]). Each C element is a dot product of an A row
//          and a column of op(B), vectorized along k: no transposing pack of A (the engine swaps
//          such problems to C^T = op(B)^T op(A)^T and packs all of A^T), MR rows x N columns of
//          accumulators, one horizontal sum each.
//   outer  K <= 4 and N >= kLanes, not swapped: the data gradient of a layer with few inputs to the
//          next (dY [B,2] x W^T [2,128]). Each C row is K scaled rows of op(B): the engine's
//          microkernel calls would each do K steps of work around a full register tile's setup
//          and stores.
// The scratch either path uses (op(B) packed, N x K floats) is within gemm_scratch_floats(M, N, K):
// these problems' blocked plans pack at least max(M, N) x K floats of B'.
//
// Determinism: the rows of C are cut into tiles that depend only on (M, N, K); each element is
// computed by one task in a fixed order, so results are bitwise identical at any thread count.
// A row's result must not depend on M either: a sampler's last chunk, or one MPI rank's share of
// the samples, has fewer rows than the others, and each sample must come out the same. outer
// computes each element exactly as the engine's microkernels do (FMAs in k order from zero), so
// it may take any subset of a layer's calls. dot (the lanes' partial sums along k, their
// horizontal sum, then the k tail in order) differs from the engine's order, so whether a call
// takes it depends on N, K and the layout only, never on M.
//
// Dimension legend: C[M,N] = op(A)[M,K] * op(B)[K,N]. bt: op(B)^T, N rows of K (dot). bk: op(B),
// K rows of N (outer). MR: rows of C per dot register block.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include "simd_shim.h"

namespace ddpm::gemm_detail {

enum class Narrow { none, dot, outer };

// Which direct path, if any, computes C = op(A) op(B) of these sizes (L: the lane count).
template <int L>
inline Narrow narrow_path(int M, int N, int K, bool ta) {
  if (N <= 4 && !ta && K >= L) return Narrow::dot;  // never on M (Determinism above)
  if (K >= 1 && K <= 4 && N >= L && !(N <= 8 && M > N)) return Narrow::outer;
  return Narrow::none;
}

// Row tiles of a narrow problem: about 2 MFLOP each (as the engine's tiles), at most 16, whole
// blocks of `unit` rows. Tile t covers rows [row(t), row(t + 1)).
struct NarrowTiles {
  int rows, unit, blocks, count;
  int row(int t) const { return std::min(rows, static_cast<int>(static_cast<int64_t>(t) * blocks / count) * unit); }
};
inline NarrowTiles narrow_tiles(int M, int N, int K, int unit) {
  const int blocks = (M + unit - 1) / unit;
  const double flops = 2.0 * M * N * K;
  const int want = static_cast<int>(std::clamp(flops / 2.0e6, 1.0, 16.0));
  return {M, unit, blocks, std::max(1, std::min(want, blocks))};
}

// Runs task(i) for i in [0, n): inline when n is 1, else one tbb task per i with the static
// partitioner (the GEMM engine's tasks and the narrow paths' row tiles).
template <class F>
inline void for_tasks(int n, F&& task) {
  if (n == 1) {
    task(0);
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<int>(0, n),
      [&](const tbb::blocked_range<int>& r) {
        for (int i = r.begin(); i < r.end(); ++i) task(i);
      },
      tbb::static_partitioner());
}

// dot: rows [i0, i1) of C[., 0..NN) = A[., K] (rows at stride lda) x bt^T (NN rows at stride ldbt).
template <int NN, int MR>
inline void dot_rows(int i0, int i1, int K, const float* a, std::ptrdiff_t lda, const float* bt, std::ptrdiff_t ldbt,
                     float* c, std::ptrdiff_t ldc, bool accumulate) {
  using batch = simd::batch;
  constexpr int kL = static_cast<int>(simd::kLanes);
  const int kv = K / kL * kL;
  for (int i = i0; i < i1; i += MR) {
    const int mr = std::min(MR, i1 - i);
    const float* arow[MR];
    for (int r = 0; r < MR; ++r) arow[r] = a + static_cast<std::ptrdiff_t>(i + std::min(r, mr - 1)) * lda;
    batch acc[MR][NN];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NN; ++j) acc[r][j] = batch(0.f);
    for (int k = 0; k < kv; k += kL) {
      batch bv[NN];
#pragma GCC unroll 4
      for (int j = 0; j < NN; ++j) bv[j] = batch::load_unaligned(bt + j * ldbt + k);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const batch av = batch::load_unaligned(arow[r] + k);
#pragma GCC unroll 4
        for (int j = 0; j < NN; ++j) acc[r][j] = simd::fma(av, bv[j], acc[r][j]);
      }
    }
    for (int r = 0; r < mr; ++r)
      for (int j = 0; j < NN; ++j) {
        float s = simd::reduce_add(acc[r][j]);
        for (int k = kv; k < K; ++k) s += arow[r][k] * bt[j * ldbt + k];
        float& out = c[static_cast<std::ptrdiff_t>(i + r) * ldc + j];
        out = accumulate ? out + s : s;
      }
  }
}

// outer: rows [i0, i1) of C[., N] = A[., KK] (element (i, k) at a[i*a_rs + k*a_cs]) x bk[KK, N].
template <int KK>
inline void outer_rows(int i0, int i1, int N, const float* a, std::ptrdiff_t a_rs, std::ptrdiff_t a_cs, const float* bk,
                       std::ptrdiff_t ldbk, float* c, std::ptrdiff_t ldc, bool accumulate) {
  using batch = simd::batch;
  constexpr int kL = static_cast<int>(simd::kLanes);
  // Exactly the engine's arithmetic: FMAs in k order from zero, then C + that sum.
  for (int i = i0; i < i1; ++i) {
    batch av[KK];
    for (int k = 0; k < KK; ++k) av[k] = batch(a[i * a_rs + k * a_cs]);
    float* crow = c + static_cast<std::ptrdiff_t>(i) * ldc;
    for (int j = 0; j < N; j += kL) {
      const int w = std::min(kL, N - j);  // the last vector may be partial
      auto ld = [w](const float* p) { return w == kL ? batch::load_unaligned(p) : simd::load_partial(p, w); };
      batch s(0.f);
#pragma GCC unroll 4
      for (int k = 0; k < KK; ++k) s = simd::fma(av[k], ld(bk + k * ldbk + j), s);
      if (accumulate) s = ld(crow + j) + s;
      simd::store_partial(crow + j, s, w);
    }
  }
}

// C = op(A) op(B) (or +=) by the dot path; epi(i0, i1, 0, N) once per row tile.
template <int NN, class Epi>
inline void run_dot(int M, int K, const float* A, int lda, const float* B, int ldb, bool tb, float* C, int ldc,
                    bool accumulate, float* scratch, Epi& epi) {
  constexpr int MR = NN == 1 ? 8 : NN == 2 ? 6 : NN == 3 ? 4 : 3;  // MR x NN <= 12 accumulators
  const float* bt = B;  // op(B)^T: row j is op(B)'s column j
  std::ptrdiff_t ldbt = ldb;
  if (!tb) {  // B stored [K, N]: gather its NN columns into rows
    for (int j = 0; j < NN; ++j)
      for (int k = 0; k < K; ++k) scratch[static_cast<std::ptrdiff_t>(j) * K + k] = B[static_cast<std::ptrdiff_t>(k) * ldb + j];
    bt = scratch, ldbt = K;
  }
  const NarrowTiles nt = narrow_tiles(M, NN, K, MR);
  for_tasks(nt.count, [&](int t) {
    const int i0 = nt.row(t), i1 = nt.row(t + 1);
    dot_rows<NN, MR>(i0, i1, K, A, lda, bt, ldbt, C, ldc, accumulate);
    epi(i0, i1, 0, NN);
  });
}

// C = op(A) op(B) (or +=) by the outer path; epi(i0, i1, 0, N) once per row tile.
template <int KK, class Epi>
inline void run_outer(int M, int N, const float* A, int lda, bool ta, const float* B, int ldb, bool tb, float* C, int ldc,
                      bool accumulate, float* scratch, Epi& epi) {
  const std::ptrdiff_t a_rs = ta ? 1 : lda, a_cs = ta ? lda : 1;
  const float* bk = B;  // op(B): row k holds N values
  std::ptrdiff_t ldbk = ldb;
  if (tb) {  // B stored [N, K]: transpose its KK columns into rows
    for (int k = 0; k < KK; ++k)
      for (int j = 0; j < N; ++j) scratch[static_cast<std::ptrdiff_t>(k) * N + j] = B[static_cast<std::ptrdiff_t>(j) * ldb + k];
    bk = scratch, ldbk = N;
  }
  const NarrowTiles nt = narrow_tiles(M, N, KK, 1);
  for_tasks(nt.count, [&](int t) {
    const int i0 = nt.row(t), i1 = nt.row(t + 1);
    outer_rows<KK>(i0, i1, N, A, a_rs, a_cs, bk, ldbk, C, ldc, accumulate);
    epi(i0, i1, 0, N);
  });
}

// The narrow path p for C = op(A) op(B) (narrow_path's choice), with its N or K as a template value.
template <class Epi>
inline void run_narrow(Narrow p, int M, int N, int K, const float* A, int lda, bool ta, const float* B, int ldb, bool tb,
                       float* C, int ldc, bool accumulate, float* scratch, Epi& epi) {
  if (p == Narrow::dot) {
    switch (N) {
      case 1: run_dot<1>(M, K, A, lda, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
      case 2: run_dot<2>(M, K, A, lda, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
      case 3: run_dot<3>(M, K, A, lda, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
      default: run_dot<4>(M, K, A, lda, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
    }
  } else {
    switch (K) {
      case 1: run_outer<1>(M, N, A, lda, ta, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
      case 2: run_outer<2>(M, N, A, lda, ta, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
      case 3: run_outer<3>(M, N, A, lda, ta, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
      default: run_outer<4>(M, N, A, lda, ta, B, ldb, tb, C, ldc, accumulate, scratch, epi); break;
    }
  }
}

}  // namespace ddpm::gemm_detail
