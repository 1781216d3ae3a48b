// Lowering, the probability-flow ODE (see lower_impl.h): a spec's `ode name(x, t)`
// returns dx/dt, the drift that carries the data distribution at t_min to the prior
// N(0, prior_std^2 I) at t_max. ddpm-eval --nll ode integrates it and its divergence
// (through the vector-Jacobian product that passes/vjp.cpp derives from this graph).
// A spec has at most one; it creates no parameters and draws no random numbers
// (lower_entry.cpp checks the last). In a discrete-time spec the ode runs in the
// continuous-time limit of the schedule: t is real in [1/T, 1], the net's step
// parameter takes real values (t T), and the tables, which have entries only at
// whole steps, are an error there (lower.cpp): the spec writes the limit of its
// schedule as expressions of t (models/moons.ddpm).
#include <fmt/format.h>

#include "lower_impl.h"

namespace ddpmc::lowering {

void Lowerer::lower_odes() {
  const FuncDef* ode = nullptr;
  for (auto& mod : prog_.modules)
    for (auto& f : mod.defs) {
      if (f.kind != DefKind::Ode) continue;
      if (ode)
        user_error(f.name_loc, fmt::format("a second ode '{}': a spec declares one probability-flow ODE", f.name),
                   fmt::format("the first is '{}' at {}:{}", ode->name, ode->name_loc.file->path, ode->name_loc.line));
      ode = &f;
    }
  if (!ode) return;
  Diffusion& d = m_.diffusion;
  d.ode_t_min = d.continuous ? d.t_min : 1.0 / d.T;
  d.ode_t_max = d.continuous ? d.t_max : 1.0;
  const size_t before = m_.params.size();
  ode_ = ode;
  m_.ode = lower_entry(*ode, "ode");
  ode_ = nullptr;
  if (m_.params.size() > before)
    user_error(param_locs_[before],
               fmt::format("parameter '{}' is created by ode '{}' but the loss never uses it, so it would never be "
                           "trained",
                           m_.params[before].name, ode->name),
               "create parameters inside the `net` that the loss calls, and call that net from the ode");
  m_.has_ode = true;
  m_.ode_name = ode->name;
}

}  // namespace ddpmc::lowering
