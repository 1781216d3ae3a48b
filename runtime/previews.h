// What the trainer draws into its run directory so a user can watch the model
// learn: sample previews from the EMA weights (--sample-every N:
// samples/step_NNNNNNN.png, a scatter plot for 2-D points or an image grid) and
// the loss and learning-rate curves from metrics.jsonl (loss.png, redrawn at each
// checkpoint). Both are drawn with Cairo (plot.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

class Module;

class SamplePreviews {
 public:
  // Picks the sampler (ddim with 50 steps if the model has it, else its first
  // sampler with every step) and the sample count (1000 points, or 16 images).
  // Previews are off, with a note on stderr, for a model without samplers or
  // with a data shape that has no picture.
  SamplePreviews(const Module& mod, const std::string& run_dir, bool quiet);
  bool enabled() const { return idx_ >= 0; }
  // Samples from `ema` and writes run_dir/samples/step_NNNNNNN.png, titled with
  // the step and the sampler; returns its path. Scatter plots keep the axes of the
  // first preview (widened only when a later one would not fit), so the frames
  // of a run compare at a glance.
  std::string write(int64_t step, const float* ema) const;
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
