// Prelude of every generated module: the helpers that emitted kernels call.
//
// Emitted elementwise code is written once as a generic lambda over a tag whose
// type T is either float (scalar tail) or xsimd::batch<float> (main SIMD loop);
// the overloads here give each math op and memory access both forms.
// Loop drivers fix the partition of work from the problem size alone, never from
// the thread count, so every result is bitwise identical at any thread count.
//
// Legend: rows × cols is a kernel's iteration space (rows = B for [B, N] values),
// b indexes rows, j columns; L = SIMD lanes.
#pragma once
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <type_traits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <xsimd/xsimd.hpp>

#include "conv.h"
#include "conv_narrow.h"
#include "winograd.h"
#include "winograd4.h"
#include "winograd4_wgrad.h"
#include "winograd_wgrad.h"
#include "ddpm_abi.h"
#include "gemm.h"
#include "philox.h"
#include "simd_shim.h"

namespace ddpm::gen {

using V = xsimd::batch<float>;
constexpr int64_t L = (int64_t)V::size;

template <class T> inline T ld(const float* p);
template <> inline float ld<float>(const float* p) { return *p; }
template <> inline V ld<V>(const float* p) { return V::load_unaligned(p); }
inline void st(float* p, float x) { *p = x; }
// A vector store typed as floats. xsimd's store_unaligned goes through an intrinsic whose
// pointer type may alias anything, so after every store GCC reloaded e.A, e.B and the
// closure's references to recompute each address (13% of a SiLU epilogue at 8 lanes);
// a GCC vector of floats aliases floats only.
using VecF = float __attribute__((vector_size(sizeof(float) * L), aligned(alignof(float))));
inline void st(float* p, const V& x) {
  const typename V::register_type r = x;
  VecF v;
  std::memcpy(&v, &r, sizeof v);
  *reinterpret_cast<VecF*>(p) = v;
}

inline float vexp(float x) { return std::exp(x); }
inline V vexp(const V& x) { return xsimd::exp(x); }
inline float vlog(float x) { return std::log(x); }
inline V vlog(const V& x) { return xsimd::log(x); }
inline float vsqrt(float x) { return std::sqrt(x); }
inline V vsqrt(const V& x) { return xsimd::sqrt(x); }
// sin and cos of float lanes. xsimd's range reduction falls back to a scalar
// __ieee754_rem_pio2 per lane once any lane exceeds 64 pi, which a sinusoidal embedding
// of steps up to 1000 always does. Here x - k pi/2 is taken in four FMA steps with
// short-mantissa parts of pi/2 (each k * part exact for |k| < 2^15; the split of SLEEF's
// float sinf), then Cephes' polynomials on [-pi/4, pi/4]: within 2 ulp of sin/cos of the
// float x for |x| < 39000; larger or infinite lanes take xsimd's path.
struct SinCos {
  V s, c, quad;  // sin and cos of the reduced argument; the quadrant k mod 4 in 0..3
};
inline SinCos sincos_reduced(const V& x) {
  const V k = xsimd::nearbyint(x * V(0.636619772f));
  V r = simd::fnma(k, V(1.5703125f), x);
  r = simd::fnma(k, V(4.83512878417968750e-4f), r);
  r = simd::fnma(k, V(3.1385570764541626e-7f), r);
  r = simd::fnma(k, V(6.07710062827671e-11f), r);
  const V r2 = r * r;
  V ps = simd::fma(r2, V(-1.9515295891e-4f), V(8.3321608736e-3f));
  ps = simd::fma(r2, ps, V(-1.6666654611e-1f));
  const V s = simd::fma(r * r2, ps, r);
  V pc = simd::fma(r2, V(2.443315711809948e-5f), V(-1.388731625493765e-3f));
  pc = simd::fma(r2, pc, V(4.166664568298827e-2f));
  const V c = simd::fma(r2 * r2, pc, simd::fnma(V(0.5f), r2, V(1.0f)));
  return {s, c, k - V(4.0f) * xsimd::floor(k * V(0.25f))};
}
inline bool trig_fast_range(const V& x) { return xsimd::all(!(xsimd::abs(x) >= V(39000.0f))); }  // NaN lanes stay NaN
inline float vsin(float x) { return std::sin(x); }
inline V vsin(const V& x) {
  if (!trig_fast_range(x)) return xsimd::sin(x);
  const SinCos t = sincos_reduced(x);
  const V h = t.quad * V(0.5f);
  const V r = xsimd::select(h != xsimd::floor(h), t.c, t.s);
  return xsimd::select(t.quad >= V(2.0f), -r, r);
}
inline float vcos(float x) { return std::cos(x); }
inline V vcos(const V& x) {
  if (!trig_fast_range(x)) return xsimd::cos(x);
  const SinCos t = sincos_reduced(x);
  const V h = t.quad * V(0.5f);
  const V r = xsimd::select(h != xsimd::floor(h), t.s, t.c);
  return xsimd::select(xsimd::abs(t.quad - V(1.5f)) < V(1.0f), -r, r);
}
inline float vsigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
// sigmoid(x) = 1 / (1 + exp(-x)) with the exp inlined on a short dependency chain: a SiLU
// epilogue is bound by this chain's latency, not by its arithmetic (with xsimd::exp, about 16
// cycles per vector at 8 lanes). x is clamped to [-88, 88] (the operand order keeps NaN lanes
// NaN); -x = k ln2 + r in one FMA, the rest of k ln2 added to the linear term off the chain;
// exp(r) - 1 = r + r^2 h(r) with xsimd's (Cephes') h evaluated by Estrin's scheme instead of
// Horner's; 1 + 2^k exp(r) in one FMA. Within 4 float ulps (tests/test_prelude_math.cpp).
// Without a fused multiply-add (x86-64-v2) the one-step reduction is inexact: xsimd::exp.
inline V vsigmoid(const V& x) {
  if constexpr (!simd::kFusedFma) return V(1.0f) / (V(1.0f) + xsimd::exp(-x));
  const V z = xsimd::min(V(88.0f), xsimd::max(V(-88.0f), x));
  const V k = xsimd::nearbyint(z * V(-1.44269504088896341f));
  const V r = simd::fma(k, V(-0.693147182464599609375f), -z);  // ln2 rounded to float
  const V r1 = simd::fma(k, V(1.9046543e-09f), r);               // minus k (ln2 - that float)
  const V r2 = r * r;
  const V lo = simd::fma(V(1.6666277e-01f), r, V(0.5f));
  const V mid = simd::fma(V(8.3955629e-03f), r, V(4.1665401e-02f));
  const V h = simd::fma(simd::fma(V(1.3997796e-03f), r2, mid), r2, lo);
  const V em1 = simd::fma(h, r2, r1);  // exp(r) - 1
  const V p2 = xsimd::bitwise_cast<V>((xsimd::batch_cast<int32_t>(k) + 127) << 23);  // 2^k, |k| <= 127
  return V(1.0f) / simd::fma(em1, p2, p2 + V(1.0f));
}

inline float vclip(float x, float lo, float hi) { return std::min(std::max(x, lo), hi); }
inline V vclip(const V& x, float lo, float hi) { return xsimd::min(xsimd::max(x, V(lo)), V(hi)); }
inline float vclip_mask(float x, float lo, float hi) { return x > lo && x < hi ? 1.0f : 0.0f; }
inline V vclip_mask(const V& x, float lo, float hi) {
  return xsimd::select(x > V(lo) && x < V(hi), V(1.0f), V(0.0f));
}

// table[t] for step values t (floats holding whole numbers).
template <class T> inline T vlookup(const float* table, const T& t);
template <> inline float vlookup<float>(const float* table, const float& t) { return table[(int)t]; }
template <> inline V vlookup<V>(const float* table, const V& t) {
  alignas(64) float ti[L], out[L];
  t.store_aligned(ti);
  for (int64_t k = 0; k < L; ++k) out[k] = table[(int)ti[k]];
  return V::load_aligned(out);
}

// Random numbers for elements e0, e0+1, ... (one per lane); see philox.h.
template <class T> inline T rnormal(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0);
template <> inline float rnormal<float>(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0) {
  return (float)philox_normal(seed, step, stream, (uint64_t)e0);
}
// 32-bit lane operations for philox_lanes: AVX-512 (16 lanes) and AVX2 (8 lanes). mulhi is
// the high 32 bits of the 32 x 32 products, lane by lane: even lanes from one widening
// multiply, odd lanes from another on the shifted words.
#if defined(__AVX512F__)
struct PhiloxOps16 {
  using R = __m512i;
  static constexpr int kLanes = 16;
  static R set1(uint32_t x) { return _mm512_set1_epi32((int)x); }
  static R iota() { return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static R add(R a, R b) { return _mm512_add_epi32(a, b); }
  static R xor_(R a, R b) { return _mm512_xor_si512(a, b); }
  static R mullo(R a, R b) { return _mm512_mullo_epi32(a, b); }
  static R mulhi(R a, R m) {
    const R even = _mm512_srli_epi64(_mm512_mul_epu32(a, m), 32);
    const R odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    return _mm512_mask_blend_epi32((__mmask16)0xAAAA, even, odd);
  }
  static void store(uint32_t* p, R a) { _mm512_storeu_si512(p, a); }
};
#endif
#if defined(__AVX2__)
struct PhiloxOps8 {
  using R = __m256i;
  static constexpr int kLanes = 8;
  static R set1(uint32_t x) { return _mm256_set1_epi32((int)x); }
  static R iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  static R add(R a, R b) { return _mm256_add_epi32(a, b); }
  static R xor_(R a, R b) { return _mm256_xor_si256(a, b); }
  static R mullo(R a, R b) { return _mm256_mullo_epi32(a, b); }
  static R mulhi(R a, R m) {
    const R even = _mm256_srli_epi64(_mm256_mul_epu32(a, m), 32);
    const R odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    return _mm256_blend_epi32(even, odd, 0xAA);
  }
  static void store(uint32_t* p, R a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a); }
};
#endif

// Philox4x32-10 (philox.h's philox_block) with one element per lane of Ops::R.
template <class Ops>
inline bool philox_lanes(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0, uint32_t* w0, uint32_t* w1) {
  using R = typename Ops::R;
  const uint64_t e = (uint64_t)e0;
  if ((e >> 32) != ((e + Ops::kLanes - 1) >> 32)) return false;
  const R m0 = Ops::set1(0xD2511F53u), m1 = Ops::set1(0xCD9E8D57u);
  R c0 = Ops::add(Ops::set1((uint32_t)e), Ops::iota());
  R c1 = Ops::set1((uint32_t)(e >> 32) ^ (stream * 0x85EBCA6Bu));
  R c2 = Ops::set1((uint32_t)step), c3 = Ops::set1((uint32_t)(step >> 32));
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32) ^ stream;
  for (int r = 0; r < 10; ++r) {
    const R hi0 = Ops::mulhi(c0, m0), lo0 = Ops::mullo(c0, m0);
    const R hi1 = Ops::mulhi(c2, m1), lo1 = Ops::mullo(c2, m1);
    const R n0 = Ops::xor_(Ops::xor_(hi1, c1), Ops::set1(k0));
    const R n2 = Ops::xor_(Ops::xor_(hi0, c3), Ops::set1(k1));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  Ops::store(w0, c0);
  Ops::store(w1, c1);
  return true;
}

// Philox4x32-10 for the L consecutive elements e0, e0 + 1, ... in the lanes: the first two
// words of each element's block, w0[k] and w1[k], exactly as philox_block computes them.
// Returns false (nothing written) where the lanes would not share the element's high word, or
// without AVX-512 or AVX2 (4 lanes: SSE and NEON); callers then take the scalar path.
inline bool philox_words(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0, uint32_t* w0, uint32_t* w1) {
#if defined(__AVX512F__)
  if constexpr (L == 16) return philox_lanes<PhiloxOps16>(seed, step, stream, e0, w0, w1);
#endif
#if defined(__AVX2__)
  if constexpr (L == 8) return philox_lanes<PhiloxOps8>(seed, step, stream, e0, w0, w1);
#endif
  (void)seed, (void)step, (void)stream, (void)e0, (void)w0, (void)w1;
  return false;
}

// Standard normals for L consecutive elements: philox_normal's Box-Muller in double, lanes at a
// time (xsimd's double log and cos, within an ulp of libm's; the float results agree with the
// scalar path but for a last-bit rounding once in hundreds of millions of draws, see
// test_prelude_math.cpp).
template <> inline V rnormal<V>(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0) {
  alignas(64) float out[L];
  alignas(64) uint32_t w0[L], w1[L];
  if (philox_words(seed, step, stream, e0, w0, w1)) {
    using D = xsimd::batch<double>;
    constexpr int64_t H = (int64_t)D::size;
    for (int64_t k = 0; k < L; k += H) {
      alignas(64) double u1[H], u2[H];
      for (int64_t l = 0; l < H; ++l) u1[l] = u32_to_open01(w0[k + l]), u2[l] = u32_to_open01(w1[k + l]);
      const D r = xsimd::sqrt(D(-2.0) * xsimd::log(D::load_aligned(u1))) * xsimd::cos(D(6.283185307179586) * D::load_aligned(u2));
      r.store_aligned(out + k);  // rounds to float
    }
    return V::load_aligned(out);
  }
  for (int64_t k = 0; k < L; ++k) out[k] = (float)philox_normal(seed, step, stream, (uint64_t)(e0 + k));
  return V::load_aligned(out);
}
template <class T> inline T rstep(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0, int Tmax);
template <> inline float rstep<float>(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0, int Tmax) {
  return (float)philox_step(seed, step, stream, (uint64_t)e0, Tmax);
}
template <> inline V rstep<V>(uint64_t seed, uint64_t step, uint32_t stream, int64_t e0, int Tmax) {
  alignas(64) float out[L];
  alignas(64) uint32_t w0[L], w1[L];
  if (philox_words(seed, step, stream, e0, w0, w1)) {
    for (int64_t k = 0; k < L; ++k) {  // philox_step from the block's first word
      const int t = 1 + (int)(u32_to_open01(w0[k]) * Tmax);
      out[k] = (float)(t > Tmax ? Tmax : t);
    }
    return V::load_aligned(out);
  }
  for (int64_t k = 0; k < L; ++k) out[k] = (float)philox_step(seed, step, stream, (uint64_t)(e0 + k), Tmax);
  return V::load_aligned(out);
}

// A broadcast read: lane k takes f(j + k).
template <class F> inline float gat(float, F&& f, int64_t j) { return f(j); }
template <class F> inline V gat(const V&, F&& f, int64_t j) {
  alignas(64) float o[L];
  for (int64_t k = 0; k < L; ++k) o[k] = f(j + k);
  return V::load_aligned(o);
}

inline float hsum(float x) { return x; }
inline float hsum(const V& x) { return simd::reduce_add(x); }

// Calls f(tag, j) over columns [j0, j1): SIMD first, then the scalar tail.
template <class F> inline void for_cols(int64_t j0, int64_t j1, F&& f) {
  int64_t j = j0;
  for (; j + L <= j1; j += L) f(V(0.0f), j);
  for (; j < j1; ++j) f(0.0f, j);
}

// What body adds into acc[0..R) over columns [j0, j1) of row b: SIMD lanes, then
// the scalar tail, each summed in a fixed order; out[k] = lanes + tail (double).
template <int R, class F> inline void sum_cols(int64_t b, int64_t j0, int64_t j1, double* out, F&& body) {
  V va[R];
  float sa[R];
  for (int k = 0; k < R; ++k) va[k] = V(0.0f), sa[k] = 0.0f;
  int64_t j = j0;
  for (; j + L <= j1; j += L) body(V(0.0f), b, j, va);
  for (; j < j1; ++j) body(0.0f, b, j, sa);
  for (int k = 0; k < R; ++k) out[k] = (double)hsum(va[k]) + (double)sa[k];
}

// Rows per task: about 8K elements, fixed by the shape.
inline int64_t row_chunk(int64_t rows, int64_t cols) {
  int64_t c = 8192 / (cols > 0 ? cols : 1);
  return c < 1 ? 1 : c;
}

// Runs f(c) for c in [0, n) on the TBB pool, one task per chunk: a thread that finishes
// early takes the next chunk (a thread woken late onto a busy core does not hold the
// others up). Which thread runs a chunk never changes what it computes: chunks own
// their outputs and scratch by index. The TBB template is instantiated once per module
// (behind a function pointer), which keeps module build times low; the indirect call
// costs nothing next to a chunk of work.
using ChunkFn = void (*)(void* ctx, int64_t c);
__attribute__((noinline)) inline void parallel_chunks_erased(int64_t n, ChunkFn fn, void* ctx) {
  if (n == 1) {
    fn(ctx, 0);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, 1),
                    [&](const tbb::blocked_range<int64_t>& r) {
                      for (int64_t c = r.begin(); c < r.end(); ++c) fn(ctx, c);
                    },
                    tbb::simple_partitioner());
}
template <class F> inline void parallel_chunks(int64_t n, F&& f) {
  using Fn = std::remove_reference_t<F>;
  parallel_chunks_erased(n, [](void* ctx, int64_t c) { (*static_cast<Fn*>(ctx))(c); }, (void*)&f);
}

