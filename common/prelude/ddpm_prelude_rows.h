// Prelude, part three: the helpers of the elementwise ops added for attention and
// guidance (maximum, minimum, abs, relu, tanh, comparisons, where, uniform noise)
// and the "call" kernels, each one op computed by one function here: softmax and
// log_softmax over the last axis (max-shifted) and their gradients, the transpose of the last two axes,
// and the per-sample (batched) matrix product.
//
// Legend: a call kernel works on `mats` independent matrices (the batch times the
// leading per-sample axes); a matrix is m × k (row-major), softmax rows have k
// elements. Work is split by matrix into fixed chunks, and each output element is
// summed in one fixed order, so results are bitwise identical at any thread count.
#pragma once
// Included at the end of ddpm_prelude.h, after everything it uses.

namespace ddpm::gen {

inline float vmax(float a, float b) { return a > b ? a : b; }
inline V vmax(const V& a, const V& b) { return xsimd::max(a, b); }
inline float vmin(float a, float b) { return a < b ? a : b; }
inline V vmin(const V& a, const V& b) { return xsimd::min(a, b); }
inline float vabs(float a) { return std::fabs(a); }
inline V vabs(const V& a) { return xsimd::abs(a); }
inline float vrelu(float a) { return a > 0.0f ? a : 0.0f; }
inline V vrelu(const V& a) { return xsimd::max(a, V(0.0f)); }
inline float vtanh(float a) { return std::tanh(a); }
inline V vtanh(const V& a) { return xsimd::tanh(a); }

// Comparisons give 1 where they hold, else 0.
inline float vlt(float a, float b) { return a < b ? 1.0f : 0.0f; }
inline V vlt(const V& a, const V& b) { return xsimd::select(a < b, V(1.0f), V(0.0f)); }
inline float vle(float a, float b) { return a <= b ? 1.0f : 0.0f; }
inline V vle(const V& a, const V& b) { return xsimd::select(a <= b, V(1.0f), V(0.0f)); }
inline float vgt(float a, float b) { return a > b ? 1.0f : 0.0f; }
inline V vgt(const V& a, const V& b) { return xsimd::select(a > b, V(1.0f), V(0.0f)); }
inline float vge(float a, float b) { return a >= b ? 1.0f : 0.0f; }
inline V vge(const V& a, const V& b) { return xsimd::select(a >= b, V(1.0f), V(0.0f)); }
inline float veq(float a, float b) { return a == b ? 1.0f : 0.0f; }
inline V veq(const V& a, const V& b) { return xsimd::select(a == b, V(1.0f), V(0.0f)); }
// where(c, a, b): a where c is nonzero, else b.
inline float vwhere(float c, float a, float b) { return c != 0.0f ? a : b; }
inline V vwhere(const V& c, const V& a, const V& b) { return xsimd::select(c != V(0.0f), a, b); }

// Uniform in (0, 1) for elements e0, e0+1, ... (one per lane, through gat); see philox.h.
template <class T> inline T runiform(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0) {
  if constexpr (std::is_same_v<T, V>) {
    alignas(64) uint32_t w0[L], w1[L];
    if (philox_words(seed, step, stream, e0, w0, w1)) {  // philox_uniform from the block's first word
      alignas(64) float out[L];
      for (int64_t k = 0; k < L; ++k) out[k] = (float)u32_to_open01(w0[k]);
      return V::load_aligned(out);
    }
  }
  return gat(T(), [&](int64_t e) { return (float)philox_uniform(seed, step, stream, (uint64_t)e); }, e0);
}

// Runs f(i) for i in [0, n) in fixed chunks of about 8K elements of work each.
template <class F> inline void for_mats(int64_t n, int64_t work_per_item, F&& f) {
  const int64_t per = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, work_per_item));
  parallel_chunks((n + per - 1) / per, [&](int64_t c) {
    for (int64_t i = c * per; i < std::min(n, (c + 1) * per); ++i) f(i);
  });
}

// y = softmax(x) over rows of k: exp(x - max) / sum, the sum in a fixed order.
inline void softmax_rows(const float* x, float* y, int64_t rows, int64_t k) {
  for_mats(rows, k, [&](int64_t r) {
    const float* xr = x + r * k;
    float* yr = y + r * k;
    float m = xr[0];
    for (int64_t j = 1; j < k; ++j) m = std::max(m, xr[j]);
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) s += (yr[j] = std::exp(xr[j] - m));
    const float inv = 1.0f / s;
    for (int64_t j = 0; j < k; ++j) yr[j] *= inv;
  });
}

