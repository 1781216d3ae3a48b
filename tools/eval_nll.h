// ddpm-eval --nll ode: the exact likelihood of a continuous-time model by its
// probability-flow ODE (runtime/ode_nll.h), on held-out data.
//
//   ddpm-eval RUN --nll ode [-n 1000] [--trace auto|hutchinson|exact] [--rtol 1e-5 --atol 1e-5]
//
// Data flow: RUN's module (its `ode`, through ode_vjp) and weights, held-out data
// (eval_data.h) → for 8-bit data (every value on the grid 2k/255 - 1) uniform
// dequantisation within each value's bin, x + (v - 1/2) 2/255 with v ~ U(0, 1)
// (Philox, keyed by the sample's global index) → ddpm::ode_nll per batch →
// per-sample NLL → bits/dim for 8-bit data, -log P(bin) <= NLL(x) / (D ln 2) + log2(127.5),
// or nats/dim for continuous data; the mean, its standard error, the time and the
// number of net evaluations on stdout and as "nll_ode" in RUN/eval.json (other keys kept).
#pragma once
#include <cstdint>
#include <string>

#include "eval_data.h"

namespace ddpm_tools {

struct NllConfig {
  EvalDataRequest data;
  int batch = 100;
  uint64_t seed = 0;
  bool use_ema = true;
  std::string trace = "auto";  // auto (exact when D <= 8), hutchinson, exact
  double rtol = 1e-5, atol = 1e-5;
  bool quiet = false;
  bool trust_module = false;
  std::string cache_dir;
};

int run_nll(const NllConfig& cfg);

}  // namespace ddpm_tools
