// Prelude, part two: the loop drivers of kernels over [B, C, HW...] domains walked one
// channel at a time (elementwise ops with per-channel operands, per-channel sums such as
// bias and GroupNorm-affine gradients) and the row statistics of the GroupNorm nests.
// Per-channel sums go to per-sample partials part[(b * C + c) * R + r], added in sample
// order, so results are bitwise identical at any thread count.
//
// Legend: b indexes samples, c channels, HW is the pixels of one channel; R sums per kernel.
#pragma once
// Included at the end of ddpm_prelude.h, after everything it uses.

namespace ddpm::gen {

// ---- Channel-wise drivers: domains [B, C, HW...] walked one channel at a time,
// so that a SIMD vector never straddles two channels. Per-channel sums go to
// per-sample partials part[(b * C + c) * R + r], added in sample order.

// out_r[c] = sum over b of part[(b * C + c) * R + r], b ascending.
template <int R> inline void sum_channel_partials(const float* part, int64_t B, int64_t C, float* const* out) {
  parallel_chunks((C + 63) / 64, B * C * R, [&](int64_t t) {
    const int64_t c1 = std::min<int64_t>(C, (t + 1) * 64);
    for (int64_t c = t * 64; c < c1; ++c)
      for (int r = 0; r < R; ++r) {
        double acc = 0;
        for (int64_t b = 0; b < B; ++b) acc += part[(b * C + c) * R + r];
        out[r][c] = (float)acc;
      }
  });
}

// Channels per task: about 8K elements, fixed by the shape.
inline int64_t channel_chunk(int64_t C, int64_t HW) {
  const int64_t c = 8192 / (HW > 0 ? HW : 1);
  return c < 1 ? 1 : c > C ? C : c;
}

// Elementwise: body(tag, b, j) for every element, channel by channel.
template <class F> inline void map_channels(int64_t B, int64_t C, int64_t HW, F&& body) {
  const int64_t cc = channel_chunk(C, HW), per = (C + cc - 1) / cc;
  parallel_chunks(B * per, B * C * HW, [&](int64_t t) {
    const int64_t b = t / per, c0 = (t % per) * cc, c1 = std::min<int64_t>(C, c0 + cc);
    for (int64_t c = c0; c < c1; ++c) for_cols(c * HW, (c + 1) * HW, [&](auto tag, int64_t j) { body(tag, b, j, nullptr); });
  });
}

// Sums of sample b's channels [c0, c1) into part[c * S + r] (part is sample b's [C, S]).
template <int R, int S = R, class F>
inline void channel_sums(int64_t b, int64_t c0, int64_t c1, int64_t HW, float* part, F&& body) {
  for (int64_t c = c0; c < c1; ++c) {
    double s[R];
    sum_cols<R>(b, c * HW, (c + 1) * HW, s, body);
    for (int k = 0; k < R; ++k) part[c * S + k] = (float)s[k];
  }
}

// The first sweep of a group-norm gradient over sample b's channels [c0, c1): body's
// first RB sums per channel into part[c * S + r], its last two added over all the
// channels into tot[0..2) (double inside, channel order), like row_channel_sums.
template <int RB, int S, class F>
inline void channel_and_row_sums(int64_t b, int64_t c0, int64_t c1, int64_t HW, float* part, float* tot, F&& body) {
  double t[2] = {0.0, 0.0};
  for (int64_t c = c0; c < c1; ++c) {
    double s[RB + 2];
    sum_cols<RB + 2>(b, c * HW, (c + 1) * HW, s, body);
    for (int k = 0; k < RB; ++k) part[c * S + k] = (float)s[k];
    t[0] += s[RB];
    t[1] += s[RB + 1];
  }
  tot[0] = (float)t[0];
  tot[1] = (float)t[1];
}

// Elementwise with per-channel sums: out_r [C] = sum over b and pixels.
template <int R, class F>
inline void reduce_channels(int64_t B, int64_t C, int64_t HW, float* part, float* const* out, F&& body) {
  const int64_t cc = channel_chunk(C, HW), per = (C + cc - 1) / cc;
  parallel_chunks(B * per, B * C * HW, [&](int64_t t) {
    const int64_t b = t / per, c0 = (t % per) * cc, c1 = std::min<int64_t>(C, c0 + cc);
    channel_sums<R>(b, c0, c1, HW, part + b * C * R, body);
  });
  sum_channel_partials<R>(part, B, C, out);
}

// Sums over sample b's channels [c0, c1) together: sums[r] (double inside).
template <int R, class F> inline void row_channel_sums(int64_t b, int64_t c0, int64_t c1, int64_t HW, float* sums, F&& body) {
  double tot[R] = {};
  for (int64_t c = c0; c < c1; ++c) {
    double s[R];
    sum_cols<R>(b, c * HW, (c + 1) * HW, s, body);
    for (int k = 0; k < R; ++k) tot[k] += s[k];
  }
  for (int k = 0; k < R; ++k) sums[k] = (float)tot[k];
}

// Sum of n contiguous floats, and sum of squared deviations from m (fixed order).
// (The tail loops count t from nv = n rounded down to whole vectors.)
// Four independent vector accumulators (one add's latency would otherwise bound the loop),
// combined in a fixed order.
inline float row_sum(const float* x, int64_t n) {
  const int64_t n4 = n / (4 * L) * (4 * L), nv = n / L * L;
  V va[4] = {V(0.0f), V(0.0f), V(0.0f), V(0.0f)};
  for (int64_t k = 0; k < n4; k += 4 * L)
    for (int u = 0; u < 4; ++u) va[u] += V::load_unaligned(x + k + u * L);
  for (int64_t k = n4; k < nv; k += L) va[0] += V::load_unaligned(x + k);
  double s = hsum((va[0] + va[1]) + (va[2] + va[3]));
  for (int64_t t = nv; t < n; ++t) s += x[t];
  return (float)s;
}
inline float row_sqdev(const float* x, int64_t n, float m) {
  const int64_t n4 = n / (4 * L) * (4 * L), nv = n / L * L;
  V va[4] = {V(0.0f), V(0.0f), V(0.0f), V(0.0f)};
  const V vm(m);
  for (int64_t k = 0; k < n4; k += 4 * L)
    for (int u = 0; u < 4; ++u) {
      const V d = V::load_unaligned(x + k + u * L) - vm;
      va[u] = simd::fma(d, d, va[u]);
    }
  for (int64_t k = n4; k < nv; k += L) {
    const V d = V::load_unaligned(x + k) - vm;
    va[0] = simd::fma(d, d, va[0]);
  }
  double s = hsum((va[0] + va[1]) + (va[2] + va[3]));
  for (int64_t t = nv; t < n; ++t) s += (double)(x[t] - m) * (x[t] - m);
  return (float)s;
}

}  // namespace ddpm::gen
