// Microbenchmarks for the compute kernels generated modules rely on.
//
// BM_fma_peak measures the machine's fp32 FMA peak with plain xsimd (independent accumulator chains,
// no memory traffic); /threads:2 runs one copy per core and reports the aggregate. BM_gemm measures
// common/prelude/gemm.h on the shapes the models use, at 1 and 2 TBB threads (tbb::global_control set inside
// the benchmark; the count is in the name), timing only the gemm call. Both report GFLOP/s as the
// "GFLOPS" counter, so the GEMM figures can be read as a fraction of the measured peak.
//
// GEMM name legend: BM_gemm/M/N/K/<ta><tb>/threads:T, with C[M,N] = op(A)[M,K] * op(B)[K,N];
// "n" = stored as used, "t" = stored transposed (A as [K,M], B as [N,K]).
//
// BM_gemm_kernel/<MR>x<NV>/M/N/K/<ta><tb> (AVX-512 builds) forces each wide microkernel on the MLP
// shapes, for the speeds make_plan_w's choice among them rests on.
//
// BM_optimizer/<isa>/P:<P> times one runtime optimizer_step (AdamW + EMA, the tools' own hot loop)
// with each instruction-set variant this CPU runs (runtime/isa/), on the moons MLP's and the U-Net's
// parameter counts, one thread; the counter is parameters per second.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include <tbb/global_control.h>

#include "common/prelude/gemm.h"
#include "common/prelude/simd_shim.h"
#include "fma_peak.h"
#include "runtime/optim.h"

namespace {

using ddpm::simd::batch;

using ddpm_bench::fma_chains;
constexpr int64_t kFmaIters = 1 << 20;

void BM_fma_peak(benchmark::State& state) {
  int nthreads = static_cast<int>(state.range(0));
  for (auto _ : state) {
    std::vector<std::thread> workers;
    std::vector<float> out(nthreads);
    for (int t = 1; t < nthreads; ++t)
      workers.emplace_back([&, t] { out[t] = fma_chains(kFmaIters, 1.f + t); });
    out[0] = fma_chains(kFmaIters, 1.f);  // the calling thread works too, so its CPU time is meaningful
    for (auto& w : workers) w.join();
    benchmark::DoNotOptimize(out.data());
  }
  double flops = ddpm_bench::flops_per_call(kFmaIters) * nthreads;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_fma_peak)->Name("BM_fma_peak/threads:1")->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fma_peak)->Name("BM_fma_peak/threads:2")->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

struct GemmShape {
  int M, N, K;
  bool ta, tb;
};

void BM_gemm(benchmark::State& state, GemmShape s, int threads) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto A = ddpm::aligned_alloc_floats(static_cast<size_t>(s.M) * s.K);
  auto B = ddpm::aligned_alloc_floats(static_cast<size_t>(s.K) * s.N);
  auto C = ddpm::aligned_alloc_floats(static_cast<size_t>(s.M) * s.N);
  auto scratch = ddpm::aligned_alloc_floats(ddpm::gemm_scratch_floats(s.M, s.N, s.K));
  for (size_t i = 0; i < static_cast<size_t>(s.M) * s.K; ++i) A[i] = u(rng);
  for (size_t i = 0; i < static_cast<size_t>(s.K) * s.N; ++i) B[i] = u(rng);
  for (size_t i = 0; i < static_cast<size_t>(s.M) * s.N; ++i) C[i] = 0.f;
  int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
  auto call = [&] {
    ddpm::gemm(s.M, s.N, s.K, A.get(), lda, s.ta, B.get(), ldb, s.tb, C.get(), s.N, false, scratch.get());
  };
  call();  // touch scratch and C once so page faults stay out of the timing
  for (auto _ : state) {
    call();
    benchmark::ClobberMemory();
  }
  double flops = 2.0 * s.M * s.N * s.K;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}

const GemmShape kShapes[] = {
    {256, 128, 66, false, false},   // MLP layer 1 forward
    {256, 128, 128, false, false},  // MLP hidden forward
    {256, 2, 128, false, false},    // MLP output forward
    {256, 128, 128, false, true},   // dX = dY W^T, hidden
    {256, 128, 2, false, true},     // dX = dY W^T, output layer (K = 2)
    {66, 128, 256, true, false},    // dW = X^T dY, layer 1
    {128, 128, 256, true, false},   // dW = X^T dY, hidden
    {128, 2, 256, true, false},     // dW = X^T dY, output layer
    {512, 512, 512, false, false},
    {50176, 32, 288, false, false},  // im2col conv, NHWC patches [HW*B, 9*Cin]
    {50176, 32, 288, true, false},   // same with patches stored [9*Cin, HW*B]
};

