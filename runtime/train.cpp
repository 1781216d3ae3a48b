// The training loop: module + data + AdamW + EMA + checkpoints + metrics.
// See train.h for the data flow and the determinism contract.
//
// Every buffer (params, grads, EMA, Adam m/v, the batch and the arena) is
// allocated before the loop; the loop itself only calls the module and the
// vectorised optimizer kernels, and formats a log line every log_every steps.
#include "train.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <oneapi/tbb/global_control.h>

#include "compiler/diag.h"
#include "data2d.h"
#include "idx.h"
#include "module.h"
#include "npy.h"
#include "philox.h"
#include "safetensors.h"

namespace ddpm {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

constexpr uint64_t kInitStep = 0xFFFFFFFFull;
constexpr uint32_t kInitStreamBase = 3000;
constexpr uint32_t kBatchPickStream = 2000;
constexpr const char* kCheckpointFormat = "ddpmc-checkpoint-1";
constexpr const char* kHint = "lower --lr or enable --grad-clip";

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_eta(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  long t = std::lround(s);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

std::vector<int64_t> param_shape(const ddpm_param_info& p) {
  return std::vector<int64_t>(p.dims, p.dims + p.rank);
}

// Checks the module's self-description before trusting its offsets.
void check_module(const Module& mod) {
  const ddpm_module& m = mod.get();
  int64_t dn = 1;
  for (int i = 0; i < m.data_rank; ++i) dn *= m.data_dims[i];
  if (m.data_rank < 1 || m.data_rank > 4 || dn != m.data_numel || m.param_floats < 0 || m.T < 1)
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

// Where x0 comes from: a built-in 2-D set, or rows of an array (.npy, or IDX
// images scaled to [-1, 1]) picked by Philox from (seed, step). Either way a batch
// is a pure function of (seed, step).
class DataSource {
 public:
  DataSource(const std::string& spec, const Module& mod) : name_(spec) {
    const ddpm_module& m = mod.get();
    D_ = m.data_numel;
    const std::vector<int64_t> want(m.data_dims, m.data_dims + m.data_rank);
    std::string path = spec == "fashion-mnist" ? std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz" : spec;
    const bool is_npy = fs::path(path).extension() == ".npy";
    const bool is_idx = path.find("idx3-ubyte") != std::string::npos;
    if (is_npy || is_idx) {
      std::error_code ec;
      if (!fs::exists(path, ec) && is_idx && path.ends_with(".gz") && fs::exists(path.substr(0, path.size() - 3), ec))
        path = path.substr(0, path.size() - 3);
      if (!fs::exists(path, ec))
        user_error_noloc(fmt::format("data file {} does not exist", path),
                         spec == "fashion-mnist" ? "install Debian's dataset-fashion-mnist package"
                                                 : "pass an .npy array [N, ...], an IDX image file, or one of the "
                                                   "built-in sets: " + names());
      std::vector<int64_t> shape;
      if (is_npy) {
        NpyArray a = read_npy(path);
        shape = std::move(a.shape);
        rows_ = std::move(a.data);
      } else {
        IdxImages im = read_idx_images(path);
        shape = {im.n, im.rows, im.cols};
        // A grey image model declares [1, H, W]; the file has no channel axis.
        if (want.size() == 3 && want[0] == 1) shape.insert(shape.begin() + 1, 1);
        // Kept as bytes (a quarter of the memory: 47 MB instead of 188 for
        // Fashion-MNIST) and scaled to [-1, 1] as each batch is drawn.
        bytes_ = std::move(im.pixels);
      }
      bool ok = shape.size() == want.size() + 1 && std::equal(want.begin(), want.end(), shape.begin() + 1);
      if (!ok) {
        std::string inner = mod.data_shape_string().substr(1, mod.data_shape_string().size() - 2);
        user_error_noloc(fmt::format("data file {} has shape {}, but the model's samples are {} "
                                     "(so the data must be [N, {}])",
                                     path, shape_string(shape), mod.data_shape_string(), inner),
                         "reshape the array, or train a model whose `data` declaration matches it");
      }
      N_ = shape[0];
      if (N_ < 1) user_error_noloc(fmt::format("data file {} holds no samples (N = 0)", path), "");
      array_ = true;
      return;
    }
    const auto& valid = dataset_2d_names();
    if (std::find(valid.begin(), valid.end(), spec) == valid.end())
      user_error_noloc(fmt::format("unknown data set '{}'", spec),
                       "use one of the built-in sets (" + names() + "), fashion-mnist, or a path to an .npy file");
    if (!(m.data_rank == 1 && m.data_dims[0] == 2))
      user_error_noloc(fmt::format("data set '{}' gives 2-D points, but the model's samples are {}", spec,
                                   mod.data_shape_string()),
                       "pass --data with an .npy array of matching shape");
  }

  void fill(uint64_t seed, uint64_t step, int B, float* x0) const {
    if (!array_) {
      sample_2d(name_, B, seed, step, x0);
      return;
    }
    for (int i = 0; i < B; ++i) {
      int64_t r = (int64_t)(philox_uniform(seed, step, kBatchPickStream, (uint64_t)i) * (double)N_);
      r = std::min(r, N_ - 1);
      float* dst = x0 + (int64_t)i * D_;
      if (!bytes_.empty()) {
        const uint8_t* src = bytes_.data() + r * D_;
        for (int64_t k = 0; k < D_; ++k) dst[k] = src[k] / 127.5f - 1.0f;
      } else {
        std::memcpy(dst, rows_.data() + r * D_, (size_t)D_ * sizeof(float));
      }
    }
  }

  static std::string names() {
    std::string s;
    for (auto& n : dataset_2d_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }

 private:
  std::string name_;
  bool array_ = false;
  std::vector<float> rows_;     // [N, D] (.npy data)
  std::vector<uint8_t> bytes_;  // [N, D] (IDX images, 0..255)
  int64_t N_ = 0, D_ = 0;
};

// Ctrl-C and SIGTERM during training: the first sets a flag that the loop reads
// after each step (then it checkpoints and returns); the handler then restores
// the default action, so a second signal stops the process at once.
volatile sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  signal(sig, SIG_DFL);
}
struct StopSignals {
  struct sigaction old_int {}, old_term {};
  StopSignals() {
    g_stop_signal = 0;
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

// The full optimizer state, in the module's flat [P] layout.
struct State {
  AlignedFloats params, grads, ema, m, v;
  explicit State(int64_t P) : params(P), grads(P), ema(P), m(P), v(P) {}
};

// Steps per second for people: whole numbers when large, two decimals when small.
std::string rate(double sps) { return sps >= 100 ? fmt::format("{:.0f}", sps) : fmt::format("{:.2f}", sps); }

void init_params(const ddpm_module& m, uint64_t seed, float* params) {
  for (int i = 0; i < m.n_params; ++i) {
    const ddpm_param_info& p = m.params[i];
    float* dst = params + p.offset;
    if (p.init_bound == 0.0f) {
      std::fill(dst, dst + p.numel, 0.0f);
      continue;
    }
    for (int64_t e = 0; e < p.numel; ++e) {
      double u = philox_uniform(seed, kInitStep, kInitStreamBase + (uint32_t)i, (uint64_t)e);
      dst[e] = (float)((2.0 * u - 1.0) * p.init_bound);
    }
  }
}

const char* kPrefixes[4] = {"param/", "ema/", "adam_m/", "adam_v/"};

std::vector<TensorView> checkpoint_views(const ddpm_module& m, const State& s) {
  const float* bufs[4] = {s.params.data(), s.ema.data(), s.m.data(), s.v.data()};
  std::vector<TensorView> views;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < m.n_params; ++i)
      views.push_back({kPrefixes[k] + std::string(m.params[i].name), param_shape(m.params[i]),
                       bufs[k] + m.params[i].offset});
  return views;
}

// The shortest decimal that reads back as the same float ("0.001", not "0.0010000000474974513").
std::string float_str(float x) { return fmt::format("{}", x); }
double float_json(float x) { return std::stod(float_str(x)); }

struct ResumeInfo {
  int64_t step = 0;
  double elapsed_s = 0;
};

// Restores params/EMA/moments from `path` into `s`; validates format, spec hash,
// and every tensor's presence and shape. Returns the step it was taken at.
ResumeInfo load_checkpoint(const std::string& path, const Module& mod, const TrainConfig& cfg, State& s,
                           uint64_t& seed) {
  const ddpm_module& m = mod.get();
  std::error_code ec;
  if (!fs::exists(path, ec))
    user_error_noloc(fmt::format("cannot resume: there is no checkpoint at {}", path),
                     "drop --resume to start a new run in this directory");
  SafeTensors ck = read_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = ck.metadata.find(key);
    if (it == ck.metadata.end())
      user_error_noloc(fmt::format("checkpoint {} has no '{}' in its metadata; it is not a ddpmc checkpoint "
                                   "or it is damaged", path, key),
                       "start a new run in another --out directory");
    return it->second;
  };
  if (meta("format") != kCheckpointFormat)
    user_error_noloc(fmt::format("checkpoint {} has format '{}', expected '{}'", path, meta("format"),
                                 kCheckpointFormat),
                     "it was written by another tool or version; start a new run");
  const std::string& hash = meta("spec_hash");
  if (hash != m.spec_hash)
    user_error_noloc(fmt::format("checkpoint {} was trained with spec hash {}, but the module has spec hash {}",
                                 path, hash, m.spec_hash),
                     "resume with the spec (and ddpmc version) that produced the checkpoint, or start a new "
                     "run in another --out directory");
  ResumeInfo info;
  uint64_t ck_seed = 0;
  try {
    size_t pos = 0;
    info.step = std::stoll(meta("step"), &pos);
    if (pos != meta("step").size() || info.step < 0) throw std::invalid_argument("step");
    ck_seed = std::stoull(meta("seed"), &pos);
    if (pos != meta("seed").size()) throw std::invalid_argument("seed");
  } catch (const std::logic_error&) {
    user_error_noloc(fmt::format("checkpoint {} has a malformed step '{}' or seed '{}' in its metadata", path,
                                 meta("step"), meta("seed")),
                     "the file is damaged; start a new run in another --out directory");
  }
  auto el = ck.metadata.find("elapsed_s");
  if (el != ck.metadata.end()) info.elapsed_s = std::atof(el->second.c_str());

  float* bufs[4] = {s.params.data(), s.ema.data(), s.m.data(), s.v.data()};
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < m.n_params; ++i) {
      const ddpm_param_info& p = m.params[i];
      std::string name = kPrefixes[k] + std::string(p.name);
      auto it = ck.tensors.find(name);
      if (it == ck.tensors.end())
        user_error_noloc(fmt::format("checkpoint {} has no tensor '{}'", path, name),
                         "the file is incomplete or from another model; start a new run");
      if (it->second.first != param_shape(p))
        user_error_noloc(fmt::format("checkpoint {}: tensor '{}' has shape {}, the model needs {}", path, name,
                                     shape_string(it->second.first), shape_string(param_shape(p))),
                         "the file is from another model; start a new run");
      std::copy(it->second.second.begin(), it->second.second.end(), bufs[k] + p.offset);
    }
  if (ck_seed != seed) {
    fmt::print(stderr, "note: continuing with seed {} from the checkpoint (not {})\n", ck_seed, seed);
    seed = ck_seed;
  }
  auto b = ck.metadata.find("batch");
  if (b != ck.metadata.end() && b->second != std::to_string(cfg.batch))
    fmt::print(stderr, "note: the checkpoint was trained with batch {}, continuing with batch {}\n", b->second,
               cfg.batch);
  auto d = ck.metadata.find("data");
  if (d != ck.metadata.end() && d->second != cfg.data)
    fmt::print(stderr, "note: the checkpoint was trained on '{}', continuing on '{}'\n", d->second, cfg.data);
  return info;
}

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
}

void copy_module(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (fs::exists(to, ec) && fs::equivalent(from, to, ec)) return;
  std::ifstream in(from, std::ios::binary);
  if (!in) user_error_noloc(fmt::format("cannot read module {}", from), "");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A fresh file renamed into place: a process that has the old module mapped keeps it.
  AtomicFile f(to, "module");
  f.write(bytes.data(), bytes.size());
  f.commit();
  fs::permissions(to, fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec,
                  fs::perm_options::add, ec);
}

void write_config(const std::string& path, const TrainConfig& c, const ddpm_module& m, uint64_t seed,
                  int64_t start_step) {
  nlohmann::json j;
  j["model"] = c.model;
  j["data"] = c.data;
  j["steps"] = c.steps;
  j["batch"] = c.batch;
  j["threads"] = c.threads;
  j["out"] = c.out;
  j["seed"] = seed;
  j["lr"] = float_json(c.opt.lr);
  j["beta1"] = float_json(c.opt.beta1);
  j["beta2"] = float_json(c.opt.beta2);
  j["eps"] = float_json(c.opt.eps);
  j["weight_decay"] = float_json(c.opt.weight_decay);
  j["ema_decay"] = float_json(c.ema_decay);
  j["grad_clip"] = float_json(c.grad_clip);
  j["ckpt_every"] = c.ckpt_every;
  j["log_every"] = c.log_every;
  j["warmup"] = c.warmup;
  j["minutes"] = c.minutes;
  j["resume"] = c.resume;
  j["resumed_from_step"] = start_step;
  j["spec_hash"] = m.spec_hash;
  j["spec_path"] = m.spec_path ? m.spec_path : "";
  j["compiler_version"] = m.compiler_version ? m.compiler_version : "";
  j["T"] = m.T;
  j["schedule"] = m.schedule ? m.schedule : "";
  j["param_floats"] = m.param_floats;
  j["data_dims"] = std::vector<int>(m.data_dims, m.data_dims + m.data_rank);
  std::string text = j.dump(2) + "\n";
  AtomicFile f(path, "config");
  f.write(text.data(), text.size());
  f.commit();
}

}  // namespace

