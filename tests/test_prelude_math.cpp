// Tests for the vector math of common/prelude/ddpm_prelude.h that generated modules
// call: vsin and vcos against double-precision sin and cos of the same float lanes,
// over the arguments a sinusoidal step embedding produces (t * freq up to 1000 and
// beyond, where xsimd's own reduction turns scalar) and their special values; and the
// log_softmax row kernels on logits large enough to overflow an unshifted exp; vsigmoid
// against the double logistic function.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

// GCC 12 flags the `__m512 __Y = __Y;` of its own _mm512_undefined_ps inside xsimd's
// rounding and conversions (a known false positive); modules build without -Wall.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "common/prelude/ddpm_prelude.h"

namespace {

using ddpm::gen::L;
using ddpm::gen::V;

// Largest |f(x) - ref(x)| over lanes x = x0 + (i + l) * dx, i < n.
template <class F, class R> double worst_error(F&& f, R&& ref, double x0, double dx, long n) {
  alignas(64) float in[L], out[L];
  double worst = 0;
  for (long i = 0; i < n; i += L) {
    for (int64_t l = 0; l < L; ++l) in[l] = (float)(x0 + (double)(i + l) * dx);
    f(V::load_aligned(in)).store_aligned(out);
    for (int64_t l = 0; l < L; ++l) worst = std::max(worst, std::fabs((double)out[l] - ref((double)in[l])));
  }
  return worst;
}

}  // namespace

TEST_CASE("prelude: vsin and vcos are within 2 float ulps of double sin and cos up to |x| = 39000, and beyond") {
  auto vs = [](const V& x) { return ddpm::gen::vsin(x); };
  auto vc = [](const V& x) { return ddpm::gen::vcos(x); };
  auto s = [](double x) { return std::sin(x); };
  auto c = [](double x) { return std::cos(x); };
  const double ulp = std::ldexp(1.0, -24);  // half the spacing of floats in [0.5, 1)
  for (auto [x0, dx, n] : {std::tuple{-1.0, 1e-4, 20000L}, {-40.0, 1e-3, 80000L}, {0.0, 0.0173, 60000L},
                           {-39000.0, 0.0977, 800000L}}) {
    CAPTURE(x0);
    CHECK(worst_error(vs, s, x0, dx, n) < 4 * ulp);
    CHECK(worst_error(vc, c, x0, dx, n) < 4 * ulp);
  }
  // Past the fast range a lane takes xsimd's reduction: still sin and cos.
  CHECK(worst_error(vs, s, 39000.0, 3.7, 4000) < 4 * ulp);
  CHECK(worst_error(vc, c, 1e6, 91.3, 4000) < 4 * ulp);
  alignas(64) float in[L], out[L];
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    for (int64_t l = 0; l < L; ++l) in[l] = l == 3 ? bad : 0.5f;
    ddpm::gen::vsin(V::load_aligned(in)).store_aligned(out);
    CHECK(std::isnan(out[3]));
    CHECK(out[0] == doctest::Approx(std::sin(0.5)).epsilon(1e-6));
    ddpm::gen::vcos(V::load_aligned(in)).store_aligned(out);
    CHECK(std::isnan(out[3]));
    CHECK(out[0] == doctest::Approx(std::cos(0.5)).epsilon(1e-6));
  }
}

TEST_CASE("prelude: vector rnormal, rstep and runiform draw the scalar philox numbers") {
  alignas(64) float out[L];
  int64_t differ = 0, n = 0;
  double worst = 0;
  for (int64_t e0 : {int64_t(0), int64_t(4096), int64_t(1) << 20, (int64_t(1) << 32) - 8, (int64_t(1) << 33) + 5}) {
    for (int64_t blk = 0; blk < 2000; ++blk) {
      const int64_t e = e0 + blk * L;
      ddpm::gen::rnormal<V>(1234, 77, 3, e).store_aligned(out);
      for (int64_t l = 0; l < L; ++l, ++n) {
        const float ref = (float)ddpm::philox_normal(1234, 77, 3, (uint64_t)(e + l));
        if (out[l] != ref) ++differ;
        worst = std::max(worst, (double)std::fabs(out[l] - ref) / std::max(1.0f, std::fabs(ref)));
      }
    }
  }
  // The lanes' Philox words themselves: computed in vector registers at 16 lanes (AVX-512) and
  // 8 (AVX2), where they must be philox_block's words exactly; 4 lanes take the scalar path.
  alignas(64) uint32_t w0[L], w1[L];
  const bool vector_words = ddpm::gen::philox_words(1234, 77, 3, 4096, w0, w1);
#if defined(__AVX512F__) || defined(__AVX2__)
  CHECK(vector_words);
#else
  CHECK(!vector_words);
#endif
  for (int64_t l = 0; vector_words && l < L; ++l) {
    const ddpm::Philox4 b = ddpm::philox_block(1234, 77, 3, (uint64_t)(4096 + l));
    CHECK(w0[l] == b.v[0]);
    CHECK(w1[l] == b.v[1]);
  }
  MESSAGE(differ << " of " << n << " draws differ from the scalar path; worst relative difference " << worst);
  CHECK(differ <= n / 100000);
  CHECK(worst <= 2.4e-7);
  // uniform_step draws from the same words: exactly philox_step's steps.
  for (int64_t e : {int64_t(0), int64_t(12345), (int64_t(1) << 32) - 8}) {
    ddpm::gen::rstep<V>(99, 5, 1, e, 1000).store_aligned(out);
    for (int64_t l = 0; l < L; ++l) CHECK(out[l] == (float)ddpm::philox_step(99, 5, 1, (uint64_t)(e + l), 1000));
    ddpm::gen::runiform<V>(99, 5, 2, e).store_aligned(out);
    for (int64_t l = 0; l < L; ++l) CHECK(out[l] == (float)ddpm::philox_uniform(99, 5, 2, (uint64_t)(e + l)));
  }
}

