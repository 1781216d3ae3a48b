// Training settings in checkpoints and their restoration on --resume (resume.h).
//
// One table row per setting: its metadata key (also the name in TrainConfig::given,
// which the tool fills with the flags the user typed), its flag, how to print and
// parse it, and whether changing it mid-run changes the arithmetic of the steps
// still to come (everything but the step target of a constant-rate run and the
// evaluations during training).
#include "resume.h"

#include <cerrno>
#include <cstdlib>
#include <functional>

#include <fmt/format.h>

#include "common/diag.h"
#include "common/input_limits.h"

namespace ddpm {
namespace {

std::string float_str(float x) { return fmt::format("{}", x); }

bool parse_float(const std::string& s, float& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  float v = std::strtof(s.c_str(), &end);
  if (*end || errno == ERANGE) return false;
  out = v;
  return true;
}

bool parse_int(const std::string& s, long long lo, long long hi, long long& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end || errno == ERANGE || v < lo || v > hi) return false;
  out = v;
  return true;
}

struct Setting {
  const char* key;
  const char* flag;
  std::function<std::string(const TrainConfig&)> get;
  std::function<bool(TrainConfig&, const std::string&)> set;  // false: malformed
  // Does a change of this setting make the remaining steps differ from a run that
  // was never interrupted? (given the restored configuration)
  std::function<bool(const TrainConfig&)> changes_arithmetic = [](const TrainConfig&) { return true; };
};

Setting float_setting(const char* key, const char* flag, float TrainConfig::*field) {
  return {key, flag, [field](const TrainConfig& c) { return float_str(c.*field); },
          [field](TrainConfig& c, const std::string& s) { return parse_float(s, c.*field); }};
}

Setting opt_setting(const char* key, const char* flag, float AdamWConfig::*field) {
  return {key, flag, [field](const TrainConfig& c) { return float_str(c.opt.*field); },
          [field](TrainConfig& c, const std::string& s) { return parse_float(s, c.opt.*field); }};
}

template <class Int>
Setting int_setting(const char* key, const char* flag, Int TrainConfig::*field, long long lo, long long hi) {
  return {key, flag, [field](const TrainConfig& c) { return std::to_string(c.*field); },
          [field, lo, hi](TrainConfig& c, const std::string& s) {
            long long v;
            if (!parse_int(s, lo, hi, v)) return false;
            c.*field = (Int)v;
            return true;
          }};
}

Setting string_setting(const char* key, const char* flag, std::string TrainConfig::*field) {
  return {key, flag, [field](const TrainConfig& c) { return c.*field; },
          [field](TrainConfig& c, const std::string& s) {
            c.*field = s;
            return true;
          }};
}

const std::vector<Setting>& settings() {
  static const std::vector<Setting> rows = [] {
    std::vector<Setting> r;
    r.push_back(string_setting("data", "--data", &TrainConfig::data));
    r.push_back(string_setting("labels", "--labels", &TrainConfig::labels));
    Setting steps = int_setting("steps", "--steps", &TrainConfig::steps, 1, INT64_MAX);
    steps.changes_arithmetic = [](const TrainConfig& c) { return c.lr_schedule == "cosine"; };
    r.push_back(steps);
    r.push_back(int_setting("batch", "--batch", &TrainConfig::batch, 1, INT32_MAX));
    r.push_back(int_setting("slices", "--slices", &TrainConfig::slices, 1, INT32_MAX));
    Setting seed = {"seed", "--seed", [](const TrainConfig& c) { return std::to_string(c.seed); },
                    [](TrainConfig& c, const std::string& s) {
                      if (s.empty() || s[0] == '-') return false;
                      char* end = nullptr;
                      errno = 0;
                      unsigned long long v = std::strtoull(s.c_str(), &end, 10);
                      if (*end || errno == ERANGE) return false;
                      c.seed = v;
                      return true;
                    }};
    r.push_back(seed);
    r.push_back(opt_setting("lr", "--lr", &AdamWConfig::lr));
    r.push_back(opt_setting("weight_decay", "--weight-decay", &AdamWConfig::weight_decay));
    r.push_back(opt_setting("beta1", "(beta1)", &AdamWConfig::beta1));
    r.push_back(opt_setting("beta2", "(beta2)", &AdamWConfig::beta2));
    r.push_back(opt_setting("eps", "(eps)", &AdamWConfig::eps));
    r.push_back(float_setting("ema_decay", "--ema-decay", &TrainConfig::ema_decay));
    r.push_back(float_setting("grad_clip", "--grad-clip", &TrainConfig::grad_clip));
    r.push_back(int_setting("warmup", "--warmup", &TrainConfig::warmup, 0, INT32_MAX));
    r.push_back(string_setting("lr_schedule", "--lr-schedule", &TrainConfig::lr_schedule));
    // Evaluations during training read the weights and never change them.
    for (Setting e : {int_setting("eval_every", "--eval-every", &TrainConfig::eval_every, 0, INT64_MAX),
                      int_setting("eval_samples", "--eval-samples", &TrainConfig::eval_samples, 0,
                                  ddpmc::kMaxEvalSamples)}) {
      e.changes_arithmetic = [](const TrainConfig&) { return false; };
      r.push_back(e);
    }
    return r;
  }();
  return rows;
}

}  // namespace

std::map<std::string, std::string> training_settings(const TrainConfig& cfg) {
  std::map<std::string, std::string> out;
  for (const Setting& s : settings()) out[s.key] = s.get(cfg);
  return out;
}

TrainConfig restore_settings(const TrainConfig& cfg, const std::map<std::string, std::string>& meta,
                             const std::string& ckpt_path, std::vector<std::string>& notes) {
  TrainConfig out = cfg;
  std::vector<const Setting*> overridden;
  for (const Setting& s : settings()) {
    auto it = meta.find(s.key);
    if (it == meta.end()) continue;  // an older checkpoint: the command line's value stands
    TrainConfig from_ckpt = out;
    if (!s.set(from_ckpt, it->second))
      ddpmc::user_error_noloc(fmt::format("checkpoint {} has a malformed {} '{}' in its metadata", ckpt_path, s.key,
                                          it->second),
                              "the file is damaged; start a new run in another --out directory");
    if (!cfg.given.count(s.key)) {
      s.set(out, it->second);
    } else if (s.get(cfg) != s.get(from_ckpt)) {
      overridden.push_back(&s);
    }
  }
  for (const Setting* s : overridden) {
    TrainConfig before = out;
    s->set(before, meta.at(s->key));
    notes.push_back(fmt::format("note: {} {} overrides the checkpoint's {}{}", s->flag, s->get(out), s->get(before),
                                s->changes_arithmetic(out)
                                    ? "; the rest of the run will differ from one that was never interrupted"
                                    : ""));
  }
  return out;
}

}  // namespace ddpm
