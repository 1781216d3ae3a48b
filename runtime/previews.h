// What the trainer draws into its run directory so a user can watch the model
// learn: sample previews from the EMA weights (--sample-every N:
// samples/step_NNNNNNN.png, a scatter plot for 2-D points or an image grid) and
// the loss and learning-rate curves from metrics.jsonl (loss.png, redrawn at each
// checkpoint). Both are drawn with Cairo (plot.h).
//
// A preview is bounded and interruptible: it runs the model's `ddim` sampler, else
// its first sampler that reads its target step s, with at most kPreviewSteps
// strided steps; when every sampler ignores s (like an ancestral `ddpm`, which
// steps one t at a time) the first one runs all T steps, and the trainer says so
// once. The
// trainer's stop check is asked before every reverse step, so Ctrl-C or the time
// limit abandon a preview within one sampler step. The evaluations during
// training (eval_every.h) sample with the same choice (FastSampler).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ddpm {

class Module;

// The sampler a preview or an evaluation during training runs, and its steps (see
// above): chosen once per run.
struct FastSampler {
  static constexpr int kMaxSteps = 50;
  int idx = -1;          // the module's sampler index; -1: the model has no sampler
  std::vector<double> ts;  // the times (sample.h sampling_times)
  bool strided = false;  // false: the sampler ignores s, so it runs all T steps
  int steps() const { return ts.empty() ? 0 : (int)ts.size() - 1; }
};

// The model's `ddim`, else its first sampler that reads its target step s (probed
// with `params`), with at most kMaxSteps strided steps; else its first sampler over
// all T steps. idx = -1 when the model has no sampler.
FastSampler choose_fast_sampler(const Module& mod, const float* params);

// n samples [n, data_numel] from `params` with sampler `fs`, `batch` at a time, x_T
// keyed by (seed, sample index); empty when `stop` (asked before every sampler
// step) returned true.
std::vector<float> run_fast_sampler(const Module& mod, const FastSampler& fs, const float* params, int64_t n,
                                    int batch, uint64_t seed, const std::function<bool()>& stop);

// "ddim (50 steps)".
std::string describe(const Module& mod, const FastSampler& fs);

class SamplePreviews {
 public:
  static constexpr int kPreviewSteps = FastSampler::kMaxSteps;
  // Picks the sampler and its steps (see above; `params` serve to probe whether
  // the sampler reads s) and the sample count (1000 points, or 16 images), and
  // says on stderr what a preview runs unless `quiet`. Previews are off, with a
  // note, for a model without samplers or with a data shape that has no picture.
  SamplePreviews(const Module& mod, const std::string& run_dir, const float* params, bool quiet);
  bool enabled() const { return fs_.idx >= 0; }
  // Samples from `ema` and writes run_dir/samples/step_NNNNNNN.png, titled with
  // the step and the sampler; returns its path, or "" when `stop` (asked before
  // every sampler step) returned true. Scatter plots keep the axes of the first
  // preview (widened only when a later one would not fit), so the frames of a run
  // compare at a glance.
  std::string write(int64_t step, const float* ema, const std::function<bool()>& stop = nullptr) const;
  // The sampler's name and its number of reverse steps (for messages and tests).
  std::string sampler() const;
  int steps() const { return fs_.steps(); }
  // The title of the preview at `step`: "step 1000, ddim (50 steps)".
  std::string title(int64_t step) const;
  // The half-width of the scatter plots so far (0 before the first one).
  float scatter_lim() const { return lim_; }

 private:
  const Module& mod_;
  std::string dir_;
  FastSampler fs_;
  int64_t n_ = 0;
  mutable float lim_ = 0;  // the scatter plots' half-width, once the first preview has set it
};

// Reads run_dir/metrics.jsonl and draws run_dir/loss.png: the loss (log scale)
// and the learning rate against the step. Lines that do not parse are skipped;
// nothing is written without at least one point.
void write_loss_plot(const std::string& run_dir);

}  // namespace ddpm
