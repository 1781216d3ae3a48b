// ddpm-eval's held-out data (see eval_data.h): resolving the data set from the
// run, reading it with its labels, and the checks a user error names.
#include "eval_data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/diag.h"
#include "runtime/data2d.h"
#include "runtime/data_source.h"
#include "runtime/idx.h"
#include "runtime/module.h"
#include "runtime/npy.h"

namespace ddpm_tools {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

// The seed of the held-out draw of a built-in 2-D set (its step 0 is never a
// training step, so the points are new whatever the run's seed).
constexpr uint64_t kHeldOutSeed = 0xe7a1;

bool is_builtin_2d(const std::string& name) {
  const auto& v = ddpm::dataset_2d_names();
  return std::find(v.begin(), v.end(), name) != v.end();
}

// An existing spelling of `file`: as given, or without its .gz.
std::string existing(const std::string& file) {
  std::error_code ec;
  if (!fs::exists(file, ec) && file.ends_with(".gz") && fs::exists(file.substr(0, file.size() - 3), ec))
    return file.substr(0, file.size() - 3);
  return file;
}

// A string setting of RUN_DIR/config.json ("" when the file or the key is missing).
std::string config_string(const std::string& run_dir, const std::string& key) {
  std::ifstream f(fs::path(run_dir) / "config.json");
  const nlohmann::json j = f ? nlohmann::json::parse(f, nullptr, false) : nlohmann::json();
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return "";
  return j[key].get<std::string>();
}

// --data, or what config.json says was used for training, mapped to its test split.
std::string resolve_data(const EvalDataRequest& r) {
  std::string data = r.data;
  if (data.empty()) {
    data = config_string(r.run_dir, "data");
    if (data.empty())
      user_error_noloc(fmt::format("cannot tell which data {} was trained on: {} is missing or has no \"data\"",
                                   r.run_dir, (fs::path(r.run_dir) / "config.json").string()),
                       "pass --data fashion-mnist, --data moons (or another built-in set) or --data FILE.npy");
  }
  if (data == "fashion-mnist") return std::string(ddpm::kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz";
  if (is_builtin_2d(data)) return data;
  const std::string train_name = "train-images-idx3-ubyte";
  const size_t pos = data.find(train_name);
  if (r.data.empty() && pos != std::string::npos) {
    std::string test = data;
    test.replace(pos, train_name.size(), "t10k-images-idx3-ubyte");
    std::error_code ec;
    if (fs::exists(existing(test), ec)) return test;
  }
  if (r.data.empty())
    fmt::print(stderr, "note: evaluating on the training data {} (no test split is known for it; pass --data)\n",
               data);
  return data;
}

// The rows of an .npy or IDX file as [N, D] floats (IDX pixels scaled to [-1, 1]).
std::vector<float> read_rows(const std::string& path, const ddpm::Module& mod, int64_t* rows) {
  const int64_t D = mod->data_numel;
  const std::string file = existing(path);
  const bool is_npy = fs::path(file).extension() == ".npy";
  const bool is_idx = file.find("idx3-ubyte") != std::string::npos;
  if (!is_npy && !is_idx)
    user_error_noloc(fmt::format("cannot evaluate the bound on data '{}': it is neither a built-in 2-D set nor "
                                 "an .npy or IDX file",
                                 path),
                     "pass --data fashion-mnist, " + ddpm::DataSource::names() + ", an IDX image file or an .npy array");
  std::error_code ec;
  if (!fs::exists(file, ec))
    user_error_noloc(fmt::format("data file {} does not exist", file),
                     file.find(ddpm::kFashionMnistDir) == 0 ? "install Debian's dataset-fashion-mnist package"
                                                            : "pass --data with an existing .npy or IDX file");
  std::vector<int64_t> shape;
  std::vector<float> x;
  if (is_npy) {
    ddpm::NpyArray a = ddpm::read_npy(file);
    shape = std::move(a.shape);
    x = std::move(a.data);
  } else {
    ddpm::IdxImages im = ddpm::read_idx_images(file);
    shape = {im.n, im.rows, im.cols};
    x.resize(im.pixels.size());
    for (size_t i = 0; i < im.pixels.size(); ++i) x[i] = im.pixels[i] / 127.5f - 1.0f;
  }
  int64_t per = 1;
  for (size_t k = 1; k < shape.size(); ++k) per *= shape[k];
  if (shape.size() < 2 || per != D) {
    const std::string inner = mod.data_shape_string().substr(1, mod.data_shape_string().size() - 2);
    user_error_noloc(fmt::format("data file {} has shape {}, but the model's samples are {} ({} values each)", file,
                                 ddpm::shape_string(shape), mod.data_shape_string(), D),
                     fmt::format("pass an array [N, {}]", inner));
  }
  if (shape[0] < 1) user_error_noloc(fmt::format("data file {} holds no samples (N = 0)", file), "");
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      user_error_noloc(fmt::format("data file {} holds a non-finite value ({}) in sample {}", file, x[i],
                                   (int64_t)i / D),
                       "clean the data");
  *rows = shape[0];
  return x;
}

// The label file of IDX images: *images-idx3* -> *labels-idx1*; "" for other data.
std::string idx_label_file(const std::string& images) {
  const size_t at = images.rfind("images-idx3");
  if (at == std::string::npos) return "";
  std::string lp = images;
  lp.replace(at, 11, "labels-idx1");
  return existing(lp);
}

}  // namespace

EvalData load_eval_data(const EvalDataRequest& r, const ddpm::Module& mod) {
  const ddpm_module& m = mod.get();
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  const int64_t D = m.data_numel;
  if (K == 0 && !r.labels.empty())
    user_error_noloc(fmt::format("--labels {} given, but the model in {} declares no label", r.labels, r.run_dir),
                     "leave out --labels for an unconditional model");
  if (K == 0 && r.cls >= 0)
    user_error_noloc(fmt::format("--class {} given, but the model in {} declares no label", r.cls, r.run_dir),
                     "leave out --class for an unconditional model");
  if (K > 0 && r.cls >= K)
    user_error_noloc(fmt::format("--class {} is out of range: the model has {} classes", r.cls, K),
                     fmt::format("use 0..{}", K - 1));
  const std::string data = resolve_data(r);

  EvalData out;
  std::vector<float> x;
  int64_t N = 0;
  if (is_builtin_2d(data)) {
    if (K > 0)
      user_error_noloc(fmt::format("the model conditions on a label with {} classes, but data set '{}' has no labels",
                                   K, data),
                       "pass --data FILE.npy --labels LABELS.npy with labelled held-out data");
    if (!(m.data_rank == 1 && m.data_dims[0] == 2))
      user_error_noloc(fmt::format("data set '{}' gives 2-D points, but the model's samples are {}", data,
                                   mod.data_shape_string()),
                       "pass --data with an .npy array of matching shape");
    N = r.n;
    x.resize((size_t)(N * 2));
    ddpm::sample_2d(data, N, kHeldOutSeed, 0, x.data());
    out.source = data + " (a held-out draw)";
  } else {
    x = read_rows(data, mod, &N);
    out.source = existing(data);
  }

  std::vector<int32_t> labels;
  if (K > 0) {
    // --labels; else the training labels with the training data (when config.json
    // records them); else the IDX label file next to the images.
    std::string lp = r.labels;
    if (lp.empty() && r.data.empty()) lp = config_string(r.run_dir, "labels");
    if (lp.empty()) lp = idx_label_file(out.source);
    if (lp.empty())
      user_error_noloc(fmt::format("the model conditions on a label with {} classes, but {} comes without labels", K,
                                   out.source),
                       "pass --labels FILE.npy with one class index per sample of the data");
    labels = ddpm::read_labels(lp, N, K, out.source);
  }

  // The rows to evaluate: the first n (of the class).
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < N; ++i)
    if (r.cls < 0 || labels[(size_t)i] == r.cls) rows.push_back(i);
  out.available = (int64_t)rows.size();
  if (rows.empty())
    user_error_noloc(fmt::format("{} holds no sample of class {}", out.source, r.cls),
                     "choose another --class, or other data with --data and --labels");
  rows.resize((size_t)std::min<int64_t>(r.n, (int64_t)rows.size()));
  out.n = (int64_t)rows.size();
  out.x.resize((size_t)(out.n * D));
  for (int64_t k = 0; k < out.n; ++k) {
    std::copy(x.begin() + rows[k] * D, x.begin() + (rows[k] + 1) * D, out.x.begin() + k * D);
    if (K > 0) out.labels.push_back(labels[(size_t)rows[k]]);
  }
  out.on_grid = std::all_of(out.x.begin(), out.x.end(), [](float v) {
    const double level = (v + 1.0) * 127.5;
    return v >= -1.000001f && v <= 1.000001f && std::fabs(level - std::round(level)) <= 1e-3;
  });
  return out;
}

}  // namespace ddpm_tools
