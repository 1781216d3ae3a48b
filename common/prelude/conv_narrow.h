// Stride-1 convolutions with few output channels (O < 16, e.g. the U-Net's last 32 -> 1 layer):
// the forward pass and the filter gradient with output *pixels* along the vector lanes, where
// conv.h puts output channels in the lanes (which would leave 15 of 16 lanes idle at O = 1).
// Like conv.h, each sample is copied once into a zero-padded plane set xp (conv::pad_input, so a
// fill callback can compute the input while it is copied) and the kernels read straight from it.
//
// Dimension legend (one sample; d = conv::Shape with s = 1)
//   x [C,H,W] input, w [O,C,K,K] filter, y [O,Ho,Wo] output; xp [C,Hp,Wp] as in conv.h.
//   Forward: acc[R rows][2 vectors of kL pixels] += w[o][c][kh][kw] * xp[c][h+kh][w+kw].
//   Filter gradient: acc[K*K taps] += dy[o][h][w..] * xp[c][h+kh][w+kw..] over a sample's pixels;
//   P [O*C*K*K][kL] this slice's partial, lanes summed only at the end (sum_and_transform).
// Determinism: each output is one fixed sequence of FMAs; slices are added in slice order.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "conv.h"
#include "simd_shim.h"

namespace ddpm::narrow {

using batch = simd::batch;
using conv::Shape;
inline constexpr int kL = static_cast<int>(simd::kLanes);
inline constexpr int kRows = 4;  // output rows per forward register block

inline bool applies(const Shape& d) { return d.O < 16 && d.s == 1 && d.K <= 3; }

// The filter is used as it is (a copy keeps the call sequence of the other paths).
inline int64_t filter_floats(const Shape& d) { return simd::align_floats(int64_t(d.O) * d.ckk()); }
inline void pack_filter(const Shape& d, const float* w, bool flip, float* wp) {
  (void)flip;  // narrow layers never run a flipped (data-gradient) filter
  std::memcpy(wp, w, sizeof(float) * d.O * d.ckk());
}
inline int64_t slice_floats(const Shape& d) { return conv::padded_floats(d); }

// Rows [h0, h0 + R) of output channel o, columns [w0, w0 + 2 kL) (clipped to Wo when stored).
template <int R>
inline void fwd_rows(const Shape& d, const float* xp, const float* wo, float* yo, int h0, int w0) {
  const int Wp = d.Wp(), K = d.K;
  const int64_t plane = d.plane();
  batch acc[R][2];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = batch(0.f);
  for (int c = 0; c < d.C; ++c)
    for (int kh = 0; kh < K; ++kh)
      for (int kw = 0; kw < K; ++kw) {
        const batch wv(wo[(c * K + kh) * K + kw]);
        const float* src = xp + c * plane + int64_t(h0 + kh) * Wp + w0 + kw;
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          acc[r][0] = simd::fma(wv, batch::load_unaligned(src + r * Wp), acc[r][0]);
          acc[r][1] = simd::fma(wv, batch::load_unaligned(src + r * Wp + kL), acc[r][1]);
        }
      }
  const int n0 = std::min(kL, d.Wo - w0), n1 = std::max(0, std::min(kL, d.Wo - w0 - kL));
  for (int r = 0; r < R; ++r) {
    float* dst = yo + int64_t(h0 + r) * d.Wo + w0;
    simd::store_partial(dst, acc[r][0], n0);
    if (n1 > 0) simd::store_partial(dst + kL, acc[r][1], n1);
  }
}

inline void forward_sample(const Shape& d, const float* xp, const float* w, float* y) {
  const int64_t HW = int64_t(d.Ho) * d.Wo;
  for (int o = 0; o < d.O; ++o) {
    const float* wo = w + o * d.ckk();
    float* yo = y + o * HW;
    for (int w0 = 0; w0 < d.Wo; w0 += 2 * kL) {
      int h = 0;
      for (; h + kRows <= d.Ho; h += kRows) fwd_rows<kRows>(d, xp, wo, yo, h, w0);
      for (; h < d.Ho; ++h) fwd_rows<1>(d, xp, wo, yo, h, w0);
    }
  }
}