// Below this many elements a loop's chunks run in order on the calling thread: waking a
// second thread costs more than it saves (moons' [256, 128] activations stay on one thread,
// the U-Net's maps go parallel). The partition is the same either way, so results are too.
constexpr int64_t kMinParallelElems = 65536;
template <class F> inline void parallel_chunks(int64_t n, int64_t elems, F&& f) {
  if (elems < kMinParallelElems) {
    for (int64_t c = 0; c < n; ++c) f(c);
    return;
  }
  parallel_chunks(n, std::forward<F>(f));
}

// C = op(A) op(B) through the GEMM engine (gemm.h), with epi(i0, i1, j0, j1) run on
// each finished output tile. Type-erased for the same reason as parallel_chunks.
using TileFn = void (*)(void* ctx, int i0, int i1, int j0, int j1);
__attribute__((noinline)) inline void gemm_erased(int M, int N, int K, const float* A, int lda, bool ta, const float* Bm,
                                                  int ldb, bool tb, float* C, int ldc, bool accumulate, float* scratch,
                                                  TileFn fn, void* ctx) {
  if (fn)
    ddpm::gemm(M, N, K, A, lda, ta, Bm, ldb, tb, C, ldc, accumulate, scratch,
               [&](int i0, int i1, int j0, int j1) { fn(ctx, i0, i1, j0, j1); });
  else
    ddpm::gemm(M, N, K, A, lda, ta, Bm, ldb, tb, C, ldc, accumulate, scratch);
}
inline void gemm_plain(int M, int N, int K, const float* A, int lda, bool ta, const float* Bm, int ldb, bool tb, float* C,
                       int ldc, float* scratch, bool accumulate = false) {
  gemm_erased(M, N, K, A, lda, ta, Bm, ldb, tb, C, ldc, accumulate, scratch, nullptr, nullptr);
}
template <class F>
inline void gemm_epilogue(int M, int N, int K, const float* A, int lda, bool ta, const float* Bm, int ldb, bool tb,
                          float* C, int ldc, float* scratch, F&& epi) {
  using Fn = std::remove_reference_t<F>;
  gemm_erased(M, N, K, A, lda, ta, Bm, ldb, tb, C, ldc, false, scratch,
              [](void* ctx, int i0, int i1, int j0, int j1) { (*static_cast<Fn*>(ctx))(i0, i1, j0, j1); }, (void*)&epi);
}

