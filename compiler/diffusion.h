// Noise schedules: the compile-time tables (beta, alpha, abar, abar_prev,
// beta_tilde) that a spec indexes with a step value. Filled by lowering from the
// `diffusion { ... }` block; emitted into modules as constant arrays.
#pragma once
#include <string>
#include <vector>

#include "ir.h"

namespace ddpmc {

// One schedule argument as the user wrote it, for validation messages.
struct ScheduleArg {
  std::string name;
  double value;
  Loc loc;
};

// Builds the tables for schedule `name` with T steps. Throws UserError for an
// unknown schedule or a bad argument, pointing at `where` or the argument's Loc.
Diffusion make_diffusion(const std::string& name, int T, const std::vector<ScheduleArg>& args, const Loc& where);

// The schedules and their arguments with defaults, in positional order.
struct ScheduleSpec {
  const char* name;
  std::vector<std::pair<const char*, double>> params;
};
const std::vector<ScheduleSpec>& schedule_specs();

}  // namespace ddpmc
