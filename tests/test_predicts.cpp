// Declared parameterisation (`net ... -> [4] predicts v`): the module's eps_eval,
// which ddpm-eval's bound uses, returns the eps that an x0- or v-prediction
// implies. Each case compares a model that declares its prediction with the same
// net written as an eps-predictor by hand (tests/specs/*_as_eps.ddpm), on the same
// weights: the variational bound must agree, and the two declared predictions must
// give different eps.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "module.h"
#include "runtime/vlb.h"
#include "test_support.h"

using namespace ddpm_test;

namespace {

struct Built {
  ddpm::Module mod;
  explicit Built(const std::string& spec)
      : mod(ddpmc::build_module(source_path("tests/specs/" + spec + ".ddpm"), test_build_options()).so_path) {}
};

std::vector<float> weights(const ddpm::Module& mod) {
  std::vector<float> p(mod->param_floats, 0.0f);
  for (int i = 0; i < mod->n_params; ++i) {
    auto v = uniform_floats(mod->params[i].numel, -0.5f, 0.5f, 40 + i);
    std::copy(v.begin(), v.end(), p.begin() + mod->params[i].offset);
  }
  return p;
}

// Mean bits/dim of the full bound (all 50 steps) on 6 points on the 8-bit grid.
double bound(const ddpm::Module& mod, const std::vector<float>& params) {
  const int B = 6;
  const int64_t D = mod->data_numel;
  std::vector<float> x0(B * D);
  auto u = uniform_floats(B * D, -1, 1, 77);
  for (size_t i = 0; i < x0.size(); ++i) x0[i] = std::round((u[i] + 1) * 127.5f) / 127.5f - 1;
  ddpm::AlignedBuffer arena(mod->arena_bytes(2 + mod->n_samplers, B));
  auto eps = [&](const float* x, int t, float* out) {
    REQUIRE(mod->eps_eval(arena.data(), B, params.data(), x, t, out) == 0);
  };
  const ddpm::VlbSchedule s = ddpm::schedule_from_tables(mod->T, mod->beta, mod->alpha, mod->abar);
  ddpm::VlbBatch r = ddpm::vlb_bpd(x0.data(), B, D, s, eps, ddpm::VlbOptions{});
  double m = 0;
  for (double v : r.total) m += v / B;
  return m;
}

}  // namespace

TEST_CASE("predicts: the bound of an x0- and a v-prediction model equals that of its implied eps") {
  Built v("v_pred"), v_eps("v_as_eps"), x0("x0_pred"), x0_eps("x0_as_eps");
  CHECK(v.mod->eps_predicts == DDPM_PREDICTS_V);
  CHECK(x0.mod->eps_predicts == DDPM_PREDICTS_X0);
  CHECK(v_eps.mod->eps_predicts == DDPM_PREDICTS_EPS);
  REQUIRE(v.mod->param_floats == v_eps.mod->param_floats);
  REQUIRE(x0.mod->param_floats == v.mod->param_floats);
  for (int i = 0; i < v.mod->n_params; ++i)  // one set of weights fits all four
    CHECK(std::string(v.mod->params[i].name) == x0_eps.mod->params[i].name);
  const std::vector<float> p = weights(v.mod);
  const double bv = bound(v.mod, p), bv_eps = bound(v_eps.mod, p);
  const double bx = bound(x0.mod, p), bx_eps = bound(x0_eps.mod, p);
  MESSAGE("bits/dim: v " << bv << " (as eps " << bv_eps << "), x0 " << bx << " (as eps " << bx_eps << ")");
  CHECK(std::abs(bv - bv_eps) <= 1e-4 * std::abs(bv_eps));
  CHECK(std::abs(bx - bx_eps) <= 1e-4 * std::abs(bx_eps));
  // The same net read as v or as x0 implies different eps, so different bounds.
  CHECK(std::abs(bv - bx) > 1e-2 * std::abs(bv));
}