// Convolution legend: one sample x [C,H,W], kernel K×K, stride s, padding p, output
// [Ho,Wo]; col is [C*K*K, Ho*Wo] with row (c*K + ki)*K + kj.
// col[(c,ki,kj), (i,j)] = x[c, i*s+ki-p, j*s+kj-p] (0 outside). Parallel over rows.
// The valid output columns of a row form one interval, copied without branches.
__attribute__((noinline)) inline void im2col(const float* x, int64_t C, int64_t H, int64_t W, int64_t K, int64_t s,
                                             int64_t p, int64_t Ho, int64_t Wo, float* col) {
  // A "same" stride-1 convolution: each col row is its input plane shifted by
  // (ki - p, kj - p), copied as one block; then the rows and columns that fall
  // outside the plane are zeroed.
  if (s == 1 && Ho == H && Wo == W) {
    parallel_chunks((C * K * K + 7) / 8, [&](int64_t chunk) {
      const int64_t r1 = std::min<int64_t>(C * K * K, (chunk + 1) * 8), n = H * W;
      for (int64_t r = chunk * 8; r < r1; ++r) {
        const int64_t c = r / (K * K), dh = (r / K) % K - p, dw = r % K - p, off = dh * W + dw;
        const float* xc = x + c * n;
        float* dst = col + r * n;
        const int64_t i0 = std::max<int64_t>(0, -dh), i1 = std::min<int64_t>(H, H - dh);
        if (i1 <= i0) {
          std::memset(dst, 0, n * sizeof(float));
          continue;
        }
        const int64_t q0 = i0 * W, q1 = i1 * W;
        const int64_t qa = std::max<int64_t>(q0, -off), qb = std::min<int64_t>(q1, n - off);
        std::memset(dst, 0, qa * sizeof(float));
        std::memcpy(dst + qa, xc + qa + off, (qb - qa) * sizeof(float));
        std::memset(dst + qb, 0, (n - qb) * sizeof(float));
        if (dw < 0)
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = 0; j < -dw; ++j) dst[i * W + j] = 0.0f;
        if (dw > 0)
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = W - dw; j < W; ++j) dst[i * W + j] = 0.0f;
      }
    });
    return;
  }
  parallel_chunks((C * K * K + 7) / 8, [&](int64_t chunk) {
    const int64_t r1 = std::min<int64_t>(C * K * K, (chunk + 1) * 8);
    for (int64_t r = chunk * 8; r < r1; ++r) {
      const int64_t c = r / (K * K), ki = (r / K) % K, kj = r % K;
      // Columns j with 0 <= j*s + kj - p < W.
      const int64_t j0 = std::min<int64_t>(Wo, std::max<int64_t>(0, (p - kj + s - 1) / s));
      const int64_t j1 = std::max<int64_t>(j0, std::min<int64_t>(Wo, (W - 1 + p - kj) / s + 1));
      float* dst = col + r * Ho * Wo;
      for (int64_t i = 0; i < Ho; ++i) {
        const int64_t h = i * s + ki - p;
        float* d = dst + i * Wo;
        if (h < 0 || h >= H) {
          std::memset(d, 0, Wo * sizeof(float));
          continue;
        }
        const float* src = x + (c * H + h) * W + kj - p;
        for (int64_t j = 0; j < j0; ++j) d[j] = 0.0f;
        if (s == 1) {
          std::memcpy(d + j0, src + j0, (j1 - j0) * sizeof(float));
        } else {
          for (int64_t j = j0; j < j1; ++j) d[j] = src[j * s];
        }
        for (int64_t j = j1; j < Wo; ++j) d[j] = 0.0f;
      }
    }
  });
}

