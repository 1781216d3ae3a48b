// ddpm-eval: the variational bound of a trained run (runtime/vlb.h) on held-out data.
//
//   ddpm-eval runs/fashion                      what it can compute for this run, and how
//   ddpm-eval runs/fashion --bound -n 1000 [--steps 100] [--data FILE] [--class K]
//   ddpm-eval runs/fashion --quality [-n 1000] [--sampler ddim --steps 50]   FID, precision/recall (eval_quality.h)
//   ddpm-eval runs/moons_vp --nll ode [-n 1000] [--trace exact]  likelihood by the probability-flow ODE (eval_nll.h)
//   ddpm-eval models/fmnist_classifier.safetensors --accuracy [--data t10k]  a classifier's accuracy
//
// Data flow: RUN_DIR/module.so + RUN_DIR/checkpoint.safetensors (EMA weights by
// default; the spec hashes must match) and held-out data (eval_data.h: the test
// split of the run's data set, or fresh points of a built-in 2-D set) → batches
// x0 [B, D] (with their labels for a class-conditional model) → ddpm::vlb_bpd,
// which calls the module's eps_eval (eps_eval_labels) once per t → per-sample
// bounds → the mean and its standard error (per class and averaged over the
// classes for a conditional model; eval_stats.h) on stdout and in
// RUN_DIR/eval.json. 8-bit data (every value on the grid 2k/255 - 1) gets the
// discretized decoder and bits/dim; continuous data (2-D points, other arrays) a
// continuous Gaussian decoder and nats/dim (--decoder overrides the choice).
// A progress line goes to stderr. Exit codes: 0 ok, 1 bad input (a one-line
// error), 2 bad flags, 70 an internal error.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "common/progress_line.h"
#include "eval_data.h"
#include "eval_json.h"
#include "eval_nll.h"
#include "eval_quality.h"
#include "eval_stats.h"
#include "runtime/module.h"
#include "runtime/sample.h"
#include "runtime/vlb.h"
#include "spec_module.h"
#include "tool_main.h"

