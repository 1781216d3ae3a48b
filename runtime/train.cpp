// The training loop: module + data + AdamW + EMA + checkpoints + metrics.
// See train.h for the data flow and the determinism contract; the data sources
// are in data_source.cpp and the checkpoint and run-directory files in
// checkpoint.cpp.
//
// Every buffer (params, grads, EMA, Adam m/v, the batch and the arena) is
// allocated before the loop; the loop itself only calls the module and the
// vectorised optimizer kernels, and formats a log line every log_every steps.
#include "train.h"

#include <signal.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <oneapi/tbb/global_control.h>

#include "checkpoint.h"
#include "common/checksum.h"
#include "common/diag.h"
#include "common/file_lock.h"
#include "common/input_limits.h"
#include "common/stopwatch.h"
#include "data_source.h"
#include "dist.h"
#include "eval_every.h"
#include "memory_plan.h"
#include "module.h"
#include "previews.h"
#include "resume.h"
#include "sliced_step.h"
#include "weights.h"

namespace ddpm {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

constexpr const char* kHint = "lower --lr or enable --grad-clip";

using ddpmc::Clock;
using ddpmc::seconds_since;

std::string format_eta(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  long t = std::lround(s);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

// Checks the module's self-description before trusting its offsets.
void check_module(const Module& mod) {
  const ddpm_module& m = mod.get();
  int64_t dn = 1;
  for (int i = 0; i < m.data_rank; ++i) dn *= m.data_dims[i];
  if (m.data_rank < 1 || m.data_rank > 4 || dn != m.data_numel || m.param_floats < 0 || (m.T < 1 && !is_supervised(m) && !is_continuous(m)))
    DDPM_ICE(fmt::format("module {} has an inconsistent header (data rank {}, numel {}, P {}, T {})",
                         mod.so_path(), m.data_rank, m.data_numel, m.param_floats, m.T));
  for (int i = 0; i < m.n_params; ++i) {
    const ddpm_param_info& p = m.params[i];
    int64_t n = 1;
    for (int r = 0; r < p.rank; ++r) n *= p.dims[r];
    if (p.rank < 0 || p.rank > 4 || n != p.numel || p.offset < 0 || p.offset + p.numel > m.param_floats)
      DDPM_ICE(fmt::format("module {}: parameter {} has an inconsistent layout", mod.so_path(), p.name));
  }
}

// Ctrl-C and SIGTERM during training: the first sets a flag that the loop (and a
// preview, before each of its sampler steps) reads; the loop then checkpoints and
// returns. Rank 0 acknowledges the signal at once (write(2) is async-signal-safe).
// Repeated signals are acknowledged and change nothing, so a stop always writes
// the checkpoint; SIGQUIT (Ctrl-\) or SIGKILL end the process without one.
volatile sig_atomic_t g_stop_signal = 0;
volatile sig_atomic_t g_signal_count = 0;
volatile sig_atomic_t g_announce = 0;
extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  const int n = g_signal_count + 1;
  g_signal_count = n;
  // After a lost rank's report, mpirun's SIGTERM needs no answer: that report said
  // which checkpoint is kept, and no later one is written.
  if (!g_announce || dist().rank_lost()) return;
  static const char first[] = "\nstopping: finishing this step, then writing the checkpoint\n";
  static const char again[] = "\nstill stopping: the checkpoint is being written (Ctrl-\\ kills without it)\n";
  const char* msg = n == 1 ? first : again;
  const size_t len = n == 1 ? sizeof first - 1 : sizeof again - 1;
  ssize_t ignored = write(STDERR_FILENO, msg, len);
  (void)ignored;
}
struct StopSignals {
  struct sigaction old_int {}, old_term {};
  explicit StopSignals(bool announce) {
    g_stop_signal = 0;
    g_signal_count = 0;
    g_announce = announce ? 1 : 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

// Steps per second for people: whole numbers when large, two decimals when small.
std::string rate(double sps) { return sps >= 100 ? fmt::format("{:.0f}", sps) : fmt::format("{:.2f}", sps); }

void validate(const TrainConfig& c) {
  auto bad = [](const std::string& what, const std::string& hint) { user_error_noloc(what, hint); };
  if (c.model.empty()) bad("no model given", "pass a .ddpm spec or a compiled .so");
  if (c.out.empty()) bad("no output directory given", "pass --out DIR");
  if (c.steps < 1) bad(fmt::format("--steps must be at least 1 (got {})", c.steps), "");
  if (c.batch < 1) bad(fmt::format("--batch must be at least 1 (got {})", c.batch), "");
  if (c.threads < 1) bad(fmt::format("--threads must be at least 1 (got {})", c.threads), "");
  if (c.log_every < 1) bad(fmt::format("--log-every must be at least 1 (got {})", c.log_every), "");
  if (c.ckpt_every < 0) bad(fmt::format("--ckpt-every must be 0 (only at the end) or more (got {})", c.ckpt_every), "");
  if (!(c.opt.lr > 0) || !std::isfinite(c.opt.lr)) bad(fmt::format("--lr must be positive (got {})", c.opt.lr), "");
  if (!(c.opt.weight_decay >= 0)) bad(fmt::format("--weight-decay must be >= 0 (got {})", c.opt.weight_decay), "");
  if (!(c.ema_decay >= 0 && c.ema_decay < 1))
    bad(fmt::format("--ema-decay must be in [0, 1) (got {})", c.ema_decay), "0.999 is a good default");
  if (!(c.grad_clip >= 0)) bad(fmt::format("--grad-clip must be >= 0 (got {}; 0 turns it off)", c.grad_clip), "");
  if (!(c.minutes >= 0)) bad(fmt::format("--minutes must be >= 0 (got {})", c.minutes), "");
  if (c.warmup < 0) bad(fmt::format("--warmup must be >= 0 (got {})", c.warmup), "");
  if (c.lr_schedule != "constant" && c.lr_schedule != "cosine")
    bad(fmt::format("unknown --lr-schedule '{}'", c.lr_schedule), "use constant or cosine");
  if (c.stop_at < 0) bad(fmt::format("--stop-at must be >= 0 (got {})", c.stop_at), "0 runs to --steps");
  if (c.sample_every < 0) bad(fmt::format("--sample-every must be >= 0 (got {})", c.sample_every), "0 turns it off");
  if (c.slices < 0) bad(fmt::format("--slices must be >= 0 (got {})", c.slices), "0 picks the number of ranks");
  if (c.eval_every < 0) bad(fmt::format("--eval-every must be >= 0 (got {})", c.eval_every), "0 turns it off");
  if (c.eval_samples < 0 || c.eval_samples > ddpmc::kMaxEvalSamples)
    bad(fmt::format("--eval-samples must be 1 to {} (got {})", ddpmc::kMaxEvalSamples, c.eval_samples), "");
}

// What every rank of a job must agree on: whatever changes the arithmetic.
std::string run_fingerprint(const TrainConfig& c) {
  return fmt::format("data={} steps={} batch={} slices={} seed={} lr={} wd={} b1={} b2={} eps={} ema={} clip={} "
                     "warmup={} schedule={} resume={} labels={}",
                     c.data, c.steps, c.batch, c.slices, c.seed, c.opt.lr, c.opt.weight_decay, c.opt.beta1,
                     c.opt.beta2, c.opt.eps, c.ema_decay, c.grad_clip, c.warmup, c.lr_schedule, c.resume, c.labels);
}

// The slice count of this run: the flag or the checkpoint's (restored by
// resume_config, which notes a change), else the rank count;
// it must divide the batch and be at least the number of ranks.
int resolve_slices(const TrainConfig& c, int from_checkpoint, int ranks) {
  int S = c.slices > 0 ? c.slices : from_checkpoint > 0 ? from_checkpoint : ranks;
  if (S < ranks)
    user_error_noloc(fmt::format("{} ranks but the batch is cut into {} slice{}: each rank needs a slice at least",
                                 ranks, S, S == 1 ? "" : "s"),
                     fmt::format("pass --slices {} (or another multiple of the rank count that divides --batch)",
                                 ranks));
  if (c.batch % S != 0)
    user_error_noloc(fmt::format("--batch {} is not a multiple of the slice count {}", c.batch, S),
                     "choose a batch that --slices divides");
  return S;
}

// On --resume: the configuration with the checkpoint's settings restored (resume.h).
// Rank 0 reads the checkpoint and prints the notes; every rank applies the same
// resolved settings (no shared file system is needed).
TrainConfig resume_config(const TrainConfig& c) {
  if (!c.resume) return c;
  const Dist& world = dist();
  std::string text;  // the resolved settings, one "key<TAB>value" line each
  std::string spec_sources;  // a run resumed from a .so keeps its checkpoint's sources
  if (world.rank() == 0) {
    const std::string path = (fs::path(c.out) / "checkpoint.safetensors").string();
    std::error_code ec;
    if (!fs::exists(path, ec))
      user_error_noloc(fmt::format("cannot resume: there is no checkpoint at {}", path),
                       "drop --resume to start a new run in this directory");
    std::vector<std::string> notes;
    const std::map<std::string, std::string> meta = read_safetensors_metadata(path);
    TrainConfig r = restore_settings(c, meta, path, notes);
    for (const std::string& n : notes) fmt::print(stderr, "{}\n", n);
    for (auto& [k, v] : training_settings(r)) text += k + "\t" + v + "\n";
    if (c.spec_sources.empty() && meta.count("spec_sources")) spec_sources = meta.at("spec_sources");
  }
  int64_t n = (int64_t)text.size();
  world.broadcast(&n, sizeof n);
  text.resize((size_t)n);
  world.broadcast(text.data(), n);
  std::map<std::string, std::string> settings;
  for (size_t at = 0; at < text.size();) {
    size_t tab = text.find('\t', at), nl = text.find('\n', at);
    settings[text.substr(at, tab - at)] = text.substr(tab + 1, nl - tab - 1);
    at = nl + 1;
  }
  TrainConfig plain = c;
  plain.given.clear();
  std::vector<std::string> ignored;
  TrainConfig r = restore_settings(plain, settings, "the resolved settings", ignored);
  if (!spec_sources.empty()) r.spec_sources = spec_sources;  // only rank 0 writes checkpoints
  return r;
}

}  // namespace

float learning_rate(const TrainConfig& cfg, int64_t step) {
  const float lr = cfg.opt.lr;
  if (cfg.warmup > 0 && step < cfg.warmup) return lr * (float)step / (float)cfg.warmup;
  if (cfg.lr_schedule != "cosine" || cfg.steps <= cfg.warmup) return lr;
  const double progress = (double)(step - cfg.warmup) / (double)(cfg.steps - cfg.warmup);
  return (float)(lr * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, std::max(0.0, progress)))));
}

