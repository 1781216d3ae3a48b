// The probability-flow ODE (ABI 8, `ode name(x, t)`): its vector-Jacobian product
// entry (passes/vjp.cpp) against the interpreter and against finite differences in
// double, thread-count independence, and the likelihood solver (runtime/ode_nll.h) on
// an analytic case: Gaussian data whose exact score is written as the ode.
#include <doctest/doctest.h>

#include <tbb/global_control.h>

#include <cmath>
#include <cstring>

#include "passes/passes.h"
#include "runtime/ode_nll.h"
#include "march_env.h"
#include "test_interp_checks.h"

using namespace ddpm_test;

namespace {

const char* const kModels[] = {"models/moons_flow.ddpm", "models/moons_edm.ddpm", "models/moons_vp.ddpm"};

// Each spec compiled and built, with random parameters from seed 300.
struct Model : CompiledSpec {
  explicit Model(const std::string& rel) : CompiledSpec(rel, 300) {}
};

ddpmc::InterpEnv ode_env(const std::vector<float>& params, const std::vector<double>& x, int B, double t,
                         const std::vector<float>& u) {
  ddpmc::InterpEnv e;
  e.B = B;
  e.params.assign(params.begin(), params.end());
  e.inputs["x"] = x;
  e.inputs["t"] = std::vector<double>(B, t);
  if (!u.empty()) e.inputs["u"] = std::vector<double>(u.begin(), u.end());
  return e;
}

// ode_vjp of `m` at B samples x, time t and vectors u: f and vjp.
std::pair<std::vector<float>, std::vector<float>> run_vjp(const Model& m, int B, const std::vector<float>& x, float t,
                                                          const std::vector<float>& u) {
  const ddpm_module& d = m.mod.get();
  ddpm::AlignedBuffer arena(d.arena_bytes(5 + d.n_samplers, B));
  std::vector<float> f(x.size()), v(x.size());
  REQUIRE(d.ode_vjp(arena.data(), B, m.params.data(), x.data(), t, u.data(), f.data(), v.data()) == 0);
  return {f, v};
}

// The compiled drift and vjp against the interpreter, and the interpreter's vjp
// (the unoptimised graph of passes/vjp.cpp) against central differences in double.
void check_vjp(const Model& m, int B, double t, double tol, bool fd) {
  const ddpm_module& d = m.mod.get();
  REQUIRE(ddpm::has_ode(d));
  const int64_t D = d.data_numel;
  auto x = uniform_floats((size_t)(B * D), -1.5f, 1.5f, 21);
  auto u = uniform_floats((size_t)(B * D), -1, 1, 22);
  auto [f, v] = run_vjp(m, B, x, (float)t, u);
  const std::vector<double> xd(x.begin(), x.end());
  auto ref = ddpmc::interpret(m.c.ode_vjp, m.c.model, ode_env(m.params, xd, B, (float)t, u));
  REQUIRE(ref.size() == 2);
  CHECK(rel_error(f.data(), ref[0].data(), f.size()) <= tol);
  CHECK(rel_error(v.data(), ref[1].data(), v.size()) <= tol);
  // ode_eval gives the same drift.
  ddpm::AlignedBuffer arena(d.arena_bytes(4 + d.n_samplers, B));
  std::vector<float> f2(x.size());
  REQUIRE(d.ode_eval(arena.data(), B, m.params.data(), x.data(), (float)t, f2.data()) == 0);
  CHECK(rel_error(f2.data(), ref[0].data(), f2.size()) <= tol);
  if (!fd) return;
  const ddpmc::Graph raw = ddpmc::vjp(m.c.model.ode, m.c.model);
  auto exact = ddpmc::interpret(raw, m.c.model, ode_env(m.params, xd, B, (float)t, u));
  const double h = 1e-5;
  double worst = 0, scale = 0;
  for (int64_t j = 0; j < D; ++j) {
    // Element j of every sample at once: samples do not interact in a drift.
    std::vector<double> xp = xd, xm = xd;
    for (int b = 0; b < B; ++b) xp[b * D + j] += h, xm[b * D + j] -= h;
    auto fp = ddpmc::interpret(m.c.model.ode, m.c.model, ode_env(m.params, xp, B, (float)t, {}));
    auto fm = ddpmc::interpret(m.c.model.ode, m.c.model, ode_env(m.params, xm, B, (float)t, {}));
    for (int b = 0; b < B; ++b) {
      double g = 0;
      for (int64_t k = 0; k < D; ++k) g += u[b * D + k] * (fp[0][b * D + k] - fm[0][b * D + k]) / (2 * h);
      worst = std::max(worst, std::abs(g - exact[1][b * D + j]));
      scale = std::max(scale, std::abs(g));
    }
  }
  INFO("worst |fd - vjp| " << worst << " of scale " << scale);
  CHECK(worst <= 1e-6 * std::max(1.0, scale));
}

}  // namespace

TEST_CASE("ode: the vjp entry of flow, EDM and VP matches the interpreter, and its graph finite differences") {
  for (const char* spec : kModels) {
    INFO(std::string(spec));
    Model m(spec);
    const ddpm_module& d = m.mod.get();
    for (double frac : {0.0, 0.37, 1.0}) {
      const double t = d.t_min + frac * (d.t_max - d.t_min);
      INFO("t = " << t);
      // At t_min the VP's sigma(t) = sqrt(1 - alpha(t)^2) cancels in float (alpha is
      // 0.99995 there) and -eps / sigma amplifies it: the spec's formula, not the
      // kernels, sets the error there.
      check_vjp(m, 13, t, frac == 0.0 ? 1e-3 : 1e-4, true);  // 13: not a multiple of the SIMD width
    }
  }
}

