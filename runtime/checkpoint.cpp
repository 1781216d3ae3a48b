// Checkpoint and run-directory I/O of the trainer (see checkpoint.h).
#include "checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/checksum.h"
#include "common/diag.h"
#include "data_source.h"
#include "dist.h"
#include "npy.h"
#include "philox.h"
#include "resume.h"

namespace ddpm {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

constexpr uint64_t kInitStep = 0xFFFFFFFFull;
constexpr uint32_t kInitStreamBase = 3000;
constexpr const char* kCheckpointFormat = "ddpmc-checkpoint-1";
const char* kPrefixes[4] = {"param/", "ema/", "adam_m/", "adam_v/"};

std::vector<int64_t> param_shape(const ddpm_param_info& p) {
  return std::vector<int64_t>(p.dims, p.dims + p.rank);
}

// The shortest decimal that reads back as the same float ("0.001", not "0.0010000000474974513").
std::string float_str(float x) { return fmt::format("{}", x); }
double float_json(float x) { return std::stod(float_str(x)); }

}  // namespace

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

std::vector<TensorView> checkpoint_views(const ddpm_module& m, const TrainState& s) {
  const float* bufs[4] = {s.params.data(), s.ema.data(), s.m.data(), s.v.data()};
  std::vector<TensorView> views;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < m.n_params; ++i)
      views.push_back({kPrefixes[k] + std::string(m.params[i].name), param_shape(m.params[i]),
                       bufs[k] + m.params[i].offset});
  return views;
}

std::map<std::string, std::string> checkpoint_metadata(const TrainConfig& cfg, const ddpm_module& m, uint64_t seed) {
  TrainConfig c = cfg;
  c.seed = seed;
  std::map<std::string, std::string> meta = training_settings(c);
  meta.insert({{"format", kCheckpointFormat}, {"rng", "philox4x32-10"}, {"spec_hash", m.spec_hash},
               {"step", "0"}, {"elapsed_s", "0"}});
  return meta;
}

ResumeInfo load_checkpoint(const std::string& path, const Module& mod, const TrainConfig& cfg, TrainState& s,
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
  auto sl = ck.metadata.find("slices");
  info.slices = sl == ck.metadata.end() ? 1 : std::atoi(sl->second.c_str());
  if (info.slices < 1)
    user_error_noloc(fmt::format("checkpoint {} has a malformed slices '{}' in its metadata", path, sl->second),
                     "the file is damaged; start a new run in another --out directory");
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
      require_finite(path, name, it->second.second,
                     "the run diverged before this checkpoint was written; start a new run with a lower --lr or "
                     "with --grad-clip");
      std::copy(it->second.second.begin(), it->second.second.end(), bufs[k] + p.offset);
    }
  if (ck_seed != seed)
    DDPM_ICE(fmt::format("resuming with seed {}, but the checkpoint has {}: restore_settings was skipped", seed,
                         ck_seed));
  return info;
}

void copy_module(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (fs::exists(to, ec) && fs::equivalent(from, to, ec)) return;
  std::ifstream in(from, std::ios::binary);
  if (!in) user_error_noloc(fmt::format("cannot read module {}", from), "");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A fresh file renamed into place: a process that has the old module mapped keeps it.
  ddpmc::AtomicFile f(to, "module");
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
  j["slices"] = c.slices;
  j["processes"] = dist().size();
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
  j["lr_schedule"] = c.lr_schedule;
  j["sample_every"] = c.sample_every;
  j["eval_every"] = c.eval_every;
  j["eval_samples"] = c.eval_samples;
  j["minutes"] = c.minutes;
  j["resume"] = c.resume;
  j["resumed_from_step"] = start_step;
  j["spec_hash"] = m.spec_hash;
  const fs::path so = fs::path(path).parent_path() / "module.so";
  std::error_code ec;
  if (fs::exists(so, ec)) j["module_checksum"] = ddpmc::file_checksum(so.string());
  j["spec_path"] = m.spec_path ? m.spec_path : "";
  j["compiler_version"] = m.compiler_version ? m.compiler_version : "";
  j["supervised"] = is_supervised(m);
  j["T"] = m.T;
  j["schedule"] = m.schedule ? m.schedule : "";
  if (is_continuous(m)) {
    j["time"] = "continuous";
    j["t_min"] = m.t_min;
    j["t_max"] = m.t_max;
  }
  j["param_floats"] = m.param_floats;
  j["data_dims"] = std::vector<int>(m.data_dims, m.data_dims + m.data_rank);
  std::string text = j.dump(2) + "\n";
  ddpmc::write_file_atomic(path, text, "config");
}

}  // namespace ddpm
