// The files a run directory holds, and the check that keeps a command's outputs off
// them. ddpm-train keeps a run's state in its --out directory (runtime/train.h);
// ddpm-sample, ddpm-eval and ddpmc write wherever the user points them. Before any
// work, each tool passes its output paths here: an output that is one of a run's
// own files, an existing directory, or the same file as another output of the same
// command is a command-line error (a run is never damaged by a typo).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace ddpmc {

// The file names ddpm-train owns in a run directory.
const std::vector<std::string>& run_file_names();

// One output: the flag that named it ("--out") and its path ("" = not written).
using Output = std::pair<std::string, std::string>;

// "" if the outputs are safe to write; otherwise a one-line message naming the flag,
// the path and what it would destroy. A run's own file is one of run_file_names()
// in `run_dir` or in any directory that holds a checkpoint.safetensors; `inputs`
// (the command's input files, as (role, path)) must not be overwritten either.
std::string output_problem(const std::vector<Output>& outputs, const std::string& run_dir = "",
                           const std::vector<Output>& inputs = {});

}  // namespace ddpmc
