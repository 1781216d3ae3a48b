// The GEMM microkernels of the Winograd driver (winograd_driver.h): one register block
// gemm_block<MR, NV> of MR tiles x NV vectors of output channels over all input channels, for
// either layout of the transformed input, and gemm_tiles, the 16-register widths' walk over a
// row of tiles (whole 6-tile blocks and one remainder block). The AVX-512 block choice per shape
// is in the driver's gemms().
//
// Register blocks per width: AVX-512's 32 registers hold 14 x 2, 8 x 2, 7 x 2 or 7 x 4 blocks;
// AVX2's and SSE's 16 hold 6 x 2 (12 accumulators, 2 filter vectors, the broadcast), as the 6 x 16
// AVX2 kernels of BLIS and libxsmm.
// Dimension legend: V [C][Tp] (tiles contiguous) or Vc [Tp][C] (channels last) for one xi;
// U [C][Op] for one xi; P [Tp][Op] the products.
#pragma once
#include <cstdint>

#include "conv.h"
#include "simd_shim.h"

namespace ddpm::winograd {

using batch = simd::batch;
inline constexpr int kL = static_cast<int>(simd::kLanes);
// GEMM register block: kMR tiles x kNV channel vectors (the default; gemms() picks per shape).
inline constexpr int kMR = kL == 16 ? 14 : 6, kNV = conv::kGradNV, kOB = conv::kGradOB;

// P[xi][t][o-block] = sum over c of V(t, c) * U[xi][c][o-block] for tiles t0 .. t0+MR-1 and
// NV vectors of output channels, for either layout of the transformed input: tiles contiguous
// (V [xi][c][t]; `stride` = Tp between channels) or channels last (Vc [xi][t][c]; `stride` = C
// between tiles, each register row broadcasting from its own tile's channel row).
template <int MR, int NV, bool ChannelsLast = false>
inline void gemm_block(int C, const float* V, int64_t stride, const float* U, int64_t Op, float* P) {
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
      for (int v = 0; v < NV; ++v) acc[r][v] = simd::fma(a, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v].store_aligned(P + r * Op + v * kL);
}

// One xi's GEMM over tiles [0, T) with 16-register blocks (AVX2, SSE, NEON): whole blocks of kMR
// tiles, then one block of the T % kMR left (no idle register rows: 49 tiles are 8 x 6 + 1, not
// 9 x 6, and the 4 tiles of a 7x7 map one block of 4, not 6). `cl` as in gemm_blocks.
inline void gemm_tiles(int64_t T, int64_t Tp, int C, bool cl, const float* V, const float* U, int64_t Op, float* P) {
  static_assert(kL == 16 || kMR == 6, "gemm_tiles' remainder cases are written for blocks of 6");
  const int64_t whole = T - T % kMR, tstep = cl ? C : 1, stride = cl ? C : Tp;
  auto block = [&]<int MR>(int64_t t0, int64_t ob) {
    if (cl) gemm_block<MR, kNV, true>(C, V + t0 * tstep, stride, U + ob, Op, P + t0 * Op + ob);
    else gemm_block<MR, kNV>(C, V + t0 * tstep, stride, U + ob, Op, P + t0 * Op + ob);
  };
  for (int64_t t0 = 0; t0 < whole; t0 += kMR)
    for (int64_t ob = 0; ob < Op; ob += kOB) block.template operator()<kMR>(t0, ob);
  if (whole == T) return;
  for (int64_t ob = 0; ob < Op; ob += kOB) switch (T - whole) {
      case 1: block.template operator()<1>(whole, ob); break;
      case 2: block.template operator()<2>(whole, ob); break;
      case 3: block.template operator()<3>(whole, ob); break;
      case 4: block.template operator()<4>(whole, ob); break;
      default: block.template operator()<5>(whole, ob); break;
    }
}

}  // namespace ddpm::winograd
