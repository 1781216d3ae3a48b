// The evaluator, image sets and cached reference statistics of ddpm-eval --quality and
// --accuracy (see eval_ref.h).
#include "eval_ref.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <xxhash.h>

#include "build.h"
#include "cache.h"
#include "common/atomic_file.h"
#include "common/checksum.h"
#include "common/diag.h"
#include "common/spec_sources.h"
#include "common/stopwatch.h"
#include "runtime/data_source.h"
#include "runtime/idx.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "spec_module.h"

namespace ddpm_tools {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

constexpr const char* kWeightsName = "models/fmnist_classifier.safetensors";
constexpr char kStatsMagic[8] = {'D', 'D', 'P', 'M', 'Q', 'S', '1', '\n'};

// An existing spelling of `file`: as given, or without its .gz.
std::string existing(const std::string& file) {
  std::error_code ec;
  if (!fs::exists(file, ec) && file.ends_with(".gz") && fs::exists(file.substr(0, file.size() - 3), ec))
    return file.substr(0, file.size() - 3);
  return file;
}

std::string hex128(const std::string& bytes) {
  const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

}  // namespace

std::string default_evaluator_weights() {
  std::vector<fs::path> places = {fs::path(kWeightsName)};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) places.push_back(exe.parent_path().parent_path() / "share/ddpmc" / kWeightsName);
#ifdef DDPM_SOURCE_TREE
  places.push_back(fs::path(DDPM_SOURCE_TREE) / kWeightsName);
#endif
  for (const fs::path& p : places)
    if (fs::is_regular_file(p, ec)) return p.string();
  return places.front().string();
}

ddpm::Evaluator load_evaluator(const EvaluatorRequest& r) {
  const std::string weights = r.weights.empty() ? default_evaluator_weights() : r.weights;
  std::error_code ec;
  if (!fs::is_regular_file(weights, ec))
    user_error_noloc(fmt::format("evaluator weights {} do not exist", weights),
                     "pass --evaluator-weights FILE.safetensors (ddpm-train writes RUN/weights.safetensors for a "
                     "classifier spec such as models/fmnist_classifier.ddpm)");
  ModuleFile mf;
  if (!r.so.empty()) {
    mf = {r.so, r.so_checksum, ""};
  } else if (!r.spec.empty()) {
    mf = module_for(r.spec, r.cache_dir);
  } else {
    const auto meta = ddpm::read_safetensors_metadata(weights);
    auto it = meta.find("spec_sources");
    if (it != meta.end() && !it->second.empty()) {
      ddpmc::default_cache_cap();
      ddpmc::BuildOptions opt;
      opt.cache_dir = r.cache_dir;
      const ddpmc::BuiltModule b =
          ddpmc::build_module_sources(ddpmc::SpecSources::from_json(it->second, "weights " + weights), opt);
      mf = {b.so_path, b.checksum, it->second};
    } else {
      const std::string spec = (fs::path(weights).parent_path() / fs::path(weights).stem()).string() + ".ddpm";
      if (!fs::is_regular_file(spec, ec))
        user_error_noloc(fmt::format("evaluator weights {} record no spec source, and there is no {} beside them",
                                     weights, spec),
                         "pass the classifier's spec with --evaluator SPEC.ddpm");
      mf = module_for(spec, r.cache_dir);
    }
  }
  return ddpm::Evaluator::load(mf.so, mf.checksum, weights);
}

