// The project's own image-quality evaluator: a supervised module (ABI >= 6, a spec
// without a diffusion block whose net marks its penultimate layer with features(...),
// e.g. models/fmnist_classifier.ddpm) with its trained weights. It maps images to
// features (for FID and precision/recall, runtime/quality.h) and logits (for the
// predicted-class histogram and class accuracy).
//
// Layering: the runtime loads a compiled module; building the evaluator's spec is the
// tools' job (tools/spec_module.h), which hand the .so and its checksum here.
//
// Dimension legend:
//   N  images evaluated      D  values per image (data_numel, 784 for [1, 28, 28])
//   F  features per image    K  logits per image (classes)
// Images are float [N, D] in [-1, 1], row-major; outputs [N, F] and [N, K].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "module.h"
#include "quality.h"

namespace ddpm {

class Evaluator {
 public:
  // Takes an open module and its parameters [param_floats]. Throws a one-line
  // UserError naming `what` (the spec or file) when the module is not a supervised
  // one with features: ABI < 6, no classify_eval, or features_numel == 0.
  Evaluator(Module mod, std::vector<float> params, const std::string& what);

  // Loads module `so` (checked against `checksum` unless empty) and its weights from
  // `weights` (load_evaluator_weights).
  static Evaluator load(const std::string& so, const std::string& checksum, const std::string& weights);

  const Module& module() const { return mod_; }
  const std::vector<float>& params() const { return params_; }
  int64_t input_numel() const { return mod_->data_numel; }
  int64_t features() const { return mod_->features_numel; }
  int classes() const { return (int)mod_->logits_numel; }
  const std::string& what() const { return what_; }

  // Throws a one-line UserError unless images of `shape` (without the batch axis,
  // e.g. "[1, 28, 28]" of a diffusion run) are what the evaluator reads.
  void require_input(const ddpm_module& data_model, const std::string& whose) const;

  // Runs x [n, D] through the net in batches of `batch` (fixed cuts: the result does
  // not depend on `threads`), writing features [n, F] and logits [n, K] (either may be
  // nullptr: not kept). The module's kernels run on `threads` threads.
  void run(const float* x, int64_t n, int threads, float* features, float* logits, int batch = 100) const;

 private:
  Module mod_;
  std::vector<float> params_;
  std::string what_;
};

// Reads the evaluator's parameters [param_floats] from a safetensors file, each
// tensor by its module name, as "ema/<name>" (a checkpoint or a ddpm-train weights
// file), else "<name>". When the file records a spec_hash it must be the module's.
// Missing file, tensor or shape: a one-line UserError.
// load_weights (weights.h): names and shapes are checked, not the spec hash (see evaluator.cpp).
std::vector<float> load_evaluator_weights(const std::string& path, const Module& mod);

// Image quality of generated samples against reference statistics: what ddpm-eval
// --quality reports and the trainer's periodic evaluation can call.
struct ImageQuality {
  double fid = 0;               // vs `ref`
  FeatureStats stats;           // of the samples' features
  std::vector<float> features;  // [n, F]
  std::vector<float> logits;    // [n, K]
};

// Features and logits of x [n, D], their statistics, and the FID against `ref`.
ImageQuality image_quality(const Evaluator& ev, const FeatureStats& ref, const float* x, int64_t n, int threads);

// The FID alone.
double fid_of_samples(const Evaluator& ev, const FeatureStats& ref, const float* x, int64_t n, int threads);

}  // namespace ddpm
