// Checks of a compiled module against the reference interpreter, shared by the
// suites that compile a real model (test_fashion, test_attention, test_solvers,
// test_continuous, test_learned_var, test_ode_nll): a compiled spec, random weights, the interpreter's inputs for a
// sampler step, one training step's loss and every gradient against the
// interpreter, sampler 0 and a training step bitwise equal at 1 and 2 threads, and
// the moons reference distances.
#pragma once
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/prelude/philox.h"
#include "interp.h"
#include "module.h"
#include "runtime/data2d.h"
#include "runtime/swd.h"
#include "test_support.h"

namespace ddpm_test {

// Every parameter tensor i uniform in [-0.3, 0.3] from seed0 + i.
inline std::vector<float> random_params(const ddpm_module& m, uint32_t seed0) {
  std::vector<float> params((size_t)m.param_floats, 0.0f);
  for (int i = 0; i < m.n_params; ++i) {
    const auto& p = m.params[i];
    auto v = uniform_floats((size_t)p.numel, -0.3f, 0.3f, seed0 + (uint32_t)i);
    std::memcpy(params.data() + p.offset, v.data(), (size_t)p.numel * sizeof(float));
  }
  return params;
}

// A spec (relative to the source tree) compiled for the interpreter and built into
// a module through the test cache, with random parameters from `seed`.
struct CompiledSpec {
  ddpmc::Compiled c;
  ddpm::Module mod;
  std::vector<float> params;
  CompiledSpec(const std::string& rel, uint32_t seed)
      : c(ddpmc::compile_spec_file(source_path(rel))),
        mod(ddpmc::build_module(source_path(rel), test_build_options()).so_path),
        params(random_params(mod.get(), seed)) {}
};

// The interpreter's inputs for one sampler step of B samples x from t to s (steps, or
// real times of a continuous-time model) with the given seed and RNG step.
inline ddpmc::InterpEnv sampler_env(const std::vector<float>& params, const std::vector<float>& x, int B, double t,
                                    double s, uint64_t seed = 1, uint64_t step = 2) {
  ddpmc::InterpEnv e;
  e.B = B;
  e.seed = seed;
  e.step = step;
  e.params.assign(params.begin(), params.end());
  e.inputs["x"] = std::vector<double>(x.begin(), x.end());
  e.inputs["t"] = std::vector<double>(B, t);
  e.inputs["s"] = std::vector<double>(B, s);
  return e;
}

// The interpreter's inputs for a training step (or the loss) on data x of B samples.
inline ddpmc::InterpEnv train_env(const std::vector<float>& params, const std::vector<float>& x, int B, uint64_t seed,
                                  uint64_t step) {
  ddpmc::InterpEnv e;
  e.B = B;
  e.seed = seed;
  e.step = step;
  e.params.assign(params.begin(), params.end());
  e.inputs["data"] = std::vector<double>(x.begin(), x.end());
  return e;
}

// The interpreter's inputs for the noise predictor (the eps graph) on x at step t.
inline ddpmc::InterpEnv eps_env(const std::vector<float>& params, const std::vector<float>& x, int B, int t) {
  ddpmc::InterpEnv e = sampler_env(params, x, B, t, 0);
  e.inputs.erase("s");
  return e;
}

// The inputs a sampler may read besides x, t and s: its step flags and its
// sampling-time arguments at their defaults (what a call with args = nullptr uses).
inline void add_sampler_inputs(ddpmc::InterpEnv& e, const ddpm_module& m, int idx, bool first, bool last) {
  e.inputs["flag/first"] = {first ? 1.0 : 0.0};
  e.inputs["flag/last"] = {last ? 1.0 : 0.0};
  const ddpm_sampler_info& si = m.sampler_info[idx];
  for (int k = 0; k < si.n_args; ++k) e.inputs[std::string("arg/") + si.arg_names[k]] = {si.arg_defaults[k]};
}

// x: [B, data_numel]; sampler 0 steps from t to s (real times for a continuous-time
// module), seed 1, step 2: its step and a training step are bitwise identical at 1 and
// 2 threads, and the step matches the interpreter.
inline void check_threads_and_sampler(const ddpmc::Compiled& c, const ddpm::Module& mod, const std::vector<float>& params,
                                      const std::vector<float>& x, int B, double t, double s) {
  const size_t n = x.size();
  const bool cont = ddpm::is_continuous(mod.get());
  std::vector<float> out1(n), out2(n), g1(mod->param_floats), g2(mod->param_floats);
  float l1 = 0, l2 = 0;
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    ddpm::AlignedBuffer sa(mod->arena_bytes(1, B)), ta(mod->arena_bytes(0, B));
    float* out = (threads == 1 ? out1 : out2).data();
    REQUIRE((cont ? mod->sampler_step_time(0, sa.data(), B, params.data(), x.data(), (float)t, (float)s, 1, 2, out, 0,
                                           nullptr, nullptr, nullptr, 0)
                  : mod->sampler_step(0, sa.data(), B, params.data(), x.data(), (int)t, (int)s, 1, 2, out, 0)) == 0);
    REQUIRE(mod->train_step(ta.data(), B, params.data(), x.data(), 1, 2, (threads == 1 ? g1 : g2).data(),
                            threads == 1 ? &l1 : &l2) == 0);
  }
  CHECK(std::memcmp(out1.data(), out2.data(), n * sizeof(float)) == 0);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(&l1, &l2, sizeof(float)) == 0);
  ddpmc::InterpEnv e = sampler_env(params, x, B, t, s);
  if (mod->abi_version >= 4) add_sampler_inputs(e, mod.get(), 0, false, false);
  auto ref = ddpmc::interpret(c.samplers[0].second, c.model, e);
  CHECK(rel_error(out1.data(), ref[0].data(), n) <= 1e-3);
}

