// The vector-Jacobian product of the probability-flow ODE (pass: vjp).
//
// From the ode graph (inputs "x" [B, D] and "t", output "drift" f(x, t) [B, D]) to one
// graph with a third input "u" [B, D] and outputs "drift" and "vjp" = u^T df/dx per
// sample: the reverse sweep of autodiff.cpp, seeded with u at the drift and taken
// with respect to the input x instead of the parameters. Samples do not interact in
// a drift, so each sample's vjp is its own row's. ddpm-eval --nll ode estimates the
// divergence of f as E[u^T (df/dx) u] (Hutchinson) or sums D rows (the exact trace).
#include <fmt/format.h>

#include "ops.h"
#include "passes.h"

namespace ddpmc {

Graph vjp(const Graph& ode, const Model& m) {
  DDPM_CHECK(ode.outputs.size() == 1 && ode.output_names[0] == "drift", "vjp expects the ode graph");
  Graph g = ode;
  g.name = "ode_vjp";
  Builder b(g);
  const int n0 = (int)ode.nodes.size();
  std::vector<bool> from(n0, false);
  NodeId x = -1;
  for (int i = 0; i < n0; ++i)
    if (ode.nodes[i].op == Op::Input && ode.nodes[i].name == "x") from[i] = true, x = i;
  DDPM_CHECK(x >= 0, "the ode graph has no input x");
  Node u{Op::Input};
  u.type = m.data;
  u.name = "u";
  u.locs = ode.nodes[x].locs;
  const NodeId un = b.add(std::move(u));
  g.input_names.push_back("u");
  const NodeId f = ode.outputs[0];
  const std::vector<NodeId> adj = reverse_sweep(b, ode, from, f, un);
  // A drift that does not depend on x (a constant field) has a zero Jacobian.
  const NodeId out = adj[x] >= 0 ? adj[x] : b.zeros(m.data);
  g.outputs.push_back(out);
  g.output_names.push_back("vjp");
  return g;
}

}  // namespace ddpmc