// dx = y * (dy - sum(dy * y)) over rows of k (y the softmax output).
inline void softmax_back_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t k) {
  for_mats(rows, k, [&](int64_t r) {
    const float *yr = y + r * k, *dr = dy + r * k;
    float* o = dx + r * k;
    float s = 0.0f;
    for (int64_t j = 0; j < k; ++j) s += dr[j] * yr[j];
    for (int64_t j = 0; j < k; ++j) o[j] = yr[j] * (dr[j] - s);
  });
}

// The largest element of row xr[0..k): SIMD lanes, then the lanes and the scalar tail.
inline float row_max(const float* xr, int64_t k) {
  int64_t j = 0;
  float m = xr[0];
  if (k >= L) {
    V vm = V::load_unaligned(xr);
    for (j = L; j + L <= k; j += L) vm = xsimd::max(vm, V::load_unaligned(xr + j));
    alignas(64) float lanes[L];
    vm.store_aligned(lanes);
    for (int64_t q = 0; q < L; ++q) m = std::max(m, lanes[q]);
  }
  for (; j < k; ++j) m = std::max(m, xr[j]);
  return m;
}

// y = (x - max) - log(sum(exp(x - max))) over rows of k: max-shifted, so large
// logits are safe; SIMD along the row with a scalar tail, the sum in a fixed order.
inline void log_softmax_rows(const float* x, float* y, int64_t rows, int64_t k) {
  for_mats(rows, k, [&](int64_t r) {
    const float* xr = x + r * k;
    float* yr = y + r * k;
    const float m = row_max(xr, k);
    const V vm(m);
    V vs(0.0f);
    int64_t j = 0;
    for (; j + L <= k; j += L) vs += xsimd::exp(V::load_unaligned(xr + j) - vm);
    float s = hsum(vs);
    for (; j < k; ++j) s += std::exp(xr[j] - m);
    const float ls = std::log(s);
    const V vls(ls);
    for (j = 0; j + L <= k; j += L) ((V::load_unaligned(xr + j) - vm) - vls).store_unaligned(yr + j);
    for (; j < k; ++j) yr[j] = (xr[j] - m) - ls;
  });
}

// dx = dy - exp(y) * sum(dy) over rows of k (y the log_softmax output, so exp(y)
// is the softmax).
inline void log_softmax_back_rows(const float* y, const float* dy, float* dx, int64_t rows, int64_t k) {
  for_mats(rows, k, [&](int64_t r) {
    const float *yr = y + r * k, *dr = dy + r * k;
    float* o = dx + r * k;
    V vs(0.0f);
    int64_t j = 0;
    for (; j + L <= k; j += L) vs += V::load_unaligned(dr + j);
    float s = hsum(vs);
    for (; j < k; ++j) s += dr[j];
    const V v(s);
    for (j = 0; j + L <= k; j += L)
      (V::load_unaligned(dr + j) - xsimd::exp(V::load_unaligned(yr + j)) * v).store_unaligned(o + j);
    for (; j < k; ++j) o[j] = dr[j] - std::exp(yr[j]) * s;
  });
}

// y[i] = x[i]^T for mats matrices x of m × k.
inline void transpose_mats(const float* x, float* y, int64_t mats, int64_t m, int64_t k) {
  for_mats(mats, m * k, [&](int64_t i) {
    const float* xi = x + i * m * k;
    float* yi = y + i * m * k;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; ++c) yi[c * m + r] = xi[r * k + c];
  });
}

// c[i] = a[i] b[i] for mats matrices a of m × k and b of k × n: each row of c
// accumulates b's rows in order p = 0..k-1, SIMD across the n columns.
inline void bmm_mats(const float* a, const float* b, float* c, int64_t mats, int64_t m, int64_t k, int64_t n) {
  for_mats(mats, m * k * n, [&](int64_t i) {
    const float *ai = a + i * m * k, *bi = b + i * k * n;
    float* ci = c + i * m * n;
    for (int64_t r = 0; r < m; ++r) {
      float* cr = ci + r * n;
      int64_t j = 0;
      for (; j + L <= n; j += L) {
        V s(0.0f);
        for (int64_t p = 0; p < k; ++p) s = simd::fma(V(ai[r * k + p]), V::load_unaligned(bi + p * n + j), s);
        s.store_unaligned(cr + j);
      }
      for (; j < n; ++j) {
        float s = 0.0f;
        for (int64_t p = 0; p < k; ++p) s = std::fma(ai[r * k + p], bi[p * n + j], s);
        cr[j] = s;
      }
    }
  });
}

}  // namespace ddpm::gen
