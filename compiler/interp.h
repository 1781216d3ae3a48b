// The reference interpreter: a slow, scalar, double-precision evaluator of any
// Graph. It is the oracle that tests hold the generated code to, and the engine
// for finite-difference gradient checks.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir.h"

namespace ddpmc {

struct InterpEnv {
  int B = 1;
  uint64_t seed = 0, step = 0;
  std::vector<double> params;                         // flat, laid out by ParamInfo::offset
  std::map<std::string, std::vector<double>> inputs;  // by input name ("x0", "x", "t", "s"), [B, numel]
};

// Evaluates every node; returns one value per node ([B, numel] row-major if batched).
std::vector<std::vector<double>> interpret_all(const Graph& g, const Model& m, const InterpEnv& env);
// The graph's outputs, in order.
std::vector<std::vector<double>> interpret(const Graph& g, const Model& m, const InterpEnv& env);

}  // namespace ddpmc
