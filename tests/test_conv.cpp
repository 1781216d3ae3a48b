// common/prelude/conv.h against a naive convolution in double: the forward pass, the stride-1 data
// gradient (forward pass of dy with the flipped filter) and the filter gradient summed over
// samples, at every U-Net shape class: 3x3 and 1x1, stride 1 and 2, channel counts that are
// and are not multiples of the 16/32/64-lane blocks, and widths that leave partial pixel blocks.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "conv.h"
#include "conv_narrow.h"
#include "winograd.h"
#include "winograd4.h"
#include "winograd4_wgrad.h"
#include "winograd_wgrad.h"

namespace {

using ddpm::conv::Shape;

Shape shape(int C, int H, int O, int K, int s) {
  const int p = (K - 1) / 2, Ho = (H + 2 * p - K) / s + 1;
  return Shape{C, H, H, O, K, s, p, Ho, Ho};
}

std::vector<float> rand_vec(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

double xat(const Shape& d, const std::vector<float>& x, int b, int c, int h, int w) {
  if (h < 0 || h >= d.H || w < 0 || w >= d.W) return 0;
  return x[((size_t(b) * d.C + c) * d.H + h) * d.W + w];
}

// y[b,o,i,j] = sum w[o,c,ki,kj] x[b,c,i*s+ki-p,j*s+kj-p]
std::vector<double> ref_forward(const Shape& d, int B, const std::vector<float>& x, const std::vector<float>& w) {
  std::vector<double> y(size_t(B) * d.O * d.Ho * d.Wo);
  for (int b = 0; b < B; ++b)
    for (int o = 0; o < d.O; ++o)
      for (int i = 0; i < d.Ho; ++i)
        for (int j = 0; j < d.Wo; ++j) {
          double s = 0;
          for (int c = 0; c < d.C; ++c)
            for (int ki = 0; ki < d.K; ++ki)
              for (int kj = 0; kj < d.K; ++kj)
                s += w[((size_t(o) * d.C + c) * d.K + ki) * d.K + kj] *
                     xat(d, x, b, c, i * d.s + ki - d.p, j * d.s + kj - d.p);
          y[((size_t(b) * d.O + o) * d.Ho + i) * d.Wo + j] = s;
        }
  return y;
}

// dw[o,c,ki,kj] = sum over b, i, j of dy[b,o,i,j] x[b,c,i*s+ki-p,j*s+kj-p], in double.
std::vector<double> ref_wgrad(const Shape& d, int B, const std::vector<float>& x, const std::vector<float>& dy) {
  std::vector<double> want(size_t(d.O) * d.ckk());
  for (int o = 0; o < d.O; ++o)
    for (int c = 0; c < d.C; ++c)
      for (int ki = 0; ki < d.K; ++ki)
        for (int kj = 0; kj < d.K; ++kj) {
          double s = 0;
          for (int b = 0; b < B; ++b)
            for (int i = 0; i < d.Ho; ++i)
              for (int j = 0; j < d.Wo; ++j)
                s += dy[((size_t(b) * d.O + o) * d.Ho + i) * d.Wo + j] *
                     xat(d, x, b, c, i * d.s + ki - d.p, j * d.s + kj - d.p);
          want[((size_t(o) * d.C + c) * d.K + ki) * d.K + kj] = s;
        }
  return want;
}

// A filter gradient of 3 samples computed as the generated code does: two slices (samples {0}
// and {1, 2}), each with its own scratch of sf floats (its partial at offset po), added in order.
template <class Range, class Sum>
std::vector<float> two_slice_wgrad(const Shape& d, const std::vector<float>& x, const std::vector<float>& dy, int64_t sf,
                                   int64_t po, Range&& range, Sum&& sum) {
  auto scratch = ddpm::aligned_alloc_floats(2 * sf);
  auto fill = [&](int64_t b, int c, int h, float* dst) {
    std::memcpy(dst, x.data() + ((size_t(b) * d.C + c) * d.H + h) * d.W, sizeof(float) * d.W);
  };
  range(d, dy.data(), 0, 1, scratch.get(), fill);
  range(d, dy.data(), 1, 3, scratch.get() + sf, fill);
  std::vector<float> dw(size_t(d.O) * d.ckk(), NAN);
  sum(d, scratch.get() + po, 2, sf, dw.data());
  return dw;
}

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  REQUIRE(got.size() >= want.size());
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(got[i] - want[i]) / (1 + std::abs(want[i])));
  CHECK(worst < tol);
}

