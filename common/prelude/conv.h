// Direct convolutions that generated modules call for K x K convolutions on NCHW activations:
// the forward pass, the stride-1 data gradient (a forward pass of dy with the flipped filter) and
// the filter gradient. No im2col buffer: each sample's input is copied once into a zero-padded
// plane set `xp` (L2-sized), and the microkernels broadcast straight from it.
//
// Register blocking (after oneDNN / libxsmm direct convolutions, Georganas et al. SC'18, but
// without a blocked activation layout): output channels run along the vector lanes, so 32- and
// 64-channel layers fill every lane, and a block of MR output pixels of one output row is held
// in registers. Forward: acc[MR pixels][NV vectors of output channels] += x * w over all C*K*K
// taps, then a kL x kL in-register transpose stores the block into NCHW. Filter gradient:
// acc[G*KW taps][NV vectors of output channels] += x * dy over all output pixels of a sample.
// The blocks are chosen per width (FwdBlock, GradBlock): AVX-512 has 32 vector registers, so
// up to 28 accumulators; AVX2 and SSE have 16, so at most 12 (oneDNN's AVX2 direct kernels
// likewise keep ur_w x oc_blocks <= 12). MR <= kL always (the transpose holds kL rows).
//
// Dimension legend (one sample)
//   x  [C,H,W] input, w [O,C,K,K] filter, y [O,Ho,Wo] output; stride s, padding p.
//   xp [C,Hp,Wp] zero-padded input, Hp = H+2p, Wp = W+2p, plus kSlack floats of over-read room.
//   OB = kL*NV output channels per register block; Op = O rounded up to a multiple of OB.
//   wp [Op/OB][C*K*K][OB]  the filter packed for the forward kernel (tap-major, channel lanes).
//   dyT [Ho*Wo][Op]        one sample's output gradient, transposed (filter gradient).
//   gT [C*K*K][Op]         the filter gradient, transposed, accumulated over samples.
//
// Determinism: every output element is computed by one fixed sequence of FMAs over its taps
// (forward) or over the pixels of each sample in order (filter gradient); nothing here depends
// on threads. Callers run fixed batch slices in parallel and add per-slice results in order.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "simd_shim.h"

