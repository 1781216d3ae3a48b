// Prologue fusion (pass: prologue): a forward group normalization whose only stored value is
// the input of one forward convolution (GroupNorm, its affine map and SiLU in front of a conv,
// the U-Net's resblock pattern) moves into that convolution's kernel as its prologue. The
// convolution then computes each input row while it copies the row into its zero-padded,
// L2-sized scratch (the `fill` of conv.h, winograd.h, winograd4.h, conv_narrow.h), so the
// normalized map is never stored and re-read: memplan gives it no arena slot.
//
// Conditions (else the graph is unchanged): the Norm kernel has no gradient part and no sums;
// it stores exactly one value h; h is not a graph output; the only user of h is the conv2d
// node that starts the next kernel using h as its input x; and that convolution runs on a path
// with a fill (compiler/conv_plan.h: Winograd4, Winograd, Blocked, Narrow).
#include <algorithm>

#include "conv_plan.h"
#include "ops.h"
#include "passes.h"

namespace ddpmc {

namespace {

bool fill_path(ConvPath p) {
  return p == ConvPath::Winograd4 || p == ConvPath::Winograd || p == ConvPath::Blocked || p == ConvPath::Narrow;
}

}  // namespace

Graph fuse_prologue(const Graph& in) {
  Graph g = in;
  std::vector<int> users(g.nodes.size(), 0);
  for (const Node& n : g.nodes)
    for (NodeId x : n.in) ++users[x];
  for (NodeId o : g.outputs) ++users[o];
  std::vector<bool> absorbed(g.kernels.size(), false);
  for (size_t ki = 0; ki < g.kernels.size(); ++ki) {
    Kernel& conv = g.kernels[ki];
    if (conv.kind != KernelKind::Conv || !conv.prologue.empty()) continue;
    const Node& cn = g.nodes[conv.nodes[0]];
    if (cn.op != Op::Conv2d || !fill_path(conv_path(cn, conv_dims(g, cn)))) continue;
    const NodeId h = cn.in[0];
    if (users[h] != 1) continue;
    for (size_t ni = 0; ni < ki; ++ni) {
      const Kernel& norm = g.kernels[ni];
      if (absorbed[ni] || norm.kind != KernelKind::Norm || norm.reduce != Kernel::Reduce::None) continue;
      if (norm.outputs.size() != 1 || norm.outputs[0] != h || norm.domain != g.nodes[h].type) continue;
      bool forward_only = true;
      for (NodeId id : norm.nodes) forward_only = forward_only && g.nodes[id].op != Op::GroupNormBack && g.nodes[id].op != Op::SumTo;
      if (!forward_only) continue;
      conv.prologue = norm.nodes;
      absorbed[ni] = true;
      break;
    }
  }
  std::vector<Kernel> kept;
  for (size_t k = 0; k < g.kernels.size(); ++k)
    if (!absorbed[k]) kept.push_back(std::move(g.kernels[k]));
  g.kernels = std::move(kept);
  return g;
}

}  // namespace ddpmc
