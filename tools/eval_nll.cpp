// ddpm-eval --nll ode (see eval_nll.h).
#include "eval_nll.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "common/progress_line.h"
#include "eval_json.h"
#include "eval_stats.h"
#include "philox.h"
#include "runtime/module.h"
#include "runtime/ode_nll.h"
#include "runtime/sample.h"
#include "spec_module.h"

namespace ddpm_tools {

namespace {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

// The dequantisation noise's stream (Philox): v for sample i, element j.
constexpr uint32_t kDequantStream = 5101;

// The module's ode, or a one-line error saying why there is none.
void check_ode(const ddpm_module& m, const std::string& run) {
  if (ddpm::has_ode(m)) return;
  if (!ddpm::is_continuous(m))
    user_error_noloc(fmt::format("--nll ode: the spec of {}, a discrete-time model (T = {} steps), declares no `ode` "
                                 "(its schedule's continuous-time limit)",
                                 run, m.T),
                     fmt::format("its variational bound is: ddpm-eval {} --bound; models/moons.ddpm shows the ode of "
                                 "the linear schedule",
                                 run));
  user_error_noloc(fmt::format("--nll ode: the spec of {} declares no `ode`", run),
                   "add `ode pf(x, t) { return ... }` returning dx/dt of its probability-flow ODE (see "
                   "models/moons_vp.ddpm), and prior_std to the diffusion block if the prior is not N(0, I)");
}

}  // namespace

int run_nll(const NllConfig& cfg) {
  const ModuleFile mf = module_for_run(cfg.data.run_dir, cfg.trust_module, cfg.cache_dir);
  const auto [so, ckpt, checksum] = ddpm::run_files(cfg.data.run_dir, "evaluate DIR", mf.so, mf.checksum);
  ddpm::Module mod(so, checksum);
  const ddpm_module& m = mod.get();
  if (ddpm::is_supervised(m))
    ddpm::diffusion_only("--nll ode is the likelihood of a diffusion model", cfg.data.run_dir,
                         "a classifier has no likelihood; measure its accuracy with --accuracy");
  check_ode(m, cfg.data.run_dir);
  const EvalData data = load_eval_data(cfg.data, mod);
  ddpm::AlignedFloats params(m.param_floats);
  const std::string ckpt_step = ddpm::load_weights(ckpt, mod, cfg.use_ema, params.data());
  const int64_t D = m.data_numel, N = data.n;
  const bool exact = cfg.trace == "exact" || (cfg.trace == "auto" && D <= 8);
  if (exact && D > 64)
    user_error_noloc(fmt::format("--trace exact takes {} vjp calls per solver stage for data of {} values", D, D),
                     "use --trace hutchinson (the default above 8 values)");
  const bool bits = data.on_grid;
  const int B = (int)std::min<int64_t>(cfg.batch, N);
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m, 5 + m.n_samplers, B);
  ddpm::AlignedFloats xin((int64_t)B * D), uin((int64_t)B * D), fout((int64_t)B * D), vout((int64_t)B * D);
  fmt::print(stderr, "likelihood by ode '{}' from t = {:g} to {:g} (prior N(0, {:g}^2 I)), RK45 rtol {:g} atol {:g}, "
                     "{} divergence{}\n",
             m.ode_name, m.t_min, m.t_max, m.prior_std, cfg.rtol, cfg.atol,
             exact ? fmt::format("exact ({} vjp calls per stage)", D) : "Hutchinson (one Rademacher probe per sample)",
             bits ? "; 8-bit data, uniformly dequantised" : "");

