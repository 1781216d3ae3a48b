// Lowering, the probability-flow ODE (see lower_impl.h): a spec's `ode name(x, t)`
// returns dx/dt, the drift that carries the data distribution at t_min to the prior
// N(0, prior_std^2 I) at t_max. ddpm-eval --nll ode integrates it and its divergence
// (through the vector-Jacobian product that passes/vjp.cpp derives from this graph).
// A spec has at most one; it needs continuous time, creates no parameters and
// draws no random numbers (lower_entry.cpp checks the last).
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
  if (!m_.diffusion.continuous)
    user_error(ode->name_loc,
               fmt::format("ode '{}' needs continuous time, but this diffusion's time is discrete (steps 1..T)", ode->name),
               "add `time = continuous` with t_min and t_max to the diffusion block and write the schedule as "
               "expressions of t (see models/moons_vp.ddpm)");
  const size_t before = m_.params.size();
  m_.ode = lower_entry(*ode, "ode");
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
