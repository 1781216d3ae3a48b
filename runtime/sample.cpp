// The sampling loop over a trained run directory. See sample.h for the data
// flow, the step sequence and the determinism contract.
#include "sample.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include "common/diag.h"
#include "common/progress_line.h"
#include "common/stopwatch.h"
#include "dist.h"
#include "memory_plan.h"
#include "module.h"
#include "npy.h"
#include "philox.h"
#include "plot.h"
#include "png.h"
#include "safetensors.h"
#include "weights.h"

namespace ddpm {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

constexpr uint64_t kNoiseStep = 0xFFFFFFFEull;
constexpr uint32_t kNoiseStream = 4000;

using ddpmc::Clock;
using ddpmc::seconds_since;

void validate(const SampleConfig& c) {
  if (c.run_dir.empty()) user_error_noloc("no run directory given", "pass the --out directory of ddpm-train");
  if (c.n < 1) user_error_noloc(fmt::format("-n must be at least 1 (got {})", c.n), "");
  if (c.batch < 1) user_error_noloc(fmt::format("--batch must be at least 1 (got {})", c.batch), "");
  if (c.threads < 1) user_error_noloc(fmt::format("--threads must be at least 1 (got {})", c.threads), "");
  if (c.steps < 0) user_error_noloc(fmt::format("--steps must be 0 (all) or more (got {})", c.steps), "");
}


// A sampler argument used as a class index must be one the net was trained on: a
// version-5 module says which arguments are class indices and the range; for a
// version-4 one, the argument `class` of a model with K classes takes 0..K (K being
// the usual "no class" index).
void check_class_arg(const ddpm_module& m, int idx, int k, float value, const std::string& given) {
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  if (K == 0) return;
  const std::string name = m.sampler_info[idx].arg_names[k];
  const bool is_class = m.abi_version >= 5 ? m.sampler_arg_is_class[idx][k] != 0 : name == "class";
  if (!is_class) return;
  const int hi = m.abi_version >= 5 ? std::max(m.label_values, K) : K + 1;
  if (value == std::floor(value) && value >= 0 && value < (float)hi) return;
  const std::string extra = hi == K + 1 ? fmt::format(", or {} for no class", K)
                            : hi > K    ? fmt::format(", or {}..{} (indices the loss adds)", K, hi - 1)
                                        : "";
  user_error_noloc(fmt::format("{} is not a class of the model: its classes are 0..{}{}",
                               given.empty() ? fmt::format("the default {} = {}", name, value)
                                             : name == "class" ? fmt::format("class {}", given.substr(given.find('=') + 1))
                                                               : "--arg " + given,
                               K - 1, extra),
                   name == "class" ? fmt::format("pass --class N with N a whole number 0..{} (or --class all)", K - 1)
                                   : fmt::format("pass --arg {}=N with N a whole number 0..{}", name, K - 1));
}

}  // namespace

const char* const kSupervisedSampleHint =
    "a classifier has no samplers; its weights are in RUN/weights.safetensors (load_weights) and its net is the "
    "module's classify_eval";

std::string load_weights(const std::string& path, const Module& mod, bool use_ema, float* params) {
  const ddpm_module& m = mod.get();
  SafeTensors ck = read_safetensors(path);
  auto h = ck.metadata.find("spec_hash");
  if (h == ck.metadata.end())
    user_error_noloc(fmt::format("checkpoint {} has no spec_hash in its metadata; it is not a ddpmc checkpoint", path),
                     "use a run directory written by ddpm-train");
  if (h->second != m.spec_hash)
    user_error_noloc(fmt::format("checkpoint {} has spec hash {}, but {} has spec hash {}", path, h->second,
                                 mod.so_path(), m.spec_hash),
                     "the run directory mixes two models; re-run ddpm-train, or copy the matching module.so");
  copy_param_tensors(ck, path, m, use_ema ? "ema/" : "param/", params,
                     "the run diverged; sample an earlier run, or retrain with a lower --lr or with --grad-clip");
  auto st = ck.metadata.find("step");
  return st == ck.metadata.end() ? std::string() : st->second;
}

