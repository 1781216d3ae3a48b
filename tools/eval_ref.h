// What ddpm-eval --quality and --accuracy need besides the math: the evaluator (a
// supervised module and its weights, found and built here because building specs is
// the tools' job), labelled image sets read whole, and the reference feature
// statistics of a data set, computed once and cached beside the module cache.
//
// Dimension legend: N images, D values per image (784 for [1, 28, 28]), F features.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/evaluator.h"
#include "runtime/quality.h"

namespace ddpm_tools {

struct EvaluatorRequest {
  std::string spec;     // --evaluator: a .ddpm spec or a .so; "" = the spec the weights record, else the .ddpm beside them
  std::string weights;  // --evaluator-weights; "" = models/fmnist_classifier.safetensors (see default_evaluator_weights)
  std::string cache_dir;
  std::string so, so_checksum;  // a module already built (a classifier run's), used instead of `spec`
};

// The shipped evaluator's weights: models/fmnist_classifier.safetensors under the working
// directory, the installed share/ddpmc/models, or the source tree, the first that exists
// (else the first, so the error names it).
std::string default_evaluator_weights();

// Builds (through the module cache) and loads the evaluator. A missing weights file, a
// module that is not supervised or has no features, or weights of another spec: a
// one-line UserError.
ddpm::Evaluator load_evaluator(const EvaluatorRequest& r);

// A labelled or unlabelled image set, read whole.
struct ImageSet {
  std::string path;             // the file read
  std::vector<float> x;         // [N, D] in [-1, 1] (IDX and uint8 .npy scaled from 0..255)
  std::vector<int32_t> labels;  // [N] when asked for
  int64_t n = 0;
};

// Reads IDX images or an .npy array whose rows hold D values (the first `limit` rows, all
// when limit <= 0); with K > 0 also the labels: `labels_path`, else the IDX label file next
// to IDX images. Wrong shape, missing file or labels: a one-line UserError.
ImageSet read_image_set(const std::string& path, int64_t D, int64_t limit = 0, int K = 0,
                        const std::string& labels_path = "");

// "fashion-mnist" → its training file; a path stays as it is.
std::string train_file_of(const std::string& data);
// The test split of a training file (train-images-idx3 → t10k-images-idx3) when it exists, else "".
std::string test_file_of(const std::string& train_file);

// The feature statistics of the whole image file `path` under evaluator `ev`: read from
// the cache (DIR/quality/KEY.stats, DIR the module cache) when present, else computed and
// written atomically. KEY hashes the evaluator's weights checksum and spec hash and the
// data file's path, size and modification time. `seconds` gets the time spent computing
// (0 on a cache hit).
// (ev.what() names the weights file.)
ddpm::FeatureStats reference_stats(const ddpm::Evaluator& ev, const std::string& path, const std::string& cache_dir,
                                   int threads, double* seconds);

}  // namespace ddpm_tools