void check_forward(const Shape& d, int B) {
  INFO("C ", d.C, " H ", d.H, " O ", d.O, " K ", d.K, " s ", d.s);
  auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 1), w = rand_vec(size_t(d.O) * d.ckk(), 2);
  auto xp = ddpm::aligned_alloc_floats(ddpm::conv::padded_floats(d));
  auto wp = ddpm::aligned_alloc_floats(ddpm::conv::packed_filter_floats(d));
  ddpm::conv::pack_filter(d, w.data(), false, wp.get());
  std::vector<float> y(size_t(B) * d.O * d.Ho * d.Wo, NAN);
  for (int b = 0; b < B; ++b) {
    ddpm::conv::pad_copy(d, x.data() + size_t(b) * d.C * d.H * d.W, xp.get());
    ddpm::conv::forward_sample(d, xp.get(), wp.get(), y.data() + size_t(b) * d.O * d.Ho * d.Wo);
  }
  check_close(y, ref_forward(d, B, x, w), 1e-5);
}

}  // namespace

TEST_CASE("conv.h forward matches the naive convolution") {
  check_forward(shape(32, 28, 32, 3, 1), 2);
  check_forward(shape(64, 14, 64, 3, 1), 2);
  check_forward(shape(64, 7, 64, 3, 1), 2);   // 7-pixel x 64-channel blocks
  check_forward(shape(32, 28, 64, 3, 2), 2);  // stride 2
  check_forward(shape(64, 14, 64, 3, 2), 2);
  check_forward(shape(1, 28, 32, 3, 1), 2);   // the stem
  check_forward(shape(32, 28, 1, 3, 1), 2);   // one output channel (16-lane block, 15 padded)
  check_forward(shape(128, 14, 64, 1, 1), 2); // 1x1
  check_forward(shape(5, 9, 40, 3, 1), 3);    // partial pixel and channel blocks
  check_forward(shape(3, 11, 20, 3, 2), 1);
  // Channel counts that are multiples of 4 or 8 but not 16 (one or a few blocks at 4 and 8 lanes).
  check_forward(shape(8, 10, 8, 3, 1), 2);
  check_forward(shape(16, 13, 24, 3, 1), 2);
  check_forward(shape(12, 9, 12, 3, 2), 1);
}

TEST_CASE("conv.h stride-1 data gradient is the forward pass with the flipped filter") {
  for (auto d : {shape(32, 28, 32, 3, 1), shape(64, 7, 64, 3, 1), shape(64, 14, 32, 1, 1), shape(5, 9, 40, 3, 1)}) {
    INFO("C ", d.C, " O ", d.O, " K ", d.K);
    const int B = 2;
    auto dy = rand_vec(size_t(B) * d.O * d.Ho * d.Wo, 3), w = rand_vec(size_t(d.O) * d.ckk(), 4);
    // dx[b,c,h,w] = sum_{o,ki,kj} w[o,c,ki,kj] dy[b,o,h+p-ki,w+p-kj]
    std::vector<double> want(size_t(B) * d.C * d.H * d.W);
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < d.C; ++c)
        for (int h = 0; h < d.H; ++h)
          for (int x = 0; x < d.W; ++x) {
            double s = 0;
            for (int o = 0; o < d.O; ++o)
              for (int ki = 0; ki < d.K; ++ki)
                for (int kj = 0; kj < d.K; ++kj) {
                  const int i = h + d.p - ki, j = x + d.p - kj;
                  if (i < 0 || i >= d.Ho || j < 0 || j >= d.Wo) continue;
                  s += double(w[((size_t(o) * d.C + c) * d.K + ki) * d.K + kj]) *
                       dy[((size_t(b) * d.O + o) * d.Ho + i) * d.Wo + j];
                }
            want[((size_t(b) * d.C + c) * d.H + h) * d.W + x] = s;
          }
    const Shape t{d.O, d.Ho, d.Wo, d.C, d.K, 1, d.K - 1 - d.p, d.H, d.W};
    auto xp = ddpm::aligned_alloc_floats(ddpm::conv::padded_floats(t));
    auto wp = ddpm::aligned_alloc_floats(ddpm::conv::packed_filter_floats(t));
    ddpm::conv::pack_filter(t, w.data(), true, wp.get());
    std::vector<float> dx(want.size(), NAN);
    for (int b = 0; b < B; ++b) {
      ddpm::conv::pad_copy(t, dy.data() + size_t(b) * d.O * d.Ho * d.Wo, xp.get());
      ddpm::conv::forward_sample(t, xp.get(), wp.get(), dx.data() + size_t(b) * d.C * d.H * d.W);
    }
    check_close(dx, want, 1e-5);
  }
}