namespace {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

struct EvalConfig {
  ddpm_tools::EvalDataRequest data;
  int batch = 100;
  int threads = 1;
  uint64_t seed = 0;
  bool use_ema = true;
  int steps = 0;                   // K strided L_{t-1} terms; 0 = the full sum
  std::string decoder = "auto";    // auto, discretized, gaussian
  bool compute = false;            // --bound: compute; otherwise say what can be computed
  bool quiet = false;
  bool trust_module = false;  // load RUN_DIR/module.so instead of rebuilding it (spec_module.h)
  std::string variance = "auto";  // auto (the model's: learned if it predicts one), learned, fixed
  std::string cache_dir;
};

// The decoder for the data: discretized for 8-bit data, Gaussian for continuous.
ddpm::Decoder pick_decoder(const EvalConfig& cfg, const ddpm_tools::EvalData& d) {
  if (cfg.decoder == "gaussian" || (cfg.decoder == "auto" && !d.on_grid)) return ddpm::Decoder::Gaussian;
  if (!d.on_grid) {
    float lo = *std::min_element(d.x.begin(), d.x.end()), hi = *std::max_element(d.x.begin(), d.x.end());
    if (lo < -1.000001f || hi > 1.000001f)
      user_error_noloc(fmt::format("--decoder discretized: {} has values outside [-1, 1] (from {} to {})", d.source,
                                   lo, hi),
                       "scale 8-bit pixels p to p / 127.5 - 1, or use --decoder gaussian for continuous data");
    fmt::print(stderr, "warning: not every value in {} is on the 256-level grid 2k/255 - 1; the discretized decoder "
                       "assumes 8-bit data, so L_0 is only approximate\n", d.source);
  }
  return ddpm::Decoder::Discretized;
}

// A number, or null where there is none (an error estimate from one batch).
nlohmann::json json_number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string unit_of(ddpm::Decoder d) { return d == ddpm::Decoder::Gaussian ? "nats/dim" : "bits/dim"; }

std::string decoder_text(ddpm::Decoder d) {
  return d == ddpm::Decoder::Gaussian
             ? "a continuous Gaussian decoder N(x_0; mu, sigma_1^2) (a density in nats/dim: comparable to other "
               "continuous bounds, not to bits/dim of 8-bit data)"
             : "the discretized 8-bit decoder of Ho et al. (every value is on the 8-bit grid 2k/255 - 1)";
}

// The model's noise predictor, or a one-line error saying why there is none.
void check_eps_entry(const ddpm::Module& mod, const std::string& so) {
  const ddpm_module& m = mod.get();
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  if (m.eps_eval == nullptr)
    user_error_noloc(fmt::format("{} has no noise predictor for the bound: its spec has no single net declared as "
                                 "(x: {}, t: step) -> {}{}",
                                 so, mod.data_shape_string(), mod.data_shape_string(),
                                 K > 0 ? fmt::format(" or (x: {}, t: step, y: label) -> {}", mod.data_shape_string(),
                                                     mod.data_shape_string())
                                       : ""),
                     "declare the net the loss trains with that signature (a second net with the same signature "
                     "makes it ambiguous), or rebuild a module from an older ddpmc with `ddpmc compile SPEC -o "
                     "RUN_DIR/module.so`");
  if (K > 0 && (m.abi_version < 5 || m.eps_eval_labels == nullptr))
    user_error_noloc(fmt::format("{} is an ABI version {} module: it has no eps_eval_labels, which the bound of a "
                                 "class-conditional model needs",
                                 so, m.abi_version),
                     "rebuild it with the current ddpmc: `ddpmc compile SPEC -o RUN_DIR/module.so` (the spec hash "
                     "stays the same)");
}

// Without --bound: what ddpm-eval can compute for this run, and the command.
int describe(const EvalConfig& cfg, const ddpm::Module& mod, const ddpm_tools::EvalData& d, ddpm::Decoder dec,
             const std::string& step) {
  const ddpm_module& m = mod.get();
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  const int B = (int)std::min<int64_t>(cfg.batch, d.n);
  const int evals = cfg.steps > 0 && cfg.steps < m.T - 1 ? cfg.steps + 1 : m.T;
  fmt::print("{}: a model of {} (T = {}, {} schedule{}), checkpoint step {}, {} weights\n", cfg.data.run_dir,
             mod.data_shape_string(), m.T, m.schedule ? m.schedule : "?",
             m.abi_version >= 4 && m.eps_predicts != DDPM_PREDICTS_EPS
                 ? fmt::format(", the net predicts {}", m.eps_predicts == DDPM_PREDICTS_X0 ? "x0" : "v")
                 : "",
             step.empty() ? "?" : step, cfg.use_ema ? "EMA" : "raw");
  fmt::print("ddpm-eval can compute the variational bound L_T + sum L_t-1 + L_0 (Ho et al. 2020):\n");
  fmt::print("  on {} samples of {}{}\n", d.n, d.source,
             d.available > d.n ? fmt::format(" (of {}; -n sets how many)", d.available) : "");
  fmt::print("  in {} with {}\n", unit_of(dec), decoder_text(dec));
  if (K > 0)
    fmt::print("  {}\n", cfg.data.cls >= 0 ? fmt::format("for class {} of the model's {}", cfg.data.cls, K)
                                           : fmt::format("per class and averaged over the model's {} classes "
                                                         "(--class K for one class)", K));
  fmt::print("  cost: {} eps evaluations for each of {} batches of {}{}\n", evals, (d.n + B - 1) / B, B,
             evals == m.T ? " (--steps K estimates the sum from K strided steps)" : "");
  fmt::print("run it with: ddpm-eval {} --bound{}\n", cfg.data.run_dir,
             cfg.data.cls >= 0 ? fmt::format(" --class {}", cfg.data.cls) : "");
  if (ddpm::has_ode(m))
    fmt::print("and the likelihood by the probability-flow ODE '{}' of its continuous-time limit: ddpm-eval {} --nll ode\n",
               m.ode_name, cfg.data.run_dir);
  return 0;
}

int evaluate(const EvalConfig& cfg) {
  tbb::global_control threads_ctl(tbb::global_control::max_allowed_parallelism, (size_t)cfg.threads);
  const ddpm_tools::ModuleFile mf = ddpm_tools::module_for_run(cfg.data.run_dir, cfg.trust_module, cfg.cache_dir);
  const auto [so, ckpt, checksum] = ddpm::run_files(cfg.data.run_dir, "evaluate DIR", mf.so, mf.checksum);
  ddpm::Module mod(so, checksum);
  const ddpm_module& m = mod.get();
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  if (ddpm::is_supervised(m))
    ddpm::diffusion_only(cfg.compute ? "--bound (--bpd) is the variational bound of a diffusion model"
                                     : "ddpm-eval computes the variational bound of a diffusion model",
                         cfg.data.run_dir, "a classifier has no bound; measure its accuracy with classify_eval on held-out data");
  if (ddpm::is_continuous(m) && !cfg.compute) {
    // Without --bound: what can be computed for a continuous-time model.
    fmt::print("{}: a continuous-time model of {} (t in [{:g}, {:g}], {} sampling steps by default)\n"
               "ddpm-eval can compute its sample quality: ddpm-eval {} --quality\n",
               cfg.data.run_dir, mod.data_shape_string(), m.t_min, m.t_max, m.sample_steps, cfg.data.run_dir);
    if (ddpm::has_ode(m))
      fmt::print("and its likelihood by the probability-flow ODE '{}': ddpm-eval {} --nll ode\n", m.ode_name,
                 cfg.data.run_dir);
    else
      fmt::print("(its spec declares no `ode`, so there is no likelihood by the probability-flow ODE; the "
                 "variational bound is defined for discrete time)\n");
    return 0;
  }
  if (ddpm::is_continuous(m))
    user_error_noloc(fmt::format("{} is a continuous-time model: ddpm-eval computes the variational bound of a "
                                 "discrete-time one (T steps and their tables)",
                                 cfg.data.run_dir),
                     ddpm::has_ode(m) ? fmt::format("its likelihood by the probability-flow ODE is: ddpm-eval {} --nll ode",
                                                    cfg.data.run_dir)
                                      : fmt::format("its sample quality is: ddpm-eval {} --quality", cfg.data.run_dir));
  check_eps_entry(mod, so);
  if (cfg.steps > m.T)
    user_error_noloc(fmt::format("--steps {} is out of range: the model has T = {} diffusion steps", cfg.steps, m.T),
                     fmt::format("use 1..{} (0 means the full sum)", m.T - 1));
  const ddpm::VlbSchedule sched = ddpm::schedule_from_tables(m.T, m.beta, m.alpha, m.abar);
  const ddpm_tools::EvalData data = ddpm_tools::load_eval_data(cfg.data, mod);
  const ddpm::Decoder dec = pick_decoder(cfg, data);
  ddpm::AlignedFloats params(m.param_floats);
  const std::string ckpt_step = ddpm::load_weights(ckpt, mod, cfg.use_ema, params.data());
  if (!cfg.compute) return describe(cfg, mod, data, dec, ckpt_step);

  // A learned variance (ABI 7) is the model's unless --variance fixed asks for the
  // fixed one of Ho et al. (to compare the two bounds of one model).
  const bool has_learned = m.abi_version >= 7 && m.eps_learned_variance && m.eps_eval_var;
  if (cfg.variance == "learned" && !has_learned)
    user_error_noloc(fmt::format("--variance learned: the model in {} does not predict its variance",
                                 cfg.data.run_dir),
                     "a net declared `-> [2 C, ...] predicts eps_var` does (see models/moons_learned_var.ddpm)");
  const bool learned = has_learned && cfg.variance != "fixed";
  fmt::print(stderr, "the reverse variance: {}\n",
             learned       ? "learned (the net's interpolation between beta_t and beta_tilde_t)"
             : has_learned ? "fixed (beta_t; --variance fixed: the model's learned variance is not used)"
                           : "fixed (beta_t; beta_tilde_2 for the decoder)");
  if (m.abi_version >= 4 && m.eps_predicts != DDPM_PREDICTS_EPS)
    fmt::print(stderr, "the net predicts {} (declared in the spec); the bound uses the eps it implies\n",
               m.eps_predicts == DDPM_PREDICTS_X0 ? "x0" : "v");
  const int64_t D = m.data_numel, N = data.n;
  if (N < cfg.data.n)
    fmt::print(stderr, "note: {} holds {} samples{}; evaluating all of them instead of -n {}\n", data.source,
               data.available, cfg.data.cls >= 0 ? fmt::format(" of class {}", cfg.data.cls) : "", cfg.data.n);

  const int B = (int)std::min<int64_t>(cfg.batch, N);
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m, 2 + m.n_samplers, B);
  ddpm::AlignedFloats xin((int64_t)B * D), eout((int64_t)B * D), fout((int64_t)B * D), lin(B);
  const ddpm::TermSteps ts = ddpm::vlb_term_steps(m.T, cfg.steps, cfg.seed);
  const int evals_per_chunk = (int)ts.t.size() + 1;
  const int64_t n_chunks = (N + B - 1) / B;
  if (!ts.exact && n_chunks < 2)
    fmt::print(stderr, "note: with a single batch the ± of a strided estimate leaves out the noise of its step "
                       "offset; use a smaller --batch (each batch draws its own offset)\n");

