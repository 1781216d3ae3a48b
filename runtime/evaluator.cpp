// The image-quality evaluator (see evaluator.h): checks that a module is a
// supervised one with features, loads its weights, and runs images through its
// classify_eval entry in fixed batches.
#include "evaluator.h"

#include <tbb/task_arena.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "common/diag.h"
#include "safetensors.h"
#include "weights.h"

namespace ddpm {

using ddpmc::user_error_noloc;

namespace {

void require_supervised(const Module& mod, const std::string& what) {
  const ddpm_module& m = mod.get();
  if (m.abi_version < 6)
    user_error_noloc(fmt::format("{} is an ABI version {} module; an evaluator needs a supervised module (ABI 6 or "
                                 "later)",
                                 what, m.abi_version),
                     "rebuild the evaluator's spec with the current ddpmc");
  if (!m.supervised || m.classify_eval == nullptr)
    user_error_noloc(fmt::format("{} is not a supervised model (it has a diffusion block), so it cannot be the "
                                 "evaluator",
                                 what),
                     "pass a classifier spec without a diffusion block, e.g. --evaluator models/fmnist_classifier.ddpm");
  if (m.features_numel <= 0 || m.logits_numel <= 0)
    user_error_noloc(fmt::format("{} marks no features: its net has no value marked features(...)", what),
                     "mark the penultimate layer of the classifier with features(...)");
}

std::string dims_string(const ddpm_module& m) {
  std::string s = "[";
  for (int i = 0; i < m.data_rank; ++i) s += (i ? ", " : "") + std::to_string(m.data_dims[i]);
  return s + "]";
}

}  // namespace

Evaluator::Evaluator(Module mod, std::vector<float> params, const std::string& what)
    : mod_(std::move(mod)), params_(std::move(params)), what_(what) {
  require_supervised(mod_, what_);
  DDPM_CHECK((int64_t)params_.size() == mod_->param_floats, "evaluator parameters do not match the module");
}

Evaluator Evaluator::load(const std::string& so, const std::string& checksum, const std::string& weights) {
  Module mod(so, checksum);
  require_supervised(mod, so);
  std::vector<float> params = load_evaluator_weights(weights, mod);
  return Evaluator(std::move(mod), std::move(params), weights);
}

void Evaluator::require_input(const ddpm_module& data_model, const std::string& whose) const {
  const ddpm_module& m = mod_.get();
  bool same = m.data_rank == data_model.data_rank && m.data_numel == data_model.data_numel;
  for (int i = 0; same && i < m.data_rank; ++i) same = m.data_dims[i] == data_model.data_dims[i];
  if (!same)
    user_error_noloc(fmt::format("the evaluator {} reads images of shape {}, but {} has samples of shape {}", what_,
                                 dims_string(m), whose, dims_string(data_model)),
                     "pass an evaluator trained on data of the run's shape (--evaluator and --evaluator-weights)");
}

void Evaluator::run(const float* x, int64_t n, int threads, float* features, float* logits, int batch) const {
  const ddpm_module& m = mod_.get();
  const int64_t D = m.data_numel, F = m.features_numel, K = m.logits_numel;
  const int B = (int)std::max<int64_t>(1, std::min<int64_t>(batch, n));
  AlignedFloats p(m.param_floats), xin((int64_t)B * D), fo((int64_t)B * F), lo((int64_t)B * K);
  std::copy(params_.begin(), params_.end(), p.data());
  AlignedBuffer arena = alloc_arena(m, 3 + m.n_samplers, B);
  auto body = [&] {
    for (int64_t g0 = 0; g0 < n; g0 += B) {
      const int b = (int)std::min<int64_t>(B, n - g0);
      std::memcpy(xin.data(), x + g0 * D, sizeof(float) * (size_t)(b * D));
      const int rc = m.classify_eval(arena.data(), b, p.data(), xin.data(), lo.data(), fo.data());
      if (rc != 0) DDPM_ICE(fmt::format("module classify_eval returned {} (batch {})", rc, b));
      if (features) std::memcpy(features + g0 * F, fo.data(), sizeof(float) * (size_t)(b * F));
      if (logits) std::memcpy(logits + g0 * K, lo.data(), sizeof(float) * (size_t)(b * K));
    }
  };
  tbb::task_arena ta(std::max(1, threads));
  ta.execute(body);
}

std::vector<float> load_evaluator_weights(const std::string& path, const Module& mod) {
  // No spec-hash comparison: the hash names the compiler version too, and shipped weights
  // must outlive it. Parameter names and shapes (load_weights) tell another model apart.
  return load_weights(path, mod);
}

ImageQuality image_quality(const Evaluator& ev, const FeatureStats& ref, const float* x, int64_t n, int threads) {
  ImageQuality q;
  q.features.resize((size_t)(n * ev.features()));
  q.logits.resize((size_t)(n * ev.classes()));
  ev.run(x, n, threads, q.features.data(), q.logits.data());
  q.stats = feature_stats(q.features.data(), n, ev.features(), threads);
  q.fid = frechet_distance(q.stats, ref);
  return q;
}

double fid_of_samples(const Evaluator& ev, const FeatureStats& ref, const float* x, int64_t n, int threads) {
  return image_quality(ev, ref, x, n, threads).fid;
}

}  // namespace ddpm
