// ddpm-eval --quality and --accuracy: sample quality measured by the project's own
// evaluator (a supervised classifier's features, runtime/evaluator.h), and a
// classifier's accuracy on a labelled set.
//
//   ddpm-eval RUN --quality [-n 1000] [--sampler NAME] [--steps K] [--samples FILE.npy]
//             [--evaluator SPEC --evaluator-weights FILE] [--class all|k] [--json PATH]
//     image run: N samples (drawn, or read from --samples) → evaluator features and
//     logits → FID vs the training set's and the test set's cached reference statistics,
//     precision/recall (k = 3) vs N test (else training) images, the predicted-class
//     histogram, and for a class-conditional model the accuracy of the evaluator's
//     prediction against the intended class (sample i has class i % K), per class.
//     2-D run: the sliced Wasserstein distance of N samples to a fresh draw of the data
//     set, and its floor (two fresh draws).
//     Both print the time of each phase and write the results as "quality" in
//     RUN/eval.json (other keys kept), or in --json PATH.
//   ddpm-eval WEIGHTS.safetensors|CLASSIFIER_RUN --accuracy [--data t10k|train|FILE]
//     accuracy of argmax(logits) on a labelled set, "accuracy 91.42% (9142/10000) on ...".
#pragma once
#include <cstdint>
#include <string>

#include "eval_ref.h"

namespace ddpm_tools {

struct QualityConfig {
  std::string run_dir;
  int64_t n = 1000;
  std::string sampler;          // "" = ddim with 50 steps if the model has one, else its first sampler, all T steps
  int steps = -1;               // -1 = that default
  std::string samples;          // --samples FILE.npy instead of sampling
  EvaluatorRequest evaluator;
  std::string cls = "all";      // "all" (class i % K for sample i) or one class index
  int threads = 1;
  uint64_t seed = 1;
  bool use_ema = true;
  bool trust_module = false;
  std::string cache_dir;
  std::string json;             // "" = RUN/eval.json
  bool quiet = false;
};

int run_quality(const QualityConfig& cfg);

struct AccuracyConfig {
  std::string target;        // a weights .safetensors or a supervised run directory
  std::string data = "t10k"; // t10k, train, or an IDX / .npy image file
  std::string labels;        // labels of an .npy --data
  EvaluatorRequest evaluator;  // .spec: the spec of the weights (else the one they record)
  int threads = 1;
  bool trust_module = false;
};

int run_accuracy(const AccuracyConfig& cfg);

}  // namespace ddpm_tools