TEST_CASE("conv.h filter gradient matches the naive sum over samples and pixels") {
  for (auto d : {shape(32, 28, 32, 3, 1), shape(64, 14, 64, 3, 2), shape(64, 7, 64, 3, 1), shape(1, 28, 32, 3, 1),
                 shape(32, 28, 1, 3, 1), shape(128, 14, 64, 1, 1), shape(5, 9, 40, 3, 1), shape(3, 11, 20, 3, 2),
                 shape(8, 10, 24, 3, 1), shape(24, 9, 12, 1, 1)}) {
    INFO("C ", d.C, " H ", d.H, " O ", d.O, " K ", d.K, " s ", d.s);
    const int B = 3;
    auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 5), dy = rand_vec(size_t(B) * d.O * d.Ho * d.Wo, 6);
    const std::vector<double> want = ref_wgrad(d, B, x, dy);
    // Two partials (samples {0} and {1, 2}) added in order, as the generated code's slices are.
    const int64_t gf = ddpm::conv::grad_t_floats(d);
    auto xp = ddpm::aligned_alloc_floats(ddpm::conv::padded_floats(d));
    auto dyT = ddpm::aligned_alloc_floats(ddpm::conv::dyt_floats(d));
    auto parts = ddpm::aligned_alloc_floats(2 * gf);
    for (int b = 0; b < B; ++b) {
      ddpm::conv::pad_copy(d, x.data() + size_t(b) * d.C * d.H * d.W, xp.get());
      ddpm::conv::transpose_dy(d, dy.data() + size_t(b) * d.O * d.Ho * d.Wo, dyT.get());
      ddpm::conv::grad_sample(d, xp.get(), dyT.get(), parts.get() + (b > 0) * gf, b == 0 || b == 1);
    }
    std::vector<float> dw(want.size(), NAN);
    ddpm::conv::sum_grad_partials(d, parts.get(), 2, gf, dw.data());
    check_close(dw, want, 1e-4);
  }
}

TEST_CASE("conv_narrow.h forward and filter gradient (fewer than 16 output channels) match the naive sums") {
  // The U-Net's last layer (32 -> 1 at 28x28), a few output channels, odd sizes, 1x1, and 40 wide
  // (more than two vectors of pixels per row).
  for (auto d : {shape(32, 28, 1, 3, 1), shape(5, 9, 3, 3, 1), shape(3, 11, 15, 3, 1), shape(8, 28, 2, 1, 1),
                 shape(4, 40, 1, 3, 1), shape(2, 5, 1, 3, 1)}) {
    INFO("C ", d.C, " H ", d.H, " O ", d.O, " K ", d.K);
    REQUIRE(ddpm::narrow::applies(d));
    const int B = 3;
    auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 21), w = rand_vec(size_t(d.O) * d.ckk(), 22);
    auto fill = [&](int64_t b, int c, int h, float* dst) {
      std::memcpy(dst, x.data() + ((size_t(b) * d.C + c) * d.H + h) * d.W, sizeof(float) * d.W);
    };
    auto xp = ddpm::aligned_alloc_floats(ddpm::narrow::slice_floats(d));
    std::vector<float> y(size_t(B) * d.O * d.Ho * d.Wo, NAN);
    int epis = 0;
    ddpm::narrow::forward_range(d, w.data(), y.data(), 0, B, xp.get(), fill, [&](int64_t b) { CHECK(b == epis++); });
    CHECK(epis == B);
    // 2e-5: without FMA (SSE, x86-64-v2) every product rounds on its own.
    check_close(y, ref_forward(d, B, x, w), 2e-5);

    auto dy = rand_vec(size_t(B) * d.O * d.Ho * d.Wo, 23);
    auto range = [](auto&&... a) { ddpm::narrow::wgrad_range(a...); };
    auto sum = [](auto&&... a) { ddpm::narrow::sum_and_transform(a...); };
    auto dw = two_slice_wgrad(d, x, dy, ddpm::narrow::wgrad_slice_floats(d), ddpm::narrow::wgrad_partial_offset(d), range, sum);
    check_close(dw, ref_wgrad(d, B, x, dy), 2e-5);
  }
}