TEST_CASE("ode: the U-Net's vjp (fashion_flow) matches the interpreter" * doctest::skip(ddpm_test::kNarrowerWidth)) {
  Model m("models/fashion_flow.ddpm");
  check_vjp(m, 2, 0.6, 2e-4, false);
}

TEST_CASE("ode: the vjp entry is bitwise identical at 1 and 2 threads, and refuses bad arguments") {
  Model m("models/moons_vp.ddpm");
  const ddpm_module& d = m.mod.get();
  const int B = 300;
  auto x = uniform_floats(B * 2, -2, 2, 31);
  auto u = uniform_floats(B * 2, -1, 1, 32);
  std::pair<std::vector<float>, std::vector<float>> r[2];
  for (int threads : {1, 2}) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    r[threads - 1] = run_vjp(m, B, x, 0.3f, u);
  }
  CHECK(std::memcmp(r[0].first.data(), r[1].first.data(), r[0].first.size() * 4) == 0);
  CHECK(std::memcmp(r[0].second.data(), r[1].second.data(), r[0].second.size() * 4) == 0);
  ddpm::AlignedBuffer arena(d.arena_bytes(5 + d.n_samplers, B));
  std::vector<float> f(B * 2), v(B * 2);
  CHECK(d.ode_vjp(arena.data(), B, m.params.data(), x.data(), 1.5f, u.data(), f.data(), v.data()) == 1);
  CHECK(d.ode_vjp(arena.data(), B, m.params.data(), x.data(), -0.1f, u.data(), f.data(), v.data()) == 1);
  CHECK(d.ode_vjp(arena.data(), 0, m.params.data(), x.data(), 0.5f, u.data(), f.data(), v.data()) == 1);
  CHECK(d.ode_vjp(arena.data(), B, m.params.data(), x.data(), 0.5f, u.data(), f.data(), nullptr) == 1);
  CHECK(d.prior_std == 1.0f);
  CHECK(std::string(d.ode_name) == "pf");
}

TEST_CASE("ode: Gaussian data under its exact score: the ODE likelihood matches the closed form within 1%") {
  Model m("tests/specs/gaussian_ode.ddpm");
  const ddpm_module& d = m.mod.get();
  REQUIRE(ddpm::has_ode(d));
  const int B = 64;
  const int64_t D = d.data_numel;
  REQUIRE(D == 4);
  std::vector<float> x((size_t)(B * D));
  for (size_t i = 0; i < x.size(); ++i) x[i] = (float)(0.5 * ddpm::philox_normal(5, 0, 1, i));  // N(0, 0.25 I)
  ddpm::AlignedBuffer arena(d.arena_bytes(5 + d.n_samplers, B));
  std::vector<float> xin(x.size()), uin(x.size());
  ddpm::OdeVjpFn vjp = [&](const float* xs, double t, const float* u, float* f, float* v) {
    std::copy(xs, xs + x.size(), xin.begin());
    std::copy(u, u + x.size(), uin.begin());
    REQUIRE(d.ode_vjp(arena.data(), B, m.params.data(), xin.data(), (float)t, uin.data(), f, v) == 0);
  };
  // -log N(x; 0, v0 I) with v0 the marginal variance at t_min.
  const double tm = d.t_min;
  const double a = std::exp(-0.25 * tm * tm * 19.9 - 0.5 * tm * 0.1);
  const double v0 = a * a * 0.25 + (1 - a * a);
  for (ddpm::OdeTrace trace : {ddpm::OdeTrace::Exact, ddpm::OdeTrace::Hutchinson}) {
    ddpm::OdeNllOptions opt;
    opt.t0 = d.t_min;
    opt.t1 = d.t_max;
    opt.prior_std = d.prior_std;
    opt.trace = trace;
    const ddpm::OdeNllBatch r = ddpm::ode_nll(x.data(), B, D, vjp, opt);
    REQUIRE(r.nll.size() == (size_t)B);
    double worst = 0, mean = 0, mean_ref = 0;
    for (int b = 0; b < B; ++b) {
      double q = 0;
      for (int64_t j = 0; j < D; ++j) q += (double)x[b * D + j] * x[b * D + j];
      const double ref = 0.5 * D * std::log(2 * M_PI * v0) + 0.5 * q / v0;
      worst = std::max(worst, std::abs(r.nll[b] - ref) / std::max(1.0, std::abs(ref)));
      mean += r.nll[b] / B, mean_ref += ref / B;
    }
    INFO("trace " << (trace == ddpm::OdeTrace::Exact ? "exact" : "hutchinson") << ": mean nll " << mean << " vs "
                  << mean_ref << ", " << r.accepted << " steps, " << r.vjp_calls << " vjp calls");
    CHECK(worst <= 0.01);
    CHECK(std::abs(mean - mean_ref) <= 0.01 * std::abs(mean_ref));
    CHECK(r.vjp_calls == (trace == ddpm::OdeTrace::Exact ? D : 1) * r.drift_evals);
  }
}
