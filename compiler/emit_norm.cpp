// GroupNorm emitters (see emitter.h): a group normalization with the elementwise ops fused
// around it, forward (statistics, then one sweep) and backward (statistics, then the sums of dy
// and dy * xhat with the recomputed forward side, then the gradient). Called by Emitter::kernels
// in emit_kernels.cpp; convolutions that compute a norm in their fill use body() and xhat() from
// emit_conv.cpp. Output is deterministic C++.
#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "emitter.h"
#include "ops.h"

namespace ddpmc {

// Norm kernels: the normalized value of element (b, j), from x and the row's statistics.
std::string Emitter::xhat(const std::string& x, const std::string& cols) {
  return fmt::format("(ld<T>({} + b * {} + j) - T(mean)) * T(rstd)", x, cols);
}

// A group normalization with the elementwise ops fused around it. Per (sample,
// group) row: the mean and variance of x, then (backward) the sums of dy and
// dy * xhat, then one sweep computing every member; the per-channel sums go to
// per-sample partials, added in sample order at the end.
void Emitter::norm(size_t k, const Kernel& kern) {
  NodeId fwd = -1, bwd = -1;
  for (NodeId id : kern.nodes) {
    if (g.nodes[id].op == Op::GroupNorm) fwd = id;
    if (g.nodes[id].op == Op::GroupNormBack) bwd = id;
  }
  const Node& an = g.nodes[bwd >= 0 ? bwd : fwd];
  const Type& d = kern.domain;
  const int64_t N = d.numel(), C = d.dims[0], HW = N / C, G = an.i0, cpg = C / G, row = N / G;
  const std::string X = ptr(an.in[0]);
  header(k, kern, fwd >= 0 && bwd >= 0 ? "group norm, recomputed, and its gradient, fused,"
                  : bwd >= 0           ? "group norm gradient, fused,"
                                       : "group norm, fused,");
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  out += fmt::format("  // x [B,{}] in {} groups of {} channels x {} elements; eps {}\n", d.str().substr(3, d.str().size() - 4),
                     G, cpg, HW, flt(an.value));
  std::vector<NodeId> reds;
  for (NodeId id : kern.nodes)
    if (g.nodes[id].op == Op::SumTo) reds.push_back(id);
  const int R = (int)reds.size();
  out += fmt::format("  parallel_chunks(e.B * {}, e.B * {}, [&](int64_t task) {{\n", G, N);
  out += fmt::format("    const int64_t b = task / {0}, q = task % {0};\n", G);
  out += fmt::format("    const float* xr = {} + b * {} + q * {};\n", X, N, row);
  out += fmt::format("    const float mean = row_sum(xr, {0}) / {0}.0f;\n", row);
  out += fmt::format("    const float rstd = 1.0f / std::sqrt(row_sqdev(xr, {0}, mean) / {0}.0f + {1});\n", row,
                     flt(an.value));
  BodyOpts o;
  o.chan_hw = HW;
  o.x_norm = X;
  const std::string cols = fmt::format("{}", N);
  if (bwd >= 0) {
    std::vector<NodeId> split_reds;
    if (norm_backward_split(kern, bwd, X, C, HW, cpg, row, o, split_reds)) {
      out += "  });\n";
      if (R > 0) {
        out += outs_decl(split_reds);
        out += fmt::format("  sum_channel_partials<{}>(e.scratch, e.B, {}, outs);\n", R, C);
      }
      out += "}\n\n";
      return;
    }
  }
  if (bwd >= 0) {
    // The members dy depends on, and the sums of dy and dy * xhat.
    std::set<NodeId> need, inside(kern.nodes.begin(), kern.nodes.end());
    std::vector<NodeId> st{g.nodes[bwd].in[1]};
    while (!st.empty()) {
      NodeId u = st.back();
      st.pop_back();
      if (!inside.count(u) || !need.insert(u).second) continue;
      for (NodeId y : g.nodes[u].in) st.push_back(y);
    }
    BodyOpts po = o;
    po.stores = false;
    po.sums = false;
    po.only = &need;
    po.name = "body_dy";
    po.ret = fmt::format("acc[0] += v{0};\n    acc[1] += v{0} * ({1});", g.nodes[bwd].in[1], xhat(X, cols));
    std::string pb = body(kern, kern.nodes, cols, nullptr, po);
    out += "    float mdy, mdyx;\n    {\n      " + indent(pb, 4);
    out += fmt::format("      float sums[2];\n      row_channel_sums<2>(b, q * {}, (q + 1) * {}, {}, sums, body_dy);\n",
                       cpg, cpg, HW);
    out += fmt::format("      mdy = sums[0] / {0}.0f;\n      mdyx = sums[1] / {0}.0f;\n    }}\n", row);
  } else {
    out += "    const float mdy = 0.0f, mdyx = 0.0f;\n";
  }
  out += "    (void)mdy;\n    (void)mdyx;\n";
  out += "    " + indent(body(kern, kern.nodes, cols, nullptr, o), 2);
  if (R > 0) {
    out += fmt::format("    float* part = e.scratch + b * {};  // [C, R] partial sums of sample b\n", C * R);
    out += fmt::format("    channel_sums<{}>(b, q * {}, (q + 1) * {}, {}, part, body);\n", R, cpg, cpg, HW);
  } else {
    out += fmt::format("    for (int64_t c = q * {0}; c < (q + 1) * {0}; ++c)\n", cpg);
    out += fmt::format("      for_cols(c * {0}, (c + 1) * {0}, [&](auto tag, int64_t j) {{ body(tag, b, j, nullptr); }});\n", HW);
  }
  out += "  });\n";
  if (R > 0) {
    out += outs_decl(reds);
    out += fmt::format("  sum_channel_partials<{}>(e.scratch, e.B, {}, outs);\n", R, C);
  }
  out += "}\n\n";
}

// The gradient of a group norm in two sweeps over the row instead of three. The
// first computes every member that does not depend on the gradient node `bwd` (their
// stores and per-channel sums: the recomputed SiLU output, the affine parameters'
// gradients), sums dy and dy * xhat over the row, and parks dy in the buffer of a
// stored full-size member on the gradient's side. The second reads dy back and
// computes only that side (recomputing whatever else it reads that is not stored).
// A sigmoid and the chain that produces dy then run once per element, not twice.
// Each task writes and reads back the same elements of the parked buffer, and memplan
// never lets it share memory with the kernel's inputs (their live ranges meet here).
// Returns false (emitting nothing) when there is no such buffer or dy is read from
// memory anyway.
bool Emitter::norm_backward_split(const Kernel& kern, NodeId bwd, const std::string& X, int64_t C, int64_t HW,
                                  int64_t cpg, int64_t row, const BodyOpts& o, std::vector<NodeId>& reds) {
  std::vector<NodeId> members(kern.nodes.begin(), kern.nodes.end());
  std::sort(members.begin(), members.end());  // node ids are topological
  const std::set<NodeId> inside(members.begin(), members.end());
  const NodeId dy = g.nodes[bwd].in[1];
  if (!inside.count(dy)) return false;
  std::set<NodeId> post{bwd};
  for (NodeId id : members)
    for (NodeId x : g.nodes[id].in)
      if (post.count(x)) post.insert(id);
  auto stored = [&](NodeId id) { return std::find(kern.outputs.begin(), kern.outputs.end(), id) != kern.outputs.end(); };
  NodeId park = -1;
  for (NodeId id : members)
    if (park < 0 && post.count(id) && stored(id) && g.nodes[id].type == kern.domain &&
        g.slots.at(id).where == Slot::Where::Arena)
      park = id;
  if (park < 0) return false;
  // The second sweep: the gradient's side and the unstored values it reads, dy excepted.
  std::set<NodeId> second;
  std::vector<NodeId> stack(post.begin(), post.end());
  while (!stack.empty()) {
    NodeId u = stack.back();
    stack.pop_back();
    if (u == dy || !inside.count(u) || !second.insert(u).second) continue;
    for (NodeId x : g.nodes[u].in) stack.push_back(x);
  }
  std::set<NodeId> first;
  int RB = 0, RC = 0;
  for (NodeId id : members) {
    const bool sum = g.nodes[id].op == Op::SumTo;
    if (!post.count(id)) first.insert(id), RB += sum;
    else RC += sum;
    if (sum && second.count(id) && !post.count(id)) return false;  // a sum is never an operand; be sure
  }
  const int R = RB + RC;
  const std::string cols = fmt::format("{}", C * HW), P = ptr(park);
  BodyOpts po = o;
  po.only = &first;
  po.name = "body_pre";
  po.ret = fmt::format("acc[{0}] += v{2};\n    acc[{1}] += v{2} * ({3});\n    st({4} + b * {5} + j, v{2});", RB, RB + 1,
                       dy, xhat(X, cols), P, cols);
  out += fmt::format("    float* part = {};  // [C, {}] partial sums of sample b\n",
                     R > 0 ? fmt::format("e.scratch + b * {}", C * R) : "nullptr", R);
  out += "    (void)part;\n    float mdy, mdyx;\n    {\n      ";
  out += indent(body(kern, members, cols, &reds, po), 4);
  out += fmt::format("      float tot[2];\n      channel_and_row_sums<{}, {}>(b, q * {}, (q + 1) * {}, {}, part, tot, body_pre);\n",
                     RB, R, cpg, cpg, HW);
  out += fmt::format("      mdy = tot[0] / {0}.0f;\n      mdyx = tot[1] / {0}.0f;\n    }}\n", row);
  BodyOpts pc = o;
  pc.only = &second;
  pc.stored = &post;
  pc.reads[dy] = P;
  out += "    " + indent(body(kern, members, cols, &reds, pc), 2);
  if (RC > 0)
    out += fmt::format("    channel_sums<{}, {}>(b, q * {}, (q + 1) * {}, {}, part + {}, body);\n", RC, R, cpg, cpg, HW, RB);
  else
    out += fmt::format("    for (int64_t c = q * {0}; c < (q + 1) * {0}; ++c)\n"
                       "      for_cols(c * {1}, (c + 1) * {1}, [&](auto tag, int64_t j) {{ body(tag, b, j, nullptr); }});\n",
                       cpg, HW);
  DDPM_CHECK((int)reds.size() == R, "norm_backward_split: sums out of step");
  return true;
}

}  // namespace ddpmc