// The filter of a stride-1 convolution's data gradient as a convolution:
// wt[c, (o, ki, kj)] = w[o, c, K-1-ki, K-1-kj], so that
// dx = conv(dy, wt) with padding K-1-p.
inline void flip_filter(const float* w, int64_t O, int64_t C, int64_t K, float* wt) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t ki = 0; ki < K; ++ki)
        for (int64_t kj = 0; kj < K; ++kj)
          wt[((c * O + o) * K + ki) * K + kj] = w[((o * C + c) * K + (K - 1 - ki)) * K + (K - 1 - kj)];
}

// x[c, i*s+ki-p, j*s+kj-p] += col[(c,ki,kj), (i,j)], x zeroed first. Parallel over
// channels (each channel's rows only touch that channel), fixed order within.
__attribute__((noinline)) inline void col2im(const float* col, int64_t C, int64_t H, int64_t W, int64_t K, int64_t s,
                                             int64_t p, int64_t Ho, int64_t Wo, float* x) {
  parallel_chunks(C, [&](int64_t c) {
    float* xc = x + c * H * W;
    std::memset(xc, 0, H * W * sizeof(float));
    for (int64_t ki = 0; ki < K; ++ki)
      for (int64_t kj = 0; kj < K; ++kj) {
        const float* src = col + ((c * K + ki) * K + kj) * Ho * Wo;
        const int64_t j0 = std::min<int64_t>(Wo, std::max<int64_t>(0, (p - kj + s - 1) / s));
        const int64_t j1 = std::max<int64_t>(j0, std::min<int64_t>(Wo, (W - 1 + p - kj) / s + 1));
        for (int64_t i = 0; i < Ho; ++i) {
          const int64_t h = i * s + ki - p;
          if (h < 0 || h >= H) continue;
          float* d = xc + h * W + kj - p;
          const float* sr = src + i * Wo;
          if (s == 1)
            for (int64_t j = j0; j < j1; ++j) d[j] += sr[j];
          else
            for (int64_t j = j0; j < j1; ++j) d[j * s] += sr[j];
        }
      }
  });
}

