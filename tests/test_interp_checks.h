// Checks of a compiled module against the reference interpreter, shared by the
// suites of individual models (test_continuous, test_learned_var): random weights,
// and one training step's loss and every gradient against the interpreter.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
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

// One train_step of `mod` (built from `c`) at batch B on data x: the loss and every
// gradient within 1e-4 (relative) of the interpreter's on the planned training graph.
inline void check_train_step(const ddpmc::Compiled& c, const ddpm::Module& mod, const std::vector<float>& params, int B,
                             const std::vector<float>& x, uint64_t seed, uint64_t step) {
  ddpm::AlignedBuffer arena(mod->arena_bytes(0, B));
  std::vector<float> grads((size_t)mod->param_floats, 0.0f);
  float loss = 0;
  REQUIRE(mod->train_step(arena.data(), B, params.data(), x.data(), seed, step, grads.data(), &loss) == 0);
  ddpmc::InterpEnv e;
  e.B = B;
  e.seed = seed;
  e.step = step;
  e.params.assign(params.begin(), params.end());
  e.inputs["data"] = std::vector<double>(x.begin(), x.end());
  auto ref = ddpmc::interpret(c.train, c.model, e);
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