TEST_CASE("winograd.h F(2x2,3x3) forward and data gradient match the naive convolution") {
  // C a multiple of kLanes takes the channels-last input path, except 68 wide (past kMaxCols);
  // 40 and 68 wide without it put one row of kLanes tiles in the lanes at a time (a partial last block).
  for (auto d : {shape(32, 28, 32, 3, 1), shape(64, 14, 64, 3, 1), shape(64, 7, 64, 3, 1), shape(128, 14, 64, 3, 1),
                 shape(5, 9, 40, 3, 1), shape(3, 11, 20, 3, 1), shape(4, 40, 16, 3, 1), shape(16, 68, 16, 3, 1),
                 shape(24, 14, 16, 3, 1)}) {
    CHECK(ddpm::wino::channels_last(d) == (d.C % int(ddpm::simd::kLanes) == 0 && d.W < 68));
    INFO("C ", d.C, " H ", d.H, " O ", d.O);
    REQUIRE(ddpm::wino::applies(d));
    const int B = 2;
    auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 7), w = rand_vec(size_t(d.O) * d.ckk(), 8);
    auto U = ddpm::aligned_alloc_floats(ddpm::wino::filter_floats(d));
    auto scratch = ddpm::aligned_alloc_floats(ddpm::wino::slice_floats(d));
    ddpm::wino::pack_filter(d, w.data(), false, U.get());
    std::vector<float> y(size_t(B) * d.O * d.Ho * d.Wo, NAN);
    ddpm::wino::forward_range(
        d, U.get(), y.data(), 0, B, scratch.get(),
        [&](int64_t b, int c, int h, float* dst) {
          std::memcpy(dst, x.data() + ((size_t(b) * d.C + c) * d.H + h) * d.W, sizeof(float) * d.W);
        },
        [](int64_t) {});
    // F(2x2,3x3) adds a few float roundings per term: 3e-5 relative at 1,152 taps.
    check_close(y, ref_forward(d, B, x, w), 3e-5);

    // Data gradient of a convolution with C = d.O, O = d.C: the flipped filter of w' [d.C][d.O][3][3].
    const Shape t{d.C, d.H, d.W, d.O, 3, 1, 1, d.H, d.W};
    auto wf = rand_vec(size_t(d.C) * d.O * 9, 9);            // w' [d.C][d.O][3][3] (its O = d.C, its C = d.O)
    std::vector<float> wflip(size_t(d.O) * d.C * 9);         // the explicit flipped, transposed filter [d.O][d.C]
    for (int o = 0; o < d.O; ++o)
      for (int c = 0; c < d.C; ++c)
        for (int k = 0; k < 9; ++k) wflip[(size_t(o) * d.C + c) * 9 + k] = wf[(size_t(c) * d.O + o) * 9 + (8 - k)];
    ddpm::wino::pack_filter(t, wf.data(), true, U.get());
    ddpm::wino::forward_range(
        t, U.get(), y.data(), 0, B, scratch.get(),
        [&](int64_t b, int c, int h, float* dst) {
          std::memcpy(dst, x.data() + ((size_t(b) * d.C + c) * d.H + h) * d.W, sizeof(float) * d.W);
        },
        [](int64_t) {});
    check_close(y, ref_forward(d, B, x, wflip), 3e-5);
  }
}