int train(const TrainConfig& cfg_in) {
  validate(cfg_in);
  const TrainConfig cfg = resume_config(cfg_in);
  validate(cfg);
  tbb::global_control threads_ctl(tbb::global_control::max_allowed_parallelism, (size_t)cfg.threads);
  const Dist& world = dist();
  const bool lead = world.rank() == 0;  // rank 0 writes every file and prints progress

  const std::string so = cfg.module_so.empty() ? cfg.model : cfg.module_so;
  if (fs::path(so).extension() == ".ddpm")
    user_error_noloc(fmt::format("{} is a spec; the runtime trains compiled modules", so),
                     "compile it with `ddpmc compile SPEC -o FILE.so`, or train with the ddpm-train tool, which "
                     "compiles it");
  Module mod(so, cfg.module_checksum);
  check_module(mod);
  const ddpm_module& m = mod.get();
  if (is_supervised(m) && cfg.sample_every > 0)
    diffusion_only("--sample-every draws diffusion samples", cfg.model,
                   "drop --sample-every; evaluate a classifier with its classify_eval entry");
  world.require_same("the module's spec hash", m.spec_hash);
  world.require_same("the training flags", run_fingerprint(cfg));
  DataSource data(cfg.data, mod, cfg.labels);
  check_eval_config(mod, cfg);
  check_train_memory(m, cfg.batch, cfg.slices > 0 ? cfg.slices : world.size());

  const std::string out = cfg.out;
  const std::string ckpt_path = (fs::path(out) / "checkpoint.safetensors").string();
  // A supervised run also keeps its EMA weights alone, small enough to ship (weights.h).
  const std::string weights_path = is_supervised(m) ? (fs::path(out) / "weights.safetensors").string() : "";
  const std::string metrics_path = (fs::path(out) / "metrics.jsonl").string();
  std::error_code ec;
  std::optional<ddpmc::FileLock> run_lock;
  if (lead) {
    fs::create_directories(out, ec);
    if (ec || !fs::is_directory(out))
      user_error_noloc(fmt::format("cannot create the output directory {}: {}", out, ec.message()),
                       "choose another --out");
    // One trainer per run directory: a second one would interleave checkpoints.
    const std::string lock_path = (fs::path(out) / "train.lock").string();
    run_lock = ddpmc::FileLock::try_lock(lock_path);
    if (!run_lock) {
      std::string pid = ddpmc::FileLock::holder(lock_path);
      user_error_noloc(fmt::format("{} is in use by another ddpm-train{}; wait for it or choose another --out", out,
                                   pid.empty() ? "" : " (pid " + pid + ")"),
                       "");
    }
    if (!cfg.resume && fs::exists(ckpt_path, ec))
      user_error_noloc(fmt::format("{} already holds a checkpoint", out),
                       "pass --resume to continue that run, or choose another --out directory");
  }

  const int64_t P = m.param_floats;
  const int B = cfg.batch;
  TrainState st(P);
  uint64_t seed = cfg.seed;
  ResumeInfo start;
  if (cfg.resume) {
    // Rank 0 reads the checkpoint and hands the state to the others (no shared
    // file system is needed).
    if (lead) start = load_checkpoint(ckpt_path, mod, cfg, st, seed);
    for (AlignedFloats* a : {&st.params, &st.ema, &st.m, &st.v}) world.broadcast(a->data(), P * sizeof(float));
    world.broadcast(&start, sizeof start);
    world.broadcast(&seed, sizeof seed);
  } else {
    init_params(m, seed, st.params.data());
    std::copy(st.params.data(), st.params.data() + P, st.ema.data());
  }
  TrainConfig run = cfg;
  run.slices = resolve_slices(cfg, start.slices, world.size());
  if (start.step >= cfg.steps || (cfg.stop_at > 0 && start.step >= cfg.stop_at)) {
    if (lead)
      fmt::print(stderr, "{} is already at step {} ({}); nothing to do\n", ckpt_path, start.step,
                 start.step >= cfg.steps ? fmt::format("--steps {}", cfg.steps)
                                         : fmt::format("--stop-at {}", cfg.stop_at));
    return 0;
  }

  std::unique_ptr<FILE, int (*)(FILE*)> metrics(nullptr, &std::fclose);
  if (lead) {
    copy_module(mod.so_path(), (fs::path(out) / "module.so").string());
    write_config((fs::path(out) / "config.json").string(), run, m, seed, start.step);
    metrics.reset(std::fopen(metrics_path.c_str(), cfg.resume ? "a" : "w"));
    if (!metrics) user_error_noloc(fmt::format("cannot open {} for writing", metrics_path), "");
  }
#if defined(__GLIBC__)
  // Building the module (the compiler runs in this process) and reading the data freed
  // megabytes that glibc keeps; hand them back before the arena makes the long-lived peak.
  malloc_trim(0);
#endif
  SlicedStep sliced(mod, data, B, run.slices);

  std::map<std::string, std::string> meta = checkpoint_metadata(run, m, seed);
  // What the tools need to sample, evaluate or resume without trusting module.so.
  if (!cfg.spec_sources.empty()) meta["spec_sources"] = cfg.spec_sources;
  if (lead) meta["module_checksum"] = ddpmc::file_checksum((fs::path(out) / "module.so").string());
  const std::vector<TensorView> views = checkpoint_views(m, st);
  int64_t last_ckpt = cfg.resume ? start.step : -1;
  auto save = [&](int64_t step, double elapsed) {
    if (!lead) {
      last_ckpt = step;
      return;
    }
    // After another rank died the checkpoint on disk stays the one the report named.
    if (!world.begin_checkpoint()) return;
    meta["step"] = std::to_string(step);
    meta["elapsed_s"] = fmt::format("{:.3f}", elapsed);
    try {
      write_safetensors(ckpt_path, views, meta);
      if (!weights_path.empty()) write_weights(weights_path, m, st.ema.data(), meta);
    } catch (...) {
      world.end_checkpoint(last_ckpt);
      throw;
    }
    last_ckpt = step;
    world.end_checkpoint(step);
    write_loss_plot(out);
  };

  const bool tty = lead && isatty(fileno(stderr)) && !cfg.quiet;
  const bool talk = lead && !cfg.quiet;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point window_t0 = t0;
  double window_loss = 0;
  int64_t window_n = 0;
  float loss = 0, last_mean = NAN;
  int64_t k = start.step;
  bool timed_out = false;
  // Evaluations (rank 0 only) read the EMA weights and count toward neither
  // --minutes nor steps/s nor elapsed_s: `evaluating` is their wall time so far.
  std::optional<QualityEval> evals;
  auto evaluating = [&] { return evals ? evals->seconds() : 0.0; };
  auto elapsed_total = [&] { return start.elapsed_s + seconds_since(t0) - evaluating(); };

  int64_t n_weights = 0;
  for (int i = 0; i < m.n_params; ++i) n_weights += m.params[i].numel;
  if (talk)
    fmt::print(stderr, "training {} on {}: {} parameters, batch {}{}, {} thread{}{}, steps {}..{}\n", cfg.model,
               cfg.data, n_weights, B, run.slices > 1 ? fmt::format(" in {} slices", run.slices) : "",
               cfg.threads, cfg.threads == 1 ? "" : "s",
               world.distributed() ? fmt::format(" x {} processes", world.size()) : "", start.step + 1, cfg.steps);

  std::optional<SamplePreviews> previews;
  if (lead && cfg.sample_every > 0) previews.emplace(mod, out, st.ema.data(), cfg.quiet);
  if (lead && cfg.eval_every > 0) evals.emplace(mod, data, cfg, st.ema.data());

  StopSignals stop_signals(lead);
  bool interrupted = false;
  auto over_time = [&] { return cfg.minutes > 0 && seconds_since(t0) - evaluating() > cfg.minutes * 60; };
  // A preview stops at the first sampler step after a signal or the time limit; an
  // evaluation (which the time limit does not count) after a signal.
  const std::function<bool()> preview_stop = [&] { return g_stop_signal != 0 || over_time(); };
  const std::function<bool()> eval_stop = [&] { return g_stop_signal != 0; };
  auto evaluate = [&](int64_t step) {
    const double before = evaluating();
    evals->run(step, elapsed_total(), st.ema.data(), metrics.get(), tty, eval_stop);
    window_t0 += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(evaluating() - before));
  };
  const int64_t end = cfg.stop_at > 0 ? std::min(cfg.steps, cfg.stop_at) : cfg.steps;
  while (k < end) {
    const int64_t step = k + 1;
    world.set_step(step, last_ckpt);
    sliced.run(st.params.data(), seed, (uint64_t)step, st.grads.data(), &loss);
    float gnorm = 0;
    if (cfg.grad_clip > 0) gnorm = grad_global_norm(st.grads.data(), P);
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      if (tty) fmt::print(stderr, "\n");
      std::string what = std::isfinite(loss) ? fmt::format("gradient norm is {}", gnorm)
                                             : fmt::format("loss is {}", loss);
      // Under mpirun: which slice, and so which rank, saw it first.
      std::string at = std::to_string(step);
      const std::vector<float>& sl = sliced.slice_losses();
      for (int s = 0; s < run.slices && world.distributed(); ++s)
        if (!std::isfinite(sl[(size_t)s])) {
          at += fmt::format(" (slice {} on rank {})", s, sliced.owner(s));
          break;
        }
      if (!lead) return kTrainNonFinite;
      if (last_ckpt >= 0)
        fmt::print(stderr,
                   "ddpm-train: error: {} at step {}; the last good checkpoint (step {}) is kept in {}; hint: {}\n",
                   what, at, last_ckpt, out, kHint);
      else
        fmt::print(stderr, "ddpm-train: error: {} at step {}; no checkpoint had been written yet in {}; hint: {}\n",
                   what, at, out, kHint);
      return kTrainNonFinite;
    }
    AdamWConfig oc = cfg.opt;
    oc.lr = learning_rate(cfg, step);
    float decay = std::min(cfg.ema_decay, (float)(1 + step) / (float)(10 + step));
    optimizer_step(st.params.data(), st.grads.data(), st.m.data(), st.v.data(), st.ema.data(), P, step, oc,
                   clip_coefficient(gnorm, cfg.grad_clip), decay);
    k = step;
    if (previews && previews->enabled() && step % cfg.sample_every == 0)
      previews->write(step, st.ema.data(), preview_stop);
    if (evals && step % cfg.eval_every == 0) evaluate(step);

    window_loss += loss;
    ++window_n;
    // Every rank stops at the same step: the first to see a signal decides, and
    // rank 0 keeps the time (the others do not know how long it evaluated).
    const int stop = world.any((lead && over_time() ? 1 : 0) | (g_stop_signal ? 2 : 0));
    timed_out = stop & 1;
    interrupted = stop & 2;
    if (lead && (step % cfg.log_every == 0 || step == end || timed_out || interrupted)) {
      double wdt = seconds_since(window_t0);
      double sps = wdt > 0 ? window_n / wdt : 0;
      double total = elapsed_total();
      last_mean = (float)(window_loss / window_n);
      fmt::print(metrics.get(),
                 "{{\"step\": {}, \"loss\": {:.6g}, \"lr\": {:.6g}, \"steps_per_s\": {:.1f}, \"elapsed_s\": {:.3f}}}\n",
                 step, last_mean, oc.lr, sps, total);
      std::fflush(metrics.get());
      if (talk) {
        double run_sps = (step - start.step) / std::max(seconds_since(t0) - evaluating(), 1e-9);
        double eta = (cfg.steps - step) / run_sps;
        if (cfg.minutes > 0)
          eta = std::min(eta, std::max(0.0, cfg.minutes * 60 - seconds_since(t0) + evaluating()));
        fmt::print(stderr, "{}step {}/{}  loss {:.4f}  {} steps/s  ETA {}{}", tty ? "\r" : "", step, cfg.steps,
                   last_mean, rate(sps), format_eta(eta), tty ? "   " : "\n");
        std::fflush(stderr);
      }
      window_loss = 0;
      window_n = 0;
      window_t0 = Clock::now();
    }
    if (cfg.ckpt_every > 0 && step % cfg.ckpt_every == 0 && step != end && !timed_out && !interrupted)
      save(step, elapsed_total());
    if (timed_out || interrupted) break;
  }
  // The end of training is evaluated too, unless a signal stopped it.
  if (evals && !interrupted && evals->last_step() != k && g_stop_signal == 0) evaluate(k);
  save(k, elapsed_total());
  if (tty) fmt::print(stderr, "\n");
  double dt = seconds_since(t0) - evaluating();
  if (lead)
    fmt::print(stderr, "{} {} step{} in {:.1f} s{} ({} steps/s), loss {:.4f}; checkpoint at step {} in {}{}\n",
             interrupted ? fmt::format("stopped by {} after", g_stop_signal == SIGTERM ? "SIGTERM" : "Ctrl-C")
             : timed_out ? std::string("stopped by the time limit after")
             : k < cfg.steps ? fmt::format("stopped at --stop-at {} after", cfg.stop_at)
                         : std::string("trained"),
             k - start.step, k - start.step == 1 ? "" : "s", dt,
             evals ? fmt::format(" (+ {:.1f} s evaluating)", evaluating()) : "",
             rate((k - start.step) / std::max(dt, 1e-9)), last_mean,
             last_ckpt, ckpt_path,
             interrupted || k < cfg.steps ? "; continue with --resume" : "");
  return interrupted ? kTrainInterrupted : 0;
}

}  // namespace ddpm
