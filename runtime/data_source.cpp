// Training data sources (see data_source.h): built-in 2-D sets, .npy arrays and
// IDX image files, each batch a pure function of (seed, step).
#include "data_source.h"

#include <algorithm>
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

DataSource::DataSource(const std::string& spec, const Module& mod) : name_(spec) {
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

void DataSource::fill(uint64_t seed, uint64_t step, int B, float* x0, int64_t row0) const {
  if (!array_) {
    sample_2d(name_, B, seed, step, x0, row0);
    return;
  }
  for (int i = 0; i < B; ++i) {
    int64_t r = (int64_t)(philox_uniform(seed, step, kBatchPickStream, (uint64_t)(row0 + i)) * (double)N_);
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

std::string DataSource::names() {
  std::string s;
  for (auto& n : dataset_2d_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace ddpm
