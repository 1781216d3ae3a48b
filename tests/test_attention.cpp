// The standard library's self-attention block (std.ddpm `attention`) in a small
// image model, tests/specs/attention.ddpm: the compiled training step (loss and
// every gradient) and a sampler step against the reference interpreter within
// 1e-3, and bitwise-identical results at 1 and 2 threads. test_alloc.cpp checks
// that its steps allocate nothing.
#include <doctest/doctest.h>

#include <cstring>

#include "interp.h"
#include "module.h"
#include "test_support.h"
#include "test_interp_checks.h"

using namespace ddpm_test;

namespace {

const char* kSpec = "tests/specs/attention.ddpm";

struct Attn {
  ddpmc::Compiled c = ddpmc::compile_spec_file(source_path(kSpec));
  ddpm::Module mod{ddpmc::build_module(source_path(kSpec), test_build_options()).so_path};
  std::vector<float> params;
  Attn() {
    params.assign(mod->param_floats, 0.0f);
    for (int i = 0; i < mod->n_params; ++i) {
      const auto& p = mod->params[i];
      // Larger than the initial ranges, so that the attention logits spread out.
      float b = p.init_bound > 0 ? 2 * p.init_bound : 0.2f;
      auto v = uniform_floats(p.numel, -b, b, 500 + i);
      std::memcpy(params.data() + p.offset, v.data(), p.numel * sizeof(float));
    }
  }
};

Attn& attn() {
  static Attn a;
  return a;
}

}  // namespace

TEST_CASE("attention: the block is in the model, and its training step matches the interpreter") {
  auto& a = attn();
  int softmaxes = 0, bmms = 0;
  for (auto& n : a.c.train.nodes) softmaxes += n.op == ddpmc::Op::Softmax, bmms += n.op == ddpmc::Op::Bmm;
  CHECK(softmaxes == 1);
  CHECK(bmms == 6);  // two forward products, each with two gradient products
  const int B = 3, D = 32;
  auto x = uniform_floats(B * D, -1, 1, 8);
  ddpm::AlignedBuffer arena(a.mod->arena_bytes(0, B));
  std::vector<float> grads(a.mod->param_floats);
  float loss = 0;
  REQUIRE(a.mod->train_step(arena.data(), B, a.params.data(), x.data(), 5, 6, grads.data(), &loss) == 0);
  ddpmc::InterpEnv env;
  env.B = B;
  env.seed = 5;
  env.step = 6;
  env.params.assign(a.params.begin(), a.params.end());
  env.inputs["data"] = std::vector<double>(x.begin(), x.end());
  auto ref = ddpmc::interpret(a.c.train, a.c.model, env);
  CHECK(std::abs(loss - ref[0][0]) <= 1e-3 * std::abs(ref[0][0]));
  // Some gradients are zero in exact arithmetic (the key bias: softmax ignores a
  // shift shared by a query's logits), so each error is measured against the
  // tensor's largest gradient, or a thousandth of the largest of all, if larger.
  double top = 0;
  for (size_t i = 0; i < a.c.model.params.size(); ++i)
    for (double g : ref[1 + i]) top = std::max(top, std::abs(g));
  REQUIRE(top > 0);
  for (size_t i = 0; i < a.c.model.params.size(); ++i) {
    const auto& p = a.c.model.params[i];
    double err = 0, scale = 1e-3 * top;
    for (int64_t e = 0; e < p.type.numel(); ++e) {
      err = std::max(err, std::abs(grads[p.offset + e] - ref[1 + i][e]));
      scale = std::max(scale, std::abs(ref[1 + i][e]));
    }
    INFO("gradient of " << p.name << ": error " << err << " at scale " << scale);
    CHECK(err <= 1e-3 * scale);
  }
}

TEST_CASE("attention: sampler step matches the interpreter, and 1 and 2 threads are bitwise identical") {
  auto& a = attn();
  const int B = 5;
  check_threads_and_sampler(a.c, a.mod, a.params, uniform_floats(B * 32, -1, 1, 9), B, 60, 40);
}
