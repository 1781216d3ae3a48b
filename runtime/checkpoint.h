// Checkpoint and run-directory I/O of the trainer: the optimizer state it saves,
// the parameter initialisation, reading a checkpoint back for --resume, and the
// other files of a run directory (module.so, config.json).
//
// A checkpoint is a safetensors file (safetensors.h) with tensors param/<name>,
// ema/<name>, adam_m/<name>, adam_v/<name> and string metadata (format, seed,
// step, spec_hash, data, batch, slices, optimizer settings, elapsed_s). It is written
// atomically, so a crash keeps the previous one.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "module.h"
#include "safetensors.h"
#include "train.h"

namespace ddpm {

// The full optimizer state, in the module's flat [P] layout.
struct TrainState {
  AlignedFloats params, grads, ema, m, v;
  explicit TrainState(int64_t P) : params(P), grads(P), ema(P), m(P), v(P) {}
};

// Uniform(-bound, bound) from Philox keyed by (seed, parameter), or zeros.
void init_params(const ddpm_module& m, uint64_t seed, float* params);

// The tensors of a checkpoint, pointing into `s` (they see later updates).
std::vector<TensorView> checkpoint_views(const ddpm_module& m, const TrainState& s);

// The metadata of a checkpoint of this run; "step" and "elapsed_s" are filled
// in at each save.
std::map<std::string, std::string> checkpoint_metadata(const TrainConfig& cfg, const ddpm_module& m, uint64_t seed);

struct ResumeInfo {
  int64_t step = 0;
  double elapsed_s = 0;
  int slices = 0;  // the run's --slices (1 for checkpoints written before slices existed); 0 = not resumed
};

// Restores params/EMA/moments from `path` into `s`; validates format, spec hash,
// and every tensor's presence and shape. Takes the checkpoint's seed (with a
// note if it differs from `seed`). Throws ddpmc::UserError for a bad file.
ResumeInfo load_checkpoint(const std::string& path, const Module& mod, const TrainConfig& cfg, TrainState& s,
                           uint64_t& seed);

// Copies the module into the run directory (atomically, executable).
void copy_module(const std::string& from, const std::string& to);

// Writes config.json: the configuration and the module's description.
void write_config(const std::string& path, const TrainConfig& c, const ddpm_module& m, uint64_t seed,
                  int64_t start_step);

}  // namespace ddpm
