// ddpm-eval: the variational bound of a trained run in bits/dim (runtime/vlb.h).
//
//   ddpm-eval runs/fashion --bpd -n 1000 [--data fashion-mnist|FILE.npy] [--steps 100]
//
// Data flow: RUN_DIR/module.so + RUN_DIR/checkpoint.safetensors (EMA weights by
// default; the spec hashes must match) and test images (the first n of the test
// split: by default the data set named in RUN_DIR/config.json, with Fashion-MNIST
// mapped from its training to its test file) → batches x0 [B, D] → ddpm::vlb_bpd,
// which calls the module's eps_eval once per t → per-image bits/dim → the mean and
// its standard error on stdout and in RUN_DIR/eval.json. A progress line goes to
// stderr. Exit codes: 0 ok, 1 bad input (a one-line error), 2 bad flags, 70 an
// internal error.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
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
#include "runtime/idx.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/sample.h"
#include "runtime/vlb.h"
#include "tool_main.h"

namespace {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;
using Clock = std::chrono::steady_clock;

struct EvalConfig {
  std::string run_dir;
  int64_t n = 1000;
  std::string data;  // empty: from RUN_DIR/config.json
  int batch = 100;
  int threads = 1;
  uint64_t seed = 0;
  bool use_ema = true;
  int steps = 0;  // K strided L_{t-1} terms; 0 = the full sum
  bool quiet = false;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }


// The data set to evaluate on: --data, or what config.json says was used for
// training, with Fashion-MNIST's training file mapped to its test file.
std::string resolve_data(const EvalConfig& cfg) {
  std::string data = cfg.data;
  if (data.empty()) {
    const std::string conf = (fs::path(cfg.run_dir) / "config.json").string();
    std::ifstream f(conf);
    nlohmann::json j = f ? nlohmann::json::parse(f, nullptr, false) : nlohmann::json();
    if (!j.is_object() || !j.contains("data") || !j["data"].is_string())
      user_error_noloc(fmt::format("cannot tell which data {} was trained on: {} is missing or has no \"data\"",
                                   cfg.run_dir, conf),
                       "pass --data fashion-mnist or --data FILE.npy");
    data = j["data"].get<std::string>();
  }
  if (data == "fashion-mnist") return std::string(ddpm::kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz";
  const std::string train_name = "train-images-idx3-ubyte";
  const size_t pos = data.find(train_name);
  if (cfg.data.empty() && pos != std::string::npos) {
    std::string test = data;
    test.replace(pos, train_name.size(), "t10k-images-idx3-ubyte");
    std::error_code ec;
    if (fs::exists(test, ec)) return test;
  }
  if (cfg.data.empty())
    fmt::print(stderr, "note: evaluating on the training data {} (no test split is known for it; pass --data)\n",
               data);
  return data;
}

// The first n images of `path` as [n, D] floats in [-1, 1]. Returns the number of
// images available in the file through *available.
std::vector<float> load_images(const std::string& path, const ddpm::Module& mod, int64_t n, int64_t* available) {
  const int64_t D = mod->data_numel;
  std::error_code ec;
  std::string file = path;
  if (!fs::exists(file, ec) && file.ends_with(".gz") && fs::exists(file.substr(0, file.size() - 3), ec))
    file = file.substr(0, file.size() - 3);
  const bool is_npy = fs::path(file).extension() == ".npy";
  const bool is_idx = file.find("idx3-ubyte") != std::string::npos;
  if (!is_npy && !is_idx)
    user_error_noloc(fmt::format("cannot evaluate the bound on data '{}': it is not an image file", path),
                     "pass --data fashion-mnist, an IDX image file, or an .npy array of images in [-1, 1]");
  if (!fs::exists(file, ec))
    user_error_noloc(fmt::format("data file {} does not exist", file),
                     file.find(ddpm::kFashionMnistDir) == 0 ? "install Debian's dataset-fashion-mnist package"
                                                            : "pass --data with an existing .npy or IDX file");
  std::vector<int64_t> shape;
  std::vector<float> x;
  if (is_npy) {
    ddpm::NpyArray a = ddpm::read_npy(file);
    shape = std::move(a.shape);
    x = std::move(a.data);
  } else {
    ddpm::IdxImages im = ddpm::read_idx_images(file);
    shape = {im.n, im.rows, im.cols};
    x.resize(im.pixels.size());
    for (size_t i = 0; i < im.pixels.size(); ++i) x[i] = im.pixels[i] / 127.5f - 1.0f;
  }
  int64_t per = 1;
  for (size_t r = 1; r < shape.size(); ++r) per *= shape[r];
  if (shape.size() < 2 || per != D) {
    std::string s;
    for (int64_t v : shape) s += (s.empty() ? "" : ", ") + std::to_string(v);
    user_error_noloc(fmt::format("data file {} has shape [{}], but the model's images are {} ({} values each)", file,
                                 s, mod.data_shape_string(), D),
                     mod->data_rank == 1 ? fmt::format("pass images as [N, {}]", D)
                                         : fmt::format("pass images as [N, {}] or [N, {}]", D,
                                                       mod.data_shape_string().substr(
                                                           1, mod.data_shape_string().size() - 2)));
  }
  *available = shape[0];
  if (shape[0] < 1) user_error_noloc(fmt::format("data file {} holds no images (N = 0)", file), "");
  n = std::min(n, shape[0]);
  x.resize((size_t)(n * D));
  float lo = 0, hi = 0;
  int64_t off_grid = 0;
  for (float v : x) {
    if (!(v >= -1.000001f && v <= 1.000001f)) {
      lo = std::min(lo, v), hi = std::max(hi, v);
      if (!std::isfinite(v))
        user_error_noloc(fmt::format("data file {} holds a non-finite value", file), "clean the data");
      continue;
    }
    const double level = (v + 1.0) * 127.5;
    if (std::fabs(level - std::round(level)) > 1e-3) ++off_grid;
  }
  if (lo < -1.000001f || hi > 1.000001f)
    user_error_noloc(fmt::format("data file {} has values outside [-1, 1] (from {} to {})", file, lo, hi),
                     "scale 8-bit pixels p to p / 127.5 - 1");
  if (off_grid > 0)
    fmt::print(stderr,
               "warning: {} of {} values in {} are not on the 256-level grid 2k/255 - 1; the discretized decoder "
               "assumes 8-bit data, so L_0 is only approximate\n",
               off_grid, x.size(), file);
  return x;
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / (double)v.size();
}

// Standard error of the mean: sample standard deviation / √n (0 for n = 1).
double stderr_of(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean_of(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / (double)(v.size() - 1) / (double)v.size());
}

// Standard error of the mean when the rows come in clusters of `size` (the last
// one may be shorter) that share a random choice, here the strided steps of a
// batch: the cluster-robust form SE² = C/(C−1) Σ_c (n_c/N)² (m_c − m)².
double cluster_stderr_of(const std::vector<double>& v, int64_t size) {
  const int64_t N = (int64_t)v.size(), C = (N + size - 1) / size;
  if (C < 2) return 0;
  const double m = mean_of(v);
  double ss = 0;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t a = c * size, b = std::min(N, a + size);
    double mc = 0;
    for (int64_t i = a; i < b; ++i) mc += v[i];
    mc /= (double)(b - a);
    const double w = (double)(b - a) / (double)N;
    ss += w * w * (mc - m) * (mc - m);
  }
  return std::sqrt(ss * (double)C / (double)(C - 1));
}

int evaluate(const EvalConfig& cfg) {
  tbb::global_control threads_ctl(tbb::global_control::max_allowed_parallelism, (size_t)cfg.threads);
  const auto [so, ckpt] = ddpm::run_files(cfg.run_dir, "evaluate DIR");
  ddpm::Module mod(so);
  const ddpm_module& m = mod.get();
  if (m.data_rank == 1 && m.data_dims[0] == 2)
    user_error_noloc(fmt::format("the model in {} is over 2-D points; bits/dim with a discretized 8-bit decoder "
                                 "is only meaningful for images",
                                 cfg.run_dir),
                     "evaluate an image model (e.g. data x0: [1, 28, 28] trained on fashion-mnist)");
  if (m.eps_eval == nullptr)
    user_error_noloc(fmt::format("{} has no eps_eval entry: its spec has no noise-predictor net declared as "
                                 "(x: {}, t: step) -> {}, or an older ddpmc built it",
                                 so, mod.data_shape_string(), mod.data_shape_string()),
                     "the bound needs ε_θ(x, t): rebuild it with the current ddpmc (`ddpmc compile SPEC -o "
                     "RUN_DIR/module.so`), after declaring the net with that signature if it is missing");
  if (cfg.steps > m.T)
    user_error_noloc(fmt::format("--steps {} is out of range: the model has T = {} diffusion steps", cfg.steps, m.T),
                     fmt::format("use 1..{} (0 means the full sum)", m.T - 1));
  const ddpm::VlbSchedule sched = ddpm::schedule_from_tables(m.T, m.beta, m.alpha, m.abar);
  if (m.abi_version >= 4 && m.eps_predicts != DDPM_PREDICTS_EPS)
    fmt::print(stderr, "the net predicts {} (declared in the spec); the bound uses the eps it implies\n",
               m.eps_predicts == DDPM_PREDICTS_X0 ? "x0" : "v");

  const std::string data = resolve_data(cfg);
  int64_t available = 0;
  const std::vector<float> x0 = load_images(data, mod, cfg.n, &available);
  const int64_t D = m.data_numel, N = (int64_t)x0.size() / D;
  if (N < cfg.n)
    fmt::print(stderr, "note: {} holds {} images; evaluating all of them instead of -n {}\n", data, available, cfg.n);

  ddpm::AlignedFloats params(m.param_floats);
  const std::string ckpt_step = ddpm::load_weights(ckpt, mod, cfg.use_ema, params.data());

  const int B = (int)std::min<int64_t>(cfg.batch, N);
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m, 2 + m.n_samplers, B);
  ddpm::AlignedFloats xin((int64_t)B * D), eout((int64_t)B * D);
  const ddpm::TermSteps ts = ddpm::vlb_term_steps(m.T, cfg.steps, cfg.seed);
  const int evals_per_chunk = (int)ts.t.size() + 1;
  const int64_t n_chunks = (N + B - 1) / B;
  if (!ts.exact && n_chunks < 2)
    fmt::print(stderr, "note: with a single batch the ± of a strided estimate leaves out the noise of its step "
                       "offset; use a smaller --batch (each batch draws its own offset)\n");

