// Continuous time (`time = continuous`, ABI 7): the rectified flow, EDM and VP-SDE
// moons models against the interpreter (training step and every sampler step, with
// real times), the sampling grids, the entry points' checks, thread-count
// independence, and training that brings samples near the data.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "march_env.h"
#include "test_interp_checks.h"
#include "test_runs.h"

using namespace ddpm_test;

namespace {

const char* const kModels[] = {"models/moons_flow.ddpm", "models/moons_edm.ddpm", "models/moons_vp.ddpm"};

using Model = CompiledSpec;

Model& model(int i) {
  static Model* m[3] = {};
  if (!m[i]) m[i] = new Model(kModels[i], 200);
  return *m[i];
}

}  // namespace

TEST_CASE("continuous: flow, EDM and VP training steps match the interpreter (loss and every gradient)") {
  for (int i = 0; i < 3; ++i) {
    Model& m = model(i);
    INFO(kModels[i]);
    REQUIRE(ddpm::is_continuous(m.mod.get()));
    const int B = 37;  // not a multiple of the SIMD width: exercises the scalar tails
    check_train_step(m.c, m.mod, m.params, B, uniform_floats(B * 2, -2, 2, 7), 11, 5);
  }
}

TEST_CASE("continuous: every sampler step of flow, EDM and VP matches the interpreter at real times") {
  for (int i = 0; i < 3; ++i) {
    Model& m = model(i);
    const ddpm_module& d = m.mod.get();
    const int B = 21;
    auto x = uniform_floats(B * 2, -2, 2, 8);
    REQUIRE(d.n_samplers == (int)m.c.samplers.size());
    REQUIRE(static_cast<bool>(d.sampler_step_time));
    // The first step from t_max, a middle one, and the last one to 0.
    const double mid = d.t_min + 0.37 * (d.t_max - d.t_min);
    for (int si = 0; si < d.n_samplers; ++si)
      for (auto [t, s, first, last] : {std::tuple{(double)d.t_max, mid, true, false}, {mid, mid * 0.5, false, false},
                                       {std::max<double>(d.t_min, 0.01), 0.0, false, true}}) {
        ddpm::AlignedBuffer arena(d.arena_bytes(1 + si, B));
        std::vector<float> out(B * 2);
        const int flags = (first ? DDPM_STEP_FIRST : 0) | (last ? DDPM_STEP_LAST : 0);
        REQUIRE(d.sampler_step_time(si, arena.data(), B, m.params.data(), x.data(), (float)t, (float)s, 3, 9, out.data(),
                                    0, nullptr, nullptr, nullptr, flags) == 0);
        INFO(std::string(kModels[i]) << " sampler " << std::string(d.sampler_names[si]) << " t=" << t << " s=" << s);
        ddpmc::InterpEnv e = sampler_env(m.params, x, B, (float)t, (float)s, 3, 9);
        add_sampler_inputs(e, d, si, first, last);
        auto ref = ddpmc::interpret(m.c.samplers[si].second, m.c.model, e);
        for (int k = 0; k < B * 2; ++k) REQUIRE_MESSAGE(std::isfinite(out[k]), k, " ", out[k], " ref ", ref[0][k]);
        CHECK(rel_error(out.data(), ref[0].data(), out.size()) <= 1e-4);
      }
  }
}

TEST_CASE("continuous: the entry points refuse steps and times out of range" * doctest::skip(ddpm_test::kNarrowerWidth)) {
  Model& m = model(1);  // EDM: t (sigma) in [t_min, t_max]
  const ddpm_module& d = m.mod.get();
  CHECK(d.T == 0);
  CHECK(d.beta == nullptr);
  CHECK_FALSE(static_cast<bool>(d.eps_eval));
  CHECK(std::string(d.schedule) == "continuous");
  const int B = 4;
  std::vector<float> x(B * 2, 0.5f), out(B * 2);
  ddpm::AlignedBuffer arena(d.arena_bytes(1, B));
  // Integer steps mean nothing here.
  CHECK(d.sampler_step(0, arena.data(), B, m.params.data(), x.data(), 10, 5, 1, 1, out.data(), 0) == 1);
  CHECK(d.sampler_step4(0, arena.data(), B, m.params.data(), x.data(), 10, 5, 1, 1, out.data(), 0, nullptr, nullptr,
                        nullptr, 0) == 1);
  auto step = [&](float t, float s) {
    return d.sampler_step_time(0, arena.data(), B, m.params.data(), x.data(), t, s, 1, 1, out.data(), 0, nullptr,
                               nullptr, nullptr, 0);
  };
  const float tm = d.t_max, mid = tm / 2;
  REQUIRE(tm > 1.0f);
  CHECK(step(tm, mid) == 0);
  CHECK(step(mid, mid) == 1);         // s must be below t
  CHECK(step(mid, -1.0f) == 1);       // and not negative
  CHECK(step(tm + 0.5f, mid) == 1);   // t at most t_max
  CHECK(step(NAN, 0.0f) == 1);
}