// Elementwise: body(tag, b, j) for every element.
template <class F> inline void map_rows(int64_t rows, int64_t cols, F&& body) {
  const int64_t chunk = row_chunk(rows, cols), n = (rows + chunk - 1) / chunk;
  parallel_chunks(n, rows * cols, [&](int64_t c) {
    const int64_t r1 = (c + 1) * chunk < rows ? (c + 1) * chunk : rows;
    for (int64_t b = c * chunk; b < r1; ++b) for_cols(0, cols, [&](auto tag, int64_t j) { body(tag, b, j, nullptr); });
  });
}

// Elementwise over n elements walked as one row (b = 0, j = flat index), in chunks of 8K.
template <class F> inline void map_flat(int64_t n, F&& body) {
  const int64_t chunk = 8192, m = (n + chunk - 1) / chunk;
  parallel_chunks(m, n, [&](int64_t c) {
    for_cols(c * chunk, std::min(n, (c + 1) * chunk), [&](auto tag, int64_t j) { body(tag, 0, j, nullptr); });
  });
}

// Reduction over everything: out[r] = sum over elements of what body adds into acc[r].
// Per-chunk partials (double) are combined in chunk order.
template <int R, class F> inline void reduce_all(int64_t rows, int64_t cols, float* out, F&& body) {
  const int64_t chunk = row_chunk(rows, cols), n = (rows + chunk - 1) / chunk;
  double total[R] = {};
  // Chunks run 64 at a time so that their partial sums fit on the stack.
  for (int64_t c0 = 0; c0 < n; c0 += 64) {
    const int64_t m = n - c0 < 64 ? n - c0 : 64;
    double partial[R][64];
    parallel_chunks(m, rows * cols, [&](int64_t ci) {
      const int64_t c = c0 + ci;
      const int64_t r1 = (c + 1) * chunk < rows ? (c + 1) * chunk : rows;
      double acc[R] = {};
      for (int64_t b = c * chunk; b < r1; ++b) {
        double s[R];
        sum_cols<R>(b, 0, cols, s, body);
        for (int k = 0; k < R; ++k) acc[k] += s[k];
      }
      for (int k = 0; k < R; ++k) partial[k][ci] = acc[k];
    });
    for (int k = 0; k < R; ++k)
      for (int64_t ci = 0; ci < m; ++ci) total[k] += partial[k][ci];
  }
  for (int k = 0; k < R; ++k) out[k] = (float)total[k];
}

