// One benchmark per convolution shape of the fashion U-Net (models/fashion_unet.ddpm) and per
// direction: forward, data gradient and filter gradient, on one thread, over 8 samples, timing the
// same common/prelude/conv.h, winograd.h (or prelude im2col + GEMM) calls a generated module makes.
// Counters: GFLOP/s of the layer's useful FLOPs (2 * O * C*K*K * Ho*Wo per sample and direction)
// and "peak%" against the one-core FMA peak measured at start-up (bench/fma_peak.h), so the next
// person sees which layer is slow. The U-Net has 64 samples per step; times here are per 8.
//
// Name legend: BM_conv/<C>to<O>@<H>/k<K>s<S>/<dir> with dir fwd | dgrad | wgrad (the direct
// conv.h kernels, or im2col/GEMM where the module uses those), fwd_winograd | wgrad_winograd
// (winograd.h, F(2x2,3x3)) and fwd_winograd4 | wgrad_winograd4 (winograd4.h, F(4x4,3x3)), for every 3x3 stride-1
// layer, so all can be compared. The module uses Winograd where wino4::worthwhile() (forward,
// data gradient), wino4::worthwhile_wgrad() (filter gradient) or wino::worthwhile() says so (see
// compiler/conv_plan.cpp); the data gradient then runs the Winograd forward kernel. The label
// "<- module" marks the row of the forward pass and of the filter gradient that a module built at
// this width runs (at 14x14 that depends on the width: ddpm::wino_by_width).
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "conv_plan.h"
#include "fma_peak.h"
#include "common/prelude/conv.h"
#include "common/prelude/conv_narrow.h"
#include "common/prelude/ddpm_prelude.h"
#include "common/prelude/winograd.h"
#include "common/prelude/winograd4.h"
#include "common/prelude/winograd4_wgrad.h"
#include "common/prelude/winograd_wgrad.h"