// One of the wide 16-lane microkernels forced on a shape (make_plan_w picks among them by padded
// area and these speeds): BM_gemm_kernel/<MR>x<NV>/M/N/K/<ta><tb>, one thread, GFLOP/s of the
// unpadded problem. Registered only in an AVX-512 build.
template <int MR, int NV>
void BM_gemm_kernel(benchmark::State& state, GemmShape s) {
  namespace gd = ddpm::gemm_detail;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  gd::Plan pl = gd::make_plan(s.M, s.N, s.K);
  pl.mr = MR, pl.nr = NV * gd::kL;
  gd::tile_plan(pl, s.M, s.N, s.K);
  auto A = ddpm::aligned_alloc_floats(static_cast<size_t>(s.M) * s.K);
  auto B = ddpm::aligned_alloc_floats(static_cast<size_t>(s.K) * s.N);
  auto C = ddpm::aligned_alloc_floats(static_cast<size_t>(s.M) * s.N);
  auto scratch = ddpm::aligned_alloc_floats(pl.scratch_floats);
  for (size_t i = 0; i < static_cast<size_t>(s.M) * s.K; ++i) A[i] = u(rng);
  for (size_t i = 0; i < static_cast<size_t>(s.K) * s.N; ++i) B[i] = u(rng);
  const gd::Operands op = gd::canonical(pl, A.get(), s.ta ? s.M : s.K, s.ta, B.get(), s.tb ? s.K : s.N, s.tb, C.get(), s.N);
  auto none = [](int, int, int, int) {};
  gd::run<MR, NV>(pl, op, false, scratch.get(), none);
  for (auto _ : state) {
    gd::run<MR, NV>(pl, op, false, scratch.get(), none);
    benchmark::ClobberMemory();
  }
  double flops = 2.0 * s.M * s.N * s.K;
  state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9 * state.iterations(), benchmark::Counter::kIsRate);
}

int register_gemm_benchmarks() {
  if constexpr (ddpm::gemm_detail::kL == 16) {
    for (const GemmShape& s : kShapes) {
      if (s.M <= 8 || s.N <= 8 || s.K <= 8 || s.M > 1024) continue;
      std::string shape = "/" + std::to_string(s.M) + "/" + std::to_string(s.N) + "/" + std::to_string(s.K) + "/" +
                          (s.ta ? "t" : "n") + (s.tb ? "t" : "n");
      auto reg = [&](const char* k, auto fn) {
        benchmark::RegisterBenchmark(("BM_gemm_kernel/" + std::string(k) + shape).c_str(), fn, s)
            ->UseRealTime()->Unit(benchmark::kMicrosecond);
      };
      reg("14x2", BM_gemm_kernel<14, 2>);
      reg("7x4", BM_gemm_kernel<7, 4>);
      reg("6x4", BM_gemm_kernel<6, 4>);
    }
  }
  for (const GemmShape& s : kShapes) {
    for (int threads : {1, 2}) {
      std::string name = "BM_gemm/" + std::to_string(s.M) + "/" + std::to_string(s.N) + "/" + std::to_string(s.K) +
                         "/" + (s.ta ? "t" : "n") + (s.tb ? "t" : "n") + "/threads:" + std::to_string(threads);
      benchmark::RegisterBenchmark(name.c_str(), BM_gemm, s, threads)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
  }
  return 0;
}
const int kRegistered = register_gemm_benchmarks();

void BM_optimizer(benchmark::State& state, std::string isa, int64_t P) {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
  std::mt19937 rng(3);
  std::normal_distribution<float> n;
  std::vector<float> p(P), g(P), m(P, 0.f), v(P, 0.f), ema(P);
  for (int64_t i = 0; i < P; ++i) p[i] = ema[i] = n(rng), g[i] = 0.1f * n(rng);
  ddpm::AdamWConfig cfg;
  cfg.weight_decay = 0.01f;
  int64_t step = 1;
  for (auto _ : state) {
    ddpm::optimizer_step_isa(isa, p.data(), g.data(), m.data(), v.data(), ema.data(), P, step++, cfg, 1.0f, 0.999f);
    benchmark::DoNotOptimize(p.data());
  }
  state.counters["params/s"] = benchmark::Counter(double(P) * state.iterations(), benchmark::Counter::kIsRate);
}

int register_optimizer_benchmarks() {
  for (const std::string& isa : ddpm::optimizer_isas())
    for (int64_t P : {41858, 691681}) {
      std::string name = "BM_optimizer/" + isa + "/P:" + std::to_string(P);
      benchmark::RegisterBenchmark(name.c_str(), BM_optimizer, isa, P)->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
  return 0;
}
const int kRegisteredOptimizer = register_optimizer_benchmarks();

}  // namespace

BENCHMARK_MAIN();
