// Where a training batch x0 comes from: a built-in 2-D set, or rows of an array
// (.npy float data as it is, uint8 .npy and IDX images scaled from 0..255 to
// [-1, 1]) picked by Philox from (seed, step). Loading rejects NaN and infinite
// values, naming the first.
// A model with a class label (`label y: K`) also gets each row's label: from the
// IDX label file next to IDX images (train-images-idx3 -> train-labels-idx1), or
// from --labels FILE.npy ([N] class indices, integer or whole-number float) for
// .npy data; there must be exactly one label per sample.
// Either way a batch is a pure function of (seed, step), which is what makes
// `ddpm-train --resume` bit-exact. The trainer (train.cpp) owns one DataSource.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

class Module;

class DataSource {
 public:
  // `spec` is a built-in set name, "fashion-mnist", or a path to an .npy / IDX
  // file. Throws ddpmc::UserError if it does not exist or does not match the
  // module's data shape.
  // `labels` is an .npy file of class indices, or "" (IDX images find theirs).
  // Throws ddpmc::UserError if it does not exist or does not match the module's
  // data shape, or if the model has a label and the labels are missing, not one
  // per sample, or not whole numbers in 0..K-1 (or the model has none and labels
  // are given).
  DataSource(const std::string& spec, const Module& mod, const std::string& labels = "");

  // Writes rows [row0, row0 + B) of training step `step`'s batch (B * data_numel
  // floats) into x0, and their class indices into labels[B] when the model has a
  // label. Row i depends only on (seed, step, i), so a slice of a batch holds the
  // same rows as the whole batch does.
  void fill(uint64_t seed, uint64_t step, int B, float* x0, float* labels = nullptr, int64_t row0 = 0) const;

  // "moons, swissroll, ...": the built-in sets, for messages.
  static std::string names();

 private:
  std::string name_;
  bool array_ = false;
  std::vector<float> rows_;     // [N, D] (.npy data)
  std::vector<uint8_t> bytes_;  // [N, D] (IDX images, 0..255)
  std::vector<int32_t> labels_; // [N] class indices (a model with a label)
  int64_t N_ = 0, D_ = 0;
};

// "[2, 3]".
std::string shape_string(const std::vector<int64_t>& s);

// Whether a --data value names a file (an .npy array or IDX images) rather than a built-in set.
bool data_names_file(const std::string& spec);

// The class indices of the n samples of `data_path` from the label file `path`
// (an IDX label file or an .npy [N]), each checked against 0..K-1; a user error
// names the file otherwise. (The trainer's labels; ddpm-eval reads its test
// split's labels the same way.)
std::vector<int32_t> read_labels(const std::string& path, int64_t n, int K, const std::string& data_path);

}  // namespace ddpm
