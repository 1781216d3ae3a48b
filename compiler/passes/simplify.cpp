// Simplification (pass: simplify): one forward sweep that rebuilds the graph with
//   - constant folding of scalar constants and constant vectors (arange, ...);
//   - table folding: an elementwise op whose inputs are lookups of the same step
//     and constants becomes one lookup in a precomputed table, so that
//     sqrt(1 - abar[t]) costs one load at run time;
//   - identities: x + 0, x * 1, x - 0, x / 1, -(-x), broadcast to the same type;
//   - reassociation of (p * q) * r into p * (q * r) when q * r is already a node
//     (reassociate, below; it changes results by rounding only);
//   - common-subexpression elimination (random ops are keyed by their stream, so
//     merging two of them is exact);
// followed by dead-code elimination from the outputs. Then check_constants: a
// constant that came out NaN or infinite, or a table that does at a step its
// lookup can read, is a user error at the spec line that computes it.
#include <cmath>
#include <map>
#include <optional>
#include <tuple>

#include <fmt/format.h>

#include "diag.h"
#include "ops.h"
#include "passes.h"

namespace ddpmc {
namespace {

// Floats are keyed by their bit patterns: tables can hold NaN (0/0 at step 0 of
// beta/sqrt(1-abar)), and NaN would break the map's ordering and merge distinct nodes.
using Key = std::tuple<int, std::vector<NodeId>, std::string, int64_t, int64_t, int64_t, std::string, std::string, int,
                       bool, std::vector<int64_t>>;

Key key_of(const Node& n) {
  std::string value(reinterpret_cast<const char*>(&n.value), sizeof n.value);
  std::string data(reinterpret_cast<const char*>(n.data.data()), n.data.size() * sizeof(float));
  value.append(reinterpret_cast<const char*>(&n.value2), sizeof n.value2);
  return {(int)n.op, n.in, value, n.i0, n.i1, n.axis, data, n.name, n.index, n.type.batched, n.type.dims};
}

bool is_const(const Node& n, double v) { return n.op == Op::Const && n.value == v; }

// (p * q) * r -> p * (q * r) when q * r (in either order) is already a node: the
// product reuses a value the graph has, and q may no longer be needed. This is
// SiLU's gradient: ((g * x) * s) * (1 - s), with s = sigmoid(x), becomes
// (g * (x * s)) * (1 - s), which reads the forward output x * s where it read x,
// so x need not be stored for the backward pass. All of one type, no broadcasts.
// Returns the node to intern, or nothing when the rule does not apply.
std::optional<Node> reassociate(const Node& n, const Graph& g, const std::map<Key, NodeId>& seen) {
  const Node& pq = g.nodes[n.in[0]];
  const NodeId r = n.in[1];
  if (pq.op != Op::Mul || pq.type != n.type || g.nodes[r].type != n.type) return std::nullopt;
  for (int k = 0; k < 2; ++k) {
    const NodeId p = pq.in[k], q = pq.in[1 - k];
    if (g.nodes[p].type != n.type || g.nodes[q].type != n.type) continue;
    for (auto [x, y] : {std::pair{q, r}, std::pair{r, q}}) {
      Node probe{Op::Mul};
      probe.in = {x, y};
      probe.type = n.type;
      auto it = seen.find(key_of(probe));
      if (it == seen.end()) continue;
      Node m{Op::Mul};
      m.in = {p, it->second};
      m.type = n.type;
      m.locs = n.locs;
      return m;
    }
  }
  return std::nullopt;
}

}  // namespace

Graph simplify(const Graph& in) {
  Graph g;
  g.name = in.name;
  g.input_names = in.input_names;
  Builder b(g);
  std::vector<NodeId> map(in.nodes.size(), -1);
  std::map<Key, NodeId> seen;

  auto intern = [&](Node n) -> NodeId {
    Key k = key_of(n);
    if (auto it = seen.find(k); it != seen.end()) return it->second;
    NodeId id = b.add(std::move(n));
    seen.emplace(std::move(k), id);
    return id;
  };

  for (size_t i = 0; i < in.nodes.size(); ++i) {
    Node n = in.nodes[i];
    for (NodeId& x : n.in) x = map[x];
    const OpRow& row = op_row(n.op);
    NodeId out = -1;
    if (row.cls == OpClass::Elementwise && n.op != Op::Lookup) {
      // Recompute the type (inputs may have been replaced by equal-typed ones).
      std::vector<const Node*> ins;
      for (NodeId x : n.in) ins.push_back(&g.nodes[x]);
      bool all_const = true, all_tensor_const = true, any_lookup = false;
      NodeId step = -1;
      bool lookup_ok = true;
      for (auto* x : ins) {
        all_const = all_const && x->op == Op::Const;
        all_tensor_const = all_tensor_const && (x->op == Op::Const || x->op == Op::ConstTensor);
        if (x->op == Op::Lookup) {
          any_lookup = true;
          if (step >= 0 && step != x->in[0]) lookup_ok = false;
          step = x->in[0];
        } else if (x->op != Op::Const) {
          lookup_ok = false;
        }
      }
      if (all_const && n.op != Op::Broadcast) {
        double v[3];  // up to three operands (where)
        for (size_t k = 0; k < ins.size(); ++k) v[k] = ins[k]->value;
        Node c{Op::Const};
        c.value = row.eval(n, v);
        c.locs = n.locs;
        out = intern(std::move(c));
      } else if (all_tensor_const && n.op != Op::Broadcast) {
        Node c{Op::ConstTensor};
        c.locs = n.locs;
        int64_t len = 1;
        for (auto* x : ins)
          if (x->op == Op::ConstTensor) len = (int64_t)x->data.size(), c.type = x->type;
        for (int64_t e = 0; e < len; ++e) {
          double v[3];  // up to three operands (where)
          for (size_t k = 0; k < ins.size(); ++k) v[k] = ins[k]->op == Op::Const ? ins[k]->value : ins[k]->data[e];
          c.data.push_back((float)row.eval(n, v));
        }
        out = intern(std::move(c));
      } else if (any_lookup && lookup_ok && n.op != Op::Broadcast) {
        // Fold into one table; tables are evaluated in double from float entries.
        Node c{Op::Lookup};
        c.locs = n.locs;
        c.in = {step};
        size_t len = 0;
        for (auto* x : ins)
          if (x->op == Op::Lookup) len = x->data.size();
        for (size_t e = 0; e < len; ++e) {
          double v[3];  // up to three operands (where)
          for (size_t k = 0; k < ins.size(); ++k) v[k] = ins[k]->op == Op::Const ? ins[k]->value : ins[k]->data[e];
          c.data.push_back((float)row.eval(n, v));
        }
        out = intern(std::move(c));
      } else {
        const Node* a = ins.size() > 0 ? ins[0] : nullptr;
        const Node* c = ins.size() > 1 ? ins[1] : nullptr;
        Type t;
        bool same0 = false, same1 = false;
        if (c) {
          broadcast_type(a->type, c->type, t);
          same0 = t == a->type;
          same1 = t == c->type;
        }
        if (n.op == Op::Broadcast && a->type == n.type) out = n.in[0];
        else if (n.op == Op::Add && is_const(*c, 0) && same0) out = n.in[0];
        else if (n.op == Op::Add && is_const(*a, 0) && same1) out = n.in[1];
        else if (n.op == Op::Sub && is_const(*c, 0) && same0) out = n.in[0];
        else if (n.op == Op::Mul && is_const(*c, 1) && same0) out = n.in[0];
        else if (n.op == Op::Mul && is_const(*a, 1) && same1) out = n.in[1];
        else if (n.op == Op::Div && is_const(*c, 1) && same0) out = n.in[0];
        else if (n.op == Op::Neg && a->op == Op::Neg) out = a->in[0];
        else if (n.op == Op::Mul) {
          if (std::optional<Node> m = reassociate(n, g, seen)) out = intern(std::move(*m));
        }
      }
    }
    if (out < 0) out = intern(std::move(n));
    map[i] = out;
  }
  for (size_t k = 0; k < in.outputs.size(); ++k) {
    g.outputs.push_back(map[in.outputs[k]]);
    g.output_names.push_back(in.output_names[k]);
  }
  Graph out = remove_dead(g);
  check_constants(out);
  return out;
}

namespace {

// The steps a lookup can see: a sampler's t and the loss's uniform_step() are
// 1..T, a sampler's s is 0..T-1; anything else, 0..T.
struct StepRange {
  int64_t lo, hi;
  std::string who;
};
StepRange step_range(const Graph& g, const Node& lookup) {
  const Node& step = g.nodes[lookup.in[0]];
  const int64_t T = (int64_t)lookup.data.size() - 1;
  if (step.op == Op::UniformStep) return {1, T, "uniform_step()"};
  if (step.op == Op::Input && step.name == "t") return {1, T, "the step t"};
  if (step.op == Op::Input && step.name == "s") return {0, T - 1, "the step s"};
  return {0, T, "a step"};
}

std::string non_finite(double v) { return std::isnan(v) ? "NaN" : v > 0 ? "infinite" : "-infinite"; }

const char* kConstHint = "check the arguments: sqrt needs x >= 0, log needs x > 0, and a division by zero is infinite";

}  // namespace

void check_constants(const Graph& g) {
  for (const Node& n : g.nodes) {
    const Loc loc = n.locs.empty() ? Loc{} : n.locs[0];
    if (n.op == Op::Const && !std::isfinite(n.value))
      user_error(loc, fmt::format("this constant is {} when it is computed at compile time", non_finite(n.value)),
                 kConstHint);
    if (n.op == Op::ConstTensor)
      for (size_t e = 0; e < n.data.size(); ++e)
        if (!std::isfinite(n.data[e]))
          user_error(loc, fmt::format("this constant is {} at element {} when it is computed at compile time",
                                      non_finite(n.data[e]), e),
                     kConstHint);
    // A table (folded at compile time) that is not finite, or a division by a
    // table that is zero, at a step the lookup can read.
    const bool div = n.op == Op::Div && g.nodes[n.in[1]].op == Op::Lookup;
    const Node& tab = div ? g.nodes[n.in[1]] : n;
    if ((n.op != Op::Lookup && !div) || tab.data.empty()) continue;
    const StepRange r = step_range(g, tab);
    const std::string hint = fmt::format("schedule tables are evaluated at compile time for steps {}..{}; keep "
                                         "divisors and square-root arguments away from 0 there (for example use "
                                         "abar_prev, or clip)", r.lo, r.hi);
    for (int64_t k = r.lo; k <= r.hi; ++k) {
      if (!div && !std::isfinite(tab.data[k]))
        user_error(loc, fmt::format("this schedule expression is {} at step {}, which {} can take",
                                    non_finite(tab.data[k]), k, r.who), hint);
      if (div && tab.data[k] == 0)
        user_error(loc, fmt::format("this divides by a schedule expression that is 0 at step {}, which {} can take",
                                    k, r.who), hint);
    }
  }
}

}  // namespace ddpmc