  std::vector<double> nll, prior, delta;
  int64_t calls = 0, stages = 0, accepted = 0, rejected = 0;
  ddpmc::ProgressLine progress(cfg.quiet);
  const int64_t n_chunks = (N + B - 1) / B;
  std::vector<float> x((size_t)B * D);
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t g0 = c * B;
    const int b = (int)std::min<int64_t>(B, N - g0);
    for (int64_t i = 0; i < (int64_t)b * D; ++i) {
      x[i] = data.x[(size_t)(g0 * D + i)];
      if (bits)
        x[i] += (float)((ddpm::philox_uniform(cfg.seed, 0, kDequantStream, (uint64_t)(g0 * D + i)) - 0.5) * (2.0 / 255));
    }
    ddpm::OdeVjpFn vjp = [&](const float* xs, double t, const float* u, float* f, float* v) {
      std::copy(xs, xs + (int64_t)b * D, xin.data());
      std::copy(u, u + (int64_t)b * D, uin.data());
      const int rc = m.ode_vjp(arena.data(), b, params.data(), xin.data(), (float)t, uin.data(), fout.data(), vout.data());
      if (rc != 0) DDPM_ICE(fmt::format("module ode_vjp returned {} (t = {}, batch {})", rc, t, b));
      std::copy(fout.data(), fout.data() + (int64_t)b * D, f);
      std::copy(vout.data(), vout.data() + (int64_t)b * D, v);
    };
    ddpm::OdeNllOptions opt;
    opt.t0 = m.t_min;
    opt.t1 = m.t_max;
    opt.prior_std = m.prior_std;
    opt.rtol = cfg.rtol;
    opt.atol = cfg.atol;
    opt.trace = exact ? ddpm::OdeTrace::Exact : ddpm::OdeTrace::Hutchinson;
    opt.seed = cfg.seed;
    opt.first_index = g0;
    opt.on_step = [&](double t, int64_t steps) {
      if (!progress.due()) return;
      progress.print(fmt::format("nll: samples {}/{} (batch {}/{}), t = {:.4g} after {} steps, {:.0f} s", g0, N, c + 1,
                                 n_chunks, t, steps, progress.elapsed()));
    };
    const ddpm::OdeNllBatch r = ddpm::ode_nll(x.data(), b, D, vjp, opt);
    nll.insert(nll.end(), r.nll.begin(), r.nll.end());
    prior.insert(prior.end(), r.prior_nll.begin(), r.prior_nll.end());
    delta.insert(delta.end(), r.delta.begin(), r.delta.end());
    calls += r.vjp_calls, stages += r.drift_evals, accepted += r.accepted, rejected += r.rejected;
  }
  progress.finish();
  const double seconds = progress.elapsed();

  // Per dimension: nats, or bits of the 8-bit bins (the dequantised density's bound).
  const double offset = bits ? std::log2(127.5) : 0;
  std::vector<double> per_dim(nll.size());
  for (size_t i = 0; i < nll.size(); ++i) per_dim[i] = nll[i] / (double)D / (bits ? std::log(2.0) : 1.0) + offset;
  std::vector<int64_t> clusters(nll.size());
  for (size_t i = 0; i < clusters.size(); ++i) clusters[i] = (int64_t)i;
  const Estimate all = mean_estimate(per_dim, clusters);
  const std::string unit = bits ? "bits/dim" : "nats/dim";
  double mean_prior = 0, mean_delta = 0;
  for (size_t i = 0; i < nll.size(); ++i) mean_prior += prior[i] / (double)N, mean_delta += delta[i] / (double)N;
  fmt::print("ode {} {:.4f} {} (n = {}, {} trace; per batch of {}: {:.0f} net evaluations, {:.0f} RK45 steps and "
             "{:.0f} rejected; -log prior {:.4g}, integral of div f {:.4g} nats per sample; {:.1f} s)\n",
             unit, all.mean, plus_minus(all.se), N, exact ? "exact" : "Hutchinson", B, (double)calls / n_chunks,
             (double)accepted / n_chunks, (double)rejected / n_chunks, mean_prior, mean_delta, seconds);

  nlohmann::json j;
  j["metric"] = bits ? "bits_per_dim" : "nats_per_dim";
  j["nll"] = all.mean;
  j["nll_stderr"] = std::isfinite(all.se) ? nlohmann::json(all.se) : nlohmann::json(nullptr);
  j["trace"] = exact ? "exact" : "hutchinson";
  j["dequantized"] = bits;
  j["rtol"] = cfg.rtol;
  j["atol"] = cfg.atol;
  j["n"] = N;
  j["batch"] = B;
  j["net_evaluations"] = calls;
  j["drift_evaluations"] = stages;
  j["steps_accepted"] = accepted;
  j["steps_rejected"] = rejected;
  j["t0"] = m.t_min;
  j["t1"] = m.t_max;
  j["prior_std"] = m.prior_std;
  j["data"] = data.source;
  j["weights"] = cfg.use_ema ? "ema" : "params";
  j["seed"] = cfg.seed;
  j["checkpoint_step"] = ckpt_step;
  j["spec_hash"] = m.spec_hash;
  j["seconds"] = seconds;
  const std::string out = eval_json_path(cfg.data.run_dir);
  update_eval_json(out, [&](nlohmann::json& all) { all["nll_ode"] = j; });
  if (!cfg.quiet) fmt::print(stderr, "wrote nll_ode in {}\n", out);
  return 0;
}

}  // namespace ddpm_tools
