// Benchmarks of the compiled moons model (models/moons.ddpm): one training step
// (forward + backward of the loss, the module's train_step) and one sampler step,
// at batch 256, on 1 and 2 threads. Counters: GFLOP/s from the compiler's FLOP
// count of the same graph. Only the module call is timed; buffers, data and the
// module build happen before the timing loop.
#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include <random>
#include <vector>

#include "build.h"
#include "module.h"
#include "pipeline.h"
#include "tests/march_env.h"

// Modules built here target the benchmarks' width (DDPM_MARCH) unless DDPMC_MARCH is set.
static const bool kTestMarch = (ddpm_test::use_test_march(), true);

namespace {

struct Moons {
  ddpmc::Compiled c = ddpmc::compile_spec_file(DDPM_SOURCE_DIR "/models/moons.ddpm");
  ddpm::Module mod{ddpmc::build_module(DDPM_SOURCE_DIR "/models/moons.ddpm").so_path};
  std::vector<float> params;
  Moons() {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    params.resize(mod->param_floats);
    for (auto& p : params) p = u(rng);
  }
};

Moons& moons() {
  static Moons m;
  return m;
}

std::vector<float> data(int B) {
  std::mt19937 rng(2);
  std::normal_distribution<float> n;
  std::vector<float> x(B * 2);
  for (auto& v : x) v = n(rng);
  return x;
}

void BM_moons_train_step(benchmark::State& state) {
  auto& m = moons();
  const int B = (int)state.range(0), threads = (int)state.range(1);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  ddpm::AlignedBuffer arena(m.mod->arena_bytes(0, B));
  std::vector<float> grads(m.mod->param_floats), x = data(B);
  float loss = 0;
  uint64_t step = 1;
  for (auto _ : state) {
    m.mod->train_step(arena.data(), B, m.params.data(), x.data(), 7, step++, grads.data(), &loss);
    benchmark::DoNotOptimize(loss);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(ddpmc::graph_flops(m.c.train, B) * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}

void BM_moons_sampler_step(benchmark::State& state) {
  auto& m = moons();
  const int sampler = (int)state.range(0), B = (int)state.range(1), threads = (int)state.range(2);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  ddpm::AlignedBuffer arena(m.mod->arena_bytes(1 + sampler, B));
  std::vector<float> x = data(B), out(B * 2);
  uint64_t step = 1;
  for (auto _ : state) {
    m.mod->sampler_step(sampler, arena.data(), B, m.params.data(), x.data(), 500, 499, 7, step++, out.data(), 0);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(m.mod->sampler_names[sampler]);
  state.counters["GFLOP/s"] = benchmark::Counter(
      ddpmc::graph_flops(m.c.samplers[sampler].second, B) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_moons_train_step)->ArgNames({"batch", "threads"})->Args({256, 1})->Args({256, 2})->UseRealTime();
BENCHMARK(BM_moons_sampler_step)
    ->ArgNames({"sampler", "batch", "threads"})
    ->Args({0, 256, 1})
    ->Args({0, 256, 2})
    ->Args({1, 256, 1})
    ->Args({1, 256, 2})
    ->UseRealTime();
BENCHMARK_MAIN();