std::vector<float> sampler_args(const ddpm_module& m, int idx, const std::vector<std::string>& settings) {
  std::vector<float> v;
  std::string known;
  const ddpm_sampler_info* si = m.abi_version >= 4 ? &m.sampler_info[idx] : nullptr;
  const int n = si ? si->n_args : 0;
  for (int k = 0; k < n; ++k) {
    v.push_back(si->arg_defaults[k]);
    known += fmt::format("{}{} (default {})", k ? ", " : "", si->arg_names[k], si->arg_defaults[k]);
  }
  const std::string name = m.sampler_names[idx];
  const std::string list = n ? fmt::format("sampler '{}' takes: {}", name, known)
                             : fmt::format("sampler '{}' takes no arguments", name);
  std::vector<std::string> given((size_t)n);
  for (const std::string& s : settings) {
    const size_t eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      user_error_noloc(fmt::format("--arg '{}' is not NAME=VALUE", s), list);
    const std::string key = s.substr(0, eq), val = s.substr(eq + 1);
    int k = 0;
    while (k < n && key != si->arg_names[k]) ++k;
    if (k == n) user_error_noloc(fmt::format("sampler '{}' has no argument '{}'", name, key), list);
    if (!given[k].empty())
      user_error_noloc(fmt::format("the {} is given twice: {} and {}", key, given[k], s),
                       key == "class" ? "--class N is the same as --arg class=N; give one of them"
                                      : "give each --arg once");
    given[k] = s;
    char* end = nullptr;
    const double d = std::strtod(val.c_str(), &end);
    if (val.empty() || *end != '\0' || !std::isfinite(d))
      user_error_noloc(fmt::format("--arg {}: '{}' is not a number", key, val), list);
    const float f = (float)d;
    if (!std::isfinite(f))
      user_error_noloc(fmt::format("--arg {}: {} is beyond the range of a float (about -3.4e38 to 3.4e38)", key, val),
                       list);
    v[k] = f;
  }
  for (int k = 0; k < n; ++k) check_class_arg(m, idx, k, v[k], given[k]);
  return v;
}

std::vector<int> sampling_steps(int T, int steps) {
  if (steps < 0 || steps > T)
    user_error_noloc(fmt::format("--steps {} is out of range: the model has T = {} diffusion steps", steps, T),
                     fmt::format("use 1..{} (0 means all {})", T, T));
  int K = steps == 0 ? T : steps;
  std::vector<int> ts(K + 1);
  // round(i*T/K), halves rounded up, in exact integer arithmetic.
  for (int i = 0; i <= K; ++i) ts[i] = (int)((2 * (int64_t)i * T + K) / (2 * (int64_t)K));
  return ts;
}

std::vector<double> sampling_times(const ddpm_module& m, int steps) {
  if (!is_continuous(m)) {
    const std::vector<int> ts = sampling_steps(m.T, steps);
    return std::vector<double>(ts.begin(), ts.end());
  }
  if (steps < 0 || steps > 100000)
    user_error_noloc(fmt::format("--steps {} is out of range for a continuous-time model", steps),
                     fmt::format("use 1..100000 (0 means the model's default, {})", m.sample_steps));
  const int K = steps == 0 ? m.sample_steps : steps;
  const double lo = m.t_min, hi = m.t_max, rho = m.grid_rho;
  auto spaced = [&](double u) {  // u in [0, 1] -> [lo, hi] by the grid
    if (m.grid == DDPM_GRID_KARRAS) {
      const double a = std::pow(lo, 1 / rho), b = std::pow(hi, 1 / rho);
      return std::pow(a + u * (b - a), rho);
    }
    return lo + (hi - lo) * (m.grid == DDPM_GRID_QUADRATIC ? u * u : u);
  };
  std::vector<double> ts((size_t)K + 1, 0.0);
  for (int i = 1; i <= K; ++i)
    ts[(size_t)i] = lo > 0 ? (K == 1 ? hi : spaced((double)(i - 1) / (K - 1))) : spaced((double)i / K);
  ts[(size_t)K] = hi;  // exactly t_max, whatever the rounding
  return ts;
}

RunFiles run_files(const std::string& run_dir, const std::string& then, const std::string& module_so,
                   const std::string& checksum) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    user_error_noloc(fmt::format("run directory {} does not exist", run_dir),
                     "pass the --out directory of a ddpm-train run");
  RunFiles f{module_so.empty() ? (fs::path(run_dir) / "module.so").string() : module_so,
             (fs::path(run_dir) / "checkpoint.safetensors").string(), checksum};
  if (!fs::exists(f.so, ec) || !fs::exists(f.ckpt, ec))
    user_error_noloc(fmt::format("{} is not a training run: {} is missing", run_dir,
                                 fs::exists(f.so, ec) ? f.ckpt : f.so),
                     "train first with `ddpm-train SPEC --out DIR`, then " + then);
  if (module_so.empty()) {
    const auto meta = read_safetensors_metadata(f.ckpt);
    auto it = meta.find("module_checksum");
    if (it != meta.end()) f.checksum = it->second;
  }
  return f;
}