namespace {

using ddpm::conv::Shape;
constexpr int kSamples = 8;

struct Layer {
  int C, H, O, K, s;
  int count;  // how many convolutions of this shape one U-Net step has
};

// Every distinct convolution shape of the U-Net (resolution H is the input's).
const Layer kLayers[] = {
    {1, 28, 32, 3, 1, 1},    // stem
    {32, 28, 32, 3, 1, 7},   // resblocks at 28 (4 down, 3 up)
    {32, 28, 64, 3, 2, 1},   // down 28 -> 14
    {64, 14, 64, 3, 1, 8},   // resblocks at 14 (4 down, 3 up), up-conv 7 -> 14
    {64, 14, 64, 3, 2, 1},   // down 14 -> 7
    {64, 7, 64, 3, 1, 2},    // resblock at 7
    {128, 14, 64, 3, 1, 1},  // resblock_proj at 14, first conv
    {128, 14, 64, 1, 1, 1},  // resblock_proj at 14, 1x1 skip
    {64, 28, 32, 3, 1, 2},   // up-conv 14 -> 28 and resblock_proj at 28, first conv
    {64, 28, 32, 1, 1, 1},   // resblock_proj at 28, 1x1 skip
    {32, 28, 1, 3, 1, 1},    // output conv
};

Shape shape_of(const Layer& l) {
  const int p = (l.K - 1) / 2, Ho = (l.H + 2 * p - l.K) / l.s + 1;
  return Shape{l.C, l.H, l.H, l.O, l.K, l.s, p, Ho, Ho};
}

std::vector<float> rand_vec(size_t n) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

enum class Dir { fwd, dgrad, wgrad, wino, wino4, wino_wgrad, wino4_wgrad };

// The row a module built at this width runs for the layer's forward pass (wgrad = false) or
// filter gradient (compiler/conv_plan.cpp, conv_path, in the rows' terms). Its stride-1 data
// gradient runs the forward path of the transposed shape (C and O swapped): the same row for the
// square layers, which is what the "dgrad" rows (conv.h) do not show.
Dir module_dir(const Shape& d, bool wgrad) {
  if (ddpm::narrow::applies(d)) return wgrad ? Dir::wgrad : Dir::fwd;
  if (wgrad) return ddpm::wino4::worthwhile_wgrad(d) ? Dir::wino4_wgrad : ddpm::wino::worthwhile(d) ? Dir::wino_wgrad : Dir::wgrad;
  if (ddpm::wino4::worthwhile(d))
    return ddpmc::wino4_fwd_path(d) == ddpmc::ConvPath::WinogradByWidth && !ddpm::wino_by_width::kF4x4 ? Dir::wino : Dir::wino4;
  return ddpm::wino::worthwhile(d) ? Dir::wino : Dir::fwd;
}

void BM_conv(benchmark::State& state, Layer l, Dir dir) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
  const Shape d = shape_of(l);
  const int64_t xs = int64_t(d.C) * d.H * d.W, ys = int64_t(d.O) * d.Ho * d.Wo;
  auto x = rand_vec(kSamples * xs), dy = rand_vec(kSamples * ys), w = rand_vec(d.O * d.ckk());
  std::vector<float> out(std::max<int64_t>(kSamples * std::max(xs, ys), d.O * d.ckk()));
  // Stride-1 data gradient: the forward kernel on dy with the flipped filter.
  const Shape t{d.O, d.Ho, d.Wo, d.C, d.K, 1, d.K - 1 - d.p, d.H, d.W};
  // The path the generated module takes for this layer (compiler/conv_plan.cpp, conv_path):
  // conv.h needs >= 16 output channels (in the lanes), conv_narrow.h takes fewer at stride 1; the
  // strided data gradient is GEMM + col2im.
  const bool narrow = dir != Dir::dgrad && ddpm::narrow::applies(d);
  const bool gemm_path = dir == Dir::dgrad ? d.s != 1 : d.O < 16 && !narrow;
  const Shape& used = dir == Dir::dgrad ? t : d;
  auto xp = ddpm::aligned_alloc_floats(ddpm::conv::padded_floats(used));
  auto wp = ddpm::aligned_alloc_floats(ddpm::conv::packed_filter_floats(used));
  auto dyT = ddpm::aligned_alloc_floats(ddpm::conv::dyt_floats(d));
  auto gT = ddpm::aligned_alloc_floats(ddpm::conv::grad_t_floats(d));
  const int gm = d.C * d.K * d.K, gn = d.Ho * d.Wo, gk = d.O;
  auto col = ddpm::aligned_alloc_floats(int64_t(gm) * gn);
  auto gs = ddpm::aligned_alloc_floats(std::max({ddpm::gemm_scratch_floats(gm, gn, gk), ddpm::gemm_scratch_floats(d.O, gn, gm),
                                                  ddpm::gemm_scratch_floats(d.O, gm, gn)}));
  const bool wino_ok = ddpm::wino::applies(d);
  auto U = ddpm::aligned_alloc_floats(wino_ok ? ddpm::wino::filter_floats(d) : 0);
  auto wscratch = ddpm::aligned_alloc_floats(wino_ok ? ddpm::wino::slice_floats(d) : 0);
  auto wgscratch = ddpm::aligned_alloc_floats(wino_ok ? ddpm::wino::wgrad_slice_floats(d) : 0);
  auto U4 = ddpm::aligned_alloc_floats(wino_ok ? ddpm::wino4::filter_floats(d) : 0);
  auto w4scratch = ddpm::aligned_alloc_floats(wino_ok ? ddpm::wino4::slice_floats(d) : 0);
  auto w4gscratch = ddpm::aligned_alloc_floats(wino_ok ? ddpm::wino4::wgrad_slice_floats(d) : 0);
  auto nscratch = ddpm::aligned_alloc_floats(narrow ? ddpm::narrow::wgrad_slice_floats(d) : 0);
  auto run = [&] {
    if (narrow && dir == Dir::fwd) {
      ddpm::narrow::forward_range(
          d, w.data(), out.data(), 0, kSamples, nscratch.get(),
          [&](int64_t b, int c, int h, float* dst) { std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W); },
          [](int64_t) {});
    } else if (narrow && dir == Dir::wgrad) {
      ddpm::narrow::wgrad_range(d, dy.data(), 0, kSamples, nscratch.get(), [&](int64_t b, int c, int h, float* dst) {
        std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W);
      });
      ddpm::narrow::sum_and_transform(d, nscratch.get() + ddpm::narrow::wgrad_partial_offset(d), 1, 0, out.data());
    } else if (dir == Dir::wino_wgrad) {
      ddpm::wino::wgrad_range(d, dy.data(), 0, kSamples, wgscratch.get(), [&](int64_t b, int c, int h, float* dst) {
        std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W);
      });
      ddpm::wino::sum_and_transform(d, wgscratch.get() + ddpm::wino::wgrad_partial_offset(d), 1, 0, out.data());
    } else if (dir == Dir::wino) {
      ddpm::wino::pack_filter(d, w.data(), false, U.get());
      ddpm::wino::forward_range(
          d, U.get(), out.data(), 0, kSamples, wscratch.get(),
          [&](int64_t b, int c, int h, float* dst) { std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W); },
          [](int64_t) {});
    } else if (dir == Dir::wino4_wgrad) {
      ddpm::wino4::wgrad_range(d, dy.data(), 0, kSamples, w4gscratch.get(), [&](int64_t b, int c, int h, float* dst) {
        std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W);
      });
      ddpm::wino4::sum_and_transform(d, w4gscratch.get() + ddpm::wino4::wgrad_partial_offset(d), 1, 0, out.data());
    } else if (dir == Dir::wino4) {
      ddpm::wino4::pack_filter(d, w.data(), false, U4.get());
      ddpm::wino4::forward_range(
          d, U4.get(), out.data(), 0, kSamples, w4scratch.get(),
          [&](int64_t b, int c, int h, float* dst) { std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W); },
          [](int64_t) {});
    } else if (gemm_path && dir != Dir::dgrad) {
      // Fewer than 16 output channels: im2col + GEMM per sample (forward), summed over samples (filter).
      for (int b = 0; b < kSamples; ++b) {
        ddpm::gen::im2col(x.data() + b * xs, d.C, d.H, d.W, d.K, d.s, d.p, d.Ho, d.Wo, col.get());
        if (dir == Dir::fwd)
          ddpm::gen::gemm_plain(d.O, gn, gm, w.data(), gm, false, col.get(), gn, false, out.data() + b * ys, gn, gs.get());
        else
          ddpm::gen::gemm_plain(d.O, gm, gn, dy.data() + b * ys, gn, false, col.get(), gn, true, out.data(), gm, gs.get(),
                                b > 0);
      }
    } else if (dir == Dir::fwd) {
      ddpm::conv::pack_filter(d, w.data(), false, wp.get());
      ddpm::conv::forward_range(
          d, wp.get(), out.data(), 0, kSamples, xp.get(),
          [&](int64_t b, int c, int h, float* dst) { std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W); },
          [](int64_t) {});
    } else if (gemm_path) {
      // Strided data gradient: col = W^T dy per sample, then col2im (as the module does).
      for (int b = 0; b < kSamples; ++b) {
        ddpm::gen::gemm_plain(gm, gn, gk, w.data(), gm, true, dy.data() + b * ys, gn, false, col.get(), gn, gs.get());
        ddpm::gen::col2im(col.get(), d.C, d.H, d.W, d.K, d.s, d.p, d.Ho, d.Wo, out.data() + b * xs);
      }
    } else if (dir == Dir::dgrad) {
      ddpm::conv::pack_filter(t, w.data(), true, wp.get());
      ddpm::conv::forward_range(
          t, wp.get(), out.data(), 0, kSamples, xp.get(),
          [&](int64_t b, int c, int h, float* dst) { std::memcpy(dst, dy.data() + b * ys + (int64_t(c) * d.Ho + h) * d.Wo, 4 * d.Wo); },
          [](int64_t) {});
    } else {
      ddpm::conv::grad_range(
          d, dy.data(), 0, kSamples, xp.get(), dyT.get(), gT.get(),
          [&](int64_t b, int c, int h, float* dst) { std::memcpy(dst, x.data() + b * xs + (int64_t(c) * d.H + h) * d.W, 4 * d.W); });
      ddpm::conv::sum_grad_partials(d, gT.get(), 1, 0, out.data());
    }
  };
  run();
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * d.O * d.ckk() * d.Ho * d.Wo * kSamples;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["peak%"] = benchmark::Counter(flops * 1e-9 * state.iterations() * 100.0 / ddpm_bench::fma_peak_gflops_1core(),
                                               benchmark::Counter::kIsRate);
  const bool is_wgrad = dir == Dir::wgrad || dir == Dir::wino_wgrad || dir == Dir::wino4_wgrad;
  const bool module = dir != Dir::dgrad && module_dir(d, is_wgrad) == dir;
  state.SetLabel(std::string(dir == Dir::wino4 || dir == Dir::wino4_wgrad ? "winograd F(4x4,3x3)" : dir == Dir::wino || dir == Dir::wino_wgrad ? "winograd" : narrow ? "conv_narrow.h" : !gemm_path ? "conv.h" : dir == Dir::dgrad ? "GEMM + col2im" : "im2col + GEMM") +
                 (module ? " <- module" : ""));
}

