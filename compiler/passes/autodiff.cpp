// Reverse-mode automatic differentiation over the IR (pass: autodiff).
//
// Walks the forward graph backwards from the loss, asking each op's table row for
// its inputs' adjoint contributions, summing contributions (and reducing broadcast
// ones back to the input's type with sum_to). Only nodes that depend on a
// parameter get adjoints. The result keeps the forward nodes and appends the
// backward ones, so later passes fuse and plan the whole training step at once.
// The sweep itself (reverse_sweep) is shared with the vector-Jacobian product of
// the probability-flow ODE (vjp.cpp), which differentiates by an input instead.
#include <fmt/format.h>

#include "ops.h"
#include "passes.h"

namespace ddpmc {

std::vector<NodeId> reverse_sweep(Builder& b, const Graph& fwd, const std::vector<bool>& from, NodeId out, NodeId seed) {
  const int n0 = (int)fwd.nodes.size();
  std::vector<bool> needs(n0, false);
  for (int i = 0; i < n0; ++i) {
    const Node& n = fwd.nodes[i];
    needs[i] = from[i];
    for (NodeId x : n.in) needs[i] = needs[i] || needs[x];
  }
  std::vector<NodeId> adj(n0, -1);
  adj[out] = seed;
  std::vector<NodeId> din;
  for (int i = n0 - 1; i >= 0; --i) {
    if (adj[i] < 0 || !needs[i]) continue;
    const Node n = fwd.nodes[i];
    b.locs = n.locs;
    din.assign(n.in.size(), -1);
    op_row(n.op).grad(b, n, i, adj[i], din);
    for (size_t k = 0; k < n.in.size() && k < din.size(); ++k) {
      NodeId x = n.in[k];
      if (din[k] < 0 || !needs[x]) continue;
      NodeId c = b.sum_to(din[k], fwd.nodes[x].type);
      adj[x] = adj[x] < 0 ? c : b.add2(adj[x], c);
    }
  }
  b.locs.clear();
  return adj;
}

Graph autodiff(const Graph& fwd, const Model& m) {
  DDPM_CHECK(fwd.outputs.size() == 1, "autodiff expects a single loss output");
  Graph g = fwd;
  g.name = "train";
  Builder b(g);
  const int n0 = (int)fwd.nodes.size();
  std::vector<bool> from(n0, false);
  for (int i = 0; i < n0; ++i) from[i] = fwd.nodes[i].op == Op::Param;
  NodeId loss = fwd.outputs[0];
  b.locs = fwd.nodes[loss].locs;
  const std::vector<NodeId> adj = reverse_sweep(b, fwd, from, loss, b.cnst(1.0));
  std::vector<NodeId> grads(m.params.size(), -1);
  for (int i = 0; i < n0; ++i) {
    const Node& n = fwd.nodes[i];
    if (n.op != Op::Param || adj[i] < 0) continue;
    grads[n.index] = grads[n.index] < 0 ? adj[i] : b.add2(grads[n.index], adj[i]);
  }
  for (size_t p = 0; p < m.params.size(); ++p) {
    if (grads[p] < 0) grads[p] = b.zeros(m.params[p].type);
    g.outputs.push_back(grads[p]);
    g.output_names.push_back("grad/" + m.params[p].name);
  }
  return g;
}

}  // namespace ddpmc
