// Training data sources (see data_source.h): built-in 2-D sets, .npy arrays and
// IDX image files, each batch a pure function of (seed, step).
#include "data_source.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/diag.h"
#include "data2d.h"
#include "idx.h"
#include "module.h"
#include "npy.h"
#include "philox.h"

namespace ddpm {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {
constexpr uint32_t kBatchPickStream = 2000;
}  // namespace

std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

namespace {

// A label value as the file holds it: 7, 0.5, nan, 3000000000.
std::string label_text(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::abs(v) < 1e18) return fmt::format("{}", (int64_t)v);
  return fmt::format("{}", v);
}

}  // namespace

// Class indices from an IDX label file or an .npy array (integer or whole-number
// float); every one checked against 0..K-1 and the count against the n samples.
std::vector<int32_t> read_labels(const std::string& path, int64_t n, int K, const std::string& data_path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    user_error_noloc(fmt::format("label file {} does not exist (the model conditions on a label with {} classes)", path, K),
                     fs::path(path).extension() == ".npy" ? "pass --labels with an .npy array of N class indices"
                                                          : "put the IDX label file next to the images, or pass --labels FILE.npy");
  std::vector<double> values;
  if (fs::path(path).extension() == ".npy") {
    std::vector<int64_t> shape;
    values = read_npy_values(path, shape);
    if (shape.size() != 1)
      user_error_noloc(fmt::format("label file {} has shape {}; labels are one class index per sample, [N]", path,
                                   shape_string(shape)),
                       "save the labels as a 1-D array");
  } else {
    for (uint8_t v : read_idx_labels(path)) values.push_back(v);
  }
  if ((int64_t)values.size() != n)
    user_error_noloc(fmt::format("label file {} holds {} labels but {} has {} samples", path, values.size(), data_path, n),
                     "use the label file that belongs to the data: one label per sample, in the same order");
  std::vector<int32_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!(v == std::floor(v)))
      user_error_noloc(fmt::format("label file {}: label {} of sample {} is not a whole number", path, label_text(v), i),
                       fmt::format("labels are class indices 0..{} for `label y: {}`; save them as integers", K - 1, K));
    if (v < 0 || v >= K)
      user_error_noloc(fmt::format("label file {}: label {} of sample {} is outside the model's classes 0..{}", path,
                                   label_text(v), i, K - 1),
                       "labels are whole numbers 0..K-1 for `label y: K`; check the file or the spec");
    out[i] = (int32_t)v;
  }
  return out;
}

namespace {

// The first value of an array that is NaN or infinite, reported with its sample
// and position: training on it would turn the loss into NaN steps later.
void check_finite(const std::string& path, const std::vector<float>& v, int64_t D) {
  const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
  if (bad == v.end()) return;
  const int64_t i = bad - v.begin();
  user_error_noloc(fmt::format("data file {} holds {} at sample {}, element {} (flat index {})", path, *bad, i / D,
                               i % D, i),
                   "training data must be finite; clean the array (e.g. numpy.nan_to_num) or drop those samples");
}

}  // namespace

