// Benchmarks of the image models: the fashion U-Net (models/fashion_unet.ddpm)
// training step and DDPM sampler step at batch 64, and a single 3x3 convolution
// layer (bench/conv_layer.ddpm) forward (loss_eval) and forward + backward
// (train_step), at 1 and 2 threads. Counters: GFLOP/s from the compiler's FLOP
// count of the same graph (the direct convolution's FLOPs, also for layers that run
// as Winograd), and peak% against T times the one-core FMA peak measured at start-up
// (bench/fma_peak.h; BM_fma_peak in bench_kernels measures the 2-thread peak). Only
// the module call is timed.
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <map>
#include <random>
#include <vector>

#include "build.h"
#include "fma_peak.h"
#include "module.h"
#include "pipeline.h"
#include "tests/march_env.h"

// Modules built here target the benchmarks' width (DDPM_MARCH) unless DDPMC_MARCH is set.
static const bool kTestMarch = (ddpm_test::use_test_march(), true);

namespace {

struct Model {
  ddpmc::Compiled c;
  ddpm::Module mod;
  std::vector<float> params;
  explicit Model(const std::string& spec)
      : c(ddpmc::compile_spec_file(spec)), mod(ddpmc::build_module(spec).so_path) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-0.05f, 0.05f);
    params.resize(mod->param_floats);
    for (auto& p : params) p = u(rng);
  }
};

Model& model(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Model>> cache;
  auto& m = cache[name];
  if (!m) m = std::make_unique<Model>(std::string(DDPM_SOURCE_DIR) + "/" + name);
  return *m;
}

std::vector<float> data(int64_t n) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(n);
  for (auto& v : x) v = u(rng);
  return x;
}

// GFLOP/s and % of the FMA peak of `threads` cores for a call of `flops` FLOPs.
void rate_counters(benchmark::State& state, double flops, int threads) {
  const double gflops = flops * state.iterations() / 1e9;
  state.counters["GFLOP/s"] = benchmark::Counter(gflops, benchmark::Counter::kIsRate);
  state.counters["peak%"] =
      benchmark::Counter(gflops * 100.0 / (threads * ddpm_bench::fma_peak_gflops_1core()), benchmark::Counter::kIsRate);
}

void train(benchmark::State& state, const char* spec, bool backward) {
  auto& m = model(spec);
  const int B = (int)state.range(0), threads = (int)state.range(1);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const int entry = backward ? 0 : 1 + m.mod->n_samplers;
  ddpm::AlignedBuffer arena(m.mod->arena_bytes(entry, B));
  std::vector<float> grads(m.mod->param_floats), x = data((int64_t)B * m.mod->data_numel);
  float loss = 0;
  uint64_t step = 1;
  for (auto _ : state) {
    if (backward)
      m.mod->train_step(arena.data(), B, m.params.data(), x.data(), 7, step++, grads.data(), &loss);
    else
      m.mod->loss_eval(arena.data(), B, m.params.data(), x.data(), 7, step++, &loss);
    benchmark::DoNotOptimize(loss);
  }
  rate_counters(state, ddpmc::graph_flops(backward ? m.c.train : m.c.loss, B), threads);
}

void BM_fashion_train_step(benchmark::State& s) { train(s, "models/fashion_unet.ddpm", true); }
void BM_conv_layer_forward(benchmark::State& s) { train(s, "bench/conv_layer.ddpm", false); }
void BM_conv_layer_forward_backward(benchmark::State& s) { train(s, "bench/conv_layer.ddpm", true); }

void BM_fashion_sampler_step(benchmark::State& state) {
  auto& m = model("models/fashion_unet.ddpm");
  const int B = (int)state.range(0), threads = (int)state.range(1);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  ddpm::AlignedBuffer arena(m.mod->arena_bytes(1, B));
  std::vector<float> x = data((int64_t)B * m.mod->data_numel), out(x.size());
  uint64_t step = 1;
  for (auto _ : state) {
    m.mod->sampler_step(0, arena.data(), B, m.params.data(), x.data(), 500, 499, 7, step++, out.data(), 0);
    benchmark::DoNotOptimize(out.data());
  }
  rate_counters(state, ddpmc::graph_flops(m.c.samplers[0].second, B), threads);
}

}  // namespace

BENCHMARK(BM_fashion_train_step)->ArgNames({"batch", "threads"})->Args({64, 1})->Args({64, 2})->UseRealTime()
    ->Unit(benchmark::kMillisecond)->MinTime(3);
BENCHMARK(BM_fashion_sampler_step)->ArgNames({"batch", "threads"})->Args({64, 1})->Args({64, 2})->UseRealTime()
    ->Unit(benchmark::kMillisecond)->MinTime(2);
BENCHMARK(BM_conv_layer_forward)->ArgNames({"batch", "threads"})->Args({64, 1})->Args({64, 2})->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_conv_layer_forward_backward)->ArgNames({"batch", "threads"})->Args({64, 1})->Args({64, 2})->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