// Samples [b0, b1) in order, as conv::forward_range (scratch: slice_floats).
template <class Fill, class Epi>
inline void forward_range(const Shape& d, const float* w, float* y, int64_t b0, int64_t b1, float* xp, Fill&& fill,
                          Epi&& epi) {
  const int64_t ys = int64_t(d.O) * d.Ho * d.Wo;
  conv::clear_input(d, xp);
  for (int64_t b = b0; b < b1; ++b) {
    conv::pad_input(d, xp, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    narrow::forward_sample(d, xp, w, y + b * ys);
    epi(b);
  }
}

// ---- filter gradient ----

// One vector of lanes per tap: room for the widest width (the compiler plans it for any).
inline int64_t partial_floats(const Shape& d) { return int64_t(d.O) * d.ckk() * simd::kWidest; }
// Scratch of one slice: xp, then the partial P.
inline int64_t wgrad_slice_floats(const Shape& d) { return conv::padded_floats(d) + partial_floats(d); }
inline int64_t wgrad_partial_offset(const Shape& d) { return conv::padded_floats(d); }

// P[(o, c, kh, kw)] (+)= lanes of sum over pixels of dy[o][h][w] * xp[c][h+kh][w+kw] for one
// sample; lanes past a row's end load dy as zero.
template <int K>
inline void grad_sample(const Shape& d, const float* xp, const float* dy, float* P, bool first) {
  const int Wp = d.Wp();
  const int64_t plane = d.plane(), HW = int64_t(d.Ho) * d.Wo;
  for (int o = 0; o < d.O; ++o)
    for (int c = 0; c < d.C; ++c) {
      batch acc[K * K];
#pragma GCC unroll 9
      for (int k = 0; k < K * K; ++k) acc[k] = batch(0.f);
      for (int h = 0; h < d.Ho; ++h)
        for (int w0 = 0; w0 < d.Wo; w0 += kL) {
          const batch g = simd::load_partial(dy + o * HW + int64_t(h) * d.Wo + w0, std::min(kL, d.Wo - w0));
          const float* src = xp + c * plane + int64_t(h) * Wp + w0;
#pragma GCC unroll 3
          for (int kh = 0; kh < K; ++kh)
#pragma GCC unroll 3
            for (int kw = 0; kw < K; ++kw)
              acc[kh * K + kw] = simd::fma(g, batch::load_unaligned(src + kh * Wp + kw), acc[kh * K + kw]);
        }
      float* p = P + (int64_t(o) * d.C + c) * K * K * kL;
#pragma GCC unroll 9
      for (int k = 0; k < K * K; ++k)
        (first ? acc[k] : batch::load_aligned(p + k * kL) + acc[k]).store_aligned(p + k * kL);
    }
}

// This slice's partial over samples [b0, b1) in order; fill gives input rows as in forward_range,
// dy is the whole batch's output gradient.
template <class Fill>
inline void wgrad_range(const Shape& d, const float* dy, int64_t b0, int64_t b1, float* scratch, Fill&& fill) {
  float* xp = scratch;
  float* P = scratch + wgrad_partial_offset(d);
  const int64_t ys = int64_t(d.O) * d.Ho * d.Wo;
  conv::clear_input(d, xp);
  for (int64_t b = b0; b < b1; ++b) {
    conv::pad_input(d, xp, [&](int c, int h, float* dst) { fill(b, c, h, dst); });
    if (d.K == 3)
      narrow::grad_sample<3>(d, xp, dy + b * ys, P, b == b0);
    else if (d.K == 2)
      narrow::grad_sample<2>(d, xp, dy + b * ys, P, b == b0);
    else
      narrow::grad_sample<1>(d, xp, dy + b * ys, P, b == b0);
  }
}

// dw[i] = the lanes of the n slices' partials (stride floats apart), added in slice order.
inline void sum_and_transform(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw) {
  const int64_t m = int64_t(d.O) * d.ckk();
  for (int64_t i = 0; i < m; ++i) {
    batch v = batch::load_aligned(parts + i * kL);
    for (int64_t k = 1; k < n; ++k) v += batch::load_aligned(parts + k * stride + i * kL);
    dw[i] = simd::reduce_add(v);
  }
}

}  // namespace ddpm::narrow
