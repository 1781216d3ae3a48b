// ddpm-eval --quality and --accuracy (see eval_quality.h): drawing or reading the
// samples, running the evaluator, and reporting FID, precision/recall, the class
// histogram and class accuracy (images) or the sliced Wasserstein distance (2-D).
//
// Dimension legend: N samples, D values per sample, F evaluator features, K classes.
#include "eval_quality.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "common/stopwatch.h"
#include "eval_json.h"
#include "runtime/data2d.h"
#include "runtime/data_source.h"
#include "runtime/idx.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "runtime/sample.h"
#include "runtime/swd.h"
#include "spec_module.h"

namespace ddpm_tools {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;
using ddpmc::Clock;
using nlohmann::json;

namespace {

// Seeds of the fresh 2-D draws (never training steps: those use step >= 1).
constexpr uint64_t kFreshSeedA = 0x5a11, kFreshSeedB = 0x5a12;

using ddpmc::seconds_since;

bool is_supervised(const ddpm_module& m) { return m.abi_version >= 6 && m.supervised; }

std::string config_data(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "config.json");
  const json j = in ? json::parse(in, nullptr, false) : json();
  return j.is_object() && j.contains("data") && j["data"].is_string() ? j["data"].get<std::string>() : "";
}

// The sampler and step count: --sampler/--steps, else ddim with 50 steps, else the first.
std::pair<int, int> pick_sampler(const QualityConfig& cfg, const ddpm::Module& mod) {
  const ddpm_module& m = mod.get();
  std::string name = cfg.sampler;
  int steps = cfg.steps;
  if (name.empty()) {
    name = mod.sampler_index("ddim") >= 0 ? "ddim" : (m.n_samplers > 0 ? m.sampler_names[0] : "");
    if (steps < 0) steps = name == "ddim" ? std::min(50, m.T) : 0;
    fmt::print(stderr, "sampling with '{}' over {} steps (--sampler and --steps choose another)\n", name,
               steps == 0 ? (ddpm::is_continuous(m) ? m.sample_steps : m.T) : steps);
  }
  const int idx = mod.sampler_index(name);
  if (idx < 0)
    user_error_noloc(fmt::format("the model has no sampler '{}'", name), "its samplers: " + mod.sampler_list());
  return {idx, std::max(steps, 0)};
}

// N samples [N, D]; for a class-conditional model sample i has class i % K (or --class k),
// recorded in `intended`.
std::vector<float> draw(const QualityConfig& cfg, const ddpm::Module& mod, const float* params,
                        std::vector<int32_t>& intended) {
  const ddpm_module& m = mod.get();
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  const auto [idx, steps] = pick_sampler(cfg, mod);
  const std::vector<double> ts = ddpm::sampling_times(m, steps);
  const int64_t D = m.data_numel, N = cfg.n;
  const int batch = (int)std::min<int64_t>(N, 250);
  bool has_class = false;
  for (int k = 0; K > 0 && k < m.sampler_info[idx].n_args; ++k)
    has_class |= std::string(m.sampler_info[idx].arg_names[k]) == "class";
  if (K == 0 || !has_class) {
    if (K > 0) fmt::print(stderr, "note: sampler '{}' has no 'class' argument; no class accuracy\n", m.sampler_names[idx]);
    return ddpm::run_sampler(mod, params, idx, ts, N, batch, cfg.seed, cfg.quiet);
  }
  std::vector<float> x((size_t)(N * D));
  intended.resize((size_t)N);
  const int one = cfg.cls == "all" ? -1 : std::stoi(cfg.cls);
  for (int c = 0; c < K; ++c) {
    if (one >= 0 && c != one) continue;
    std::vector<int64_t> rows;  // the samples of class c
    for (int64_t i = 0; i < N; ++i)
      if (one >= 0 || i % K == c) rows.push_back(i);
    if (rows.empty()) continue;
    const std::vector<float> args = ddpm::sampler_args(m, idx, {fmt::format("class={}", c)});
    // Global indices c * N .. : each class's starting noise differs from the others'.
    const std::vector<float> xc =
        ddpm::run_sampler(mod, params, idx, ts, (int64_t)rows.size(), batch, cfg.seed, cfg.quiet, args.data(), c * N);
    for (size_t r = 0; r < rows.size(); ++r) {
      std::copy(xc.begin() + (int64_t)r * D, xc.begin() + (int64_t)(r + 1) * D, x.begin() + rows[r] * D);
      intended[(size_t)rows[r]] = c;
    }
  }
  return x;
}

// --samples FILE.npy: [N, data dims...] or [N, D] floats.
std::vector<float> read_samples(const std::string& path, const ddpm::Module& mod, int64_t* n) {
  ddpm::NpyArray a = ddpm::read_npy(path);
  const ddpm_module& m = mod.get();
  std::vector<int64_t> want = {a.shape.empty() ? 0 : a.shape[0]};
  for (int r = 0; r < m.data_rank; ++r) want.push_back(m.data_dims[r]);
  const bool flat = a.shape.size() == 2 && a.shape[1] == m.data_numel;
  if (a.integer || a.shape.size() < 2 || a.shape[0] < 1 || (a.shape != want && !flat))
    user_error_noloc(fmt::format("--samples {} is {} {}, but the run's samples are float {} each", path, a.dtype,
                                 ddpm::shape_string(a.shape), mod.data_shape_string()),
                     fmt::format("pass samples written by `ddpm-sample RUN --out FILE.npy` (float32 [N, {}])",
                                 mod.data_shape_string().substr(1, mod.data_shape_string().size() - 2)));
  *n = a.shape[0];
  return std::move(a.data);
}

void write_json(const QualityConfig& cfg, const json& q) {
  const std::string out = cfg.json.empty() ? eval_json_path(cfg.run_dir) : cfg.json;
  if (cfg.json.empty())  // keep what --bound and --nll wrote
    update_eval_json(out, [&](json& j) { j["quality"] = q; });
  else
    ddpmc::write_file_atomic(out, q.dump(2) + "\n", "evaluation");
  if (!cfg.quiet) fmt::print(stderr, "wrote {}\n", out);
}

int quality_2d(const QualityConfig& cfg, const ddpm::Module& mod, const float* params, json& q) {
  const std::string data = config_data(cfg.run_dir);
  const auto& names = ddpm::dataset_2d_names();
  if (std::find(names.begin(), names.end(), data) == names.end())
    user_error_noloc(fmt::format("--quality of 2-D points compares with fresh draws of a built-in set, but {} was "
                                 "trained on '{}'",
                                 cfg.run_dir, data),
                     "train on " + ddpm::DataSource::names());
  const Clock::time_point t0 = Clock::now();
  int64_t N = cfg.n;
  std::vector<int32_t> intended;
  std::vector<float> x = cfg.samples.empty() ? draw(cfg, mod, params, intended) : read_samples(cfg.samples, mod, &N);
  const double t_sample = seconds_since(t0);
  const Clock::time_point t1 = Clock::now();
  std::vector<float> a((size_t)(2 * N)), b((size_t)(2 * N));
  ddpm::sample_2d(data, N, kFreshSeedA, 0, a.data());
  ddpm::sample_2d(data, N, kFreshSeedB, 0, b.data());
  const double swd = ddpm::sliced_wasserstein_2d(x.data(), N, a.data(), N);
  const double floor = ddpm::sliced_wasserstein_2d(b.data(), N, a.data(), N);
  const double t_stats = seconds_since(t1);
  fmt::print("sliced Wasserstein distance {:.5f} to {} fresh points of {} (floor {:.5f}: two fresh draws)\n", swd, N,
             data, floor);
  fmt::print("time: sampling {:.1f} s, statistics {:.2f} s\n", t_sample, t_stats);
  q = {{"kind", "2d"}, {"n", N}, {"data", data}, {"swd", swd}, {"swd_floor", floor},
       {"seconds", {{"sampling", t_sample}, {"statistics", t_stats}}}};
  return 0;
}

}  // namespace

