// The training loop (Algorithm 1 of Ho et al. 2020) around a compiled module.
//
// Data flow: compiled .so → Module; parameters initialised from Philox (or restored
// from a checkpoint); then for every step k = 1..steps: a batch x0 (a pure function
// of (seed, k)) → module train_step (loss and gradients; t and ε are drawn inside
// the module from (seed, k)) → optional global-norm clipping → AdamW → EMA.
// Under mpirun (dist.h) each rank computes whole slices of the batch and the
// gradients are added in slice order (sliced_step.h); every rank runs the same
// optimizer step, and only rank 0 writes files.
// Because every random number is counter-based, the whole state after step k is a
// function of (spec, config, k): resuming from a checkpoint continues bit-exactly,
// and the thread count does not change the result.
//
// Outputs in `out`: module.so, checkpoint.safetensors (atomic), metrics.jsonl
// (appended), config.json, loss.png (redrawn at each checkpoint), train.lock,
// with sample_every, samples/step_NNNNNNN.png, with eval_every, quality lines in
// metrics.jsonl and quality.png, and, for a supervised model (no diffusion block),
// weights.safetensors at each checkpoint (weights.h). Progress goes to stderr.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "optim.h"

namespace ddpm {

// What an image-quality metric (TrainConfig::image_quality) returns for a set of
// samples: its value (lower is better, like FID) and, optionally, a few words
// for the progress line ("vs 10000 test images").
struct QualityValue {
  double value = NAN;
  std::string detail;
};

// An image-quality metric: `samples` are n samples [n, data dims...] (images in
// [-1, 1]) of the model being trained; `threads` is the trainer's thread count.
// It may throw ddpmc::UserError (training then stops with that error).
using ImageQualityFn = std::function<QualityValue(const float* samples, int64_t n, int threads)>;

struct TrainConfig {
  std::string model;       // what the user named: a .ddpm spec or a compiled .so (for messages and config.json)
  // The compiled module to load; empty means `model` itself (which must then be a
  // .so: the runtime does not compile specs, tools/spec_module.h does).
  std::string module_so;
  // The checksum module_so must have (common/checksum.h), checked before it is
  // loaded; empty for a .so the user named.
  std::string module_checksum;
  // The spec's own sources as JSON (common/spec_sources.h), written into every
  // checkpoint so the tools can rebuild the module without the run's module.so;
  // empty when training a .so (a resumed run keeps its checkpoint's).
  std::string spec_sources;
  // a built-in 2-D set (moons, swissroll, 8gaussians, checkerboard), a path to an
  // .npy [N, ...] or IDX image file (*idx3-ubyte[.gz], scaled to [-1, 1]), or
  // "fashion-mnist" (the Debian dataset-fashion-mnist training images)
  std::string data;
  std::string labels;      // .npy class indices [N] for a model with a label ("": IDX data finds its label file)
  int64_t steps = 5000;    // the TOTAL number of steps (a resumed run continues up to it)
  int batch = 256;         // the global batch, over all ranks
  // The batch is cut into this many equal slices, computed by the ranks of an
  // mpirun job and added in a fixed order (sliced_step.h): the weights depend on
  // (seed, batch, slices), never on the number of processes or threads. 0 = the
  // checkpoint's value on --resume, else the number of ranks (1 without mpirun,
  // which is the unsliced step).
  int slices = 0;
  int threads = 1;         // per process
  std::string out;         // run directory, created if needed
  uint64_t seed = 0;
  AdamWConfig opt;
  // EMA decay. The effective decay at step k is min(ema_decay, (1 + k) / (10 + k)),
  // so the EMA forgets the random initialisation in short runs.
  float ema_decay = 0.999f;
  float grad_clip = 1.0f;  // max global L2 norm of the gradients; 0 = off
  int64_t ckpt_every = 1000;
  int64_t log_every = 100;
  bool resume = false;
  double minutes = 0;      // wall-time bound; 0 = none
  int warmup = 0;          // linear learning-rate warm-up over this many steps
  // After the warm-up: "constant" keeps opt.lr; "cosine" decays it to 0 at `steps`
  // along half a cosine (learning_rate below).
  std::string lr_schedule = "constant";
  // Every this many steps (0 = never), a preview of samples from the EMA weights is
  // written to out/samples/step_NNNNNNN.png (a scatter plot or an image grid), with
  // at most 50 sampler steps where the sampler can skip steps (previews.h); a
  // signal or `minutes` abandons a preview within one sampler step.
  int64_t sample_every = 0;
  // Every this many steps (0 = never) and at the end of training, rank 0 draws
  // eval_samples samples from the EMA weights with the previews' sampler and
  // appends their quality to metrics.jsonl, redrawing quality.png
  // (eval_every.h). Evaluation never changes the training arithmetic, and its
  // time counts toward neither `minutes` nor steps/s.
  int64_t eval_every = 0;
  int64_t eval_samples = 0;  // 0 = the default: 2000 for 2-D points, 1000 otherwise
  // The metric for data other than 2-D points (which use the sliced Wasserstein
  // distance to fresh data) and its name in metrics.jsonl ("fid"). Set by the tool;
  // when it is empty, eval_every on such a model is a user error.
  ImageQualityFn image_quality;
  std::string image_quality_name;
  bool quiet = false;      // no progress lines (errors and the summary are still printed)
  // Stop (with a checkpoint, as an interruption would) after this step; 0 = run to
  // `steps`. The learning-rate schedule still runs to `steps`.
  int64_t stop_at = 0;
  // The settings the user gave on the command line, by checkpoint metadata key
  // ("lr", "batch", ...: resume.h). On --resume every other setting is the
  // checkpoint's.
  std::set<std::string> given;
};

// The learning rate at training step `step` (1-based): opt.lr * step / warmup
// during the warm-up, then opt.lr ("constant") or
// opt.lr * (1 + cos(pi * (step - warmup) / (steps - warmup))) / 2 ("cosine").
float learning_rate(const TrainConfig& cfg, int64_t step);

// Exit codes of train() besides 0.
constexpr int kTrainNonFinite = 3;     // the loss became NaN/Inf; the last good checkpoint is kept
constexpr int kTrainInterrupted = 130;  // SIGINT/SIGTERM: stopped after the current step, checkpoint written

// Runs training. Returns 0 on success, kTrainNonFinite if the loss became
// non-finite, kTrainInterrupted after Ctrl-C or SIGTERM (acknowledged on stderr at
// once; a preview in flight is abandoned, the step in flight finishes and a
// checkpoint is written; repeated signals change nothing: SIGQUIT or SIGKILL end
// it without a checkpoint).
// Throws ddpmc::UserError for bad input (config, data, checkpoint).
int train(const TrainConfig& cfg);

}  // namespace ddpm