int register_all() {
  // The width these kernels were built for (CMake's DDPM_MARCH) and that width's one-core FMA peak:
  // "peak%" is against it, so an x86-64-v3 build reports each layer against the AVX2 peak.
  std::printf("bench_conv: -march=%s, %d float lanes, one-core FMA peak %.1f GFLOP/s at this width\n", DDPM_TEST_MARCH,
              int(ddpm::simd::kLanes), ddpm_bench::fma_peak_gflops_1core());
  for (const Layer& l : kLayers)
    for (Dir dir : {Dir::fwd, Dir::wino, Dir::wino4, Dir::dgrad, Dir::wgrad, Dir::wino_wgrad, Dir::wino4_wgrad}) {
      if (dir == Dir::dgrad && l.C == 1) continue;  // the stem's input (x_t) needs no gradient
      if ((dir == Dir::wino || dir == Dir::wino4 || dir == Dir::wino_wgrad || dir == Dir::wino4_wgrad) && !ddpm::wino::applies(shape_of(l))) continue;
      const char* dn = dir == Dir::fwd          ? "fwd"
                       : dir == Dir::wino       ? "fwd_winograd"
                       : dir == Dir::wino4      ? "fwd_winograd4"
                       : dir == Dir::dgrad      ? "dgrad"
                       : dir == Dir::wino_wgrad ? "wgrad_winograd"
                       : dir == Dir::wino4_wgrad ? "wgrad_winograd4"
                                                : "wgrad";
      std::string name = "BM_conv/" + std::to_string(l.C) + "to" + std::to_string(l.O) + "@" + std::to_string(l.H) +
                         "/k" + std::to_string(l.K) + "s" + std::to_string(l.s) + "/" + dn;
      // CPU time, not wall time: one thread, and on a shared VM the wall clock counts other processes.
      benchmark::RegisterBenchmark(name.c_str(), BM_conv, l, dir)->Unit(benchmark::kMicrosecond);
    }
  return 0;
}
const int kRegistered = register_all();

}  // namespace

BENCHMARK_MAIN();