TEST_CASE("continuous: sampling grids (uniform, quadratic, karras) from t_max through t_min to 0" * doctest::skip(ddpm_test::kNarrowerWidth)) {
  ddpm_module m{};
  m.abi_version = 7;
  m.continuous = 1;
  m.sample_steps = 18;
  auto check_ends = [&](const std::vector<double>& ts, size_t K) {
    REQUIRE(ts.size() == K + 1);
    CHECK(ts[0] == 0.0);
    CHECK(ts[K] == (double)m.t_max);
    for (size_t i = 1; i <= K; ++i) CHECK(ts[i] > ts[i - 1]);
  };
  // Karras et al.'s 18 noise levels between 0.002 and 80 with rho = 7, then 0.
  m.grid = DDPM_GRID_KARRAS;
  m.grid_rho = 7;
  m.t_min = 0.002f;
  m.t_max = 80;
  std::vector<double> ts = ddpm::sampling_times(m, 0);
  check_ends(ts, 18);
  CHECK(ts[1] == doctest::Approx(0.002).epsilon(1e-6));
  const double a = std::pow(0.002, 1 / 7.0), b = std::pow(80.0, 1 / 7.0);
  for (int i = 1; i <= 18; ++i) CHECK(ts[i] == doctest::Approx(std::pow(a + (i - 1) / 17.0 * (b - a), 7)).epsilon(1e-6));
  // Uniform from t_min = 0: t_i = i / K.
  m.grid = DDPM_GRID_UNIFORM;
  m.t_min = 0;
  m.t_max = 1;
  ts = ddpm::sampling_times(m, 50);
  check_ends(ts, 50);
  for (int i = 0; i <= 50; ++i) CHECK(ts[i] == doctest::Approx(i / 50.0));
  // Quadratic with t_min > 0: t_min + (t_max - t_min) u^2 over u = (i-1)/(K-1), then 0.
  m.grid = DDPM_GRID_QUADRATIC;
  m.t_min = 0.001f;
  ts = ddpm::sampling_times(m, 11);
  check_ends(ts, 11);
  for (int i = 1; i <= 11; ++i) {
    const double u = (i - 1) / 10.0;
    CHECK(ts[i] == doctest::Approx((double)m.t_min + (1 - (double)m.t_min) * u * u));
  }
  // One step goes straight from t_max to 0; a bad count is a user error.
  ts = ddpm::sampling_times(m, 1);
  check_ends(ts, 1);
  CHECK_THROWS_AS(ddpm::sampling_times(m, -1), ddpmc::UserError);
  CHECK_THROWS_AS(ddpm::sampling_times(m, 100001), ddpmc::UserError);
}

TEST_CASE("continuous: training and sampling are bitwise identical at 1 and 2 threads") {
  Model& m = model(1);  // EDM: its heun sampler from sigma 3.5 to 2.25
  const int B = 256;
  check_threads_and_sampler(m.c, m.mod, m.params, uniform_floats(B * 2, -2, 2, 9), B, 3.5, 2.25);
}

TEST_CASE("continuous: flow, EDM and VP trained on moons sample near the data (sliced Wasserstein)" * doctest::skip(ddpm_test::kNarrowerWidth)) {
  const int n = 2000;
  const MoonsReference ref = moons_reference(n);
  MESSAGE("floor " << ref.floor << ", N(0, I) " << ref.gauss);
  // Each model's samplers at their default step counts (EDM 18, flow 50, VP 100); the
  // first-order ones at these counts (EDM's Euler, the VP's predictor-corrector) are
  // held to the looser bound.
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"models/moons_flow.ddpm", {"euler", "heun"}},
      {"models/moons_edm.ddpm", {"heun", "~euler"}},
      {"models/moons_vp.ddpm", {"em", "~pc", "ode"}}};
  for (const auto& [spec, samplers] : cases) {
    const std::filesystem::path out = process_dir("test-continuous", std::filesystem::path(spec).stem().string());
    ddpm::TrainConfig c = run_config(spec, "moons", out, 3000, 256, 5);
    REQUIRE(ddpm::train(c) == 0);
    for (std::string name : samplers) {
      const bool loose = name[0] == '~';
      if (loose) name = name.substr(1);
      const std::vector<float> x = ddpm::sample_to_vector(draw_config(out, name, 0, n));
      const double w = ddpm::sliced_wasserstein_2d(x.data(), n, ref.points.data(), n);
      MESSAGE(spec << " " << name << ": sliced Wasserstein " << w);
      INFO(spec << " sampler " << name);
      for (float v : x) REQUIRE(std::isfinite(v));
      // Far from the N(0, I) start, and within a small multiple of two data draws' distance.
      CHECK(w < (loose ? 0.6 : 0.3) * ref.gauss);
      if (!loose) CHECK(w < 4 * ref.floor);
    }
  }
}

TEST_CASE("continuous: a resumed EDM run is bit-exact, and its previews sample on the model's grid") {
  const std::filesystem::path whole = process_dir("test-continuous", "whole"), part = process_dir("test-continuous", "part");
  ddpm::TrainConfig w = run_config("models/moons_edm.ddpm", "moons", whole, 400, 64, 3);
  REQUIRE(ddpm::train(w) == 0);
  ddpm::TrainConfig p = run_config("models/moons_edm.ddpm", "moons", part, 400, 64, 3);
  p.stop_at = 150;
  p.sample_every = 100;  // a preview at step 100, through sampler_step_time
  REQUIRE(ddpm::train(p) == 0);
  CHECK(std::filesystem::exists(part / "samples" / "step_0000100.png"));
  p.stop_at = 0;
  p.sample_every = 0;
  p.resume = true;
  REQUIRE(ddpm::train(p) == 0);
  require_same_checkpoint(whole, part);
}