namespace ddpm::conv {

using batch = simd::batch;
inline constexpr int kL = static_cast<int>(simd::kLanes);
inline constexpr int kSlack = 64;  // floats after xp that a partial pixel block may read

struct Shape {
  int C, H, W, O, K, s, p, Ho, Wo;
  int Hp() const { return H + 2 * p; }
  int Wp() const { return W + 2 * p; }
  int64_t plane() const { return int64_t(Hp()) * Wp(); }
  int64_t ckk() const { return int64_t(C) * K * K; }
};

using simd::align_floats;

// Register block of a forward call at width L: MR pixels x NV channel vectors.
struct FwdBlock {
  int mr, nv;
};
template <int L>
constexpr FwdBlock fwd_block_w(const Shape& d) {
  if constexpr (L == 16) {  // 32 zmm: up to 28 accumulators
    if (d.Wo <= 7 && d.O % 64 == 0) return {7, 4};
    if (d.O <= 16) return {14, 1};
    return {14, 2};
  } else if constexpr (L == 8) {  // 16 ymm: 12 accumulators, 2 filter vectors, 1 broadcast
    if (d.O <= 8) return {8, 1};
    if (d.Wo <= 7) return {7, 1};  // 7x7 maps: one block per row (6 x 2 would leave 5 of 12 rows idle)
    return {6, 2};
  } else {  // 16 xmm (SSE; NEON has 32 but shares the code): MR <= kL = 4
    if (d.O <= 4) return {4, 1};
    return {4, 3};
  }
}
inline FwdBlock fwd_block(const Shape& d) { return fwd_block_w<kL>(d); }
template <int L>
constexpr int64_t out_pad_w(const Shape& d) {
  return simd::round_up(d.O, int64_t(L) * fwd_block_w<L>(d).nv);
}
inline int64_t out_pad(const Shape& d) { return out_pad_w<kL>(d); }

// Floats of xp (one sample's padded input) and of the packed filter wp (room for any width).
inline int64_t padded_floats(const Shape& d) { return align_floats(d.C * d.plane() + kSlack); }
inline int64_t packed_filter_floats(const Shape& d) {
  return simd::max_over_widths([&]<int L>() { return align_floats(out_pad_w<L>(d) * d.ckk()); });
}

// xp[c][h+p][w+p] = row(c, h)[w]: fill(c, h, dst) writes the W floats of input row (c, h) to
// dst, so a caller can compute the input while it is copied (a fused prologue). The zero border
// and the over-read room are cleared once per call by clear_input: filling a sample writes only
// the interior, so they stay zero for the slice's other samples.
inline void clear_input(const Shape& d, float* xp) { std::memset(xp, 0, sizeof(float) * padded_floats(d)); }
template <class Fill>
inline void pad_input(const Shape& d, float* xp, Fill&& fill) {
  for (int c = 0; c < d.C; ++c)
    for (int h = 0; h < d.H; ++h) fill(c, h, xp + c * d.plane() + int64_t(h + d.p) * d.Wp() + d.p);
}
inline void pad_copy(const Shape& d, const float* x, float* xp) {
  clear_input(d, xp);
  pad_input(d, xp, [&](int c, int h, float* dst) {
    std::memcpy(dst, x + (int64_t(c) * d.H + h) * d.W, sizeof(float) * d.W);
  });
}

// wp[ob][(c,kh,kw)][l] = w[ob*OB+l][c][kh][kw] (0 for padded channels). With `flip`, w is the
// filter of the convolution being differentiated and the packed filter is that of its stride-1
// data gradient: this call's shape d has d.C = the original O and d.O = the original C, and
// wp[cb][(o,kh,kw)][l] = w[o][cb*OB+l][K-1-kh][K-1-kw].
inline void pack_filter(const Shape& d, const float* w, bool flip, float* wp) {
  const int OB = kL * fwd_block(d).nv, K = d.K;
  const int64_t ckk = d.ckk(), Op = out_pad(d);
  for (int64_t o = 0; o < Op; ++o) {
    float* dst = wp + (o / OB) * ckk * OB + o % OB;
    for (int c = 0; c < d.C; ++c)
      for (int kh = 0; kh < K; ++kh)
        for (int kw = 0; kw < K; ++kw) {
          float v = 0.f;
          if (o < d.O)
            v = flip ? w[((int64_t(c) * d.O + o) * K + (K - 1 - kh)) * K + (K - 1 - kw)]
                     : w[((o * d.C + c) * K + kh) * K + kw];
          dst[((int64_t(c) * K + kh) * K + kw) * OB] = v;
        }
  }
}

// acc[r][v] = sum over taps (c,kh,kw) of xp[c][kh][kw + r*S] * wp[tap][v*kL .. v*kL+kL-1];
// xp points at the block's first pixel in plane 0. Then the block is transposed into
// y[o][r] (row stride ys) for the first mr pixels and the first `on` channels. With `whole`, each
// channel's row has room for kL floats from the block's first pixel, and the kL - MR beyond the
// block are rewritten by the next block of the row: whole-vector stores then replace masked ones
// (AVX2's vmaskmovps store is slow, microcoded on AMD).
// K (1 or 3, supported()) is a template parameter so that the tap loops unroll: a 1x1 kernel's
// channel loop then carries no inner loops.
template <int MR, int NV, int S, int K>
inline void fwd_kernel(const float* xp, int64_t plane, int Wp, int C, const float* wp, float* y, int64_t ys,
                       int mr, int on, bool whole) {
  static_assert(MR <= kL, "the output transpose holds kL pixels");
  batch acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = batch(0.f);
  const float* wk = wp;
  for (int c = 0; c < C; ++c) {
    for (int kh = 0; kh < K; ++kh) {
      const float* xr = xp + c * plane + kh * Wp;
      for (int kw = 0; kw < K; ++kw, wk += NV * kL) {
        batch bv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) bv[v] = batch::load_aligned(wk + v * kL);
        // Hide that tap kw+1 reads what tap kw read one pixel later: left visible, GCC keeps
        // those scalars in (and spills them from) the registers the accumulators need, instead
        // of folding each load into its FMA as an embedded broadcast.
        const float* xk = xr + kw;
        asm("" : "+r"(xk));
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          batch a(xk[r * S]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[r][v] = simd::fma(a, bv[v], acc[r][v]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) {
    batch t[kL];
#pragma GCC unroll 16
    for (int r = 0; r < kL; ++r) t[r] = r < MR ? acc[r < MR ? r : 0][v] : batch(0.f);
    simd::transpose(t);
    const int l1 = std::min(kL, on - v * kL);
    if (whole)
      for (int l = 0; l < l1; ++l) t[l].store_unaligned(y + (v * kL + l) * ys);
    else
      for (int l = 0; l < l1; ++l) simd::store_partial(y + (v * kL + l) * ys, t[l], mr);
  }
}

// One sample's forward pass from its padded input: y[o][ho][wo] for all o < d.O.
template <int MR, int NV>
inline void forward_sample_blocked(const Shape& d, const float* xp, const float* wp, float* y) {
  constexpr int OB = NV * kL;
  const int64_t ckk = d.ckk(), ys = int64_t(d.Ho) * d.Wo;
  for (int ho = 0; ho < d.Ho; ++ho)
    for (int wo = 0; wo < d.Wo; wo += MR) {
      const int mr = std::min(MR, d.Wo - wo);
      const bool whole = mr == MR && wo + kL <= d.Wo;  // see fwd_kernel
      const float* x0 = xp + int64_t(ho) * d.s * d.Wp() + int64_t(wo) * d.s;
      for (int ob = 0; ob * OB < d.O; ++ob) {
        float* yb = y + int64_t(ob) * OB * ys + int64_t(ho) * d.Wo + wo;
        const float* wb = wp + ob * ckk * OB;
        const int on = std::min(OB, d.O - ob * OB);
        const auto run = [&]<int S, int K>() { fwd_kernel<MR, NV, S, K>(x0, d.plane(), d.Wp(), d.C, wb, yb, ys, mr, on, whole); };
        if (d.K == 1) d.s == 1 ? run.template operator()<1, 1>() : run.template operator()<2, 1>();
        else d.s == 1 ? run.template operator()<1, 3>() : run.template operator()<2, 3>();
      }
    }
}
inline void forward_sample(const Shape& d, const float* xp, const float* wp, float* y) {
  const FwdBlock fb = fwd_block(d);
  if constexpr (kL == 16) {
    if (fb.nv == 4) forward_sample_blocked<7, 4>(d, xp, wp, y);
    else if (fb.nv == 1) forward_sample_blocked<14, 1>(d, xp, wp, y);
    else forward_sample_blocked<14, 2>(d, xp, wp, y);
  } else if constexpr (kL == 8) {
    if (fb.mr == 8) forward_sample_blocked<8, 1>(d, xp, wp, y);
    else if (fb.mr == 7) forward_sample_blocked<7, 1>(d, xp, wp, y);
    else forward_sample_blocked<6, 2>(d, xp, wp, y);
  } else {
    if (fb.nv == 1) forward_sample_blocked<4, 1>(d, xp, wp, y);
    else forward_sample_blocked<4, 3>(d, xp, wp, y);
  }
}

// Forward pass of samples [b0, b1) in order. fill(b, c, h, dst) writes input row (c, h) of sample
// b (W floats) into the padded plane set xp (this slice's scratch); y is the whole batch's output
// [B,O,Ho,Wo]; epi(b) runs after sample b's output is complete (a fused epilogue, while it is in L2).
template <class Fill, class Epi>
inline void forward_range(const Shape& d, const float* wp, float* y, int64_t b0, int64_t b1, float* xp, Fill&& fill,
                          Epi&& epi) {
  const int64_t ys = int64_t(d.O) * d.Ho * d.Wo;
  clear_input(d, xp);
  for (int64_t b = b0; b < b1; ++b) {
    pad_input(d, xp, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    forward_sample(d, xp, wp, y + b * ys);
    epi(b);
  }
}

// ---- filter gradient ----

// The filter gradient's channel block: kGradNV vectors (also the Winograd paths' channel block,
// whose filter gradients read the same transposed dy). Register block per width: G (c, kh) rows
// of KW taps each (grad_sample), G*KW*kGradNV accumulators.
inline constexpr int kGradNV = 2, kGradOB = kGradNV * kL;
template <int L>
constexpr int64_t grad_out_pad_w(const Shape& d) { return simd::round_up(d.O, kGradNV * L); }
inline int64_t grad_out_pad(const Shape& d) { return grad_out_pad_w<kL>(d); }
inline int64_t grad_t_floats(const Shape& d) {
  return simd::max_over_widths([&]<int L>() { return align_floats(d.ckk() * grad_out_pad_w<L>(d)); });
}
inline int64_t dyt_floats(const Shape& d) {
  return simd::max_over_widths([&]<int L>() { return align_floats(int64_t(d.Ho) * d.Wo * grad_out_pad_w<L>(d)); });
}

// dyT[q][o] = dy[o][q] for one sample (zero for padded channels).
inline void transpose_dy(const Shape& d, const float* dy, float* dyT) {
  const int64_t HW = int64_t(d.Ho) * d.Wo, Op = grad_out_pad(d);
  for (int64_t o0 = 0; o0 < Op; o0 += kL)
    for (int64_t q0 = 0; q0 < HW; q0 += kL) {
      batch t[kL];
      const int qn = int(std::min<int64_t>(kL, HW - q0));
      for (int l = 0; l < kL; ++l) {
        if (o0 + l < d.O && qn == kL) t[l] = batch::load_unaligned(dy + (o0 + l) * HW + q0);
        else if (o0 + l < d.O) {
          alignas(64) float tmp[kL] = {};
          std::memcpy(tmp, dy + (o0 + l) * HW + q0, sizeof(float) * qn);
          t[l] = batch::load_aligned(tmp);
        } else {
          t[l] = batch(0.f);
        }
      }
      simd::transpose(t);
      for (int j = 0; j < qn; ++j) t[j].store_unaligned(dyT + (q0 + j) * Op + o0);
    }
}

// gT[rows][OB] (+)= sum over the sample's output pixels of xp[tap row] * dyT[pixel][OB block].
// Rows are G consecutive (c, kh) pairs times KW = K taps each; xr[g] is row (c, kh)'s plane row.
template <int G, int KW, int S>
inline void grad_kernel(const float* const* xr, int Ho, int Wo, int Wp, const float* dyT, int64_t Op, float* gT,
                        int rows, bool first) {
  constexpr int NV = kGradNV, R = G * KW;
  batch acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = batch(0.f);
  const float* x[G];
  for (int g = 0; g < G; ++g) x[g] = xr[g];
  for (int ho = 0; ho < Ho; ++ho) {
    const float* dq = dyT + int64_t(ho) * Wo * Op;
    const int64_t ro = int64_t(ho) * S * Wp;
    for (int wo = 0; wo < Wo; ++wo, dq += Op) {
      batch bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = batch::load_aligned(dq + v * kL);
#pragma GCC unroll 8
      for (int g = 0; g < G; ++g) {
        const float* xg = x[g] + ro + wo * S;
        asm("" : "+r"(xg));  // as in fwd_kernel: no reuse of pixel wo's loads at wo+1
#pragma GCC unroll 4
        for (int kw = 0; kw < KW; ++kw) {
          batch a(xg[kw]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[g * KW + kw][v] = simd::fma(a, bv[v], acc[g * KW + kw][v]);
        }
      }
    }
  }
  for (int r = 0; r < rows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* p = gT + r * Op + v * kL;
      (first ? acc[r][v] : batch::load_aligned(p) + acc[r][v]).store_aligned(p);
    }
}

// gT += (or = when first) this sample's filter gradient, from its padded input xp and dyT.
template <int G, int KW>
inline void grad_sample_blocked(const Shape& d, const float* xp, const float* dyT, float* gT, bool first) {
  const int64_t Op = grad_out_pad(d), pairs = int64_t(d.C) * d.K;
  for (int64_t ob = 0; ob < Op; ob += kGradOB)
    for (int64_t g0 = 0; g0 < pairs; g0 += G) {
      const float* xr[G];
      const int gn = int(std::min<int64_t>(G, pairs - g0));
      for (int g = 0; g < G; ++g) {
        const int64_t pr = g0 + std::min(g, gn - 1), c = pr / d.K, kh = pr % d.K;
        xr[g] = xp + c * d.plane() + kh * d.Wp();
      }
      float* dst = gT + g0 * KW * Op + ob;
      if (d.s == 1)
        grad_kernel<G, KW, 1>(xr, d.Ho, d.Wo, d.Wp(), dyT + ob, Op, dst, gn * KW, first);
      else
        grad_kernel<G, KW, 2>(xr, d.Ho, d.Wo, d.Wp(), dyT + ob, Op, dst, gn * KW, first);
    }
}
// Filters of size 1 and 3 only (supported(d)).
inline bool supported(const Shape& d) { return (d.K == 1 || d.K == 3) && (d.s == 1 || d.s == 2); }
// 32 zmm: 4 x 3 taps (or 12 1x1 rows) x 2 vectors = 24 accumulators; 16 ymm/xmm: 2 x 3 (or 6) x 2 = 12.
inline void grad_sample(const Shape& d, const float* xp, const float* dyT, float* gT, bool first) {
  constexpr int G3 = kL == 16 ? 4 : 2, G1 = 3 * G3;
  if (d.K == 3) grad_sample_blocked<G3, 3>(d, xp, dyT, gT, first);
  else grad_sample_blocked<G1, 1>(d, xp, dyT, gT, first);
}

// This slice's filter gradient gT [C*K*K][Op] = sum over samples [b0, b1) in order; fill as in
// forward_range (the input x), dy the whole batch's output gradient. Scratch: xp, then dyT.
template <class Fill>
inline void grad_range(const Shape& d, const float* dy, int64_t b0, int64_t b1, float* xp, float* dyT, float* gT,
                       Fill&& fill) {
  const int64_t ys = int64_t(d.O) * d.Ho * d.Wo;
  clear_input(d, xp);
  for (int64_t b = b0; b < b1; ++b) {
    pad_input(d, xp, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    transpose_dy(d, dy + b * ys, dyT);
    grad_sample(d, xp, dyT, gT, b == b0);
  }
}

// dw[o][(c,kh,kw)] = sum over n partial gradients parts[i] (each [C*K*K][Op], stride `stride`
// floats apart), added in order i = 0..n-1.
// Taps [t0, t1) only (t1 < 0: all), so that callers can split the work.
inline void sum_grad_partials(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw, int64_t t0 = 0,
                              int64_t t1 = -1) {
  const int64_t ckk = d.ckk(), Op = grad_out_pad(d);
  for (int64_t t = t0; t < (t1 < 0 ? ckk : t1); ++t)
    for (int o = 0; o < d.O; ++o) {
      float s = parts[t * Op + o];
      for (int64_t i = 1; i < n; ++i) s += parts[i * stride + t * Op + o];
      dw[o * ckk + t] = s;
    }
}

}  // namespace ddpm::conv
