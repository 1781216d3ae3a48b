// ddpm-train: the command line over ddpm::train (runtime/train.h).
//
//   ddpm-train MODEL --data moons --steps 4000 --batch 256 --threads 2 --out runs/moons
//   mpirun -np 4 ddpm-train MODEL ... --batch 256 --slices 4     (data-parallel; --batch is global)
//
// MODEL is a .ddpm spec (compiled through the module cache) or a compiled .so.
// The run directory receives module.so, checkpoint.safetensors, metrics.jsonl and
// config.json (and loss.png, previews, quality.png: runtime/train.h); ddpm-sample
// reads it. Exit codes: 0 ok, 1 bad input (a one-line
// error), 2 bad flags, 3 the loss became NaN/Inf, 70 an internal error.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/diag.h"
#include "common/input_limits.h"
#include "runtime/data2d.h"
#include "runtime/data_source.h"
#include "runtime/module.h"
#include "runtime/train.h"
#include "spec_module.h"
#include "dist_main.h"
#include "eval_ref.h"
#include "tool_main.h"

namespace {

// --eval-every on images: FID of the samples in the shipped evaluator's feature space
// (tools/eval_ref.h) against the training data's reference statistics (cached). The
// evaluator and the statistics are loaded here, before training, so a problem with them
// is reported before any step is spent; 2-D points need none (the trainer measures
// their sliced Wasserstein distance itself).
void wire_fid(ddpm::TrainConfig& cfg, const std::string& cache_dir, const std::string& weights) {
  ddpm::Module m(cfg.module_so, cfg.module_checksum);
  if (m->data_rank == 1 && m->data_dims[0] == 2) return;
  ddpm_tools::EvaluatorRequest req;
  req.weights = weights.empty() ? ddpm_tools::default_evaluator_weights() : weights;
  req.cache_dir = cache_dir;
  auto ev = std::make_shared<ddpm::Evaluator>(ddpm_tools::load_evaluator(req));
  ev->require_input(m.get(), cfg.model);
  const std::string data = ddpm_tools::train_file_of(cfg.data);
  double seconds = 0;
  auto ref = std::make_shared<ddpm::FeatureStats>(ddpm_tools::reference_stats(*ev, data, cache_dir, cfg.threads, &seconds));
  if (seconds > 0 && !cfg.quiet)
    fmt::print(stderr, "reference statistics of {} under {}: {:.1f} s (cached for later runs)\n", data, ev->what(), seconds);
  cfg.image_quality_name = "fid";
  cfg.image_quality = [ev, ref](const float* x, int64_t n, int threads) {
    return ddpm::QualityValue{ddpm::fid_of_samples(*ev, *ref, x, n, threads)};
  };
}

}  // namespace