// One train_step of `mod` (built from `c`) at batch B on data x: the loss and every
// gradient within 1e-4 (relative) of the interpreter's on the planned training graph.
inline void check_train_step(const ddpmc::Compiled& c, const ddpm::Module& mod, const std::vector<float>& params, int B,
                             const std::vector<float>& x, uint64_t seed, uint64_t step) {
  ddpm::AlignedBuffer arena(mod->arena_bytes(0, B));
  std::vector<float> grads((size_t)mod->param_floats, 0.0f);
  float loss = 0;
  REQUIRE(mod->train_step(arena.data(), B, params.data(), x.data(), seed, step, grads.data(), &loss) == 0);
  auto ref = ddpmc::interpret(c.train, c.model, train_env(params, x, B, seed, step));
  REQUIRE(ref.size() == 1 + c.model.params.size());
  CHECK(std::isfinite(loss));
  CHECK(std::abs(loss - ref[0][0]) <= 1e-4 * std::abs(ref[0][0]));
  for (size_t p = 0; p < c.model.params.size(); ++p) {
    const auto& pi = c.model.params[p];
    INFO("gradient of " << pi.name);
    CHECK(rel_error(grads.data() + pi.offset, ref[1 + p].data(), (size_t)pi.type.numel()) <= 1e-4);
  }
}

// n fresh moons points (seed 12345) and the sliced Wasserstein distances that put a
// model's samples in scale: two fresh draws (the floor) and N(0, I) against the data.
struct MoonsReference {
  std::vector<float> points;
  double floor = 0, gauss = 0;
};
inline MoonsReference moons_reference(int n) {
  MoonsReference r;
  std::vector<float> other((size_t)n * 2), gauss((size_t)n * 2);
  r.points.resize((size_t)n * 2);
  ddpm::sample_2d("moons", n, 12345, 0, r.points.data());
  ddpm::sample_2d("moons", n, 54321, 0, other.data());
  for (int i = 0; i < 2 * n; ++i) gauss[(size_t)i] = (float)ddpm::philox_normal(99, 0, 7, (uint64_t)i);
  r.floor = ddpm::sliced_wasserstein_2d(r.points.data(), n, other.data(), n);
  r.gauss = ddpm::sliced_wasserstein_2d(gauss.data(), n, r.points.data(), n);
  return r;
}

}  // namespace ddpm_test
