// IR utilities: types, the textual dump used by --dump-after, and the verifier
// that the pipeline runs between passes in debug builds (and tests always run).
#include "ir.h"

#include <fmt/format.h>

#include "ops.h"

namespace ddpmc {

int64_t Type::numel() const {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::string Type::str() const {
  std::string s = "[";
  if (batched) s += "B";
  for (size_t i = 0; i < dims.size(); ++i) s += fmt::format("{}{}", (batched || i) ? "," : "", dims[i]);
  return s + "]";
}

NodeId Graph::add(Node n) {
  nodes.push_back(std::move(n));
  return (NodeId)nodes.size() - 1;
}

Graph remove_dead(const Graph& g) {
  std::vector<bool> live(g.nodes.size(), false);
  for (NodeId o : g.outputs) live[o] = true;
  for (int i = (int)g.nodes.size() - 1; i >= 0; --i)
    if (live[i])
      for (NodeId x : g.nodes[i].in) live[x] = true;
  Graph out;
  out.name = g.name;
  out.input_names = g.input_names;
  out.output_names = g.output_names;
  std::vector<NodeId> remap(g.nodes.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!live[i]) continue;
    Node n = g.nodes[i];
    for (NodeId& x : n.in) x = remap[x];
    remap[i] = out.add(std::move(n));
  }
  for (NodeId o : g.outputs) out.outputs.push_back(remap[o]);
  return out;
}

static std::string attrs(const Node& n) {
  switch (n.op) {
    case Op::Input: return n.name;
    case Op::Param: return fmt::format("{} #{}", n.name, n.index);
    case Op::Const: return fmt::format("{}", n.value);
    case Op::InvBatch: return fmt::format("{}/B", n.value);
    case Op::ConstTensor: return fmt::format("{} values", n.data.size());
    case Op::Lookup: return fmt::format("table of {}", n.data.size());
    case Op::RandN:
    case Op::RandU: return fmt::format("stream {}", n.i0);
    case Op::UniformStep: return fmt::format("stream {}, 1..{}", n.i0, n.i1);
    case Op::Matmul: return n.i0 == kNN ? "NN" : n.i0 == kNT ? "NT" : "TN";
    case Op::Slice: return fmt::format("[{}:{}] axis {}", n.i0, n.i0 + n.i1, n.axis);
    case Op::Concat: return fmt::format("axis {}", n.axis);
    case Op::Conv2d:
    case Op::Conv2dBackData:
    case Op::Conv2dBackFilter: return fmt::format("stride {}, padding {}", n.i0, n.i1);
    case Op::GroupNorm:
    case Op::GroupNormBack: return fmt::format("{} groups, eps {}", n.i0, n.value);
    default: return "";
  }
}

std::string print_graph(const Graph& g) {
  std::string s = fmt::format("graph {} ({} nodes)\n", g.name, g.nodes.size());
  std::vector<int> kernel_of(g.nodes.size(), -1);
  for (size_t k = 0; k < g.kernels.size(); ++k) {
    for (NodeId id : g.kernels[k].nodes) kernel_of[id] = (int)k;
    for (NodeId id : g.kernels[k].prologue) kernel_of[id] = (int)k;
  }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    std::string ins;
    for (NodeId x : n.in) ins += fmt::format("{}%{}", ins.empty() ? "" : ", ", x);
    std::string a = attrs(n);
    s += fmt::format("  %{:<4} = {:<12} {:<10}", i, op_name(n.op), n.type.str());
    if (!ins.empty()) s += " " + ins;
    if (!a.empty()) s += "  {" + a + "}";
    if (kernel_of[i] >= 0) s += fmt::format("  @k{}", kernel_of[i]);
    if (i < g.slots.size() && g.slots[i].where == Slot::Where::Arena)
      s += fmt::format("  @arena[{}*B+{}]", g.slots[i].per_sample, g.slots[i].fixed);
    if (!n.locs.empty() && n.locs[0].file)
      s += fmt::format("  ; {}:{}", n.locs[0].file->path, n.locs[0].line);
    s += "\n";
  }
  for (size_t i = 0; i < g.outputs.size(); ++i)
    s += fmt::format("  output {} = %{}\n", g.output_names[i], g.outputs[i]);
  return s;
}

void verify(const Graph& g, const Model& p) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const OpRow& row = op_row(n.op);
    if (row.arity >= 0 && (int)n.in.size() != row.arity)
      DDPM_ICE(fmt::format("{}: %{} ({}) has {} inputs, expected {}", g.name, i, row.name, n.in.size(), row.arity));
    std::vector<Type> in;
    for (NodeId x : n.in) {
      if (x < 0 || x >= (NodeId)i) DDPM_ICE(fmt::format("{}: %{} uses %{} out of SSA order", g.name, i, x));
      in.push_back(g.nodes[x].type);
    }
    Type out;
    std::string e = row.shape(n, in, out);
    if (!e.empty() || out != n.type)
      DDPM_ICE(fmt::format("{}: %{} ({}) has type {} but its shape rule gives {} {}", g.name, i, row.name,
                           n.type.str(), out.str(), e));
    if (n.op == Op::Param) {
      if (n.index < 0 || n.index >= (int)p.params.size() || p.params[n.index].type != n.type)
        DDPM_ICE(fmt::format("{}: %{} refers to a bad parameter", g.name, i));
    }
  }
  if (g.outputs.size() != g.output_names.size()) DDPM_ICE("outputs and output names differ in length");
  for (NodeId o : g.outputs)
    if (o < 0 || o >= (NodeId)g.nodes.size()) DDPM_ICE(fmt::format("{}: bad output %{}", g.name, o));
  for (const Kernel& k : g.kernels) {
    for (NodeId id : k.nodes)
      if (id < 0 || id >= (NodeId)g.nodes.size()) DDPM_ICE("kernel refers to a missing node");
    if (!k.prologue.empty() && (k.kind != KernelKind::Conv || g.nodes[k.nodes[0]].op != Op::Conv2d))
      DDPM_ICE("a prologue outside a forward convolution kernel");
    for (NodeId id : k.prologue)
      if (id < 0 || id >= (NodeId)g.nodes.size() || id >= k.nodes[0])
        DDPM_ICE("a kernel's prologue refers to a missing node or one after its convolution");
  }
}

}  // namespace ddpmc
