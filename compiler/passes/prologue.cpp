// Prologue fusion (pass: prologue): the kernel that computes the input x of a forward
// convolution moves into that convolution's kernel as its prologue when x is all it stores:
//   - a forward group normalization with its affine map and SiLU (the U-Net's resblock
//     pattern), or
//   - a nearest 2x upsampling (the U-Net's decoder: conv(upsample(h))).
// The convolution then computes each input row while it copies the row into its zero-padded,
// L2-sized scratch (the `fill` of conv.h, winograd.h, winograd4.h, conv_narrow.h), so x is
// never stored and re-read: memplan gives it no arena slot.
//
// Conditions (else the graph is unchanged): the kernel stores exactly one value x (a Norm
// kernel with no gradient part and no sums, or a Layout kernel of one upsample2x); x is not a
// graph output; the only user of x is the conv2d node that starts a later kernel, as its input
// x; and that convolution runs on a path with a fill (conv_plan.h: Winograd4, Winograd,
// Blocked, Narrow).
#include <algorithm>

#include "conv_plan.h"
#include "ops.h"
#include "passes.h"

namespace ddpmc {

namespace {

bool fill_path(ConvPath p) {
  return p == ConvPath::Winograd4 || p == ConvPath::WinogradByWidth || p == ConvPath::Winograd || p == ConvPath::Blocked || p == ConvPath::Narrow;
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
      const Kernel& pk = g.kernels[ni];
      if (absorbed[ni] || pk.outputs.size() != 1 || pk.outputs[0] != h) continue;
      const bool up = pk.kind == KernelKind::Layout && pk.nodes.size() == 1 && g.nodes[h].op == Op::Upsample2x;
      bool norm = pk.kind == KernelKind::Norm && pk.reduce == Kernel::Reduce::None && pk.domain == g.nodes[h].type;
      for (NodeId id : pk.nodes) norm = norm && g.nodes[id].op != Op::GroupNormBack && g.nodes[id].op != Op::SumTo;
      if (!up && !norm) continue;
      conv.prologue = pk.nodes;
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