DataSource::DataSource(const std::string& spec, const Module& mod, const std::string& labels) : name_(spec) {
  const ddpm_module& m = mod.get();
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  if (K == 0 && !labels.empty())
    user_error_noloc(fmt::format("--labels {} given, but the model declares no label", labels),
                     "declare one next to the data (`label y: 10`) to train a class-conditional model");
  D_ = m.data_numel;
  const std::vector<int64_t> want(m.data_dims, m.data_dims + m.data_rank);
  std::string path = spec == "fashion-mnist" ? std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz" : spec;
  const bool is_npy = fs::path(path).extension() == ".npy";
  const bool is_idx = path.find("idx3-ubyte") != std::string::npos;
  if (data_names_file(path)) {
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
      if (a.dtype == "|u1" || a.dtype == "<u1") {
        // 8-bit images, scaled to [-1, 1] like IDX pixels.
        for (float& v : rows_) v = v / 127.5f - 1.0f;
      } else if (a.integer) {
        user_error_noloc(fmt::format("data file {} holds integers of dtype '{}'", path, a.dtype),
                         "save images as uint8 0..255 (scaled to [-1, 1] when read) or the data as float32");
      }
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
    check_finite(path, rows_, D_);
    if (N_ < 1) user_error_noloc(fmt::format("data file {} holds no samples (N = 0)", path), "");
    array_ = true;
    if (K > 0) {
      std::string lp = labels;
      if (lp.empty() && is_idx) {
        // train-images-idx3-ubyte[.gz] -> train-labels-idx1-ubyte[.gz]
        lp = path;
        const size_t at = lp.rfind("images-idx3");
        if (at != std::string::npos) lp.replace(at, 11, "labels-idx1");
        std::error_code e2;
        if (!fs::exists(lp, e2) && lp.ends_with(".gz") && fs::exists(lp.substr(0, lp.size() - 3), e2))
          lp = lp.substr(0, lp.size() - 3);
      }
      if (lp.empty())
        user_error_noloc(fmt::format("the model conditions on a label with {} classes, but {} comes without labels", K, path),
                         "pass --labels FILE.npy with one class index per sample");
      labels_ = read_labels(lp, N_, K, path);
    }
    return;
  }
  if (K > 0)
    user_error_noloc(fmt::format("the model conditions on a label with {} classes, but data set '{}' has no labels", K, spec),
                     "train it on labelled data: fashion-mnist, IDX images with their label file, or .npy with --labels");
  const auto& valid = dataset_2d_names();
  if (std::find(valid.begin(), valid.end(), spec) == valid.end())
    user_error_noloc(fmt::format("unknown data set '{}'", spec),
                     "use one of the built-in sets (" + names() + "), fashion-mnist, or a path to an .npy file");
  if (!(m.data_rank == 1 && m.data_dims[0] == 2))
    user_error_noloc(fmt::format("data set '{}' gives 2-D points, but the model's samples are {}", spec,
                                 mod.data_shape_string()),
                     "pass --data with an .npy array of matching shape");
}

bool data_names_file(const std::string& spec) {
  return fs::path(spec).extension() == ".npy" || spec.find("idx3-ubyte") != std::string::npos;
}

void DataSource::fill(uint64_t seed, uint64_t step, int B, float* x0, float* labels, int64_t row0) const {
  if (!array_) {
    sample_2d(name_, B, seed, step, x0, row0);
    return;
  }
  // The rows are random reads from a table that need not fit in cache: pick a group of rows and
  // prefetch them all, then copy, so the cache misses overlap instead of queueing one by one
  // (the moons step lost 2-3% of its time to them).
  constexpr int kGroup = 32;
  int64_t picked[kGroup];
  for (int i0 = 0; i0 < B; i0 += kGroup) {
    const int n = std::min(kGroup, B - i0);
    for (int g = 0; g < n; ++g) {
      int64_t r = (int64_t)(philox_uniform(seed, step, kBatchPickStream, (uint64_t)(row0 + i0 + g)) * (double)N_);
      picked[g] = r = std::min(r, N_ - 1);
      __builtin_prefetch(bytes_.empty() ? (const void*)(rows_.data() + r * D_) : (const void*)(bytes_.data() + r * D_));
    }
    for (int g = 0; g < n; ++g) {
      const int64_t r = picked[g], i = i0 + g;
      float* dst = x0 + i * D_;
      if (labels && !labels_.empty()) labels[i] = (float)labels_[r];
      if (!bytes_.empty()) {
        const uint8_t* src = bytes_.data() + r * D_;
        for (int64_t k = 0; k < D_; ++k) dst[k] = src[k] / 127.5f - 1.0f;
      } else {
        std::memcpy(dst, rows_.data() + r * D_, (size_t)D_ * sizeof(float));
      }
    }
  }
}

std::string DataSource::names() {
  std::string s;
  for (auto& n : dataset_2d_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace ddpm