std::vector<float> run_sampler(const Module& mod, const float* params, int idx, const std::vector<double>& ts, int64_t N,
                               int batch, uint64_t seed, bool quiet, const float* args, int64_t first,
                               const std::function<bool()>& stop) {
  const ddpm_module& m = mod.get();
  const int K = (int)ts.size() - 1;
  const int64_t D = m.data_numel;
  const int64_t S = m.abi_version >= 4 ? m.sampler_info[idx].state_floats : 0;
  const int B = (int)std::max<int64_t>(1, std::min<int64_t>(batch, N));
  AlignedBuffer arena = alloc_arena(m, 1 + idx, B);
  AlignedFloats x((int64_t)B * D), xn((int64_t)B * D), st((int64_t)B * S), stn((int64_t)B * S);
  std::vector<float> out((size_t)(N * D));

  ddpmc::ProgressLine progress(quiet);
  const int64_t n_chunks = (N + B - 1) / B;
  const int64_t total_calls = n_chunks * K;
  int64_t calls = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t l0 = c * B, g0 = first + l0;  // in this call's samples, and in the whole set
    const int b = (int)std::min<int64_t>(B, N - l0);
    for (int64_t e = 0; e < (int64_t)b * D; ++e)
      x[e] = (float)philox_normal(seed, kNoiseStep, kNoiseStream, (uint64_t)(g0 * D + e));
    std::fill(st.data(), st.data() + (int64_t)B * S, 0.0f);
    for (int i = K; i >= 1; --i) {
      if (stop && stop()) return {};
      const int t = (int)ts[i], s = (int)ts[i - 1];  // discrete time: whole steps
      // Version 3+ modules key noise by the global sample index (row0), so the
      // result does not depend on --batch; version 2 ones by the index in the
      // call, made distinct per chunk through the counter. Version 4 modules also
      // take the sampler's arguments (nullptr: its defaults) and carry its state
      // (the state of a chunk of b samples is laid out for batch b).
      int rc;
      if (is_continuous(m)) {
        // Real times; the noise is keyed by the step's index in the sequence.
        const int flags = (i == K ? DDPM_STEP_FIRST : 0) | (i == 1 ? DDPM_STEP_LAST : 0);
        rc = m.sampler_step_time(idx, arena.data(), b, params, x.data(), (float)ts[i], (float)ts[i - 1], seed,
                                 (uint64_t)i, xn.data(), g0, args, st.data(), stn.data(), flags);
        std::swap(st, stn);
      } else if (m.abi_version >= 4) {
        const int flags = (i == K ? DDPM_STEP_FIRST : 0) | (i == 1 ? DDPM_STEP_LAST : 0);
        rc = m.sampler_step4(idx, arena.data(), b, params, x.data(), t, s, seed, (uint64_t)t, xn.data(), g0, args,
                             st.data(), stn.data(), flags);
        std::swap(st, stn);
      } else if (m.abi_version >= 3) {
        rc = m.sampler_step(idx, arena.data(), b, params, x.data(), t, s, seed, (uint64_t)t, xn.data(), g0);
      } else {
        const uint64_t counter = ((uint64_t)g0 << 32) | (uint32_t)t;
        rc = reinterpret_cast<ddpm_sampler_step_v2>(reinterpret_cast<void (*)(void)>(m.sampler_step))(
            idx, arena.data(), b, params, x.data(), t, s, seed, counter, xn.data());
      }
      if (rc != 0)
        DDPM_ICE(fmt::format("module sampler_step returned {} (sampler {}, t = {})", rc, m.sampler_names[idx], ts[i]));
      std::swap(x, xn);
      ++calls;
      if (progress.due()) {
        const double el = progress.elapsed();
        progress.print(fmt::format("sampling {} {}: chunk {}/{}, step {}/{}  {:.0f} steps/s  ETA {:.0f} s", N,
                                   m.data_numel == 2 ? "points" : "samples", c + 1, n_chunks, K - i + 1, K, calls / el,
                                   (total_calls - calls) * el / calls));
      }
    }
    std::copy(x.data(), x.data() + (int64_t)b * D, out.begin() + l0 * D);
  }
  progress.finish();
  return out;
}

