// A check shared by the suites that compile a real model (test_fashion.cpp,
// test_attention.cpp): sampler 0's step and a training step at 1 and at 2 threads
// are bitwise identical, and the sampler step matches the reference interpreter.
#pragma once
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <cstring>
#include <vector>

#include "interp.h"
#include "module.h"
#include "test_support.h"

namespace ddpm_test {

// The interpreter's inputs for one sampler step of B samples x from t to s, seed 1, step 2
// (the arguments the compiled sampler steps in these suites are called with).
inline ddpmc::InterpEnv sampler_env(const std::vector<float>& params, const std::vector<float>& x, int B, int t, int s) {
  ddpmc::InterpEnv e;
  e.B = B;
  e.seed = 1;
  e.step = 2;
  e.params.assign(params.begin(), params.end());
  e.inputs["x"] = std::vector<double>(x.begin(), x.end());
  e.inputs["t"] = std::vector<double>(B, t);
  e.inputs["s"] = std::vector<double>(B, s);
  return e;
}

// x: [B, data_numel]; the sampler steps from t to s; seed 1, step 2.
inline void check_threads_and_sampler(const ddpmc::Compiled& c, const ddpm::Module& mod, const std::vector<float>& params,
                                      const std::vector<float>& x, int B, int t, int s) {
  const size_t n = x.size();
  std::vector<float> out1(n), out2(n), g1(mod->param_floats), g2(mod->param_floats);
  float l1 = 0, l2 = 0;
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    ddpm::AlignedBuffer sa(mod->arena_bytes(1, B)), ta(mod->arena_bytes(0, B));
    REQUIRE(mod->sampler_step(0, sa.data(), B, params.data(), x.data(), t, s, 1, 2, (threads == 1 ? out1 : out2).data(),
                              0) == 0);
    REQUIRE(mod->train_step(ta.data(), B, params.data(), x.data(), 1, 2, (threads == 1 ? g1 : g2).data(),
                            threads == 1 ? &l1 : &l2) == 0);
  }
  CHECK(std::memcmp(out1.data(), out2.data(), n * sizeof(float)) == 0);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(&l1, &l2, sizeof(float)) == 0);
  ddpmc::InterpEnv e = sampler_env(params, x, B, t, s);
  auto ref = ddpmc::interpret(c.samplers[0].second, c.model, e);
  CHECK(rel_error(out1.data(), ref[0].data(), n) <= 1e-3);
}

}  // namespace ddpm_test