int main(int argc, char** argv) {
  ddpm::TrainConfig cfg;
  cfg.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  cfg.data = "moons";
  std::string data_help = "training data: a built-in 2-D set (";
  for (auto& n : ddpm::dataset_2d_names()) data_help += n + (n == ddpm::dataset_2d_names().back() ? "" : ", ");
  data_help += "), fashion-mnist, an .npy array [N, ...] or an IDX image file";

  CLI::App app{"ddpm-train: train a denoising diffusion model compiled by ddpmc", "ddpm-train"};
  app.add_option("model", cfg.model,
                 "a .ddpm spec or a compiled module .so (with --resume it may be left out: the module is rebuilt "
                 "from the checkpoint's own source)");
  app.add_option("--data", cfg.data, data_help)->capture_default_str();
  app.add_option("--labels", cfg.labels,
                 "class labels for a model with a `label`: an .npy [N] of indices (IDX images use their label file)");
  app.add_option("--steps", cfg.steps, "total number of training steps (a resumed run continues up to it)")
      ->capture_default_str();
  app.add_option("--batch", cfg.batch, "batch size (under mpirun: the global batch, over all processes)")
      ->capture_default_str();
  app.add_option("--slices", cfg.slices,
                 "cut the batch into this many slices, added in a fixed order: the same --slices gives the same "
                 "weights with any number of processes (0: the checkpoint's on --resume, else the number of "
                 "processes)")
      ->capture_default_str();
  app.add_option("--threads", cfg.threads, "worker threads per process (default: all cores)")->capture_default_str();
  app.add_option("--out", cfg.out, "run directory (default: runs/<model name>)");
  app.add_option("--lr", cfg.opt.lr, "AdamW learning rate")->capture_default_str();
  app.add_option("--weight-decay", cfg.opt.weight_decay, "AdamW weight decay")->capture_default_str();
  app.add_option("--ema-decay", cfg.ema_decay, "EMA decay of the sampling weights")->capture_default_str();
  app.add_option("--grad-clip", cfg.grad_clip, "max global gradient norm; 0 = off")->capture_default_str();
  std::string evaluator_weights;
  app.add_option("--evaluator-weights", evaluator_weights,
                 "with --eval-every on images: the evaluator whose features FID uses (default: "
                 "models/fmnist_classifier.safetensors)");
  app.add_option("--warmup", cfg.warmup, "linear learning-rate warm-up steps")->capture_default_str();
  app.add_option("--lr-schedule", cfg.lr_schedule, "after the warm-up: constant, or cosine (decays to 0 at --steps)")
      ->check(CLI::IsMember({"constant", "cosine"}))
      ->capture_default_str();
  app.add_option("--sample-every", cfg.sample_every,
                 "write a preview of samples from the EMA weights to OUT/samples/ every N steps; 0 = never")
      ->capture_default_str();
  app.add_option("--eval-every", cfg.eval_every,
                 "every N steps and at the end, measure the quality of samples from the EMA weights (the previews' "
                 "sampler; 2-D points: sliced Wasserstein distance to fresh data, images: FID) into "
                 "OUT/metrics.jsonl and OUT/quality.png; not counted in --minutes or steps/s; 0 = never")
      ->capture_default_str();
  app.add_option("--eval-samples", cfg.eval_samples,
                 fmt::format("samples per evaluation, 1 to {} (default: 2000 for 2-D points, 1000 for images)",
                             ddpmc::kMaxEvalSamples));
  app.add_option("--seed", cfg.seed, "random seed (a resumed run keeps its checkpoint's seed)")
      ->check(ddpm_tools::whole_in(0, 18446744073709551615.0L))
      ->capture_default_str();
  app.add_flag("--resume", cfg.resume,
               "continue the run in --out from its checkpoint, with the run's own settings (data, steps, batch, "
               "slices, seed, lr and its schedule, EMA, clipping); a flag given here overrides one with a note");
  app.add_option("--stop-at", cfg.stop_at,
                 "stop with a checkpoint after this step, as an interruption would (the learning-rate schedule "
                 "still runs to --steps); --resume continues")
      ->capture_default_str();
  app.add_option("--minutes", cfg.minutes, "stop (with a checkpoint) after this much wall time; 0 = no limit")
      ->capture_default_str();
  app.add_option("--ckpt-every", cfg.ckpt_every, "checkpoint every N steps (and at the end); 0 = only at the end")
      ->capture_default_str();
  app.add_option("--log-every", cfg.log_every, "progress and metrics line every N steps")->capture_default_str();
  std::string cache_dir;
  app.add_option("--cache-dir", cache_dir, "module cache (default: $DDPM_CACHE_DIR or ~/.cache/ddpmc)");
  app.add_flag("-q,--quiet", cfg.quiet, "no progress lines");

  ddpm_tools::quiet_other_ranks();
  if (int rc = ddpm_tools::parse(app, argc, argv, "ddpm-train",
                                 [] { return ddpm_tools::compiling_version_text("ddpm-train"); });
      rc >= 0)
    return rc;
  // On --resume the run's own settings stand, except those typed here (runtime/resume.h).
  for (const char* key : {"data", "labels", "steps", "batch", "slices", "seed", "lr", "weight_decay", "ema_decay",
                          "grad_clip", "warmup", "lr_schedule", "eval_every", "eval_samples"}) {
    std::string flag = std::string("--") + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    if (app.get_option(flag)->count() > 0) cfg.given.insert(key);
  }
  // Data and label files are recorded with absolute paths, so the run resumes from any directory.
  auto absolute = [](std::string& p) {
    std::error_code ec;
    const auto a = std::filesystem::absolute(p, ec);
    if (!ec) p = a.lexically_normal().string();
  };
  if (ddpm::data_names_file(cfg.data)) absolute(cfg.data);
  if (!cfg.labels.empty()) absolute(cfg.labels);

  auto flag_error = [](const std::string& msg) { return ddpm_tools::flag_error("ddpm-train", msg); };
  if (cfg.steps < 1) return flag_error(fmt::format("--steps must be at least 1 (got {})", cfg.steps));
  if (cfg.batch < 1) return flag_error(fmt::format("--batch must be at least 1 (got {})", cfg.batch));
  if (cfg.threads < 1) return flag_error(fmt::format("--threads must be at least 1 (got {})", cfg.threads));
  if (cfg.slices < 0) return flag_error(fmt::format("--slices must be >= 0 (got {})", cfg.slices));
  if (cfg.log_every < 1) return flag_error(fmt::format("--log-every must be at least 1 (got {})", cfg.log_every));
  if (cfg.ckpt_every < 0) return flag_error(fmt::format("--ckpt-every must be >= 0 (got {})", cfg.ckpt_every));
  if (cfg.eval_every < 0)
    return flag_error(fmt::format("--eval-every must be >= 0 (got {}; 0 turns it off)", cfg.eval_every));
  if (app.get_option("--eval-samples")->count() > 0 &&
      (cfg.eval_samples < 1 || cfg.eval_samples > ddpmc::kMaxEvalSamples))
    return flag_error(fmt::format("--eval-samples must be 1 to {} (got {})", ddpmc::kMaxEvalSamples,
                                  cfg.eval_samples));
  // The batch is cut into --slices slices (by default one per process). A resumed
  // run takes its settings from the checkpoint, so ddpm::train checks those.
  if (const int ranks = ddpm_tools::launched_ranks(); !cfg.resume) {
    const int slices = cfg.slices > 0 ? cfg.slices : ranks;
    const std::string from = cfg.slices > 0 ? fmt::format("--slices {}", slices)
                                            : fmt::format("one slice per process, {} under mpirun", ranks);
    if (slices < ranks)
      return flag_error(fmt::format("{} ranks but the batch is cut into {} slice{}: each rank needs a slice at least; "
                                    "pass --slices {} (or another multiple of the rank count that divides --batch)",
                                    ranks, slices, slices == 1 ? "" : "s", ranks));
    if (cfg.batch % slices != 0)
      return flag_error(fmt::format("--batch {} is not a multiple of the slice count {} ({}); pass a batch it "
                                    "divides, for example --batch {}",
                                    cfg.batch, slices, from, (cfg.batch / slices + 1) * slices));
  }
  {
    const auto& names = ddpm::dataset_2d_names();
    bool file_data = std::filesystem::path(cfg.data).extension() == ".npy" ||
                     cfg.data.find("idx3-ubyte") != std::string::npos || cfg.data == "fashion-mnist";
    if (!file_data && std::find(names.begin(), names.end(), cfg.data) == names.end()) {
      std::string valid;
      for (auto& n : names) valid += n + ", ";
      return flag_error(fmt::format("unknown --data '{}'; valid: {}fashion-mnist, or a path to an .npy or IDX file",
                                    cfg.data, valid));
    }
  }
  if (cfg.model.empty() && !cfg.resume)
    return flag_error("no model given: pass a .ddpm spec (or, with --resume, an --out run directory)");
  if (cfg.model.empty() && cfg.out.empty())
    return flag_error("--resume without a model needs --out, the run directory to continue");
  if (cfg.out.empty()) cfg.out = (std::filesystem::path("runs") / std::filesystem::path(cfg.model).stem()).string();

  ddpm::DistSession session(&argc, &argv, "ddpm-train");
  return ddpm_tools::run_distributed(session, "ddpm-train", [&] {
    const ddpm_tools::ModuleFile mf = cfg.model.empty() ? ddpm_tools::module_for_run(cfg.out, false, cache_dir)
                                                        : ddpm_tools::module_for(cfg.model, cache_dir);
    if (cfg.model.empty()) cfg.model = cfg.out + " (its checkpoint's source)";
    cfg.module_so = mf.so;
    cfg.module_checksum = mf.checksum;
    cfg.spec_sources = mf.sources;
    if (cfg.eval_every > 0 && ddpm::dist().rank() == 0) wire_fid(cfg, cache_dir, evaluator_weights);
    return ddpm::train(cfg);
  });
}