bool write_samples_png(const std::string& path, const Module& mod, const float* samples, int64_t n,
                       const std::string& title, float lim) {
  const ddpm_module& m = mod.get();
  if (m.data_rank == 1 && m.data_dims[0] == 2) {
    write_scatter_png(path, samples, n, 512, lim, title);
    return true;
  }
  if (m.data_rank == 3 && (m.data_dims[0] == 1 || m.data_dims[0] == 3)) {
    const int64_t shown = std::min<int64_t>(n, 256);
    if (title.empty())
      write_image_grid_png(path, samples, shown, m.data_dims[0], m.data_dims[1], m.data_dims[2]);
    else
      write_labelled_grid_png(path, samples, shown, m.data_dims[0], m.data_dims[1], m.data_dims[2],
                              (int)std::ceil(std::sqrt((double)shown)), title, {});
    return true;
  }
  return false;
}

std::vector<std::string> class_row_labels(const std::string& data, int K) {
  static const char* fashion[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  const bool is_fashion = data == "fashion-mnist" || data.find("fashion") != std::string::npos;
  std::vector<std::string> v;
  for (int k = 0; k < K; ++k)
    v.push_back(is_fashion && K <= 10 ? fmt::format("{} {}", k, fashion[k]) : fmt::format("class {}", k));
  return v;
}

namespace {

// The "data" of RUN_DIR/config.json ("" when it cannot be read).
std::string run_data(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "config.json");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  const bool ok = !j.is_discarded() && j.is_object() && j.contains("data") && j["data"].is_string();
  return ok ? j["data"].get<std::string>() : "";
}

// No --sampler: `ddpm` when the spec has one (every discrete model of the
// documentation does), else the spec's first sampler.
std::string default_sampler(const Module& mod) {
  return mod.sampler_index("ddpm") >= 0 || mod->n_samplers < 1 ? std::string("ddpm") : mod->sampler_names[0];
}

// --class all: one run per class with the same starting noise, then one output.
std::vector<float> sample_each_class(const SampleConfig& cfg_in) {
  const auto [so, ckpt, checksum] = run_files(cfg_in.run_dir, "sample from DIR", cfg_in.module_so, cfg_in.module_checksum);
  Module mod(so, checksum);
  const ddpm_module& m = mod.get();
  SampleConfig cfg = cfg_in;
  if (cfg.sampler.empty()) cfg.sampler = default_sampler(mod);
  if (is_supervised(m)) diffusion_only("ddpm-sample draws diffusion samples", cfg.run_dir, kSupervisedSampleHint);
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  if (K == 0)
    user_error_noloc(fmt::format("--class all: the model in {} declares no label", cfg.run_dir),
                     "sample a class-conditional model (one with `label y: K`)");
  const int idx = mod.sampler_index(cfg.sampler);
  bool has_class = false;
  for (int k = 0; idx >= 0 && k < m.sampler_info[idx].n_args; ++k) has_class |= std::string(m.sampler_info[idx].arg_names[k]) == "class";
  if (idx >= 0 && !has_class)
    user_error_noloc(fmt::format("--class all: sampler '{}' has no argument 'class'", cfg.sampler),
                     "use a sampler declared with a class argument, e.g. sampler cfg(x, t, s, w = 3, class = 0)");
  if (idx >= 0) check_sample_memory(m, idx, cfg.n, cfg.batch, K * cfg.n);
  std::vector<float> all;
  for (int c = 0; c < K; ++c) {
    SampleConfig one = cfg;
    one.class_all = false;
    one.out_npy.clear();
    one.out_png.clear();
    one.quiet = true;
    one.args.push_back(fmt::format("class={}", c));
    std::vector<float> x = sample_to_vector(one);
    all.insert(all.end(), x.begin(), x.end());
  }
  std::vector<int64_t> shape = {K * cfg.n};
  for (int r = 0; r < m.data_rank; ++r) shape.push_back(m.data_dims[r]);
  if (!cfg.out_npy.empty()) write_npy(cfg.out_npy, all.data(), shape);
  if (!cfg.out_png.empty()) {
    if (m.data_rank == 3 && (m.data_dims[0] == 1 || m.data_dims[0] == 3))
      write_labelled_grid_png(cfg.out_png, all.data(), K * cfg.n, m.data_dims[0], m.data_dims[1], m.data_dims[2],
                              (int)cfg.n, fmt::format("{} per class, sampler {}", cfg.n, cfg.sampler),
                              class_row_labels(run_data(cfg.run_dir), K));
    else if (m.data_rank == 1 && m.data_dims[0] == 2)
      write_scatter_png(cfg.out_png, all.data(), K * cfg.n);
  }
  fmt::print(stderr, "sampled {} x {} per class for {} classes with {}, one grid row per class{}{}\n", cfg.n,
             mod.data_shape_string(), K, cfg.sampler, cfg.out_png.empty() ? "" : "; wrote ", cfg.out_png);
  return all;
}

}  // namespace

