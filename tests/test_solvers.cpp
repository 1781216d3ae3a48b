// The samplers of models/moons_solvers.ddpm after one short training run: sample
// quality by sliced Wasserstein distance to fresh moons, DPM-Solver++(2M) with 20
// steps and Heun's probability-flow ODE with 50 steps against DDIM with 100 (the
// acceptance bar: within 10%), the Euler-Maruyama SDE and DDIM's eta as a
// sampling-time argument; the one-line errors for bad --arg settings; and one
// stateful step against the interpreter.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "common/diag.h"
#include "interp.h"
#include "test_support.h"
#include "test_interp_checks.h"
#include "runtime/data2d.h"
#include "runtime/module.h"
#include "runtime/sample.h"
#include "runtime/swd.h"
#include "runtime/train.h"
#include "test_runs.h"

namespace fs = std::filesystem;

namespace {

const fs::path& trained_run() {
  static const fs::path dir = [] {
    fs::path p = ddpm_test::process_dir("test-solvers", "moons");
    REQUIRE(ddpm::train(ddpm_test::run_config("models/moons_solvers.ddpm", "moons", p, 6000, 256, 11)) == 0);
    return p;
  }();
  return dir;
}

std::vector<float> draw(const std::string& sampler, int steps, int n, std::vector<std::string> args = {}) {
  ddpm::SampleConfig s = ddpm_test::draw_config(trained_run(), sampler, steps, n);
  s.batch = 1000;
  s.seed = 3;
  s.args = std::move(args);
  return ddpm::sample_to_vector(s);
}

}  // namespace

TEST_CASE("solvers: dpmpp2m (20 steps) and Heun ode (50) are within 10% of ddim (100) in SWD") {
  const int n = 4000;
  std::vector<float> ref(n * 2);
  ddpm::sample_2d("moons", n, 2024, 0, ref.data());
  auto swd = [&](const std::vector<float>& x) { return ddpm::sliced_wasserstein_2d(x.data(), n, ref.data(), n); };
  const double ddim100 = swd(draw("ddim", 100, n)), ddim20 = swd(draw("ddim", 20, n));
  const double dpm20 = swd(draw("dpmpp2m", 20, n)), ode50 = swd(draw("ode", 50, n));
  const double sde = swd(draw("sde", 1000, n)), ddpm = swd(draw("ddpm", 0, n));
  MESSAGE("SWD to fresh moons (n = " << n << "): ddim 100 " << ddim100 << ", ddim 20 " << ddim20 << ", dpmpp2m 20 "
                                     << dpm20 << ", ode 50 " << ode50 << ", sde 1000 " << sde << ", ddpm 1000 " << ddpm);
  CHECK(dpm20 <= 1.1 * ddim100);
  CHECK(ode50 <= 1.1 * ddim100);
  // The stochastic samplers land near the data too (N(0, I) is about 0.22 away).
  CHECK(sde < 0.11);
  CHECK(ddpm < 0.11);
}

TEST_CASE("solvers: a sampling-time argument changes the samples without a rebuild") {
  const int n = 500;
  const std::vector<float> a = draw("ddim_eta", 50, n), b = draw("ddim_eta", 50, n, {"eta=0"});
  const std::vector<float> c = draw("ddim_eta", 50, n, {"eta=1"}), d = draw("ddim", 50, n);
  CHECK(a == b);  // the default is 0
  double diff_ddim = 0, diff_eta1 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff_ddim = std::max(diff_ddim, (double)std::abs(a[i] - d[i]));
    diff_eta1 = std::max(diff_eta1, (double)std::abs(a[i] - c[i]));
  }
  CHECK(diff_ddim < 1e-3);  // eta = 0 is ddim (up to rounding: ddim's coefficients are folded in double)
  CHECK(diff_eta1 > 0.1);   // eta = 1 adds noise
}