  std::vector<double> total, prior, terms, decoder;
  std::vector<int64_t> clusters;  // a strided estimate's batches share their offset; the full sum's samples do not
  ddpmc::ProgressLine progress(cfg.quiet);
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t g0 = c * B;
    const int b = (int)std::min<int64_t>(B, N - g0);
    for (int i = 0; i < b && K > 0; ++i) lin[i] = (float)data.labels[(size_t)(g0 + i)];
    ddpm::EpsFn eps = [&](const float* xt, int t, float* e) {
      std::copy(xt, xt + (int64_t)b * D, xin.data());
      const int rc = K > 0 ? m.eps_eval_labels(arena.data(), b, params.data(), xin.data(), lin.data(), t, eout.data())
                           : m.eps_eval(arena.data(), b, params.data(), xin.data(), t, eout.data());
      if (rc != 0) DDPM_ICE(fmt::format("module eps_eval returned {} (t = {}, batch {})", rc, t, b));
      std::copy(eout.data(), eout.data() + (int64_t)b * D, e);
    };
    ddpm::VlbOptions opt;
    if (learned)
      opt.eps_var = [&](const float* xt, int t, float* e, float* f) {
        std::copy(xt, xt + (int64_t)b * D, xin.data());
        const int rc = m.eps_eval_var(arena.data(), b, params.data(), xin.data(), K > 0 ? lin.data() : nullptr, t,
                                      eout.data(), fout.data());
        if (rc != 0) DDPM_ICE(fmt::format("module eps_eval_var returned {} (t = {}, batch {})", rc, t, b));
        std::copy(eout.data(), eout.data() + (int64_t)b * D, e);
        std::copy(fout.data(), fout.data() + (int64_t)b * D, f);
      };
    opt.decoder = dec;
    opt.seed = cfg.seed;
    opt.steps = cfg.steps;
    opt.first_index = g0;
    opt.on_step = [&](int done, int of, int t) {
      if (!progress.due()) return;
      const double frac = ((double)c * evals_per_chunk + done) / ((double)n_chunks * evals_per_chunk);
      progress.print(fmt::format("bound: samples {}/{} (batch {}/{}), t = {} ({}/{})  ETA {:.0f} s", g0, N, c + 1,
                                 n_chunks, t, done, of, progress.elapsed() * (1 - frac) / frac));
    };
    ddpm::VlbBatch r = ddpm::vlb_bpd(data.x.data() + g0 * D, b, D, sched, eps, opt);
    total.insert(total.end(), r.total.begin(), r.total.end());
    prior.insert(prior.end(), r.prior.begin(), r.prior.end());
    terms.insert(terms.end(), r.terms.begin(), r.terms.end());
    decoder.insert(decoder.end(), r.decoder.begin(), r.decoder.end());
    for (int i = 0; i < b; ++i) clusters.push_back(ts.exact ? g0 + i : c);
  }
  progress.finish();
  const double seconds = progress.elapsed();

  const int64_t bad = std::count_if(total.begin(), total.end(), [](double v) { return !std::isfinite(v); });
  if (bad > 0)
    user_error_noloc(fmt::format("the bound is not finite for {} of {} samples: the model's eps_theta returned NaN "
                                 "or Inf (checkpoint {})",
                                 bad, N, ckpt),
                     "the run may have diverged; evaluate an earlier checkpoint or retrain");

  using ddpm_tools::Estimate;
  const bool by_class = K > 0 && cfg.data.cls < 0;
  auto estimate = [&](const std::vector<double>& v) {
    return by_class ? ddpm_tools::class_average(v, data.labels, K, clusters) : ddpm_tools::mean_estimate(v, clusters);
  };
  const Estimate all = estimate(total);
  const std::string unit = unit_of(dec);
  const std::string sum_label =
      ts.exact ? "full sum"
               : fmt::format("sum estimated from {} strided steps per batch, ± across batches", (int)ts.t.size());
  nlohmann::json per_class = nlohmann::json::array();
  if (by_class) {
    const std::vector<Estimate> per = ddpm_tools::class_estimates(total, data.labels, K, clusters);
    int present = 0;
    for (int k = 0; k < K; ++k) {
      if (per[(size_t)k].n == 0) continue;
      ++present;
      fmt::print("class {}: {} {:.4f} {} (n = {})\n", k, unit, per[(size_t)k].mean,
                 ddpm_tools::plus_minus(per[(size_t)k].se), per[(size_t)k].n);
      per_class.push_back({{"class", k}, {"bound", per[(size_t)k].mean}, {"stderr", json_number(per[(size_t)k].se)},
                           {"n", per[(size_t)k].n}});
    }
    fmt::print("averaged over {} classes{}: ", present,
               present < K ? fmt::format(" (of {}; the others have no sample among the first {})", K, N) : "");
  } else if (cfg.data.cls >= 0) {
    fmt::print("class {}: ", cfg.data.cls);
  }
  fmt::print("{} {:.4f} {} (n = {}, T = {} {}; L_T {:.4g}, sum L_t-1 {:.4g}, L_0 {:.4g}{})\n", unit, all.mean,
             ddpm_tools::plus_minus(all.se), N, m.T, sum_label, estimate(prior).mean, estimate(terms).mean, estimate(decoder).mean,
             dec == ddpm::Decoder::Gaussian ? "; continuous Gaussian decoder" : "");

  nlohmann::json j;
  j["metric"] = dec == ddpm::Decoder::Gaussian ? "nats_per_dim" : "bits_per_dim";
  j["decoder"] = dec == ddpm::Decoder::Gaussian ? "continuous gaussian" : "discretized 8-bit";
  j["bound"] = all.mean;
  j["bound_stderr"] = json_number(all.se);
  if (dec == ddpm::Decoder::Discretized) {
    j["bpd"] = all.mean;
    j["bpd_stderr"] = json_number(all.se);
  }
  if (by_class) j["per_class"] = per_class;
  if (cfg.data.cls >= 0) j["class"] = cfg.data.cls;
  j["n"] = N;
  j["T"] = m.T;
  j["steps"] = (int)ts.t.size();
  j["full_sum"] = ts.exact;
  j["L_T"] = estimate(prior).mean;
  j["L_sum"] = estimate(terms).mean;
  j["L_sum_stderr"] = json_number(estimate(terms).se);
  j["L_0"] = estimate(decoder).mean;
  j["data"] = data.source;
  j["weights"] = cfg.use_ema ? "ema" : "params";
  j["seed"] = cfg.seed;
  j["batch"] = B;
  j["checkpoint_step"] = ckpt_step;
  j["spec_hash"] = m.spec_hash;
  j["seconds"] = seconds;
  const std::string out = ddpm_tools::eval_json_path(cfg.data.run_dir);
  ddpm_tools::update_eval_json(out, [&](nlohmann::json& old) {  // keep what --quality and --nll wrote there
    for (const char* key : ddpm_tools::kEvalSections)
      if (old.contains(key)) j[key] = old[key];
    old = j;
  });
  if (!cfg.quiet)
    fmt::print(stderr, "evaluated {} samples x {} ({} weights, {} eps evaluations each) in {:.1f} s; wrote {}\n", N,
               mod.data_shape_string(), cfg.use_ema ? "EMA" : "raw", evals_per_chunk, seconds, out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  EvalConfig cfg;
  cfg.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  std::string weights = "ema";

  ddpm_tools::QualityConfig qc;
  ddpm_tools::AccuracyConfig ac;
  bool quality = false, accuracy = false;
  std::string nll;
  ddpm_tools::NllConfig nc;
  std::string cls_text;
  CLI::App app{"ddpm-eval: the variational bound of a model trained by ddpm-train (without --bound: what it can "
               "compute for the run), its sample quality (--quality) or a classifier's accuracy (--accuracy)",
               "ddpm-eval"};
  app.add_option("run_dir", cfg.data.run_dir,
                 "a run directory written by ddpm-train --out (--accuracy: a classifier run or its weights file)")
      ->required();
  app.add_flag("--quality", quality,
               "sample quality: FID vs the training and test sets, precision/recall (k = 3) and the predicted "
               "classes under the evaluator (images), or the sliced Wasserstein distance (2-D points)");
  app.add_option("--nll", nll,
                 "the exact likelihood by the probability-flow ODE of the spec's `ode` (a continuous-time model): "
                 "bits/dim of dequantised 8-bit data, else nats/dim")
      ->check(CLI::IsMember({"ode"}));
  app.add_option("--trace", nc.trace, "--nll: the divergence, exact (D vjp calls per stage) or by Hutchinson's "
                                      "estimator (one); auto: exact for data of at most 8 values")
      ->check(CLI::IsMember({"auto", "exact", "hutchinson"}))
      ->capture_default_str();
  app.add_option("--rtol", nc.rtol, "--nll: the ODE solver's relative tolerance")->check(CLI::Range(1e-12, 1.0))->capture_default_str();
  app.add_option("--atol", nc.atol, "--nll: the ODE solver's absolute tolerance")->check(CLI::Range(1e-12, 1.0))->capture_default_str();
  app.add_flag("--accuracy", accuracy, "the accuracy of a classifier (a supervised run or weights file) on --data");
  app.add_option("--sampler", qc.sampler, "--quality: the sampler (default: ddim with 50 steps, else the first)");
  app.add_option("--samples", qc.samples, "--quality: evaluate these samples (.npy [N, ...]) instead of sampling");
  app.add_option("--evaluator", qc.evaluator.spec,
                 "--quality/--accuracy: the evaluator's spec (default: the one its weights record)");
  app.add_option("--evaluator-weights", qc.evaluator.weights,
                 "--quality: the evaluator's weights (default: models/fmnist_classifier.safetensors)");
  app.add_option("--json", qc.json, "--quality: write the results here (default: \"quality\" in RUN/eval.json)");
  app.add_flag("--bound,--bpd", cfg.compute,
               "compute the variational bound L_T + sum L_t-1 + L_0 (Ho et al. 2020): bits/dim for 8-bit data, "
               "nats/dim with a continuous Gaussian decoder for continuous data");
  app.add_option("-n", cfg.data.n, "number of held-out samples (the first n, of the class with --class)")
      ->capture_default_str();
  app.add_option("--data", cfg.data.data,
                 "fashion-mnist (its test split), a built-in 2-D set (a held-out draw), an IDX image file or an .npy "
                 "[N, ...] (default: the run's training data, mapped to held-out data)");
  app.add_option("--labels", cfg.data.labels,
                 "class labels of --data for a class-conditional model: an .npy [N] (IDX images use their label file)");
  app.add_option("--class", cls_text, "a class-conditional model: only this class (default: every class, and "
                                     "their average; --quality: all, class i % K for sample i)");
  app.add_option("--decoder", cfg.decoder,
                 "L_0: discretized (8-bit data, bits/dim), gaussian (continuous data, nats/dim), or auto (discretized "
                 "when every value is on the 8-bit grid)")
      ->check(CLI::IsMember({"auto", "discretized", "gaussian"}))
      ->capture_default_str();
  app.add_option("--variance", cfg.variance,
                 "the reverse variance in the bound: the model's (auto: learned when its net predicts eps_var, else "
                 "fixed), learned, or fixed (beta_t, as Ho et al.)")
      ->check(CLI::IsMember({"auto", "learned", "fixed"}))
      ->capture_default_str();
  app.add_option("--batch", cfg.batch, "samples per eps_eval call")->capture_default_str();
  app.add_option("--threads", cfg.threads, "worker threads (default: all cores)")->capture_default_str();
  app.add_option("--seed", cfg.seed, "seed of the x_t noise")
      ->check(ddpm_tools::whole_in(0, 18446744073709551615.0L))
      ->capture_default_str();
  app.add_option("--weights", weights, "which weights to evaluate")
      ->check(CLI::IsMember({"ema", "params"}))
      ->capture_default_str();
  app.add_option("--steps", cfg.steps,
                 "evaluate sum L_t-1 on K strided t with a random offset, scaled by (T-1)/K "
                 "(an unbiased estimate); 0 = the full sum")
      ->capture_default_str();
  app.add_flag("-q,--quiet", cfg.quiet, "no progress line");
  app.add_flag("--trust-module", cfg.trust_module,
               "load the run's own module.so (checked against its checkpoint's checksum) instead of rebuilding "
               "the module from the checkpoint's source: only for runs you made yourself");
  app.add_option("--cache-dir", cfg.cache_dir, "module cache (default: $DDPM_CACHE_DIR or ~/.cache/ddpmc)");

  if (int rc = ddpm_tools::parse(app, argc, argv, "ddpm-eval"); rc >= 0) return rc;
  auto flag_error = [](const std::string& msg) { return ddpm_tools::flag_error("ddpm-eval", msg); };
  if ((int)quality + (int)accuracy + (int)!nll.empty() + (int)cfg.compute > 1)
    return flag_error("--bound, --nll, --quality and --accuracy are separate evaluations: pass one");
  if (!cls_text.empty() && cls_text != "all") {
    char* end = nullptr;
    const long v = std::strtol(cls_text.c_str(), &end, 10);
    if (*end || end == cls_text.c_str() || v < 0 || v > 1000000)
      return flag_error(fmt::format("--class must be a class index >= 0{} (got {})", quality ? " or all" : "", cls_text));
    cfg.data.cls = (int)v;
  } else if (cls_text == "all" && !quality) {
    return flag_error("--class all is for --quality; the bound is per class by default");
  }
  if (cfg.data.n < 1) return flag_error(fmt::format("-n must be at least 1 (got {})", cfg.data.n));
  if (cfg.batch < 1) return flag_error(fmt::format("--batch must be at least 1 (got {})", cfg.batch));
  if (cfg.threads < 1) return flag_error(fmt::format("--threads must be at least 1 (got {})", cfg.threads));
  if (cfg.steps < 0) return flag_error(fmt::format("--steps must be >= 0 (got {})", cfg.steps));
  cfg.use_ema = weights == "ema";
  if (quality) {
    qc.run_dir = cfg.data.run_dir;
    qc.n = cfg.data.n;
    qc.steps = app.count("--steps") ? cfg.steps : -1;
    qc.cls = cls_text.empty() ? "all" : cls_text;
    qc.threads = cfg.threads;
    qc.seed = cfg.seed;
    qc.use_ema = cfg.use_ema;
    qc.trust_module = cfg.trust_module;
    qc.cache_dir = qc.evaluator.cache_dir = cfg.cache_dir;
    qc.quiet = cfg.quiet;
    return ddpm_tools::guarded("ddpm-eval", [&] {
      tbb::global_control ctl(tbb::global_control::max_allowed_parallelism, (size_t)qc.threads);
      return ddpm_tools::run_quality(qc);
    });
  }
  if (!nll.empty()) {
    if (cfg.data.cls >= 0) return flag_error("--class is not supported by --nll ode (the ode takes no label)");
    nc.data = cfg.data;
    nc.batch = cfg.batch;
    nc.seed = cfg.seed;
    nc.use_ema = cfg.use_ema;
    nc.quiet = cfg.quiet;
    nc.trust_module = cfg.trust_module;
    nc.cache_dir = cfg.cache_dir;
    return ddpm_tools::guarded("ddpm-eval", [&] {
      tbb::global_control ctl(tbb::global_control::max_allowed_parallelism, (size_t)cfg.threads);
      return ddpm_tools::run_nll(nc);
    });
  }
  if (accuracy) {
    ac.target = cfg.data.run_dir;
    if (!cfg.data.data.empty()) ac.data = cfg.data.data;
    ac.labels = cfg.data.labels;
    ac.evaluator = qc.evaluator;
    ac.evaluator.cache_dir = cfg.cache_dir;
    ac.threads = cfg.threads;
    ac.trust_module = cfg.trust_module;
    return ddpm_tools::guarded("ddpm-eval", [&] {
      tbb::global_control ctl(tbb::global_control::max_allowed_parallelism, (size_t)ac.threads);
      return ddpm_tools::run_accuracy(ac);
    });
  }

  return ddpm_tools::guarded("ddpm-eval", [&] { return evaluate(cfg); });
}
