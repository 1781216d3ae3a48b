// Fusion (pass: fuse): partitions the graph's computing nodes into kernels.
//
// Kernel kinds (ir.h):
//   Elementwise  a chain or DAG of elementwise ops over one iteration domain, plus
//                at most one kind of terminal reduction (over everything, over the
//                batch, or over each sample's features). Values used only inside
//                the kernel live in registers; the rest are stored.
//   Gemm         one matmul, followed by the elementwise ops that consume its
//                output in the same domain (bias, activation, residual, diffusion
//                update), applied per output tile as the GEMM epilogue.
//   Conv         one convolution (forward, data gradient or filter gradient) as
//                im2col + GEMM per sample; the forward one takes an epilogue too.
//   Norm         a group normalization (forward, backward, or both of the same x)
//                with the elementwise ops around it: per (sample, group) row,
//                sweeps for the statistics, then one sweep computing every member.
//                The forward one takes the affine map and SiLU as its epilogue; the
//                backward one the gradient chain that produces its dy as a prologue
//                (with the forward values remat copied into it) and the
//                per-channel parameter-gradient sums.
//   Layout       concat, slice, reshape, 2x upsampling and its adjoint: copies.
//   Call         one op that a prelude function computes whole (softmax, its
//                gradient, transpose, batched matmul).
// Leaves are not computed by kernels: parameters and inputs live in the caller's
// buffers, and constants are emitted inline. Random ops are elementwise leaves.
//
// A node joins a producer's kernel only if none of its other inputs depends on
// that kernel, so kernels never form a cycle. A second sweep then moves a
// one-instruction node that only one later kernel reads, and whose inputs that
// kernel loads anyway, into that kernel (recompute rather than store). Kernels are
// then ordered topologically.
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "ops.h"
#include "passes.h"