// Reduction over the batch: out_k[j] = sum over rows b. Parallel over groups of up to
// kBatchSumBlocks column blocks of L; each block sums its rows in order into its own
// accumulators (so the partition never changes a result), and the blocks of a group are
// summed row by row together: one block alone waits on the add's latency every row.
constexpr int64_t kBatchSumBlocks = 4;
template <int G, int R, class F> inline void sum_rows_blocks(int64_t rows, int64_t j0, float* const* out, F& body) {
  V acc[G][R];  // in registers: the loops over q are unrolled (else each add round-trips the stack)
#pragma GCC unroll 4
  for (int q = 0; q < G; ++q)
#pragma GCC unroll 4
    for (int k = 0; k < R; ++k) acc[q][k] = V(0.0f);
  for (int64_t b = 0; b < rows; ++b)
#pragma GCC unroll 4
    for (int q = 0; q < G; ++q) body(V(0.0f), b, j0 + q * L, acc[q]);
#pragma GCC unroll 4
  for (int q = 0; q < G; ++q)
#pragma GCC unroll 4
    for (int k = 0; k < R; ++k) acc[q][k].store_unaligned(out[k] + j0 + q * L);
}
template <int R, class F> inline void reduce_batch(int64_t rows, int64_t cols, float* const* out, F&& body) {
  constexpr int64_t G = kBatchSumBlocks;
  const int64_t full = cols / L, tail = cols - full * L, groups = (full + G - 1) / G, n = groups + (tail ? 1 : 0);
  parallel_chunks(n, rows * cols, [&](int64_t c) {
    if (c < groups) {
      const int64_t q0 = c * G, g = full - q0 < G ? full - q0 : G;
      if (g == G) {
        sum_rows_blocks<G, R>(rows, q0 * L, out, body);
      } else {
        for (int64_t q = q0; q < q0 + g; ++q) sum_rows_blocks<1, R>(rows, q * L, out, body);
      }
    } else {
      for (int64_t j = full * L; j < cols; ++j) {
        float acc[R] = {};
        for (int64_t b = 0; b < rows; ++b) body(0.0f, b, j, acc);
        for (int k = 0; k < R; ++k) out[k][j] = acc[k];
      }
    }
  });
}