int train(const TrainConfig& cfg) {
  validate(cfg);
  tbb::global_control threads_ctl(tbb::global_control::max_allowed_parallelism, (size_t)cfg.threads);

  Module mod = load_module_for(cfg.model, cfg.cache_dir);
  check_module(mod);
  const ddpm_module& m = mod.get();
  DataSource data(cfg.data, mod);

  const std::string out = cfg.out;
  const std::string ckpt_path = (fs::path(out) / "checkpoint.safetensors").string();
  const std::string metrics_path = (fs::path(out) / "metrics.jsonl").string();
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out))
    user_error_noloc(fmt::format("cannot create the output directory {}: {}", out, ec.message()),
                     "choose another --out");
  if (!cfg.resume && fs::exists(ckpt_path, ec))
    user_error_noloc(fmt::format("{} already holds a checkpoint", out),
                     "pass --resume to continue that run, or choose another --out directory");

  const int64_t P = m.param_floats;
  const int B = cfg.batch;
  State st(P);
  uint64_t seed = cfg.seed;
  ResumeInfo start;
  if (cfg.resume) {
    start = load_checkpoint(ckpt_path, mod, cfg, st, seed);
  } else {
    init_params(m, seed, st.params.data());
    std::copy(st.params.data(), st.params.data() + P, st.ema.data());
  }
  if (start.step >= cfg.steps) {
    fmt::print(stderr, "{} is already at step {} (--steps {}); nothing to do\n", ckpt_path, start.step, cfg.steps);
    return 0;
  }

  copy_module(mod.so_path(), (fs::path(out) / "module.so").string());
  write_config((fs::path(out) / "config.json").string(), cfg, m, seed, start.step);

  std::unique_ptr<FILE, int (*)(FILE*)> metrics(std::fopen(metrics_path.c_str(), cfg.resume ? "a" : "w"),
                                                &std::fclose);
  if (!metrics) user_error_noloc(fmt::format("cannot open {} for writing", metrics_path), "");

  AlignedFloats x0((int64_t)B * m.data_numel);
  AlignedBuffer arena = alloc_arena(m, 0, B);

  std::map<std::string, std::string> meta = {
      {"format", kCheckpointFormat}, {"rng", "philox4x32-10"},
      {"seed", std::to_string(seed)}, {"spec_hash", m.spec_hash},
      {"data", cfg.data},            {"batch", std::to_string(B)},
      {"lr", float_str(cfg.opt.lr)}, {"weight_decay", float_str(cfg.opt.weight_decay)},
      {"beta1", float_str(cfg.opt.beta1)}, {"beta2", float_str(cfg.opt.beta2)},
      {"eps", float_str(cfg.opt.eps)}, {"ema_decay", float_str(cfg.ema_decay)},
      {"grad_clip", float_str(cfg.grad_clip)}, {"warmup", std::to_string(cfg.warmup)},
      {"step", "0"}, {"elapsed_s", "0"}};
  const std::vector<TensorView> views = checkpoint_views(m, st);
  int64_t last_ckpt = cfg.resume ? start.step : -1;
  auto save = [&](int64_t step, double elapsed) {
    meta["step"] = std::to_string(step);
    meta["elapsed_s"] = fmt::format("{:.3f}", elapsed);
    write_safetensors(ckpt_path, views, meta);
    last_ckpt = step;
  };

  const bool tty = isatty(fileno(stderr)) && !cfg.quiet;
  const Clock::time_point t0 = Clock::now();
  Clock::time_point window_t0 = t0;
  double window_loss = 0;
  int64_t window_n = 0;
  float loss = 0, last_mean = NAN;
  int64_t k = start.step;
  bool timed_out = false;
  auto elapsed_total = [&] { return start.elapsed_s + seconds_since(t0); };

  int64_t n_weights = 0;
  for (int i = 0; i < m.n_params; ++i) n_weights += m.params[i].numel;
  if (!cfg.quiet)
    fmt::print(stderr, "training {} on {}: {} parameters, batch {}, {} thread{}, steps {}..{}\n", cfg.model,
               cfg.data, n_weights, B, cfg.threads, cfg.threads == 1 ? "" : "s", start.step + 1, cfg.steps);

  StopSignals stop_signals;
  bool interrupted = false;
  while (k < cfg.steps) {
    const int64_t step = k + 1;
    data.fill(seed, (uint64_t)step, B, x0.data());
    int rc = m.train_step(arena.data(), B, st.params.data(), x0.data(), seed, (uint64_t)step, st.grads.data(), &loss);
    if (rc != 0) DDPM_ICE(fmt::format("module train_step returned {} at step {}", rc, step));
    float gnorm = 0;
    if (cfg.grad_clip > 0) gnorm = grad_global_norm(st.grads.data(), P);
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      if (tty) fmt::print(stderr, "\n");
      std::string what = std::isfinite(loss) ? fmt::format("gradient norm is {}", gnorm)
                                             : fmt::format("loss is {}", loss);
      if (last_ckpt >= 0)
        fmt::print(stderr, "error: {} at step {}; the last good checkpoint (step {}) is kept in {}; hint: {}\n",
                   what, step, last_ckpt, out, kHint);
      else
        fmt::print(stderr, "error: {} at step {}; no checkpoint had been written yet in {}; hint: {}\n", what,
                   step, out, kHint);
      return kTrainNonFinite;
    }
    AdamWConfig oc = cfg.opt;
    if (cfg.warmup > 0 && step < cfg.warmup) oc.lr = cfg.opt.lr * (float)step / (float)cfg.warmup;
    float decay = std::min(cfg.ema_decay, (float)(1 + step) / (float)(10 + step));
    optimizer_step(st.params.data(), st.grads.data(), st.m.data(), st.v.data(), st.ema.data(), P, step, oc,
                   clip_coefficient(gnorm, cfg.grad_clip), decay);
    k = step;

    window_loss += loss;
    ++window_n;
    if (cfg.minutes > 0 && seconds_since(t0) > cfg.minutes * 60) timed_out = true;
    if (g_stop_signal) interrupted = true;
    if (step % cfg.log_every == 0 || step == cfg.steps || timed_out || interrupted) {
      double wdt = seconds_since(window_t0);
      double sps = wdt > 0 ? window_n / wdt : 0;
      double total = elapsed_total();
      last_mean = (float)(window_loss / window_n);
      fmt::print(metrics.get(),
                 "{{\"step\": {}, \"loss\": {:.6g}, \"lr\": {:.6g}, \"steps_per_s\": {:.1f}, \"elapsed_s\": {:.3f}}}\n",
                 step, last_mean, oc.lr, sps, total);
      std::fflush(metrics.get());
      if (!cfg.quiet) {
        double run_sps = (step - start.step) / std::max(seconds_since(t0), 1e-9);
        double eta = (cfg.steps - step) / run_sps;
        if (cfg.minutes > 0) eta = std::min(eta, std::max(0.0, cfg.minutes * 60 - seconds_since(t0)));
        fmt::print(stderr, "{}step {}/{}  loss {:.4f}  {} steps/s  ETA {}{}", tty ? "\r" : "", step, cfg.steps,
                   last_mean, rate(sps), format_eta(eta), tty ? "   " : "\n");
        std::fflush(stderr);
      }
      window_loss = 0;
      window_n = 0;
      window_t0 = Clock::now();
    }
    if (cfg.ckpt_every > 0 && step % cfg.ckpt_every == 0 && step != cfg.steps && !timed_out && !interrupted)
      save(step, elapsed_total());
    if (timed_out || interrupted) break;
  }
  save(k, elapsed_total());
  if (tty) fmt::print(stderr, "\n");
  double dt = seconds_since(t0);
  fmt::print(stderr, "{} {} steps in {:.1f} s ({} steps/s), loss {:.4f}; checkpoint at step {} in {}{}\n",
             interrupted ? fmt::format("stopped by {} after", g_stop_signal == SIGTERM ? "SIGTERM" : "Ctrl-C")
             : timed_out ? std::string("stopped by the time limit after")
                         : std::string("trained"),
             k - start.step, dt, rate((k - start.step) / std::max(dt, 1e-9)), last_mean, k, ckpt_path,
             interrupted ? "; continue with --resume" : "");
  return interrupted ? kTrainInterrupted : 0;
}

}  // namespace ddpm
