// The training settings a checkpoint records, and how --resume restores them.
//
// Data flow: train() writes training_settings(cfg) into every checkpoint's
// metadata; on --resume, restore_settings() takes each setting the user did not
// give on the command line (TrainConfig::given) from the checkpoint, so a plain
// `ddpm-train SPEC --out RUN --resume` continues the run exactly as it was started.
// A setting given on the command line that differs from the checkpoint's overrides
// it with a one-line note naming the old and new values, and says when the change
// means the run no longer matches one that was never interrupted.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "train.h"

namespace ddpm {

// The settings as checkpoint metadata: data, labels, steps, batch, slices, seed,
// lr, weight_decay, beta1, beta2, eps, ema_decay, grad_clip, warmup, lr_schedule,
// eval_every, eval_samples.
std::map<std::string, std::string> training_settings(const TrainConfig& cfg);

// cfg with every setting not in cfg.given replaced by the checkpoint's value
// (`meta`: its metadata; settings it lacks, from older checkpoints, keep cfg's).
// `notes` receives one line per overridden setting. Throws a UserError naming
// `ckpt_path` for a malformed value.
TrainConfig restore_settings(const TrainConfig& cfg, const std::map<std::string, std::string>& meta,
                             const std::string& ckpt_path, std::vector<std::string>& notes);

}  // namespace ddpm