// Reduction over each row's features: out_k[b] = sum over columns j.
template <int R, class F> inline void reduce_features(int64_t rows, int64_t cols, float* const* out, F&& body) {
  const int64_t chunk = row_chunk(rows, cols), n = (rows + chunk - 1) / chunk;
  parallel_chunks(n, rows * cols, [&](int64_t c) {
    const int64_t r1 = (c + 1) * chunk < rows ? (c + 1) * chunk : rows;
    for (int64_t b = c * chunk; b < r1; ++b) {
      double s[R];
      sum_cols<R>(b, 0, cols, s, body);
      for (int k = 0; k < R; ++k) out[k][b] = (float)s[k];
    }
  });
}

// out = in summed over the axes where keep[d] is false (and over the batch when the
// input is batched and the output is not). dims are the input's per-sample dims.
// One output element per task, its inputs summed in a fixed order (double).
inline void reduce_to(const float* in, float* out, int64_t B, bool in_batched, bool out_batched, int nd,
                      const int64_t* dims, const bool* keep) {
  int64_t n_in = 1, n_out = 1;
  for (int d = 0; d < nd; ++d) n_in *= dims[d], n_out *= keep[d] ? dims[d] : 1;
  const int64_t rows_out = out_batched ? B : 1, rows_in = in_batched ? B : 1;
  // Fast path: kept axes all lead and reduced axes all trail (GroupNorm statistics,
  // bias gradients), so each output sums contiguous blocks of `inner` floats.
  int lead = 0;
  while (lead < nd && keep[lead]) ++lead;
  bool trailing = true;
  for (int d = lead; d < nd; ++d) trailing = trailing && !keep[d];
  if (trailing) {
    const int64_t inner = n_in / n_out;
    parallel_chunks(rows_out * n_out, rows_in * n_in, [&](int64_t o) {
      const int64_t ob = o / n_out, oj = o % n_out;
      double acc = 0;
      for (int64_t b = out_batched ? ob : 0; b < (out_batched ? ob + 1 : rows_in); ++b) {
        const float* blk = in + b * n_in + oj * inner;
        V va(0.0f);
        int64_t k = 0;
        for (; k + L <= inner; k += L) va += V::load_unaligned(blk + k);
        float sa = 0.0f;
        for (; k < inner; ++k) sa += blk[k];
        acc += (double)hsum(va) + (double)sa;
      }
      out[o] = (float)acc;
    });
    return;
  }
  parallel_chunks(rows_out * n_out, rows_in * n_in, [&](int64_t o) {
    const int64_t ob = o / n_out;
    int64_t rest = o % n_out, base = 0, stride = 1;
    int64_t red_dims[8], red_strides[8];
    int nred = 0;
    for (int d = nd - 1; d >= 0; --d) {
      if (keep[d]) {
        base += (rest % dims[d]) * stride;
        rest /= dims[d];
      } else {
        red_dims[nred] = dims[d];
        red_strides[nred++] = stride;
      }
      stride *= dims[d];
    }
    int64_t n_red = 1;
    for (int r = 0; r < nred; ++r) n_red *= red_dims[r];
    double acc = 0;
    for (int64_t b = out_batched ? ob : 0; b < (out_batched ? ob + 1 : rows_in); ++b)
      for (int64_t c = 0; c < n_red; ++c) {
        int64_t idx = base, q = c;
        for (int r = 0; r < nred; ++r) {
          idx += (q % red_dims[r]) * red_strides[r];
          q /= red_dims[r];
        }
        acc += in[b * n_in + idx];
      }
    out[o] = (float)acc;
  });
}

