// The fashion U-Net (models/fashion_unet.ddpm) compiled module against the
// reference interpreter: the training step at batch 5 (so a convolution slice holds more than
// one sample), loss and every gradient within 1e-3 relative; a sampler step; and bitwise-identical
// results at 1 and 2 threads.
#include <doctest/doctest.h>

#include <cstring>

#include "interp.h"
#include "module.h"
#include "test_support.h"
#include "test_interp_checks.h"

using namespace ddpm_test;

namespace {

struct Unet {
  ddpmc::Compiled c = ddpmc::compile_spec_file(source_path("models/fashion_unet.ddpm"));
  ddpm::Module mod{ddpmc::build_module(source_path("models/fashion_unet.ddpm"), test_build_options()).so_path};
  std::vector<float> params;
  Unet() {
    params.assign(mod->param_floats, 0.0f);
    for (int i = 0; i < mod->n_params; ++i) {
      const auto& p = mod->params[i];
      // The module's own initialisation ranges, and nonzero GroupNorm affine terms.
      float b = p.init_bound > 0 ? p.init_bound : 0.2f;
      auto v = uniform_floats(p.numel, -b, b, 300 + i);
      std::memcpy(params.data() + p.offset, v.data(), p.numel * sizeof(float));
    }
  }
};

Unet& unet() {
  static Unet u;
  return u;
}

}  // namespace

TEST_CASE("fashion: the compiled U-Net training step matches the interpreter at batch 5") {
  auto& u = unet();
  REQUIRE(u.c.model.params.size() == (size_t)u.mod->n_params);
  int64_t n = 0;
  for (auto& p : u.c.model.params) n += p.type.numel();
  CHECK(n == 691681);
  const int B = 5;  // 4 convolution slices: some hold two samples
  auto x = uniform_floats(B * 784, -1, 1, 5);
  ddpm::AlignedBuffer arena(u.mod->arena_bytes(0, B));
  std::vector<float> grads(u.mod->param_floats);
  float loss = 0;
  REQUIRE(u.mod->train_step(arena.data(), B, u.params.data(), x.data(), 3, 4, grads.data(), &loss) == 0);
  ddpmc::InterpEnv env;
  env.B = B;
  env.seed = 3;
  env.step = 4;
  env.params.assign(u.params.begin(), u.params.end());
  env.inputs["data"] = std::vector<double>(x.begin(), x.end());
  auto ref = ddpmc::interpret(u.c.train, u.c.model, env);
  CHECK(std::abs(loss - ref[0][0]) <= 1e-3 * std::abs(ref[0][0]));
  int bad = 0;
  double worst = 0;
  for (size_t i = 0; i < u.c.model.params.size(); ++i) {
    const auto& p = u.c.model.params[i];
    double err = rel_error(grads.data() + p.offset, ref[1 + i].data(), p.type.numel());
    worst = std::max(worst, err);
    if (err > 1e-3) {
      ++bad;
      MESSAGE("gradient of " << p.name << ": relative error " << err);
    }
  }
  MESSAGE("worst gradient relative error " << worst << " (limit 1e-3)");
  CHECK(bad == 0);
}

TEST_CASE("fashion: U-Net sampler step matches the interpreter, and 1 and 2 threads are bitwise identical") {
  auto& u = unet();
  const int B = 2;
  check_threads_and_sampler(u.c, u.mod, u.params, uniform_floats(B * 784, -1, 1, 6), B, 600, 599);
}