TEST_CASE("solvers: unknown or malformed sampler arguments are one-line errors listing the arguments") {
  auto err = [&](const std::string& sampler, const std::string& arg) {
    try {
      draw(sampler, 5, 10, {arg});
    } catch (const ddpmc::UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string unknown = err("ddim_eta", "w=3");
  CHECK(unknown.find("sampler 'ddim_eta' has no argument 'w'") != std::string::npos);
  CHECK(unknown.find("eta (default 0)") != std::string::npos);
  const std::string bad = err("ddim_eta", "eta=abc");
  CHECK(bad.find("--arg eta: 'abc' is not a number") != std::string::npos);
  CHECK(err("ddim_eta", "eta").find("is not NAME=VALUE") != std::string::npos);
  CHECK(err("ddim", "eta=1").find("sampler 'ddim' takes no arguments") != std::string::npos);
}

TEST_CASE("solvers: a stateful sampler step (dpmpp2m) matches the interpreter, state included") {
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/models/moons_solvers.ddpm";
  ddpmc::Compiled c = ddpmc::compile_spec_file(spec);
  ddpmc::BuildOptions opt;
  opt.cache_dir = std::string(DDPM_TEST_CACHE);
  ddpm::Module mod(ddpmc::build_module(spec, opt).so_path);
  const int idx = mod.sampler_index("dpmpp2m");
  REQUIRE(idx >= 0);
  REQUIRE(mod->sampler_info[idx].state_floats == 3);  // x0_prev [2] and t_prev
  const int B = 7;
  std::vector<float> params(mod->param_floats);
  for (int i = 0; i < mod->n_params; ++i) {
    auto v = ddpm_test::uniform_floats(mod->params[i].numel, -0.3f, 0.3f, 60 + i);
    std::copy(v.begin(), v.end(), params.begin() + mod->params[i].offset);
  }
  auto x = ddpm_test::uniform_floats(B * 2, -1, 1, 61), x0_prev = ddpm_test::uniform_floats(B * 2, -1, 1, 62);
  // State block layout: x0_prev [B,2] at offset 0, then t_prev [B] at offset 2 * B.
  std::vector<float> st(3 * B), stn(3 * B), out(B * 2);
  std::copy(x0_prev.begin(), x0_prev.end(), st.begin());
  for (int b = 0; b < B; ++b) st[2 * B + b] = 650;
  ddpm::AlignedBuffer arena(mod->arena_bytes(1 + idx, B));
  REQUIRE(mod->sampler_step4(idx, arena.data(), B, params.data(), x.data(), 600, 550, 1, 2, out.data(), 0, nullptr,
                             st.data(), stn.data(), 0) == 0);
  // The ABI 3 entry cannot carry state.
  CHECK(mod->sampler_step(idx, arena.data(), B, params.data(), x.data(), 600, 550, 1, 2, out.data(), 0) == 3);
  REQUIRE(mod->sampler_step4(idx, arena.data(), B, params.data(), x.data(), 600, 550, 1, 2, out.data(), 0, nullptr,
                             st.data(), stn.data(), 0) == 0);
  ddpmc::InterpEnv e = ddpm_test::sampler_env(params, x, B, 600, 550);
  e.inputs["state/x0_prev"] = std::vector<double>(x0_prev.begin(), x0_prev.end());
  e.inputs["state/t_prev"] = std::vector<double>(B, 650);
  e.inputs["flag/first"] = {0.0};
  e.inputs["flag/last"] = {0.0};
  const auto& g = c.samplers[idx].second;
  REQUIRE(g.output_names == std::vector<std::string>{"x_out", "state/x0_prev", "state/t_prev"});
  auto ref = ddpmc::interpret(g, c.model, e);
  CHECK(ddpm_test::rel_error(out.data(), ref[0].data(), out.size()) <= 1e-4);
  CHECK(ddpm_test::rel_error(stn.data(), ref[1].data(), 2 * B) <= 1e-4);
  for (int b = 0; b < B; ++b) CHECK(stn[2 * B + b] == 600);
  // The multistep correction is active: the result moves with the previous x0.
  std::vector<float> out2(B * 2), st2(3 * B, 0.0f);
  std::copy(st.begin() + 2 * B, st.end(), st2.begin() + 2 * B);
  REQUIRE(mod->sampler_step4(idx, arena.data(), B, params.data(), x.data(), 600, 550, 1, 2, out2.data(), 0, nullptr,
                             st2.data(), stn.data(), 0) == 0);
  CHECK(out2 != out);
}
