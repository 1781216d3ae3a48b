// Equivalence of the generated code with the reference interpreter, on the real
// moons model: loss, every gradient and every sampler step, and bitwise-identical
// results at 1 and 2 threads.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <cstring>

#include "interp.h"
#include "module.h"
#include "test_interp_checks.h"

using namespace ddpm_test;

namespace {

struct Fixture {
  ddpmc::Compiled c = ddpmc::compile_spec_file(source_path("models/moons.ddpm"));
  ddpmc::BuiltModule built = ddpmc::build_module(source_path("models/moons.ddpm"), test_build_options());
  ddpm::Module mod{built.so_path};
  std::vector<float> params = random_params(mod.get(), 100);
  ddpmc::InterpEnv env(int B, const std::vector<float>& x, uint64_t seed, uint64_t step) {
    return train_env(params, x, B, seed, step);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

}  // namespace

TEST_CASE("compiled: moons training step matches the interpreter (loss and every gradient)") {
  auto& f = fixture();
  const int B = 37;  // not a multiple of the SIMD width: exercises the scalar tails
  auto x = uniform_floats(B * 2, -2, 2, 7);
  ddpm::AlignedBuffer arena(f.mod->arena_bytes(0, B));
  std::vector<float> grads(f.mod->param_floats, 0.0f);
  float loss = 0;
  REQUIRE(f.mod->train_step(arena.data(), B, f.params.data(), x.data(), 11, 5, grads.data(), &loss) == 0);
  auto ref = ddpmc::interpret(f.c.train, f.c.model, f.env(B, x, 11, 5));
  REQUIRE(ref.size() == 1 + f.c.model.params.size());
  CHECK(std::abs(loss - ref[0][0]) <= 1e-4 * std::abs(ref[0][0]));
  for (size_t i = 0; i < f.c.model.params.size(); ++i) {
    const auto& p = f.c.model.params[i];
    double err = rel_error(grads.data() + p.offset, ref[1 + i].data(), p.type.numel());
    INFO("gradient of " << p.name);
    CHECK(err <= 1e-4);
  }
  // The lowered (unoptimized) loss graph agrees with the planned training graph, up
  // to the float rounding of the schedule tables that simplify folds (sqrt(abar)...).
  auto lowered = ddpmc::interpret(f.c.model.loss, f.c.model, f.env(B, x, 11, 5));
  CHECK(std::abs(lowered[0][0] - ref[0][0]) <= 1e-5 * std::abs(ref[0][0]));
  // The forward-only entry gives the same loss.
  ddpm::AlignedBuffer arena2(f.mod->arena_bytes(1 + f.mod->n_samplers, B));
  float loss2 = 0;
  REQUIRE(f.mod->loss_eval(arena2.data(), B, f.params.data(), x.data(), 11, 5, &loss2) == 0);
  CHECK(std::abs(loss2 - ref[0][0]) <= 1e-4 * std::abs(ref[0][0]));
}

TEST_CASE("compiled: moons sampler steps match the interpreter") {
  auto& f = fixture();
  const int B = 21;
  auto x = uniform_floats(B * 2, -2, 2, 8);
  REQUIRE(f.mod->n_samplers == (int)f.c.samplers.size());
  for (int si = 0; si < f.mod->n_samplers; ++si) {
    for (auto [t, s] : {std::pair{1000, 999}, {500, 480}, {1, 0}}) {
      ddpm::AlignedBuffer arena(f.mod->arena_bytes(1 + si, B));
      std::vector<float> out(B * 2);
      REQUIRE(f.mod->sampler_step(si, arena.data(), B, f.params.data(), x.data(), t, s, 3, 9, out.data(), 0) == 0);
      auto ref = ddpmc::interpret(f.c.samplers[si].second, f.c.model, sampler_env(f.params, x, B, t, s, 3, 9));
      INFO("sampler " << f.mod->sampler_names[si] << " t=" << t << " s=" << s);
      CHECK(rel_error(out.data(), ref[0].data(), out.size()) <= 1e-4);
    }
  }
}

TEST_CASE("compiled: moons results are bitwise identical at 1 and 2 threads") {
  auto& f = fixture();
  const int B = 256;
  auto x = uniform_floats(B * 2, -2, 2, 9);
  auto run = [&](int threads, std::vector<float>& grads, float& loss, std::vector<float>& xs) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    ddpm::AlignedBuffer arena(f.mod->arena_bytes(0, B));
    grads.assign(f.mod->param_floats, 0.0f);
    REQUIRE(f.mod->train_step(arena.data(), B, f.params.data(), x.data(), 1, 2, grads.data(), &loss) == 0);
    ddpm::AlignedBuffer sa(f.mod->arena_bytes(1, B));
    xs.assign(B * 2, 0.0f);
    REQUIRE(f.mod->sampler_step(0, sa.data(), B, f.params.data(), x.data(), 700, 699, 1, 2, xs.data(), 0) == 0);
  };
  std::vector<float> g1, g2, x1, x2;
  float l1 = 0, l2 = 0;
  run(1, g1, l1, x1);
  run(2, g2, l2, x2);
  CHECK(std::memcmp(&l1, &l2, sizeof(float)) == 0);
  CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(x1.data(), x2.data(), x1.size() * sizeof(float)) == 0);
}

TEST_CASE("autodiff: the whole moons loss gradient matches central finite differences for every parameter") {
  auto& f = fixture();
  const int B = 4;
  auto x = uniform_floats(B * 2, -2, 2, 10);
  ddpmc::InterpEnv env = f.env(B, x, 5, 8);
  auto ad = ddpmc::interpret(f.c.train, f.c.model, env);
  const double h = 1e-6;
  for (size_t i = 0; i < f.c.model.params.size(); ++i) {
    const auto& p = f.c.model.params[i];
    const int64_t n = p.type.numel();
    // First, last and a spread of elements in between.
    for (int64_t e : {int64_t{0}, n / 7, n / 3, n / 2, (5 * n) / 7, n - 1}) {
      ddpmc::InterpEnv up = env, dn = env;
      up.params[p.offset + e] += h;
      dn.params[p.offset + e] -= h;
      // Differences of the loss computed by the same (planned) graph that holds the gradients.
      double fd = (ddpmc::interpret(f.c.train, f.c.model, up)[0][0] -
                   ddpmc::interpret(f.c.train, f.c.model, dn)[0][0]) / (2 * h);
      INFO(p.name << "[" << e << "]: autodiff " << ad[1 + i][e] << ", finite differences " << fd);
      CHECK(std::abs(ad[1 + i][e] - fd) <= 1e-6 * (1 + std::abs(fd)));
    }
  }
}

TEST_CASE("compiled: moons eps_eval (the noise predictor alone) matches the interpreter") {
  auto& f = fixture();
  REQUIRE(f.c.model.has_eps);
  REQUIRE((f.mod->eps_eval != nullptr));
  const int B = 19;
  auto x = uniform_floats(B * 2, -2, 2, 12);
  for (int t : {1, 250, 1000}) {
    ddpm::AlignedBuffer arena(f.mod->arena_bytes(2 + f.mod->n_samplers, B));
    std::vector<float> eps(B * 2);
    REQUIRE(f.mod->eps_eval(arena.data(), B, f.params.data(), x.data(), t, eps.data()) == 0);
    auto ref = ddpmc::interpret(f.c.eps, f.c.model, eps_env(f.params, x, B, t));
    CAPTURE(t);
    CHECK(rel_error(eps.data(), ref[0].data(), eps.size()) <= 1e-4);
  }
}