ImageSet read_image_set(const std::string& path, int64_t D, int64_t limit, int K, const std::string& labels_path) {
  ImageSet s;
  s.path = existing(path);
  std::error_code ec;
  if (!fs::exists(s.path, ec))
    user_error_noloc(fmt::format("image file {} does not exist", s.path),
                     s.path.find(ddpm::kFashionMnistDir) == 0 ? "install Debian's dataset-fashion-mnist package"
                                                              : "pass an existing IDX image file or .npy array");
  std::vector<int64_t> shape;
  if (s.path.find("idx3-ubyte") != std::string::npos) {
    const ddpm::IdxImages im = ddpm::read_idx_images(s.path);
    shape = {im.n, im.rows, im.cols};
    s.x.resize(im.pixels.size());
    for (size_t i = 0; i < im.pixels.size(); ++i) s.x[i] = im.pixels[i] / 127.5f - 1.0f;
  } else if (fs::path(s.path).extension() == ".npy") {
    ddpm::NpyArray a = ddpm::read_npy(s.path);
    shape = a.shape;
    s.x = std::move(a.data);
    if (a.dtype == "|u1")
      for (float& v : s.x) v = v / 127.5f - 1.0f;
    else if (a.integer)
      user_error_noloc(fmt::format("{} holds {} integers; images are float32/float64 in [-1, 1] or uint8 0..255",
                                   s.path, a.dtype),
                       "convert the array to float32 or uint8");
  } else {
    user_error_noloc(fmt::format("{} is neither an IDX image file nor an .npy array", s.path),
                     "pass IDX images (e.g. t10k-images-idx3-ubyte.gz) or an .npy [N, ...]");
  }
  int64_t per = 1;
  for (size_t k = 1; k < shape.size(); ++k) per *= shape[k];
  if (shape.size() < 2 || per != D || shape[0] < 1)
    user_error_noloc(fmt::format("{} has shape {}, but the images must have {} values each", s.path,
                                 ddpm::shape_string(shape), D),
                     "pass images of the evaluator's input shape");
  for (size_t i = 0; i < s.x.size(); ++i)
    if (!std::isfinite(s.x[i]))
      user_error_noloc(fmt::format("{} holds a non-finite value in sample {}", s.path, (int64_t)i / D), "clean the data");
  s.n = limit > 0 ? std::min(limit, shape[0]) : shape[0];
  s.x.resize((size_t)(s.n * D));
  if (K > 0) {
    std::string lp = labels_path;
    if (lp.empty()) {
      const size_t at = s.path.rfind("images-idx3");
      if (at != std::string::npos) lp = existing(s.path.substr(0, at) + "labels-idx1" + s.path.substr(at + 11));
    }
    if (lp.empty())
      user_error_noloc(fmt::format("{} comes without labels", s.path), "pass --labels FILE.npy with one class per image");
    s.labels = ddpm::read_labels(lp, shape[0], K, s.path);
    s.labels.resize((size_t)s.n);
  }
  return s;
}

std::string train_file_of(const std::string& data) {
  if (data == "fashion-mnist") return std::string(ddpm::kFashionMnistDir) + "/train-images-idx3-ubyte.gz";
  return data;
}

std::string test_file_of(const std::string& train_file) {
  const std::string name = "train-images-idx3-ubyte";
  const size_t pos = train_file.find(name);
  if (pos == std::string::npos) return "";
  std::string t = train_file;
  t.replace(pos, name.size(), "t10k-images-idx3-ubyte");
  std::error_code ec;
  return fs::exists(existing(t), ec) ? t : "";
}

ddpm::FeatureStats reference_stats(const ddpm::Evaluator& ev, const std::string& path, const std::string& cache_dir,
                                   int threads, double* seconds) {
  *seconds = 0;
  const std::string file = existing(path);
  std::error_code ec;
  const fs::path abs = fs::absolute(file, ec);
  const auto size = fs::file_size(file, ec);
  const auto mtime = fs::last_write_time(file, ec).time_since_epoch().count();
  const std::string key = hex128(fmt::format("weights {}\nspec {}\ndata {}\nsize {}\nmtime {}\nF {}\n",
                                             ddpmc::file_checksum(ev.what()), ev.module()->spec_hash, abs.string(),
                                             (uint64_t)size, (int64_t)mtime, ev.features()));
  const fs::path dir = fs::path(cache_dir.empty() ? ddpmc::default_cache_dir() : cache_dir) / "quality";
  const fs::path cached = dir / (key + ".stats");
  const int64_t F = ev.features();
  {
    std::ifstream in(cached, std::ios::binary);
    char magic[8];
    int64_t n = 0, f = 0;
    if (in.read(magic, 8) && std::memcmp(magic, kStatsMagic, 8) == 0 && in.read((char*)&n, 8) &&
        in.read((char*)&f, 8) && f == F && n > 0) {
      ddpm::FeatureStats s;
      s.n = n;
      s.dim = F;
      s.mean.resize((size_t)F);
      s.cov.resize((size_t)(F * F));
      if (in.read((char*)s.mean.data(), 8 * F) && in.read((char*)s.cov.data(), 8 * F * F) && in.peek() == EOF)
        return s;
    }
  }
  const auto t0 = ddpmc::Clock::now();
  const ImageSet set = read_image_set(file, ev.input_numel());
  std::vector<float> feats((size_t)(set.n * F));
  ev.run(set.x.data(), set.n, threads, feats.data(), nullptr);
  ddpm::FeatureStats s = ddpm::feature_stats(feats.data(), set.n, F, threads);
  *seconds = ddpmc::seconds_since(t0);
  std::string bytes(kStatsMagic, 8);
  bytes.append((const char*)&s.n, 8);
  bytes.append((const char*)&s.dim, 8);
  bytes.append((const char*)s.mean.data(), 8 * (size_t)F);
  bytes.append((const char*)s.cov.data(), 8 * (size_t)(F * F));
  try {
    fs::create_directories(dir);
    ddpmc::write_file_atomic(cached.string(), bytes, "reference statistics");
  } catch (const std::exception& e) {
    fmt::print(stderr, "note: could not cache the reference statistics in {}: {}\n", cached.string(), e.what());
  }
  return s;
}

}  // namespace ddpm_tools