int run_quality(const QualityConfig& cfg) {
  const ModuleFile mf = module_for_run(cfg.run_dir, cfg.trust_module, cfg.cache_dir);
  const auto [so, ckpt, checksum] = ddpm::run_files(cfg.run_dir, "evaluate DIR", mf.so, mf.checksum);
  ddpm::Module mod(so, checksum);
  const ddpm_module& m = mod.get();
  if (is_supervised(m))
    user_error_noloc(fmt::format("{} is a supervised model (a classifier), not a diffusion model: --quality measures "
                                 "the samples of a diffusion run",
                                 cfg.run_dir),
                     fmt::format("measure its accuracy with `ddpm-eval {} --accuracy`, or pass it as --evaluator",
                                 cfg.run_dir));
  const int K = m.abi_version >= 4 ? m.label_classes : 0;
  if (cfg.cls != "all" && (K == 0 || std::stoi(cfg.cls) >= K))
    user_error_noloc(fmt::format("--class {}: the model has {} classes", cfg.cls, K),
                     K ? fmt::format("use all or 0..{}", K - 1) : "leave out --class for an unconditional model");
  ddpm::AlignedFloats params(m.param_floats);
  ddpm::load_weights(ckpt, mod, cfg.use_ema, params.data());
  json q;
  if (m.data_rank == 1 && m.data_dims[0] == 2) {
    quality_2d(cfg, mod, params.data(), q);
    write_json(cfg, q);
    return 0;
  }

  // The evaluator first: its errors (missing weights, wrong input shape) before any sampling.
  const ddpm::Evaluator ev = load_evaluator(cfg.evaluator);
  ev.require_input(m, cfg.run_dir);
  const std::string data = config_data(cfg.run_dir);
  const std::string train = train_file_of(data), test = test_file_of(train);
  if (train.empty())
    user_error_noloc(fmt::format("cannot tell which data {} was trained on (config.json has no \"data\")",
                                 cfg.run_dir),
                     "train the run with ddpm-train, which records it");

  const Clock::time_point t0 = Clock::now();
  int64_t N = cfg.n;
  std::vector<int32_t> intended;
  std::vector<float> x;
  if (cfg.samples.empty()) {
    x = draw(cfg, mod, params.data(), intended);
  } else {
    x = read_samples(cfg.samples, mod, &N);
    if (K > 0) fmt::print(stderr, "note: --samples carry no intended classes; no class accuracy\n");
  }
  if (N < 4) user_error_noloc(fmt::format("--quality needs at least 4 samples (got {})", N), "use -n 1000");
  const double t_sample = seconds_since(t0);

  const Clock::time_point t1 = Clock::now();
  const int64_t F = ev.features();
  const int Kev = ev.classes();
  std::vector<float> feats((size_t)(N * F)), logits((size_t)(N * Kev));
  ev.run(x.data(), N, cfg.threads, feats.data(), logits.data());
  const ImageSet real = read_image_set(test.empty() ? train : test, ev.input_numel(), N);
  std::vector<float> real_feats((size_t)(real.n * F));
  ev.run(real.x.data(), real.n, cfg.threads, real_feats.data(), nullptr);
  const double t_feat = seconds_since(t1);

  const Clock::time_point t2 = Clock::now();
  double t_ref_train = 0, t_ref_test = 0;
  const ddpm::FeatureStats ref_train = reference_stats(ev, train, cfg.cache_dir, cfg.threads, &t_ref_train);
  ddpm::FeatureStats ref_test;
  if (!test.empty()) ref_test = reference_stats(ev, test, cfg.cache_dir, cfg.threads, &t_ref_test);
  const ddpm::FeatureStats st = ddpm::feature_stats(feats.data(), N, F, cfg.threads);
  const double fid_train = ddpm::frechet_distance(st, ref_train);
  const double fid_test = test.empty() ? 0 : ddpm::frechet_distance(st, ref_test);
  const ddpm::PrecisionRecall pr =
      ddpm::precision_recall(real_feats.data(), real.n, feats.data(), N, F, 3, cfg.threads);
  const ddpm::ClassReport cr = ddpm::class_report(logits.data(), N, Kev, intended);
  const double t_stats = seconds_since(t2);

  const std::vector<std::string> names = ddpm::class_row_labels(data, Kev);
  fmt::print("FID {:.3f} vs the training set ({} images of {})\n", fid_train, ref_train.n, train);
  if (!test.empty()) fmt::print("FID {:.3f} vs the test set ({} images of {})\n", fid_test, ref_test.n, test);
  fmt::print("precision {:.4f}, recall {:.4f} (k = 3, {} samples vs {} images of {})\n", pr.precision, pr.recall, N,
             real.n, real.path);
  fmt::print("predicted classes:");
  json hist = json::array();
  for (int c = 0; c < Kev; ++c) {
    fmt::print("{} {} {:.1f}%", c ? "," : "", names[(size_t)c], 100.0 * (double)cr.predicted[(size_t)c] / (double)N);
    hist.push_back(cr.predicted[(size_t)c]);
  }
  fmt::print("\n");
  q = {{"kind", "image"}, {"n", N}, {"evaluator", ev.what()}, {"evaluator_spec_hash", ev.module()->spec_hash},
       {"fid_train", fid_train}, {"train", train}, {"train_n", ref_train.n},
       {"precision", pr.precision}, {"recall", pr.recall}, {"k", pr.k}, {"real", real.path}, {"real_n", real.n},
       {"predicted_classes", hist}, {"seed", cfg.seed}, {"spec_hash", m.spec_hash}};
  if (!test.empty()) {
    q["fid_test"] = fid_test;
    q["test"] = test;
    q["test_n"] = ref_test.n;
  }
  q["samples"] = cfg.samples.empty() ? json(fmt::format("sampler {}", cfg.sampler.empty() ? "default" : cfg.sampler))
                                     : json(cfg.samples);
  if (!intended.empty() && Kev == K) {
    fmt::print("accuracy of the evaluator vs the intended class: {:.2f}% ({}/{})\n", 100 * cr.accuracy(),
               cr.correct_all, N);
    json per = json::array();
    for (int c = 0; c < K; ++c) {
      if (cr.total[(size_t)c] == 0) continue;
      fmt::print("  {}: {:.1f}% ({}/{})\n", names[(size_t)c],
                 100.0 * (double)cr.correct[(size_t)c] / (double)cr.total[(size_t)c], cr.correct[(size_t)c],
                 cr.total[(size_t)c]);
      per.push_back({{"class", c}, {"correct", cr.correct[(size_t)c]}, {"n", cr.total[(size_t)c]}});
    }
    q["accuracy"] = cr.accuracy();
    q["accuracy_per_class"] = per;
  } else if (!intended.empty()) {
    fmt::print(stderr, "note: the model has {} classes and the evaluator {}; no class accuracy\n", K, Kev);
  }
  const double t_ref = t_ref_train + t_ref_test;
  fmt::print("time: sampling {:.1f} s, features {:.1f} s, statistics {:.1f} s ({})\n", t_sample, t_feat, t_stats,
             t_ref > 0 ? fmt::format("of which reference statistics {:.1f} s, cached for next time", t_ref)
                       : std::string("reference statistics from the cache"));
  q["seconds"] = {{"sampling", t_sample}, {"features", t_feat}, {"statistics", t_stats},
                  {"reference", t_ref_train + t_ref_test}};
  write_json(cfg, q);
  return 0;
}

