// Sample previews and the loss plot of a run directory (see previews.h).
#include "previews.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/diag.h"
#include "module.h"
#include "plot.h"
#include "sample.h"

namespace ddpm {

namespace fs = std::filesystem;

namespace {
// Previews use one fixed noise seed, so successive files show the same x_T
// denoised by better and better weights.
constexpr uint64_t kPreviewSeed = 0x5eed;

// Whether sampler `idx` reads its target step s: one step of one sample from
// t = T to two different s, compared bitwise (same input, same noise). A module
// older than ABI version 4 is taken not to.
bool reads_target_step(const Module& mod, int idx, const float* params) {
  const ddpm_module& m = mod.get();
  if (m.abi_version < 4 || m.T < 3) return false;
  const int64_t D = m.data_numel, S = std::max<int64_t>(1, m.sampler_info[idx].state_floats);
  AlignedBuffer arena = alloc_arena(m, 1 + idx, 1);
  AlignedFloats x(D), a(D), b(D), st(S), sa(S), sb(S);
  std::fill(x.data(), x.data() + D, 0.5f);
  std::fill(st.data(), st.data() + S, 0.0f);
  for (auto [s, out, st_out] : {std::tuple{m.T - 1, a.data(), sa.data()}, std::tuple{m.T / 2, b.data(), sb.data()}}) {
    const int rc = m.sampler_step4(idx, arena.data(), 1, params, x.data(), m.T, s, kPreviewSeed, (uint64_t)m.T, out,
                                   0, nullptr, st.data(), st_out, DDPM_STEP_FIRST);
    if (rc != 0) DDPM_ICE(fmt::format("module sampler_step4 returned {} (sampler {})", rc, m.sampler_names[idx]));
  }
  return std::memcmp(a.data(), b.data(), (size_t)D * sizeof(float)) != 0;
}

}  // namespace

FastSampler choose_fast_sampler(const Module& mod, const float* params) {
  const ddpm_module& m = mod.get();
  FastSampler fs;
  if (m.n_samplers < 1) return fs;
  if (is_continuous(m)) {  // every continuous-time sampler takes any grid: the first, at its default steps
    fs.idx = 0;
    fs.strided = true;
    fs.ts = sampling_times(m, std::min(FastSampler::kMaxSteps, m.sample_steps));
    return fs;
  }
  // ddim; else the first sampler that can skip steps; else the first sampler.
  fs.idx = mod.sampler_index("ddim");
  for (int i = 0; i < m.n_samplers && fs.idx < 0; ++i)
    if (reads_target_step(mod, i, params)) fs.idx = i;
  fs.strided = fs.idx >= 0;
  fs.idx = std::max(0, fs.idx);
  fs.ts = sampling_times(m, fs.strided ? std::min(FastSampler::kMaxSteps, m.T) : 0);
  return fs;
}

std::vector<float> run_fast_sampler(const Module& mod, const FastSampler& fs, const float* params, int64_t n,
                                    int batch, uint64_t seed, const std::function<bool()>& stop) {
  DDPM_CHECK(fs.idx >= 0 && n > 0 && batch > 0, "run_fast_sampler without a sampler or samples");
  return run_sampler(mod, params, fs.idx, fs.ts, n, batch, seed, true, nullptr, 0, stop);
}

std::string describe(const Module& mod, const FastSampler& fs) {
  if (fs.idx < 0) return "no sampler";
  const int k = fs.steps();
  return fmt::format("{} ({} step{})", mod->sampler_names[fs.idx], k, k == 1 ? "" : "s");
}

SamplePreviews::SamplePreviews(const Module& mod, const std::string& run_dir, const float* params, bool quiet)
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
  fs_ = choose_fast_sampler(mod, params);
  n_ = points ? 1000 : 16;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (quiet) return;
  if (fs_.strided)
    fmt::print(stderr, "previews: sampler '{}' with {} steps, {} {}\n", sampler(), steps(), n_,
               points ? "points" : "images");
  else
    fmt::print(stderr,
               "note: previews run sampler '{}' over all {} steps (it ignores its target step s, so it cannot skip "
               "steps): each costs {} sampler steps of {} {}; Ctrl-C and --minutes still stop within one step\n",
               sampler(), steps(), steps(), n_, points ? "points" : "images");
}

std::string SamplePreviews::sampler() const { return fs_.idx >= 0 ? mod_->sampler_names[fs_.idx] : ""; }

std::string SamplePreviews::title(int64_t step) const {
  return fmt::format("step {}, {}", step, describe(mod_, fs_));
}

std::string SamplePreviews::write(int64_t step, const float* ema, const std::function<bool()>& stop) const {
  std::vector<float> x = run_fast_sampler(mod_, fs_, ema, n_, (int)n_, kPreviewSeed, stop);
  if (x.empty()) return "";
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
