// Evaluations during training and quality.png (see eval_every.h).
#include "eval_every.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/diag.h"
#include "common/input_limits.h"
#include "common/stopwatch.h"
#include "data_source.h"
#include "module.h"
#include "plot.h"
#include "swd.h"

namespace ddpm {

namespace fs = std::filesystem;
using ddpmc::user_error_noloc;

namespace {

// Fixed seeds: the noise x_T of every evaluation, and the two fresh draws of the
// data (the reference and, for the floor, its partner), keyed by the step.
constexpr uint64_t kEvalNoiseSeed = 0xe7a1;
constexpr uint64_t kRefSeed = 0x7ef0;
constexpr uint64_t kFloorSeed = 0xf100;

bool is_points(const ddpm_module& m) { return m.data_rank == 1 && m.data_dims[0] == 2; }

// n rows of the data source for (seed, step), drawn batch by batch.
std::vector<float> fresh_data(const DataSource& data, int64_t D, int64_t n, uint64_t seed, uint64_t step) {
  std::vector<float> x((size_t)(n * D));
  constexpr int64_t kChunk = 1 << 16;
  for (int64_t r = 0; r < n; r += kChunk) {
    const int b = (int)std::min(kChunk, n - r);
    data.fill(seed, step, b, x.data() + r * D, nullptr, r);
  }
  return x;
}

// A JSON number, or null for NaN and infinities.
std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : "null"; }

}  // namespace

int64_t eval_sample_count(const Module& mod, const TrainConfig& cfg) {
  if (cfg.eval_samples > 0) return cfg.eval_samples;
  return is_points(mod.get()) ? 2000 : 1000;
}

void check_eval_config(const Module& mod, const TrainConfig& cfg) {
  if (cfg.eval_every <= 0) return;
  const ddpm_module& m = mod.get();
  if (m.n_samplers < 1)
    user_error_noloc("--eval-every needs a sampler, and the model has none", "drop --eval-every");
  if (!is_points(m) && !cfg.image_quality)
    user_error_noloc(fmt::format("--eval-every on images needs the evaluator: this ddpm-train has no quality metric "
                                 "for {} samples (2-D points use the sliced Wasserstein distance)",
                                 mod.data_shape_string()),
                     "drop --eval-every, or evaluate checkpoints afterwards with ddpm-eval");
  const int64_t n = eval_sample_count(mod, cfg);
  ddpmc::check_memory(2.0 * (double)n * (double)m.data_numel * sizeof(float),
                      fmt::format("--eval-samples {}", n), "pass a smaller --eval-samples");
}

QualityEval::QualityEval(const Module& mod, const DataSource& data, const TrainConfig& cfg, const float* params)
    : mod_(mod), data_(data), cfg_(cfg) {
  const ddpm_module& m = mod.get();
  points_ = is_points(m);
  fs_ = choose_fast_sampler(mod, params);
  DDPM_CHECK(fs_.idx >= 0, "QualityEval without a sampler (check_eval_config)");
  metric_ = points_ ? "swd" : cfg.image_quality_name.empty() ? "quality" : cfg.image_quality_name;
  n_ = eval_sample_count(mod, cfg);
  // Points are cheap; other samples go in chunks no larger than the training batch,
  // whose (larger) training arena already fits.
  batch_ = (int)std::min<int64_t>(n_, points_ ? 2000 : std::max(cfg.batch, 16));
  if (cfg.quiet) return;
  fmt::print(stderr, "evaluation every {} steps: {} of {} samples from sampler {}{}\n", cfg.eval_every, metric_, n_,
             describe(mod, fs_),
             fs_.strided ? "" : " (it cannot skip steps, so each evaluation runs all of them)");
}

double QualityEval::measure(const float* samples, int64_t step, double& floor) {
  if (!points_) {
    const QualityValue q = cfg_.image_quality(samples, n_, cfg_.threads);
    return q.value;
  }
  const std::vector<float> ref = fresh_data(data_, 2, n_, kRefSeed, (uint64_t)step);
  if (!floor_done_) {
    const std::vector<float> other = fresh_data(data_, 2, n_, kFloorSeed, (uint64_t)step);
    floor = sliced_wasserstein_2d(ref.data(), n_, other.data(), n_);
  }
  return sliced_wasserstein_2d(samples, n_, ref.data(), n_);
}

bool QualityEval::run(int64_t step, double elapsed_s, const float* ema, FILE* metrics, bool tty,
                      const std::function<bool()>& stop) {
  const ddpmc::Clock::time_point t0 = ddpmc::Clock::now();
  auto took = [&] { return ddpmc::seconds_since(t0); };
  const std::vector<float> x = run_fast_sampler(mod_, fs_, ema, n_, batch_, kEvalNoiseSeed, stop);
  if (x.empty()) {
    seconds_ += took();
    return false;
  }
  double floor = NAN;
  const double value = measure(x.data(), step, floor);
  const double s = took();
  last_step_ = step;
  const std::string sampler = mod_->sampler_names[fs_.idx];
  std::string floor_json, floor_text;
  if (points_ && !floor_done_) {
    floor_done_ = true;
    floor_json = fmt::format(", \"floor\": {}", json_number(floor));
    floor_text = fmt::format("; floor {:.4g} (two draws of the data)", floor);
  }
  fmt::print(metrics,
             "{{\"step\": {}, \"elapsed_s\": {:.3f}, \"quality\": {{\"metric\": {}, \"value\": {}, \"samples\": {}, "
             "\"sampler\": {}, \"sampler_steps\": {}, \"seconds\": {:.3f}{}}}}}\n",
             step, elapsed_s, nlohmann::json(metric_).dump(), json_number(value), n_, nlohmann::json(sampler).dump(),
             fs_.steps(), s, floor_json);
  std::fflush(metrics);
  write_quality_plot(cfg_.out);
  seconds_ += took();
  if (!cfg_.quiet) {
    fmt::print(stderr, "{}eval at step {}: {} {:.4g} ({} samples, {} {} steps, {:.1f} s){}\n", tty ? "\n" : "", step,
               metric_, value, n_, sampler, fs_.steps(), s, floor_text);
    std::fflush(stderr);
  }
  return true;
}

void write_quality_plot(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  struct Point {
    double step, seconds, value;
    std::string metric;
  };
  std::vector<Point> pts;
  double floor = NAN;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("quality") || !j["quality"].is_object()) continue;
    const nlohmann::json& q = j["quality"];
    if (!j.contains("step") || !j["step"].is_number() || !q.contains("metric") || !q["metric"].is_string()) continue;
    const double value = q.contains("value") && q["value"].is_number() ? q["value"].get<double>() : NAN;
    const double secs = j.contains("elapsed_s") && j["elapsed_s"].is_number() ? j["elapsed_s"].get<double>() : NAN;
    pts.push_back({j["step"].get<double>(), secs, value, q["metric"].get<std::string>()});
    if (q.contains("floor") && q["floor"].is_number()) floor = q["floor"].get<double>();
  }
  if (pts.empty()) return;
  const std::string metric = pts.back().metric;
  std::vector<double> steps, seconds, values;
  for (const Point& p : pts)
    if (p.metric == metric) {
      steps.push_back(p.step);
      seconds.push_back(p.seconds);
      values.push_back(p.value);
    }
  write_quality_plot_png((fs::path(run_dir) / "quality.png").string(), metric, steps, seconds, values,
                         metric == "swd" ? floor : NAN);
}

}  // namespace ddpm