// out[i] = sum over k < n of parts[k * stride + i], in order of k (len floats).
inline void sum_partials(const float* parts, int64_t n, int64_t stride, int64_t len, float* out) {
  parallel_chunks((len + 4095) / 4096, len * n, [&](int64_t c) {
    const int64_t i1 = std::min<int64_t>(len, (c + 1) * 4096);
    for (int64_t i = c * 4096; i < i1; ++i) {
      float acc = parts[i];
      for (int64_t k = 1; k < n; ++k) acc += parts[k * stride + i];
      out[i] = acc;
    }
  });
}

// Nearest 2x upsampling of `planes` planes [H,W] -> [2H,2W], and its adjoint.
inline void upsample2x(const float* in, float* out, int64_t planes, int64_t H, int64_t W) {
  parallel_chunks(planes, planes * H * W * 4, [&](int64_t q) {
    for (int64_t i = 0; i < 2 * H; ++i) {
      const float* src = in + (q * H + i / 2) * W;
      float* dst = out + (q * 2 * H + i) * 2 * W;
      for (int64_t j = 0; j < 2 * W; ++j) dst[j] = src[j / 2];
    }
  });
}
inline void pool2x_sum(const float* in, float* out, int64_t planes, int64_t H, int64_t W) {
  parallel_chunks(planes, planes * H * W * 4, [&](int64_t q) {
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const float* s = in + (q * 2 * H + 2 * i) * 2 * W + 2 * j;
        out[(q * H + i) * W + j] = (s[0] + s[1]) + (s[2 * W] + s[2 * W + 1]);
      }
  });
}

// Copies rows of `width` floats from src (row stride src_ld) to dst (stride dst_ld).
inline void copy_rows(int64_t rows, int64_t width, const float* src, int64_t src_ld, float* dst, int64_t dst_ld) {
  const int64_t chunk = row_chunk(rows, width), n = (rows + chunk - 1) / chunk;
  parallel_chunks(n, rows * width, [&](int64_t c) {
    const int64_t r1 = (c + 1) * chunk < rows ? (c + 1) * chunk : rows;
    for (int64_t r = c * chunk; r < r1; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, width * sizeof(float));
  });
}

}  // namespace ddpm::gen

#include "ddpm_prelude_channels.h"
#include "ddpm_prelude_rows.h"