namespace ddpmc {
namespace {

bool computed_elementwise(Op op) {
  return is_elementwise(op) || op == Op::RandN || op == Op::RandU || op == Op::UniformStep;
}

Kernel::Reduce reduce_kind(const Type& from, const Type& to) {
  if (!to.batched && to.dims.empty()) return Kernel::Reduce::All;
  if (!to.batched && to.dims == from.dims) return Kernel::Reduce::Batch;
  if (to.batched && to.dims.empty()) return Kernel::Reduce::Features;
  if (from.batched && !to.batched && from.dims.size() >= 2 && to.dims.size() == from.dims.size() &&
      to.dims[0] == from.dims[0] && to.numel() == to.dims[0])
    return Kernel::Reduce::Channels;
  return Kernel::Reduce::General;
}

}  // namespace

Graph fuse(const Graph& in) {
  Graph g = in;
  g.kernels.clear();
  // Every output must be a distinct node computed by a kernel, so that it can be
  // stored straight into the caller's buffer: copy those that are not.
  {
    std::set<NodeId> used;
    for (size_t k = 0; k < g.outputs.size(); ++k) {
      NodeId o = g.outputs[k];
      if (is_leaf_value(g.nodes[o].op) || used.count(o)) {
        Node c{Op::Broadcast};
        c.in = {o};
        c.type = g.nodes[o].type;
        c.locs = g.nodes[o].locs;
        g.outputs[k] = g.add(std::move(c));
      }
      used.insert(g.outputs[k]);
    }
  }
  const int n = (int)g.nodes.size();
  std::vector<int> group(n, -1);
  std::vector<bool> terminal(n, false);
  std::vector<Kernel> groups;
  std::vector<std::set<int>> succ;  // kernel-level edges: succ[G] consumes values of G

  auto reaches = [&](int from, int to) {  // is `to` downstream of `from`?
    std::vector<int> stack{from};
    std::vector<bool> seen(groups.size(), false);
    while (!stack.empty()) {
      int v = stack.back();
      stack.pop_back();
      if (v == to) return true;
      if (seen[v]) continue;
      seen[v] = true;
      for (int w : succ[v]) stack.push_back(w);
    }
    return false;
  };

  for (int i = 0; i < n; ++i) {
    const Node& node = g.nodes[i];
    if (is_leaf_value(node.op)) continue;
    // Joining G adds edges H -> G for the groups H of the other inputs; that is a
    // cycle exactly when G already reaches H.
    auto can_join = [&](int G) {
      for (NodeId y : node.in)
        if (group[y] >= 0 && group[y] != G && reaches(G, group[y])) return false;
      return true;
    };
    int chosen = -1;
    const OpRow& row = op_row(node.op);
    if (computed_elementwise(node.op)) {
      for (NodeId x : node.in) {
        int G = group[x];
        if (G < 0 || terminal[x]) continue;
        Kernel& k = groups[G];
        if (k.kind == KernelKind::Layout) continue;
        // Only the forward convolution writes its output tile by tile (the others scatter).
        if (k.kind == KernelKind::Conv && g.nodes[k.nodes[0]].op != Op::Conv2d) continue;
        if (k.domain != node.type) continue;
        if ((k.kind == KernelKind::Gemm || k.kind == KernelKind::Conv) && k.reduce != Kernel::Reduce::None) continue;
        if (k.kind == KernelKind::Call) continue;
        // A GEMM epilogue walks rows of B; a matmul over [B,...,K] has more rows.
        if (k.kind == KernelKind::Gemm && g.nodes[k.nodes[0]].type.dims.size() > 1) continue;
        if (can_join(G)) {
          chosen = G;
          break;
        }
      }
      if (chosen < 0) {
        groups.push_back(Kernel{KernelKind::Elementwise, {}, {}, node.type});
        chosen = (int)groups.size() - 1;
      }
    } else if (row.cls == OpClass::Reduce) {
      NodeId x = node.in[0];
      Kernel::Reduce r = reduce_kind(g.nodes[x].type, node.type);
      int G = group[x];
      const bool norm_ok = G >= 0 && groups[G].kind == KernelKind::Norm && r == Kernel::Reduce::Channels;
      if (r != Kernel::Reduce::General && G >= 0 && !terminal[x] &&
          (groups[G].kind == KernelKind::Elementwise || norm_ok) && groups[G].domain == g.nodes[x].type &&
          (groups[G].reduce == Kernel::Reduce::None || groups[G].reduce == r) && can_join(G)) {
        chosen = G;
      } else {
        groups.push_back(Kernel{KernelKind::Elementwise, {}, {}, g.nodes[x].type});
        chosen = (int)groups.size() - 1;
      }
      groups[chosen].reduce = r;
      terminal[i] = true;
    } else if (row.cls == OpClass::Contraction) {
      groups.push_back(Kernel{node.op == Op::Matmul ? KernelKind::Gemm : KernelKind::Conv, {}, {}, node.type});
      chosen = (int)groups.size() - 1;
    } else if (row.cls == OpClass::Norm) {
      // group_norm starts a kernel. group_norm_back(x, dy) joins the kernel of dy:
      // the remat copy of the forward normalization of x, or an elementwise chain
      // (then its prologue).
      if (node.op == Op::GroupNormBack) {
        const int G = group[node.in[1]];
        if (G >= 0 && !terminal[node.in[1]] && groups[G].domain == node.type && can_join(G)) {
          Kernel& k = groups[G];
          bool ok = false;
          if (k.kind == KernelKind::Elementwise)
            ok = k.reduce == Kernel::Reduce::None || k.reduce == Kernel::Reduce::Channels;
          if (k.kind == KernelKind::Norm) {
            ok = true;
            for (NodeId m : k.nodes) {
              const Node& mn = g.nodes[m];
              if (mn.op == Op::GroupNormBack) ok = false;
              if (mn.op == Op::GroupNorm && (mn.in[0] != node.in[0] || mn.i0 != node.i0 || mn.value != node.value))
                ok = false;
            }
          }
          if (ok) {
            k.kind = KernelKind::Norm;
            chosen = G;
          }
        }
      }
      if (chosen < 0) {
        groups.push_back(Kernel{KernelKind::Norm, {}, {}, node.type});
        chosen = (int)groups.size() - 1;
      }
    } else if (row.cls == OpClass::Layout || row.cls == OpClass::Call) {
      groups.push_back(Kernel{row.cls == OpClass::Layout ? KernelKind::Layout : KernelKind::Call, {}, {}, node.type});
      chosen = (int)groups.size() - 1;
      terminal[i] = true;
    } else {
      DDPM_ICE(fmt::format("fuse: no kernel kind for op {}", row.name));
    }
    group[i] = chosen;
    groups[chosen].nodes.push_back(i);
    succ.resize(groups.size());
    for (NodeId y : node.in)
      if (group[y] >= 0 && group[y] != chosen) succ[group[y]].insert(chosen);
  }

  // Recompute rather than store. A cheap node (one add, sub, mul or neg) that
  // the first sweep put into its producer's kernel G, but whose users all sit in
  // one later kernel H, would be stored by G only for H to load it again. When
  // every batched value it reads is one H loads anyway, it moves into H: one
  // store and one load fewer, one instruction more. (Autodiff makes these: the
  // 1 - sigmoid(x) of sigmoid's gradient lands in the forward epilogue.)
  {
    std::vector<std::vector<NodeId>> users_of(n);
    for (int i = 0; i < n; ++i)
      for (NodeId x : g.nodes[i].in) users_of[x].push_back(i);
    std::set<NodeId> outs(g.outputs.begin(), g.outputs.end());
    auto cheap = [](Op op) { return op == Op::Add || op == Op::Sub || op == Op::Mul || op == Op::Neg; };
    auto accepts = [&](const Kernel& k, const Node& node) {
      if (k.domain != node.type) return false;
      if (k.kind == KernelKind::Elementwise) return true;
      if (k.kind == KernelKind::Gemm)
        return k.reduce == Kernel::Reduce::None && g.nodes[k.nodes[0]].type.dims.size() <= 1;
      return k.kind == KernelKind::Conv && k.reduce == Kernel::Reduce::None && g.nodes[k.nodes[0]].op == Op::Conv2d;
    };
    for (int i = 0; i < n; ++i) {
      const Node& node = g.nodes[i];
      const int G = group[i];
      if (G < 0 || !cheap(node.op) || terminal[i] || outs.count(i) || users_of[i].empty()) continue;
      const int H = group[users_of[i][0]];
      bool ok = H >= 0 && H != G && accepts(groups[H], node);
      for (NodeId u : users_of[i]) ok = ok && group[u] == H;
      for (NodeId y : node.in) {
        if (!ok) break;
        if (is_leaf_value(g.nodes[y].op) || !g.nodes[y].type.batched) continue;
        bool loaded_by_h = false;
        for (NodeId u : users_of[y]) loaded_by_h = loaded_by_h || (u != i && group[u] == H);
        ok = group[y] >= 0 && group[y] != H && loaded_by_h;
      }
      if (!ok) continue;
      auto& from = groups[G].nodes;
      from.erase(std::find(from.begin(), from.end(), i));
      auto& to = groups[H].nodes;
      const bool lead = groups[H].kind != KernelKind::Elementwise;  // the contraction stays first
      to.insert(std::upper_bound(to.begin() + (lead ? 1 : 0), to.end(), i), i);
      group[i] = H;
    }
  }

  // Materialized values: outputs, values used outside their kernel, matmul
  // results, reductions and layout results.
  std::vector<bool> stored(n, false);
  for (NodeId o : g.outputs) stored[o] = true;
  for (int i = 0; i < n; ++i) {
    for (NodeId x : g.nodes[i].in)
      if (group[x] >= 0 && group[x] != group[i]) stored[x] = true;
    Op op = g.nodes[i].op;
    const OpClass cls = op_row(op).cls;
    if (cls == OpClass::Contraction || cls == OpClass::Layout || cls == OpClass::Call || op == Op::SumTo) stored[i] = true;
  }
  for (auto& k : groups)
    for (NodeId id : k.nodes)
      if (stored[id]) k.outputs.push_back(id);

  // Topological order of kernels: among the kernels whose inputs are ready, the
  // one created first (by its first node) runs first. That follows the node order
  // that autodiff produced, so a gradient is consumed soon after it is made
  // (memplan's peak follows from this order).
  const int K = (int)groups.size();
  std::vector<std::set<int>> preds(K), users(K);
  for (int i = 0; i < n; ++i)
    for (NodeId x : g.nodes[i].in)
      if (group[x] >= 0 && group[i] >= 0 && group[x] != group[i]) {
        preds[group[i]].insert(group[x]);
        users[group[x]].insert(group[i]);
      }
  std::vector<int> order, waiting(K);
  std::set<int> ready;
  for (int G = 0; G < K; ++G) {
    waiting[G] = (int)preds[G].size();
    if (!waiting[G]) ready.insert(G);
  }
  while (!ready.empty()) {
    const int G = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(G);
    for (int U : users[G])
      if (--waiting[U] == 0) ready.insert(U);
  }
  if ((int)order.size() != K) DDPM_ICE("fuse produced a cycle between kernels");
  for (int G : order) g.kernels.push_back(groups[G]);
  return g;
}

}  // namespace ddpmc