  std::vector<double> total, prior, terms, decoder;
  const bool tty = isatty(fileno(stderr)) && !cfg.quiet;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point last_print = t0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t g0 = c * B;
    const int b = (int)std::min<int64_t>(B, N - g0);
    ddpm::EpsFn eps = [&](const float* xt, int t, float* e) {
      std::copy(xt, xt + (int64_t)b * D, xin.data());
      int rc = m.eps_eval(arena.data(), b, params.data(), xin.data(), t, eout.data());
      if (rc != 0) DDPM_ICE(fmt::format("module eps_eval returned {} (t = {}, batch {})", rc, t, b));
      std::copy(eout.data(), eout.data() + (int64_t)b * D, e);
    };
    ddpm::VlbOptions opt;
    opt.seed = cfg.seed;
    opt.steps = cfg.steps;
    opt.first_index = g0;
    opt.on_step = [&](int done, int of, int t) {
      if (cfg.quiet || seconds_since(last_print) < (tty ? 0.25 : 5.0)) return;
      const double el = seconds_since(t0);
      const double frac = ((double)c * evals_per_chunk + done) / ((double)n_chunks * evals_per_chunk);
      fmt::print(stderr, "{}bound: images {}/{} (batch {}/{}), t = {} ({}/{})  ETA {:.0f} s{}", tty ? "\r" : "", g0,
                 N, c + 1, n_chunks, t, done, of, el * (1 - frac) / frac, tty ? "   " : "\n");
      last_print = Clock::now();
    };
    ddpm::VlbBatch r = ddpm::vlb_bpd(x0.data() + g0 * D, b, D, sched, eps, opt);
    total.insert(total.end(), r.total.begin(), r.total.end());
    prior.insert(prior.end(), r.prior.begin(), r.prior.end());
    terms.insert(terms.end(), r.terms.begin(), r.terms.end());
    decoder.insert(decoder.end(), r.decoder.begin(), r.decoder.end());
  }
  if (tty && seconds_since(t0) > 0.25) fmt::print(stderr, "\n");
  const double seconds = seconds_since(t0);

  const int64_t bad = std::count_if(total.begin(), total.end(), [](double v) { return !std::isfinite(v); });
  if (bad > 0)
    user_error_noloc(fmt::format("the bound is not finite for {} of {} images: the model's ε_θ returned NaN or Inf "
                                 "(checkpoint {})",
                                 bad, N, ckpt),
                     "the run may have diverged; evaluate an earlier checkpoint or retrain");

  // A strided estimate's batches share their step offsets, so its error is taken
  // across batches; the full sum's images are independent.
  auto se_of = [&](const std::vector<double>& v) {
    return ts.exact || n_chunks < 2 ? stderr_of(v) : cluster_stderr_of(v, B);
  };
  const double bpd = mean_of(total), se = se_of(total);
  const std::string sum_label =
      ts.exact ? "full sum"
               : fmt::format("sum estimated from {} strided steps per batch, ± across batches", (int)ts.t.size());
  fmt::print("bits/dim {:.4f} ± {:.4f} (n = {}, T = {} {}; L_T {:.4g}, sum L_t-1 {:.4g}, L_0 {:.4g})\n", bpd, se, N,
             m.T, sum_label, mean_of(prior), mean_of(terms), mean_of(decoder));

  nlohmann::json j;
  j["metric"] = "bits_per_dim";
  j["bpd"] = bpd;
  j["bpd_stderr"] = se;
  j["n"] = N;
  j["T"] = m.T;
  j["steps"] = (int)ts.t.size();
  j["full_sum"] = ts.exact;
  j["L_T"] = mean_of(prior);
  j["L_sum"] = mean_of(terms);
  j["L_sum_stderr"] = se_of(terms);
  j["L_0"] = mean_of(decoder);
  j["data"] = data;
  j["weights"] = cfg.use_ema ? "ema" : "params";
  j["seed"] = cfg.seed;
  j["batch"] = B;
  j["checkpoint_step"] = ckpt_step;
  j["spec_hash"] = m.spec_hash;
  j["seconds"] = seconds;
  const std::string out = (fs::path(cfg.run_dir) / "eval.json").string();
  const std::string text = j.dump(2) + "\n";
  ddpmc::write_file_atomic(out, text, "evaluation");
  if (!cfg.quiet)
    fmt::print(stderr, "evaluated {} images x {} ({} weights, {} eps evaluations each) in {:.1f} s; wrote {}\n", N,
               mod.data_shape_string(), cfg.use_ema ? "EMA" : "raw", evals_per_chunk, seconds, out);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  EvalConfig cfg;
  cfg.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  std::string weights = "ema";
  bool bpd = false;

  CLI::App app{"ddpm-eval: the variational bound of a model trained by ddpm-train, in bits/dim", "ddpm-eval"};
  app.add_option("run_dir", cfg.run_dir, "a run directory written by ddpm-train --out")->required();
  app.add_flag("--bpd", bpd, "the variational bound L_T + sum L_t-1 + L_0 in bits/dim (Ho et al. 2020)");
  app.add_option("-n", cfg.n, "number of test images (the first n)")->capture_default_str();
  app.add_option("--data", cfg.data,
                 "fashion-mnist (its test split), an IDX image file or an .npy [N, ...] in [-1, 1] "
                 "(default: the run's training data, mapped to its test split)");
  app.add_option("--batch", cfg.batch, "images per eps_eval call")->capture_default_str();
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

  if (int rc = ddpm_tools::parse(app, argc, argv, "ddpm-eval"); rc >= 0) return rc;
  auto flag_error = [](const std::string& msg) { return ddpm_tools::flag_error("ddpm-eval", msg); };
  if (!bpd) return flag_error("nothing to evaluate: pass --bpd (the variational bound in bits/dim)");
  if (cfg.n < 1) return flag_error(fmt::format("-n must be at least 1 (got {})", cfg.n));
  if (cfg.batch < 1) return flag_error(fmt::format("--batch must be at least 1 (got {})", cfg.batch));
  if (cfg.threads < 1) return flag_error(fmt::format("--threads must be at least 1 (got {})", cfg.threads));
  if (cfg.steps < 0) return flag_error(fmt::format("--steps must be >= 0 (got {})", cfg.steps));
  cfg.use_ema = weights == "ema";

  return ddpm_tools::guarded("ddpm-eval", [&] { return evaluate(cfg); });
}
