// Quality during training (ddpm-train --eval-every N, TrainConfig::eval_every):
// every N steps and at the end of training, rank 0 draws M samples from the EMA
// weights with the previews' fast sampler (previews.h FastSampler: at most 50
// steps where the sampler can skip steps), measures them, prints
//   eval at step 2000: swd 0.0123 (2000 samples, ddim 50 steps, 1.2 s)
// and appends one line to run_dir/metrics.jsonl beside the loss lines:
//   {"step": 2000, "elapsed_s": 81.234, "quality": {"metric": "swd", "value": 0.0123,
//    "samples": 2000, "sampler": "ddim", "sampler_steps": 50, "seconds": 1.234}}
// ("floor" is added to the first line of a process for 2-D data; elapsed_s is the
// training time, evaluations excluded), then redraws run_dir/quality.png from every
// quality line in the file.
//
// The metric: for 2-D points, the sliced Wasserstein distance (swd.h) to as many
// fresh points of the training data source, drawn with a seed of their own (so the
// training batches are untouched); its floor is the distance between two such
// draws. For any other data, the caller's TrainConfig::image_quality (FID, wired
// by the tool). Samples start from the same noise at every evaluation, so the
// curve moves with the weights alone. An evaluation reads the EMA weights and
// writes nothing the training reads: training is bitwise the same without it.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "previews.h"
#include "train.h"

namespace ddpm {

class DataSource;
class Module;

// The default sample count of an evaluation: 2000 points or 1000 of anything else.
int64_t eval_sample_count(const Module& mod, const TrainConfig& cfg);

// Throws a ddpmc::UserError when cfg.eval_every is set and the run cannot be
// evaluated: a model without a sampler, data other than 2-D points without
// cfg.image_quality, or samples that do not fit in memory. (Every rank calls it.)
void check_eval_config(const Module& mod, const TrainConfig& cfg);

class QualityEval {
 public:
  // Picks the sampler (probing with `params`) and says what an evaluation runs
  // unless cfg.quiet. `data` and `mod` must outlive it.
  QualityEval(const Module& mod, const DataSource& data, const TrainConfig& cfg, const float* params);
  // Evaluates `ema` at training step `step` (training time `elapsed_s`), appends
  // the line to `metrics`, prints it (after a newline when `tty`, whose progress
  // line has none) and redraws quality.png. Returns false, writing nothing, when
  // `stop` (asked before every sampler step) returned true.
  bool run(int64_t step, double elapsed_s, const float* ema, FILE* metrics, bool tty,
           const std::function<bool()>& stop);
  // The wall time of every evaluation so far, abandoned ones included.
  double seconds() const { return seconds_; }
  // The last step evaluated (-1: none).
  int64_t last_step() const { return last_step_; }
  const std::string& metric() const { return metric_; }

 private:
  double measure(const float* samples, int64_t step, double& floor);

  const Module& mod_;
  const DataSource& data_;
  const TrainConfig& cfg_;
  FastSampler fs_;
  std::string metric_;
  int64_t n_ = 0;
  int batch_ = 1;
  bool points_ = false;
  bool floor_done_ = false;
  double seconds_ = 0;
  int64_t last_step_ = -1;
};

// Reads run_dir/metrics.jsonl and draws run_dir/quality.png from its quality
// lines (those of the last line's metric): the metric against the step and
// against the training time, two panels, with the floor as a dashed line when a
// line records one. Lines that do not parse are skipped; nothing is written
// without a quality line.
void write_quality_plot(const std::string& run_dir);

}  // namespace ddpm
