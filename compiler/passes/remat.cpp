// Rematerialization (pass: remat): recompute, rather than store, the values that
// a group normalization's backward pass reads from its forward pass.
//
// After autodiff, the backward of `silu(normalize(x) * (1 + scale) + shift)` reads
// the forward values xhat = normalize(x), a = xhat * (1 + scale) + shift and
// sigmoid(a); kept as they are, each would be stored for the whole step. But the
// backward kernel of the normalization (group_norm_back(x, dy)) recomputes the
// statistics of x anyway, so it can recompute xhat, and from it the others, in
// registers. This pass gives each group_norm_back its own copy of the forward
// values its gradient region reads: the forward `group_norm` of the same x and the
// elementwise chain from it (same domain; other inputs unbatched or leaves). fuse
// then puts the copies, the gradient region and group_norm_back into one loop nest,
// and the forward originals are no longer read by the backward, so not stored.
//
// The filter gradient of the convolution that reads silu(normalize(x) ...) also
// reads the copy, so the forward value is stored only until the forward
// convolution has read it; the copy is stored while the backward needs it.
//
// The gradient region of group_norm_back(x, dy): the elementwise ancestors of dy
// in x's domain that are not forward values, plus the elementwise nodes computed
// from them and forward values only (the per-channel parameter-gradient terms,
// such as dA * xhat before its sum over the batch and pixels).
#include <algorithm>
#include <map>
#include <set>

#include "ops.h"
#include "passes.h"

namespace ddpmc {

namespace {


}  // namespace

Graph remat(const Graph& in) {
  const int n = (int)in.nodes.size();
  // free: small values any kernel can read (leaves, unbatched values).
  auto is_free = [&](NodeId id) { return is_leaf_value(in.nodes[id].op) || !in.nodes[id].type.batched; };

  // For each region (one per group_norm_back with a matching forward group_norm):
  // the forward values to copy, and the region's nodes.
  struct Region {
    NodeId first = -1;           // the region's smallest node id: copies go before it
    std::vector<NodeId> copies;  // forward values read by the region, ascending
    std::set<NodeId> nodes;
  };
  std::vector<Region> regions;
  std::vector<int> region_of(n, -1);

  for (NodeId nb = 0; nb < n; ++nb) {
    const Node& b = in.nodes[nb];
    if (b.op != Op::GroupNormBack) continue;
    const NodeId x = b.in[0];
    NodeId nf = -1;
    for (NodeId i = 0; i < nb && nf < 0; ++i) {
      const Node& f = in.nodes[i];
      if (f.op == Op::GroupNorm && f.in[0] == x && f.i0 == b.i0 && f.value == b.value) nf = i;
    }
    if (nf < 0) continue;
    const Type& dom = in.nodes[x].type;
    // Forward values recomputable from nf.
    std::vector<bool> fwd(n, false);
    fwd[nf] = true;
    for (NodeId i = nf + 1; i < nb; ++i) {
      const Node& u = in.nodes[i];
      if (!is_elementwise(u.op) || u.type != dom) continue;
      bool any = false, ok = true;
      for (NodeId y : u.in) {
        any = any || fwd[y];
        ok = ok && (fwd[y] || is_free(y));
      }
      fwd[i] = any && ok;
    }
    // The region: elementwise ancestors of dy in the domain, not forward values.
    Region r;
    std::vector<NodeId> stack{b.in[1]};
    while (!stack.empty()) {
      NodeId u = stack.back();
      stack.pop_back();
      const Node& un = in.nodes[u];
      if (fwd[u] || r.nodes.count(u) || region_of[u] >= 0 || !is_elementwise(un.op) || un.type != dom) continue;
      r.nodes.insert(u);
      for (NodeId y : un.in) stack.push_back(y);
    }
    if (r.nodes.empty()) continue;
    // ...plus the nodes computed from the region and forward values only.
    for (NodeId i = *r.nodes.begin(); i < n; ++i) {
      const Node& u = in.nodes[i];
      if (r.nodes.count(i) || region_of[i] >= 0 || fwd[i] || !is_elementwise(u.op) || u.type != dom) continue;
      bool any = false, ok = true;
      for (NodeId y : u.in) {
        any = any || r.nodes.count(y);
        ok = ok && (r.nodes.count(y) || fwd[y] || is_free(y));
      }
      if (any && ok) r.nodes.insert(i);
    }
    // The filter gradients of convolutions that read a forward value (the conv
    // after silu(group_norm(x))) read the copy too, so that value is only stored
    // while the forward convolution and then the backward nest need it.
    std::vector<NodeId> users;
    for (NodeId i = 0; i < n; ++i)
      if (in.nodes[i].op == Op::Conv2dBackFilter && fwd[in.nodes[i].in[0]] && region_of[i] < 0) users.push_back(i);
    // The forward values the region reads, with what they are computed from.
    std::set<NodeId> need;
    for (NodeId u : r.nodes)
      for (NodeId y : in.nodes[u].in)
        if (fwd[y]) need.insert(y);
    for (NodeId u : users) need.insert(in.nodes[u].in[0]);
    std::vector<NodeId> work(need.begin(), need.end());
    while (!work.empty()) {
      NodeId u = work.back();
      work.pop_back();
      for (NodeId y : in.nodes[u].in)
        if (fwd[y] && need.insert(y).second) work.push_back(y);
    }
    r.first = *r.nodes.begin();
    for (NodeId u : users) r.first = std::min(r.first, u);
    // Copies go right before the region's first node, so whatever they read
    // besides each other must come before it.
    bool placeable = true;
    for (NodeId u : need)
      for (NodeId y : in.nodes[u].in) placeable = placeable && (need.count(y) || y < r.first);
    if (!placeable) continue;
    r.copies.assign(need.begin(), need.end());
    for (NodeId u : r.nodes) region_of[u] = (int)regions.size();
    for (NodeId u : users) region_of[u] = (int)regions.size();
    regions.push_back(std::move(r));
  }
  if (regions.empty()) return in;

  Graph g;
  g.name = in.name;
  g.input_names = in.input_names;
  g.output_names = in.output_names;
  std::vector<NodeId> map(n, -1);
  std::vector<std::map<NodeId, NodeId>> copy_of(regions.size());
  std::vector<int> region_at(n, -1);  // region whose copies go before node i
  for (size_t k = 0; k < regions.size(); ++k) region_at[regions[k].first] = (int)k;
  for (NodeId i = 0; i < n; ++i) {
    if (int k = region_at[i]; k >= 0) {
      for (NodeId u : regions[k].copies) {
        Node c = in.nodes[u];
        for (NodeId& y : c.in) y = copy_of[k].count(y) ? copy_of[k][y] : map[y];
        copy_of[k][u] = g.add(std::move(c));
      }
    }
    Node u = in.nodes[i];
    const int k = region_of[i];
    for (NodeId& y : u.in) y = k >= 0 && copy_of[k].count(y) ? copy_of[k][y] : map[y];
    map[i] = g.add(std::move(u));
  }
  for (NodeId o : in.outputs) g.outputs.push_back(map[o]);
  // The originals the regions read may now be dead.
  return remove_dead(g);
}

}  // namespace ddpmc
