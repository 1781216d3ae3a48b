// Code generation: planned graphs → one readable, deterministic C++ translation
// unit implementing the module C ABI (common/prelude/ddpm_abi.h) with xsimd and oneTBB.
//
// Each kernel becomes one static function named <entry>_k<index>, preceded by a
// comment naming its kind, domain, the ops it fuses and the spec lines they come
// from. Entry points call their kernels in order with pointers into one arena.
#pragma once
#include <string>
#include <vector>

#include "pipeline.h"

namespace ddpmc {

// `spec_hash` is embedded in the module so the runtime can check checkpoints against it.
std::string emit_module(const Compiled& c, const std::string& spec_hash);
// The same module as one translation unit, or (split) as two that compile in
// parallel: the training step, loss and descriptor; and the samplers and eps.
std::vector<std::string> emit_module_parts(const Compiled& c, const std::string& spec_hash, bool split);

// Arena floats an entry needs at batch B: planned values plus the largest kernel scratch.
int64_t arena_floats(const Graph& g, int B);

}  // namespace ddpmc