std::vector<float> sample_to_vector(const SampleConfig& cfg_in) {
  validate(cfg_in);
  SampleConfig cfg = cfg_in;
  if (cfg.class_all) return sample_each_class(cfg);
  tbb::global_control threads_ctl(tbb::global_control::max_allowed_parallelism, (size_t)cfg.threads);

  const auto [so, ckpt, checksum] = run_files(cfg.run_dir, "sample from DIR", cfg.module_so, cfg.module_checksum);
  Module mod(so, checksum);
  const ddpm_module& m = mod.get();
  if (is_supervised(m)) diffusion_only("ddpm-sample draws diffusion samples", cfg.run_dir, kSupervisedSampleHint);
  if (cfg.sampler.empty()) cfg.sampler = default_sampler(mod);
  const int idx = mod.sampler_index(cfg.sampler);
  if (idx < 0)
    user_error_noloc(fmt::format("the model has no sampler '{}'", cfg.sampler),
                     "available samplers: " + mod.sampler_list());
  const std::vector<double> ts = sampling_times(m, cfg.steps);
  const int K = (int)ts.size() - 1;
  const std::vector<float> args = sampler_args(m, idx, cfg.args);
  check_sample_memory(m, idx, cfg.n, cfg.batch, cfg.n);

  AlignedFloats params(m.param_floats);
  load_weights(ckpt, mod, cfg.use_ema, params.data());
  const int64_t N = cfg.n;
  // Under mpirun, rank r samples the global indices [N*r/size, N*(r+1)/size)
  // and rank 0 gathers them; the noise is keyed by the global index (row0).
  const Dist& world = dist();
  world.require_same("the module's spec hash", m.spec_hash);
  std::string arg_list;
  for (const std::string& a : cfg.args) arg_list += a + ";";
  world.require_same("the sampling flags", fmt::format("sampler={} steps={} n={} seed={} ema={} args={}", cfg.sampler,
                                                       cfg.steps, cfg.n, cfg.seed, cfg.use_ema, arg_list));
  if (world.distributed() && m.abi_version < 3)
    user_error_noloc(fmt::format("{} is an ABI version {} module, whose noise depends on how the samples are cut; "
                                 "it cannot be sampled under mpirun", so, m.abi_version),
                     "sample it in one process, or retrain with this ddpmc");
  std::vector<int64_t> counts((size_t)world.size());
  for (int r = 0; r < world.size(); ++r) counts[r] = (N * (r + 1) / world.size() - N * r / world.size()) * m.data_numel;
  const int64_t first = N * world.rank() / world.size();
  const bool lead = world.rank() == 0;
  const Clock::time_point t0 = Clock::now();
  std::vector<float> mine = run_sampler(mod, params.data(), idx, ts, counts[world.rank()] / m.data_numel, cfg.batch,
                                        cfg.seed, cfg.quiet || !lead, args.data(), first);
  std::vector<float> out;
  if (!world.distributed()) {
    out = std::move(mine);
  } else {
    if (lead) out.resize((size_t)(N * m.data_numel));
    world.gather(mine.data(), out.data(), counts);
    if (!lead) return mine;
  }
  const double dt = seconds_since(t0);

  int64_t bad = std::count_if(out.begin(), out.end(), [](float v) { return !std::isfinite(v); });
  if (bad > 0)
    fmt::print(stderr, "warning: {} of {} sample values are not finite; the model may be undertrained or diverged\n",
               bad, out.size());

  std::vector<int64_t> shape = {N};
  for (int r = 0; r < m.data_rank; ++r) shape.push_back(m.data_dims[r]);
  std::string wrote;
  if (!cfg.out_npy.empty()) {
    write_npy(cfg.out_npy, out.data(), shape);
    wrote += " " + cfg.out_npy;
  }
  if (!cfg.out_png.empty()) {
    if (write_samples_png(cfg.out_png, mod, out.data(), N))
      wrote += " " + cfg.out_png;
    else
      fmt::print(stderr, "note: no PNG for samples of shape {} (only [2] points and [1|3, H, W] images)\n",
                 mod.data_shape_string());
  }
  fmt::print(stderr, "sampled {} x {} with {} ({} step{}, {} weights{}) in {:.2f} s{}{}\n", N,
             mod.data_shape_string(), cfg.sampler, K, K == 1 ? "" : "s", cfg.use_ema ? "EMA" : "raw",
             world.distributed() ? fmt::format(", {} processes", world.size()) : "", dt,
             wrote.empty() ? "" : "; wrote", wrote);
  return out;
}

int sample(const SampleConfig& cfg) {
  sample_to_vector(cfg);
  return 0;
}

}  // namespace ddpm
