// Lowering: parsed modules (frontend.h) → Model (ir.h): one typed Graph for the
// loss and one per sampler, the parameter table and the diffusion tables.
//
// Lowering is a partial evaluator over the AST. Values are either static (numbers,
// lists of numbers, schedule tables, strings), which are computed at compile time,
// or tensors, which become graph nodes. Calls to `fn` and `net` are inlined; every
// `param(...)` gets a stable name from its call path ("eps_theta/linear.1/w").
// All name, arity, type and shape errors of a spec are reported here, at the spec.
#pragma once
#include "frontend.h"
#include "ir.h"

namespace ddpmc {

Model lower(const Program& program, const std::string& spec_path);

// The builtin functions' names (exp, matmul, clip, ...), sorted; the language
// reference's table of builtins must list exactly these (tests/test_docs.cpp).
std::vector<std::string> builtin_names();

}  // namespace ddpmc
