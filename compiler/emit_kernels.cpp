// Kernel emitters (see emitter.h): elementwise and reduction loops, GEMMs with fused epilogues,
// layout copies, and each entry point's driver (GroupNorm nests: emit_norm.cpp; convolutions:
// emit_conv.cpp). Output is deterministic C++.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "conv_plan.h"
#include "emitter.h"
#include "ops.h"

namespace ddpmc {

std::string flt(double v) {
  if (std::isnan(v)) return "NAN";
  if (std::isinf(v)) return v > 0 ? "INFINITY" : "-INFINITY";
  std::string s = fmt::format("{:.9g}", (float)v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s + "f";
}

std::string float_array(const std::string& name, const std::vector<float>& v) {
  std::string s = fmt::format("alignas(64) static const float {}[{}] = {{", name, v.size());
  for (size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{}", i % 8 ? " " : "\n    ", flt(v[i]) + ",");
  return s + "\n};\n";
}

// Iteration space of an elementwise domain: see ddpm_prelude.h.
std::pair<std::string, std::string> rows_cols(const Type& d) {
  if (d.batched && !d.dims.empty()) return {"e.B", fmt::format("{}", d.numel())};
  if (d.batched) return {"1", "e.B"};
  return {"1", fmt::format("{}", d.numel())};
}

// Per-sample scratch of a kernel that sums per channel into per-sample partials
// (C floats per sum), else 0.
std::string MatmulDims::batch_rows(const std::string& B) const {
  return rows == 1 ? B : fmt::format("{} * {}", B, rows);
}
std::string MatmulDims::m(const std::string& B) const { return tn ? fmt::format("{}", M) : batch_rows(B); }
std::string MatmulDims::k(const std::string& B) const { return tn ? batch_rows(B) : fmt::format("{}", K); }

MatmulDims matmul_dims(const Graph& g, const Node& mm) {
  const Type& ta = g.nodes[mm.in[0]].type;
  const Type& tb = g.nodes[mm.in[1]].type;
  const int64_t ka = ta.dims.back(), rows = ta.numel() / ka;
  if (mm.i0 == kNN) return {rows, tb.dims[1], ka, 0, false};
  if (mm.i0 == kNT) return {rows, tb.dims[0], ka, 0, false};
  return {rows, tb.dims.back(), 0, ka, true};
}

int64_t channel_partials_per_sample(const Graph& g, const Kernel& kern) {
  if (kern.reduce != Kernel::Reduce::Channels && kern.kind != KernelKind::Norm) return 0;
  int64_t R = 0;
  for (NodeId id : kern.nodes) R += g.nodes[id].op == Op::SumTo;
  return R * kern.domain.dims[0];
}



// Adds n spaces after every newline but a final one (for a lambda emitted nested).
std::string indent(const std::string& s, int n) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    r += s[i];
    if (s[i] == '\n' && i + 1 < s.size()) r += std::string(n, ' ');
  }
  return r;
}

std::string Emitter::table_name(const std::vector<float>& data) {
  std::string key(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
  auto it = tables.find(key);
  if (it != tables.end()) return it->second;
  std::string name = fmt::format("tab{}", (*table_counter)++);
  tables[key] = name;
  *table_defs += float_array(name, data);
  return name;
}

// Pointer expression for a stored value.
std::string Emitter::ptr(NodeId id) {
  const Slot& s = g.slots.at(id);
  const Node& n = g.nodes[id];
  switch (s.where) {
    case Slot::Where::Arena:
      return n.type.batched ? fmt::format("(e.A + {} * e.B)", s.per_sample)
                            : fmt::format("(e.A + {} * e.B + {})", g.arena_per_sample, s.fixed);
    case Slot::Where::Param: return fmt::format("(e.params + {})", s.fixed);
    case Slot::Where::Grad: return fmt::format("(e.grads + {})", s.fixed);
    case Slot::Where::Input:
      // A sampler's arguments, state and step flags (lower_entry.cpp); i0 is the
      // argument's index or the state variable's per-sample offset.
      if (n.name.rfind("arg/", 0) == 0) return fmt::format("(e.args + {})", n.i0);
      if (n.name.rfind("state/", 0) == 0) return fmt::format("(e.state_in + {} * e.B)", n.i0);
      if (n.name == "flag/first") return "(&e.first)";
      if (n.name == "flag/last") return "(&e.last)";
      return fmt::format("e.in_{}", n.name);
    case Slot::Where::Output:
      if (g.output_names.at(s.index) == "features") return "e.features";  // classify (ABI 6)
      if (g.output_names.at(s.index) == "frac") return "e.frac";          // eps with a learned variance (ABI 7)
      if (g.output_names.at(s.index) == "vjp") return "e.vjp";            // the ode's vector-Jacobian product (ABI 8)
      if (s.index > 0) return fmt::format("(e.state_out + {} * e.B)", s.per_sample);
      return "e.x_out";
    case Slot::Where::Loss: return "e.loss";
    default: DDPM_ICE(fmt::format("{}: value %{} ({}) has no storage", g.name, id, op_name(n.op)));
  }
}

// The spec lines a set of nodes comes from: "file:line" of each node's own
// position and of the entry-level call that reached it.
std::string Emitter::spec_lines(const std::vector<NodeId>& ids) {
  std::set<std::pair<std::string, int>> lines;
  for (NodeId id : ids)
    for (size_t k = 0; k < g.nodes[id].locs.size(); ++k) {
      const Loc& l = g.nodes[id].locs[k];
      if (l.file && (k == 0 || k + 1 == g.nodes[id].locs.size())) lines.insert({l.file->name, l.line});
    }
  std::string s;
  std::string last_file;
  for (auto& [f, line] : lines) {
    if (f != last_file) {
      s += fmt::format("{}{}:{}", s.empty() ? "" : "; ", f, line);
      last_file = f;
    } else {
      s += fmt::format(",{}", line);
    }
  }
  return s;
}

std::string Emitter::op_list(const std::vector<NodeId>& ids) {
  std::string s;
  for (NodeId id : ids) s += fmt::format("{}{}", s.empty() ? "" : " ", op_name(g.nodes[id].op));
  return s;
}

void Emitter::header(size_t k, const Kernel& kern, const std::string& what) {
  out += fmt::format("// {}_k{}: {} {}\n", prefix, k, what, kern.domain.str());
  out += fmt::format("//   ops:  {}\n", op_list(kern.nodes));
  std::string lines = spec_lines(kern.nodes);
  if (!lines.empty()) out += fmt::format("//   spec: {}\n", lines);
}

// A broadcast read (numpy rules) of `base` (type ti) in domain d, lane by lane:
// the index of domain element q in the input, as in broadcast_index().
std::string Emitter::gather(const std::string& base, const Type& ti, const Type& d) {
  const size_t n = d.dims.size(), off = n - ti.dims.size();
  std::string idx;
  int64_t inner = 1, istride = 1;
  for (size_t k = n; k-- > 0;) {
    const int64_t dk = d.dims[k], ik = k < off ? 1 : ti.dims[k - off];
    if (ik != 1) idx += fmt::format("{}(q / {} % {}) * {}", idx.empty() ? "" : " + ", inner, dk, istride);
    inner *= dk;
    istride *= ik;
  }
  if (idx.empty()) idx = "0";
  std::string batch = ti.batched ? fmt::format("b * {} + ", ti.numel()) : "";
  return fmt::format("gat(tag, [&](int64_t q) {{ return {}[{}{}]; }}, j)", base, batch, idx);
}

// Does ti broadcast to domain d varying only along d's first per-sample axis?
bool Emitter::per_channel(const Type& ti, const Type& d) {
  if (d.dims.size() < 2 || ti.dims.size() != d.dims.size() || ti.dims[0] != d.dims[0] || ti.dims[0] == 1) return false;
  for (size_t k = 1; k < ti.dims.size(); ++k)
    if (ti.dims[k] != 1) return false;
  return true;
}

// Elementwise body: a generic lambda (tag, b, j, acc) computing the kernel's
// members for element (b, j). `inside` marks nodes computed in this body.
std::string Emitter::body(const Kernel& kern, const std::vector<NodeId>& members, const std::string& cols,
                          std::vector<NodeId>* reduce_nodes, const BodyOpts& o) {
  std::set<NodeId> inside;
  for (NodeId id : members)
    if (!o.only || o.only->count(id)) inside.insert(id);
  const Type& d = kern.domain;
  std::string s = "auto " + o.name + " = [&](auto tag, int64_t b, int64_t j, auto acc) {\n";
  s += "    using T = decltype(tag);\n";
  s += "    (void)b;\n    (void)acc;\n";
  if (o.chan_hw > 0) s += fmt::format("    const int64_t ch = j / {};  // channel\n    (void)ch;\n", o.chan_hw);
  auto operand = [&](NodeId x) -> std::string {
    const Node& n = g.nodes[x];
    if (inside.count(x)) return fmt::format("v{}", x);
    if (auto it = o.reads.find(x); it != o.reads.end()) return fmt::format("ld<T>({} + b * {} + j)", it->second, cols);
    if (n.op == Op::Const) return fmt::format("T({})", flt(n.value));
    if (n.op == Op::InvBatch) return fmt::format("T({} / (float)e.B)", flt(n.value));
    if (n.op == Op::ConstTensor) {
      std::string t = table_name(n.data);
      if (n.type.dims.empty()) return fmt::format("T({}[0])", t);
      if (o.chan_hw > 0 && per_channel(n.type, d)) return fmt::format("T({}[ch])", t);
      if (o.flat && n.type.dims == d.dims) return fmt::format("gat(tag, [&](int64_t q) {{ return {}[q % {}]; }}, j)", t, o.flat);
      return n.type.dims == d.dims ? fmt::format("ld<T>({} + j)", t) : gather(t, n.type, d);
    }
    if (n.op == Op::Input && (n.name == "t" || n.name == "s")) return fmt::format("T(e.{})", n.name);
    std::string p = ptr(x);
    const Type& ti = n.type;
    if (ti == d) return fmt::format("ld<T>({} + b * {} + j)", p, cols);
    if (ti.dims.empty() && !ti.batched) return fmt::format("T({}[0])", p);
    if (o.flat && ti.dims.empty() && ti.batched)
      return fmt::format("gat(tag, [&](int64_t q) {{ return {}[q / {}]; }}, j)", p, o.flat);
    if (o.flat && !ti.batched && ti.dims == d.dims)
      return fmt::format("gat(tag, [&](int64_t q) {{ return {}[q % {}]; }}, j)", p, o.flat);
    DDPM_CHECK(!o.flat, "flat body: an operand flat_ok() does not allow");
    if (ti.dims.empty() && ti.batched) return fmt::format("T({}[b])", p);
    if (!ti.batched && ti.dims == d.dims) return fmt::format("ld<T>({} + j)", p);
    if (o.chan_hw > 0 && per_channel(ti, d))
      return ti.batched ? fmt::format("T({}[b * {} + ch])", p, ti.dims[0]) : fmt::format("T({}[ch])", p);
    return gather(p, ti, d);
  };
  int r = 0;
  for (NodeId id : members) {
    if (!inside.count(id)) continue;
    const Node& n = g.nodes[id];
    std::string expr;
    if (n.op == Op::Matmul) continue;  // computed by the GEMM; its members read it from memory
    if (n.op == Op::SumTo) {
      if (!o.sums) continue;
      s += fmt::format("    acc[{}] += {};\n", r++, operand(n.in[0]));
      if (reduce_nodes) reduce_nodes->push_back(id);
      continue;
    }
    if (n.op == Op::GroupNorm) {
      expr = xhat(o.x_norm, cols);
    } else if (n.op == Op::GroupNormBack) {
      expr = fmt::format("T(rstd) * ({} - T(mdy) - {} * T(mdyx))", operand(n.in[1]), xhat(o.x_norm, cols));
    } else if (n.op == Op::RandN) {
      expr = fmt::format("rnormal<T>(e.seed, e.step, {}, (e.row0 + b) * {} + j)", n.i0, cols);
    } else if (n.op == Op::RandU) {
      expr = fmt::format("runiform<T>(e.seed, e.step, {}, (e.row0 + b) * {} + j)", n.i0, cols);
    } else if (n.op == Op::UniformStep) {
      expr = fmt::format("rstep<T>(e.seed, e.step, {}, (e.row0 + b) * {} + j, {})", n.i0, cols, n.i1);
    } else if (n.op == Op::Clip || n.op == Op::ClipMask) {
      expr = fmt::format(fmt::runtime(op_row(n.op).emit), operand(n.in[0]), fmt::arg("lo", flt(n.value)),
                         fmt::arg("hi", flt(n.value2)));
    } else if (n.op == Op::Lookup) {
      expr = fmt::format("vlookup<T>({}, {})", table_name(n.data), operand(n.in[0]));
    } else {
      const char* tmpl = op_row(n.op).emit;
      DDPM_CHECK(tmpl, std::string("no emitted code for ") + op_name(n.op));
      std::string a[3];
      for (size_t q = 0; q < n.in.size() && q < 3; ++q) a[q] = operand(n.in[q]);
      expr = fmt::format(fmt::runtime(tmpl), a[0], a[1], a[2]);
    }
    s += fmt::format("    const T v{} = {};\n", id, expr);
    if (o.stores && (!o.stored || o.stored->count(id)) &&
        std::find(kern.outputs.begin(), kern.outputs.end(), id) != kern.outputs.end())
      s += fmt::format("    st({} + b * {} + j, v{});\n", ptr(id), cols, id);
  }
  if (!o.ret.empty()) s += "    " + o.ret + "\n";
  s += "  };\n";
  return s;
}

// `float* const outs[R] = {...};`: where each of a kernel's sums is stored.
std::string Emitter::outs_decl(const std::vector<NodeId>& reds) {
  std::string ptrs;
  for (size_t i = 0; i < reds.size(); ++i) ptrs += fmt::format("{}{}", i ? ", " : "", ptr(reds[i]));
  return fmt::format("  float* const outs[{}] = {{{}}};\n", reds.size(), ptrs);
}

// Can an elementwise kernel over [B, n], n < 16 (a vector on AVX-512; on narrower machines
// flat is merely not needed), run flat: every value it reads from outside is
// a scalar, a per-sample scalar, a per-column row, or a value of the kernel's own shape? (The
// emitted index b * n + j is then the flat index, and random ops keep their element numbers.)
bool Emitter::flat_ok(const Kernel& kern) {
  const Type& d = kern.domain;
  if (!d.batched || d.dims.empty() || d.numel() >= 16) return false;
  const std::set<NodeId> inside(kern.nodes.begin(), kern.nodes.end());
  for (NodeId id : kern.nodes)
    for (NodeId x : g.nodes[id].in) {
      if (inside.count(x)) continue;
      const Node& n = g.nodes[x];
      const Type& ti = n.type;
      if (n.op == Op::Const || n.op == Op::InvBatch || (n.op == Op::Input && (n.name == "t" || n.name == "s"))) continue;
      if (n.op == Op::ConstTensor ? !(ti.dims.empty() || ti.dims == d.dims)
                                  : !(ti == d || ti.dims.empty() || (!ti.batched && ti.dims == d.dims)))
        return false;
    }
  return true;
}

// Does an elementwise kernel read a per-channel value (then it loops channel by
// channel and reads those values as scalars)?
bool Emitter::reads_per_channel(const Kernel& kern, const std::vector<NodeId>& members) {
  std::set<NodeId> inside(members.begin(), members.end());
  for (NodeId id : members)
    for (NodeId x : g.nodes[id].in)
      if (!inside.count(x) && per_channel(g.nodes[x].type, kern.domain)) return true;
  return false;
}

// A reduction that is not over everything, the batch, or the features (e.g. a
// conv bias gradient [B,C,H,W] -> [C,1,1]): one output element per task, each
// summing its inputs in a fixed order.
void Emitter::reduce_general(size_t k, const Kernel& kern) {
  const Node& n = g.nodes[kern.nodes[0]];
  const Type& ti = g.nodes[n.in[0]].type;
  header(k, kern, "sum to a broadcast shape,");
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  std::string dims, keep;
  const size_t nd = ti.dims.size(), off = nd - n.type.dims.size();
  for (size_t d = 0; d < nd; ++d) {
    const int64_t od = d < off ? 1 : n.type.dims[d - off];
    dims += fmt::format("{}{}", d ? ", " : "", ti.dims[d]);
    keep += fmt::format("{}{}", d ? ", " : "", od == ti.dims[d] ? 1 : 0);
  }
  out += fmt::format("  static const int64_t dims[] = {{{}}};\n  static const bool keep[] = {{{}}};\n", dims.empty() ? "1" : dims,
                     keep.empty() ? "1" : keep);
  out += fmt::format("  reduce_to({}, {}, e.B, {}, {}, {}, dims, keep);\n", ptr(n.in[0]), ptr(kern.nodes[0]),
                     ti.batched ? "true" : "false", n.type.batched ? "true" : "false", nd);
  out += "}\n\n";
}

void Emitter::elementwise(size_t k, const Kernel& kern) {
  if (kern.reduce == Kernel::Reduce::General) return reduce_general(k, kern);
  if (kern.reduce == Kernel::Reduce::Channels || (kern.reduce == Kernel::Reduce::None && kern.domain.batched &&
                                                   reads_per_channel(kern, kern.nodes)))
    return by_channel(k, kern);
  if (kern.reduce == Kernel::Reduce::None && flat_ok(kern)) {
    // Rows narrower than a vector (e.g. [B, 2] points): one flat row, vectors across samples.
    const int64_t n = kern.domain.numel();
    header(k, kern, "elementwise, rows walked as one,");
    out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
    BodyOpts o;
    o.flat = n;
    out += "  " + body(kern, kern.nodes, fmt::format("{}", n), nullptr, o);
    out += fmt::format("  map_flat(e.B * {}, body);\n}}\n\n", n);
    return;
  }
  auto [rows, cols] = rows_cols(kern.domain);
  const char* what = kern.reduce == Kernel::Reduce::None      ? "elementwise"
                     : kern.reduce == Kernel::Reduce::All     ? "elementwise + sum over everything,"
                     : kern.reduce == Kernel::Reduce::Batch   ? "elementwise + sum over the batch,"
                                                              : "elementwise + sum over features,";
  header(k, kern, what);
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  out += fmt::format("  const int64_t rows = {}, cols = {};\n", rows, cols);
  std::vector<NodeId> reds;
  out += "  " + body(kern, kern.nodes, "cols", &reds);
  int R = (int)reds.size();
  switch (kern.reduce) {
    case Kernel::Reduce::None: out += "  map_rows(rows, cols, body);\n"; break;
    case Kernel::Reduce::All: {
      out += fmt::format("  float sums[{}];\n  reduce_all<{}>(rows, cols, sums, body);\n", R, R);
      for (int i = 0; i < R; ++i) out += fmt::format("  {}[0] = sums[{}];\n", ptr(reds[i]), i);
      break;
    }
    case Kernel::Reduce::Channels:
    case Kernel::Reduce::General: DDPM_ICE("elementwise: reduction handled elsewhere");
    case Kernel::Reduce::Batch:
    case Kernel::Reduce::Features: {
      out += outs_decl(reds);
      out += fmt::format("  {}<{}>(rows, cols, outs, body);\n",
                         kern.reduce == Kernel::Reduce::Batch ? "reduce_batch" : "reduce_features", R);
      break;
    }
  }
  out += "}\n\n";
}

// An elementwise kernel over [B,C,...] run channel by channel, so that
// per-channel operands are scalars; with per-channel sums to [C,1,...] (bias
// and GroupNorm-affine gradients) into per-sample partials, added in order.
void Emitter::by_channel(size_t k, const Kernel& kern) {
  const Type& d = kern.domain;
  const int64_t N = d.numel(), C = d.dims[0], HW = N / C;
  header(k, kern, kern.reduce == Kernel::Reduce::Channels ? "elementwise + per-channel sums," : "elementwise, by channel,");
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  std::vector<NodeId> reds;
  BodyOpts o;
  o.chan_hw = HW;
  out += "  " + body(kern, kern.nodes, fmt::format("{}", N), &reds, o);
  const int R = (int)reds.size();
  if (R == 0) {
    out += fmt::format("  map_channels(e.B, {}, {}, body);\n", C, HW);
  } else {
    out += outs_decl(reds);
    out += fmt::format("  reduce_channels<{}>(e.B, {}, {}, e.scratch, outs, body);\n", R, C, HW);
  }
  out += "}\n\n";
}

void Emitter::gemm(size_t k, const Kernel& kern) {
  const Node& mm = g.nodes[kern.nodes[0]];
  const Type& ta = g.nodes[mm.in[0]].type;
  const Type& tb = g.nodes[mm.in[1]].type;
  const MatmulDims md = matmul_dims(g, mm);
  const std::string M = md.m("e.B"), K = md.k("e.B"), N = fmt::format("{}", md.N);
  const bool transA = mm.i0 == kTN, transB = mm.i0 == kNT;
  const std::string lda = mm.i0 == kTN ? M : K, ldb = mm.i0 == kNT ? K : N;
  header(k, kern, kern.nodes.size() > 1 ? "GEMM with fused epilogue," : "GEMM");
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  out += fmt::format("  // C[{},{}] = {}{} x {}{}\n", M, N, ta.str(), transA ? "^T" : "", tb.str(),
                     transB ? "^T" : "");
  std::vector<NodeId> epi(kern.nodes.begin() + 1, kern.nodes.end());
  std::string call = fmt::format("{}((int){}, {}, (int){}, {}, {}, {}, {}, {}, {}, {}, {}, e.scratch",
                                 epi.empty() ? "gemm_plain" : "gemm_epilogue", M, N, K,
                                 ptr(mm.in[0]), lda, transA ? "true" : "false", ptr(mm.in[1]), ldb,
                                 transB ? "true" : "false", ptr(kern.nodes[0]), N);
  if (epi.empty()) {
    out += "  " + call + ");\n";
  } else {
    out += fmt::format("  const int64_t cols = {};\n", N);
    out += "  " + body(kern, epi, "cols", nullptr);
    out += "  " + call + ",\n       [&](int i0, int i1, int j0, int j1) {\n";
    out += "         for (int64_t b = i0; b < i1; ++b) for_cols(j0, j1, [&](auto tag, int64_t j) { body(tag, b, j, nullptr); });\n";
    out += "       });\n";
  }
  out += "}\n\n";
}

void Emitter::layout(size_t k, const Kernel& kern) {
  const NodeId id = kern.nodes[0];
  const Node& n = g.nodes[id];
  for (NodeId x : n.in) {
    const Op op = g.nodes[x].op;
    if (op == Op::Const || op == Op::ConstTensor || op == Op::InvBatch)
      DDPM_ICE(fmt::format("{} of a constant must be materialized first", op_name(n.op)));
  }
  const std::string B = n.type.batched ? "e.B * " : "";
  if (n.op == Op::Concat || n.op == Op::Slice) {
    const int64_t a = layout_axis(n, n.type), W = dims_from(n.type, a);
    header(k, kern, fmt::format("{} on axis {},", op_name(n.op), a));
    out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
    const std::string rows = fmt::format("{}{}", B, n.type.numel() / W);
    if (n.op == Op::Concat) {
      int64_t at = 0;
      for (NodeId x : n.in) {
        const int64_t w = dims_from(g.nodes[x].type, a);
        out += fmt::format("  copy_rows({}, {}, {}, {}, {} + {}, {});\n", rows, w, ptr(x), w, ptr(id), at, W);
        at += w;
      }
    } else {
      const int64_t Wi = dims_from(g.nodes[n.in[0]].type, a);
      const int64_t start = n.i0 * (a + 1 < (int64_t)n.type.dims.size() ? dims_from(n.type, a + 1) : 1);
      out += fmt::format("  copy_rows({}, {}, {} + {}, {}, {}, {});\n", rows, W, ptr(n.in[0]), start, Wi, ptr(id), W);
    }
  } else if (n.op == Op::Reshape) {
    header(k, kern, "reshape (copy),");
    out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
    out += fmt::format("  copy_rows({}1, {}, {}, {}, {}, {});\n", B, n.type.numel(), ptr(n.in[0]), n.type.numel(), ptr(id),
                       n.type.numel());
  } else {
    const bool up = n.op == Op::Upsample2x;
    const Type& small = up ? g.nodes[n.in[0]].type : n.type;
    header(k, kern, up ? "nearest 2x upsampling," : "sum over 2x2 blocks,");
    out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
    out += fmt::format("  {}({}, {}, {}{}, {}, {});\n", up ? "upsample2x" : "pool2x_sum", ptr(n.in[0]), ptr(id), B,
                       small.dims[0], small.dims[1], small.dims[2]);
  }
  out += "}\n\n";
}

void Emitter::call(size_t k, const Kernel& kern) {
  const NodeId id = kern.nodes[0];
  const Node& n = g.nodes[id];
  const Type& t0 = g.nodes[n.in[0]].type;
  for (NodeId x : n.in)
    if (is_leaf_value(g.nodes[x].op) && g.nodes[x].op != Op::Input)
      DDPM_ICE(fmt::format("{} of a constant or parameter must be materialized first", op_name(n.op)));
  const size_t r = t0.dims.size();
  const int64_t kk = t0.dims.back(), m = r >= 2 ? t0.dims[r - 2] : 1, mats = t0.numel() / (m * kk);
  std::string ins[2];
  for (size_t q = 0; q < n.in.size() && q < 2; ++q) ins[q] = ptr(n.in[q]);
  header(k, kern, fmt::format("{},", op_name(n.op)));
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  out += "  " +
         fmt::format(fmt::runtime(op_row(n.op).emit), ins[0], ins[1], fmt::arg("y", ptr(id)),
                     fmt::arg("mats", fmt::format("(e.B * {})", mats)), fmt::arg("m", m), fmt::arg("k", kk),
                     fmt::arg("n", n.type.dims.back())) +
         ";\n}\n\n";
}

void Emitter::kernels() {
  for (size_t k = 0; k < g.kernels.size(); ++k) {
    const Kernel& kern = g.kernels[k];
    switch (kern.kind) {
      case KernelKind::Elementwise: elementwise(k, kern); break;
      case KernelKind::Gemm: gemm(k, kern); break;
      case KernelKind::Conv: conv(k, kern); break;
      case KernelKind::Norm: norm(k, kern); break;
      case KernelKind::Layout: layout(k, kern); break;
      case KernelKind::Call: call(k, kern); break;
    }
  }
  out += fmt::format("static void {}_run(const Env& e) {{\n", prefix);
  for (size_t k = 0; k < g.kernels.size(); ++k) out += fmt::format("  {}_k{}(e);\n", prefix, k);
  out += "}\n\n";
  // Scratch: the largest need of any kernel.
  out += fmt::format("static int64_t {}_arena_floats(int B) {{\n", prefix);
  out += fmt::format("  int64_t scratch = 0;\n");
  std::set<std::string> seen;
  for (auto& kern : g.kernels) {
    if (kern.kind == KernelKind::Conv)
      out += fmt::format("  scratch = std::max<int64_t>(scratch, {});  // im2col + GEMM packing\n",
                         conv_kernel_scratch(g, kern));
    if (int64_t cp = channel_partials_per_sample(g, kern); cp > 0 && seen.insert(fmt::format("cp{}", cp)).second)
      out += fmt::format("  scratch = std::max<int64_t>(scratch, {} * (int64_t)B);  // per-channel partial sums\n", cp);
    if (kern.kind != KernelKind::Gemm) continue;
    const MatmulDims md = matmul_dims(g, g.nodes[kern.nodes[0]]);
    // Every batch up to B: the arena serves smaller calls too (gemm.h, gemm_scratch_floats_upto).
    const std::string args = fmt::format("B, {}, {}, {}, {}", md.rows, md.N, md.tn ? md.M : md.K, md.tn);
    if (seen.insert(args).second)
      out += fmt::format("  scratch = std::max<int64_t>(scratch, (int64_t)gemm_scratch_floats_upto({}));\n", args);
  }
  out += fmt::format("  return {} * (int64_t)B + {} + (scratch + 15) / 16 * 16;\n}}\n\n", g.arena_per_sample,
                     g.arena_fixed);
}

}  // namespace ddpmc
