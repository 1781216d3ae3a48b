// The shipped weights of a supervised model: RUN/weights.safetensors, written by
// ddpm-train at each checkpoint of a supervised run (a spec without a diffusion
// block, ABI version 6). It holds only the EMA parameters, under the checkpoint's
// tensor names (ema/<param name>), and metadata: format, spec_hash, spec_sources
// (the spec's own files as JSON, as the checkpoint has them) and step. It is the
// small file to keep (or ship in a repository) for a trained classifier; the
// checkpoint beside it also carries the raw weights and the optimizer moments.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "module.h"
#include "safetensors.h"

namespace ddpm {

constexpr const char* kWeightsFormat = "ddpmc-weights-1";

// Writes the EMA weights ema[param_floats] of `m` to `path` (atomically) with the
// metadata `meta` (its spec_hash, spec_sources and step are kept; format is set).
void write_weights(const std::string& path, const ddpm_module& m, const float* ema,
                   const std::map<std::string, std::string>& meta);

// Reads weights for `mod` from a weights.safetensors (or a checkpoint, whose
// ema/ tensors it takes): the flat [param_floats] parameters (padding zero).
// Checks every tensor's presence, shape and finiteness; a problem is a one-line
// ddpmc::UserError naming the file and the tensor. The spec hash is not compared
// (weights outlive a compiler version); names and shapes must match.
std::vector<float> load_weights(const std::string& path, const Module& mod);

// Copies tensors prefix + <param name> of `st` (read from `path`) into params at
// each parameter's offset, with the same checks; `finite_hint` is the hint of the
// non-finite error. Shared with the checkpoint readers of sampling and evaluation.
void copy_param_tensors(const SafeTensors& st, const std::string& path, const ddpm_module& m,
                        const std::string& prefix, float* params, const std::string& finite_hint);

}  // namespace ddpm
