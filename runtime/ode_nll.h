// The exact likelihood of a continuous-time model by its probability-flow ODE
// (Song et al. 2021, Appendix D.2; Chen et al. 2018 and Grathwohl et al. 2019 for
// the change of variables), in nats per sample.
//
// Data flow: ddpm-eval --nll ode (tools/eval_nll.cpp) hands a batch x [B, D] (8-bit
// images already dequantised) and a callback that runs the module's ode_vjp to
// ode_nll() here. The state (x, delta) is carried from t0 = t_min to t1 = t_max by
//   dx/dt = f(x, t),   d delta/dt = div f(x, t),
// and then  log p_t0(x) = log N(x_t1; 0, prior_std^2 I) + delta(t1).
// The solver is Dormand-Prince 5(4) with adaptive steps (scipy's RK45 rules: the
// error is the RMS over every component of the batch's state of
// err_i / (atol + rtol max(|y_i|, |y_new_i|)), a step is accepted when it is <= 1,
// the next step is h * clip(0.9 err^(-1/5), 0.2, 10)), in double precision around
// the module's float drift. The divergence is Hutchinson's u^T (df/dx) u with one
// Rademacher vector u per sample held for the whole solve, or exactly, the sum of
// the D diagonal entries e_j^T (df/dx) e_j (D vjp calls per stage).
//
// Randomness: u for sample i (global index), element j is
//   sign(philox_uniform(seed, 0, kOdeProbeStream, i * D + j) - 1/2),
// so the estimate does not depend on the batch size or thread count. The
// solver's steps do depend on the batch (its error norm is the whole batch's), as
// score_sde's do; each result is within the tolerance of the exact solution.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace ddpm {

inline constexpr uint32_t kOdeProbeStream = 5100;

// f(x, t) [B, D] and, for each sample's u [B, D], u^T df/dx [B, D].
using OdeVjpFn = std::function<void(const float* x, double t, const float* u, float* f, float* vjp)>;

enum class OdeTrace { Hutchinson, Exact };

struct OdeNllOptions {
  double t0 = 1e-3, t1 = 1;    // from the data (t_min) to the prior (t_max)
  double prior_std = 1;        // the prior N(0, prior_std^2 I) at t1
  double rtol = 1e-5, atol = 1e-5;
  OdeTrace trace = OdeTrace::Hutchinson;
  uint64_t seed = 0;
  int64_t first_index = 0;     // global index of the batch's first sample (for u)
  int64_t max_steps = 100000;  // accepted + rejected; past it, a user error
  std::function<void(double t, int64_t steps)> on_step;  // after each accepted step
};

struct OdeNllBatch {
  std::vector<double> nll;         // per sample: -log p_t0(x), nats
  std::vector<double> prior_nll;   // -log N(x_t1; 0, prior_std^2 I)
  std::vector<double> delta;       // the integral of div f from t0 to t1
  int64_t accepted = 0, rejected = 0;
  int64_t drift_evals = 0;         // stages (each one f and one divergence)
  int64_t vjp_calls = 0;           // module calls: drift_evals, or D per stage for the exact trace
};

OdeNllBatch ode_nll(const float* x, int B, int64_t D, const OdeVjpFn& vjp, const OdeNllOptions& opt);

}  // namespace ddpm