TEST_CASE("prelude: log_softmax_rows is finite and exact for logits of +-1000, and its gradient sums to zero") {
  using namespace ddpm::gen;
  // Rows of 3, 8 + 1 and 2 * 16 + 3 elements: scalar only, one vector and a tail at every width.
  for (int64_t k : {3, 9, 35}) {
    CAPTURE(k);
    std::vector<float> x((size_t)k), y((size_t)k), dy((size_t)k), dx((size_t)k);
    for (int64_t j = 0; j < k; ++j) x[j] = j == 1 ? 1000.0f : j % 2 ? -1000.0f : 0.5f * (float)j;
    log_softmax_rows(x.data(), y.data(), 1, k);
    double m = x[0];
    for (float v : x) m = std::max(m, (double)v);
    double s = 0;
    for (float v : x) s += std::exp((double)v - m);
    for (int64_t j = 0; j < k; ++j) {
      CHECK(std::isfinite(y[j]));
      CHECK(std::abs(y[j] - ((double)x[j] - m - std::log(s))) <= 1e-4 * (1 + std::abs(y[j])));
    }
    CHECK(y[1] == 0.0f);  // the largest logit takes all the mass
    for (int64_t j = 0; j < k; ++j) dy[j] = 0.25f * (float)(j % 5) - 0.5f;
    log_softmax_back_rows(y.data(), dy.data(), dx.data(), 1, k);
    double total = 0;
    for (float v : dx) total += v;
    CHECK(std::abs(total) <= 1e-5);
    CHECK(std::isfinite(dx[0]));
  }
}

TEST_CASE("prelude: vsigmoid is within 4 float ulps of the logistic function and keeps its limits and NaN") {
  auto f = [](const V& x) { return ddpm::gen::vsigmoid(x); };
  alignas(64) float in[L], out[L];
  double worst = 0;
  long n = 0;
  for (double x0 = -88.0; x0 < 88.0; x0 += 3.1e-4 * L) {
    for (int64_t l = 0; l < L; ++l) in[l] = (float)(x0 + 3.1e-4 * (double)l);
    f(V::load_aligned(in)).store_aligned(out);
    for (int64_t l = 0; l < L; ++l, ++n) {
      const double ref = 1.0 / (1.0 + std::exp(-(double)in[l]));
      if (ref > 1e-37) worst = std::max(worst, std::fabs((double)out[l] - ref) / ref);
    }
  }
  CHECK(n > 500000);
  CHECK(worst < 4 * std::ldexp(1.0, -24));
  const float special[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 1e30f, -1e30f,
                           100.0f, -100.0f, 0.0f, std::numeric_limits<float>::quiet_NaN()};
  for (int s0 = 0; s0 < 8; s0 += (int)L) {  // every special value at 4 lanes too
    for (int64_t l = 0; l < L; ++l) in[l] = special[(s0 + l) % 8];
    f(V::load_aligned(in)).store_aligned(out);
    for (int64_t l = 0; l < L; ++l) {
      CAPTURE(in[l]);
      if (std::isnan(in[l])) {
        CHECK(std::isnan(out[l]));
      } else if (in[l] > 0) {
        CHECK(out[l] == 1.0f);
      } else if (in[l] < 0) {
        CHECK(out[l] >= 0.0f);
        CHECK(out[l] < 1e-37f);
      } else {
        CHECK(out[l] == 0.5f);
      }
    }
  }
}