TEST_CASE("winograd4.h F(4x4,3x3) forward and data gradient match the naive convolution") {
  // 28x28 (the U-Net's), partial tiles (9, 11, 30), and 40 wide (10 tiles a row: the one-row path).
  // C a multiple of kLanes takes the channels-last input path, except 68 wide (past kMaxCols).
  for (auto d : {shape(32, 28, 32, 3, 1), shape(64, 28, 32, 3, 1), shape(32, 28, 64, 3, 1), shape(64, 14, 64, 3, 1),
                 shape(5, 9, 40, 3, 1), shape(3, 11, 20, 3, 1), shape(16, 30, 16, 3, 1), shape(4, 40, 16, 3, 1),
                 shape(16, 68, 16, 3, 1), shape(8, 12, 24, 3, 1), shape(24, 7, 40, 3, 1)}) {
    CHECK(ddpm::wino4::channels_last(d) == (d.C % int(ddpm::simd::kLanes) == 0 && d.W < 68));
    CHECK(ddpm::wino4::channels_last_any_width(d) == (d.C % 16 == 0 && d.W < 68));
    INFO("C ", d.C, " H ", d.H, " O ", d.O);
    REQUIRE(ddpm::wino4::applies(d));
    const int B = 2;
    auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 17), w = rand_vec(size_t(d.O) * d.ckk(), 18);
    auto U = ddpm::aligned_alloc_floats(ddpm::wino4::filter_floats(d));
    auto scratch = ddpm::aligned_alloc_floats(ddpm::wino4::slice_floats(d));
    auto fill = [&](int64_t b, int c, int h, float* dst) {
      std::memcpy(dst, x.data() + ((size_t(b) * d.C + c) * d.H + h) * d.W, sizeof(float) * d.W);
    };
    ddpm::wino4::pack_filter(d, w.data(), false, U.get());
    std::vector<float> y(size_t(B) * d.O * d.Ho * d.Wo, NAN);
    int epis = 0;
    ddpm::wino4::forward_range(d, U.get(), y.data(), 0, B, scratch.get(), fill, [&](int64_t b) { CHECK(b == epis++); });
    CHECK(epis == B);
    // F(4x4,3x3)'s transforms have entries up to 8 and 1/24: 2e-4 relative at up to 576 taps
    // (F(2x2,3x3) stays within 3e-5 above).
    check_close(y, ref_forward(d, B, x, w), 2e-4);

    // Data gradient of a convolution with C = d.O, O = d.C (see the F(2x2,3x3) case).
    const Shape t{d.C, d.H, d.W, d.O, 3, 1, 1, d.H, d.W};
    auto wf = rand_vec(size_t(d.C) * d.O * 9, 19);
    std::vector<float> wflip(size_t(d.O) * d.C * 9);
    for (int o = 0; o < d.O; ++o)
      for (int c = 0; c < d.C; ++c)
        for (int k = 0; k < 9; ++k) wflip[(size_t(o) * d.C + c) * 9 + k] = wf[(size_t(c) * d.O + o) * 9 + (8 - k)];
    ddpm::wino4::pack_filter(t, wf.data(), true, U.get());
    ddpm::wino4::forward_range(t, U.get(), y.data(), 0, B, scratch.get(), fill, [](int64_t) {});
    check_close(y, ref_forward(d, B, x, wflip), 2e-4);
  }
}

TEST_CASE("winograd_wgrad.h filter gradient matches the naive sum over samples and pixels") {
  // C a multiple of kLanes takes the channels-last input path, except 68 wide (past kMaxCols).
  for (auto d : {shape(32, 28, 32, 3, 1), shape(64, 14, 64, 3, 1), shape(128, 14, 64, 3, 1), shape(5, 9, 40, 3, 1),
                 shape(3, 11, 20, 3, 1), shape(16, 9, 16, 3, 1), shape(16, 68, 16, 3, 1), shape(8, 12, 24, 3, 1),
                 shape(24, 14, 16, 3, 1)}) {
    INFO("C ", d.C, " H ", d.H, " O ", d.O);
    CHECK(ddpm::wino::channels_last(d) == (d.C % int(ddpm::simd::kLanes) == 0 && d.W < 68));
    const int B = 3;
    auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 11), dy = rand_vec(size_t(B) * d.O * d.Ho * d.Wo, 12);
    auto range = [](auto&&... a) { ddpm::wino::wgrad_range(a...); };
    auto sum = [](auto&&... a) { ddpm::wino::sum_and_transform(a...); };
    auto dw = two_slice_wgrad(d, x, dy, ddpm::wino::wgrad_slice_floats(d), ddpm::wino::wgrad_partial_offset(d), range, sum);
    check_close(dw, ref_wgrad(d, B, x, dy), 1e-4);
  }
}

TEST_CASE("winograd4_wgrad.h F(4x4,3x3) filter gradient matches the naive sum over samples and pixels") {
  for (auto d : {shape(32, 28, 32, 3, 1), shape(64, 28, 32, 3, 1), shape(32, 28, 64, 3, 1), shape(5, 9, 40, 3, 1),
                 shape(3, 11, 20, 3, 1), shape(4, 40, 16, 3, 1), shape(16, 30, 16, 3, 1), shape(16, 68, 16, 3, 1),
                 shape(8, 12, 24, 3, 1), shape(24, 28, 16, 3, 1)}) {
    INFO("C ", d.C, " H ", d.H, " O ", d.O);
    const int B = 3;
    auto x = rand_vec(size_t(B) * d.C * d.H * d.W, 11), dy = rand_vec(size_t(B) * d.O * d.Ho * d.Wo, 12);
    auto range = [](auto&&... a) { ddpm::wino4::wgrad_range(a...); };
    auto sum = [](auto&&... a) { ddpm::wino4::sum_and_transform(a...); };
    auto dw = two_slice_wgrad(d, x, dy, ddpm::wino4::wgrad_slice_floats(d), ddpm::wino4::wgrad_partial_offset(d), range, sum);
    // A dY A^T has entries up to 64 and G^T down to 1/24: 3e-4 relative over 3 x 784 pixels.
    check_close(dw, ref_wgrad(d, B, x, dy), 3e-4);
  }
}
