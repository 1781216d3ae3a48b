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
// limit abandon a preview within one sampler step.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ddpm {

class Module;

class SamplePreviews {
 public:
  static constexpr int kPreviewSteps = 50;
  // Picks the sampler and its steps (see above; `params` serve to probe whether
  // the sampler reads s) and the sample count (1000 points, or 16 images), and
  // says on stderr what a preview runs unless `quiet`. Previews are off, with a
  // note, for a model without samplers or with a data shape that has no picture.
  SamplePreviews(const Module& mod, const std::string& run_dir, const float* params, bool quiet);
  bool enabled() const { return idx_ >= 0; }
  // Samples from `ema` and writes run_dir/samples/step_NNNNNNN.png, titled with
  // the step and the sampler; returns its path, or "" when `stop` (asked before
  // every sampler step) returned true. Scatter plots keep the axes of the first
  // preview (widened only when a later one would not fit), so the frames of a run
  // compare at a glance.
  std::string write(int64_t step, const float* ema, const std::function<bool()>& stop = nullptr) const;
  // The sampler's name and its number of reverse steps (for messages and tests).
  std::string sampler() const;
  int steps() const { return (int)ts_.size() - 1; }
  // The title of the preview at `step`: "step 1000, ddim (50 steps)".
  std::string title(int64_t step) const;
  // The half-width of the scatter plots so far (0 before the first one).
  float scatter_lim() const { return lim_; }

 private:
  const Module& mod_;
  std::string dir_;
  int idx_ = -1;
  std::vector<int> ts_;
  int64_t n_ = 0;
  mutable float lim_ = 0;  // the scatter plots' half-width, once the first preview has set it
};

// Reads run_dir/metrics.jsonl and draws run_dir/loss.png: the loss (log scale)
// and the learning rate against the step. Lines that do not parse are skipped;
// nothing is written without at least one point.
void write_loss_plot(const std::string& run_dir);

}  // namespace ddpm
