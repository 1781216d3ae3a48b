// Driver: the entry points that run the whole compiler front to back on one spec.
//
// `ddpmc check` and the tests call check_spec_file()/check_spec_text(): they load
// the spec and its imports, lower and type-check it, and return a short report
// (parameter count, FLOPs per training step, arena bytes for the given batch).
// Every error in the spec surfaces as a UserError.
#pragma once
#include <string>

namespace ddpmc {

struct CheckReport {
  long long n_params = 0;
  double flops_per_step = 0;
  long long arena_bytes = 0;
  int batch = 0;
  std::string text;
};

// A FLOP count at a readable unit, three decimals: "60.391 MFLOP", "258.479 GFLOP".
std::string flops_text(double flops);

CheckReport check_spec_file(const std::string& path, int batch = 256);
CheckReport check_spec_text(const std::string& path_label, const std::string& text, int batch = 256);
// The same for the spec sources a checkpoint carries, as its JSON text
// (common/spec_sources.h): what ddpm-sample, ddpm-eval and --resume compile from
// a run directory, so the fuzz target can run it on hostile input.
CheckReport check_spec_sources_json(const std::string& json, int batch = 256);

}  // namespace ddpmc
