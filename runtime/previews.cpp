// Sample previews and the loss plot of a run directory (see previews.h).
#include "previews.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "module.h"
#include "plot.h"
#include "sample.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {
// Previews use one fixed noise seed, so successive files show the same x_T
// denoised by better and better weights.
constexpr uint64_t kPreviewSeed = 0x5eed;
}  // namespace

SamplePreviews::SamplePreviews(const Module& mod, const std::string& run_dir, bool quiet)
    : mod_(mod), dir_((fs::path(run_dir) / "samples").string()) {
  const ddpm_module& m = mod.get();
  const bool points = m.data_rank == 1 && m.data_dims[0] == 2;
  const bool images = m.data_rank == 3 && (m.data_dims[0] == 1 || m.data_dims[0] == 3);
  if (m.n_samplers < 1 || (!points && !images)) {
    if (!quiet)
      fmt::print(stderr, "note: no sample previews: {}\n",
                 m.n_samplers < 1 ? "the model has no sampler" : "only [2] points and [1|3, H, W] images are drawn");
    return;
  }
  idx_ = std::max(0, mod.sampler_index("ddim"));
  ts_ = sampling_steps(m.T, mod.sampler_index("ddim") >= 0 ? std::min(50, m.T) : 0);
  n_ = points ? 1000 : 16;
  std::error_code ec;
  fs::create_directories(dir_, ec);
}

std::string SamplePreviews::title(int64_t step) const {
  const size_t k = ts_.size() - 1;  // ts_ is [t_0 = 0, t_1, ..., t_K]
  return fmt::format("step {}, {} ({} step{})", step, mod_.get().sampler_info[idx_].name, k, k == 1 ? "" : "s");
}

std::string SamplePreviews::write(int64_t step, const float* ema) const {
  std::vector<float> x = run_sampler(mod_, ema, idx_, ts_, n_, (int)n_, kPreviewSeed, true);
  const std::string path = (fs::path(dir_) / fmt::format("step_{:07}.png", step)).string();
  const ddpm_module& m = mod_.get();
  if (m.data_rank == 1 && m.data_dims[0] == 2) lim_ = std::max(lim_, scatter_limit(x.data(), n_));
  write_samples_png(path, mod_, x.data(), n_, title(step), lim_);
  return path;
}

void write_loss_plot(const std::string& run_dir) {
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::vector<double> steps, loss, lr;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step") || !j.contains("loss") || !j.contains("lr")) continue;
    if (!j["step"].is_number() || !j["loss"].is_number() || !j["lr"].is_number()) continue;
    steps.push_back(j["step"].get<double>());
    loss.push_back(j["loss"].get<double>());
    lr.push_back(j["lr"].get<double>());
  }
  if (steps.empty()) return;
  write_training_plot_png((fs::path(run_dir) / "loss.png").string(), steps, loss, lr);
}

}  // namespace ddpm