int run_accuracy(const AccuracyConfig& cfg) {
  EvaluatorRequest er = cfg.evaluator;
  std::error_code ec;
  if (fs::is_directory(cfg.target, ec)) {
    // A classifier run: its module from the checkpoint's source, its EMA weights.
    const ModuleFile mf = module_for_run(cfg.target, cfg.trust_module, er.cache_dir);
    const fs::path w = fs::path(cfg.target) / "weights.safetensors";
    er.weights = fs::exists(w, ec) ? w.string() : (fs::path(cfg.target) / "checkpoint.safetensors").string();
    if (er.spec.empty()) {
      er.so = mf.so;
      er.so_checksum = mf.checksum;
    }
  } else {
    er.weights = cfg.target;
  }
  const ddpm::Evaluator ev = load_evaluator(er);
  const std::string dir = ddpm::kFashionMnistDir;
  const std::string path = cfg.data == "t10k"    ? dir + "/t10k-images-idx3-ubyte.gz"
                           : cfg.data == "train" ? dir + "/train-images-idx3-ubyte.gz"
                                                 : cfg.data;
  const int K = ev.classes();
  const ImageSet set = read_image_set(path, ev.input_numel(), 0, K, cfg.labels);
  std::vector<float> logits((size_t)(set.n * K));
  const Clock::time_point t0 = Clock::now();
  ev.run(set.x.data(), set.n, cfg.threads, nullptr, logits.data());
  const ddpm::ClassReport cr = ddpm::class_report(logits.data(), set.n, K, set.labels);
  fmt::print("accuracy {:.2f}% ({}/{}) on {}\n", 100 * cr.accuracy(), cr.correct_all, set.n, set.path);
  fmt::print(stderr, "classified {} images in {:.1f} s\n", set.n, seconds_since(t0));
  return 0;
}

}  // namespace ddpm_tools
