// The compilation pipeline: spec file → Model → per-entry planned graphs.
//
//   load_program (frontend) → lower → [verify] → autodiff (train only) → simplify
//   → [verify] → fuse → memplan → codegen
//
// compile_model() runs everything up to memplan for the training step, the
// forward-only loss and every sampler. `dump_after` names a pass ("lower",
// "autodiff", "simplify", "fuse", "memplan") or "all"; those graphs are printed
// to *dump.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ir.h"

namespace ddpmc {

struct Compiled {
  std::shared_ptr<Sources> sources;                    // owns the text every Loc points into
  Model model;
  Graph train;                                         // loss + gradients
  Graph loss;                                          // loss only
  std::vector<std::pair<std::string, Graph>> samplers;
  Graph eps;  // only when model.has_eps
  Graph classify;  // only when model.supervised
  Graph ode, ode_vjp;  // only when model.has_ode: the drift, and the drift with its vjp
};

const std::vector<std::string>& pass_names();

Compiled compile_model(Model model, const std::string& dump_after = "", std::string* dump = nullptr);

// FLOPs of one evaluation of g at batch B: 2·M·N·K per matmul, one per element
// for every other computing op.
double graph_flops(const Graph& g, int B);

// Loads, lowers and compiles a spec file, or spec text labelled `path`.
Compiled compile_spec_file(const std::string& path, const std::string& dump_after = "", std::string* dump = nullptr);
Compiled compile_spec_text(const std::string& path, const std::string& text, const std::string& dump_after = "",
                           std::string* dump = nullptr);
// The same from a spec's own sources (a checkpoint's copy): imports resolve among
// them, never on disk; messages name the main file "<checkpoint>/NAME".
Compiled compile_spec_sources(const SpecSources& sources, const std::string& dump_after = "",
                              std::string* dump = nullptr);

}  // namespace ddpmc
