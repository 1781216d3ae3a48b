// Code generation (see codegen.h). The emitted file has, in order: the schedule
// and constant tables, the kernels of each entry point, the entry points, and the
// module descriptor. Nothing here depends on hash-map order or addresses, so the
// same spec always gives byte-identical output (golden-tested).
#include "codegen.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "ops.h"
#include "common/prelude/gemm.h"

namespace ddpmc {
namespace {

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

// The sizes of a convolution node (any of the three ops); legend in ddpm_prelude.h.
struct ConvDims {
  int64_t C, H, W, O, K, Ho, Wo, s, p;
  int64_t ckk() const { return C * K * K; }
  int64_t hw() const { return Ho * Wo; }
  int64_t col_floats() const { return (ckk() * hw() + 15) / 16 * 16; }
};

ConvDims conv_dims(const Graph& g, const Node& n) {
  const Type& x = n.op == Op::Conv2dBackData ? n.type : g.nodes[n.in[0]].type;
  const Type& w = n.op == Op::Conv2dBackFilter ? n.type : g.nodes[n.in[1]].type;
  const Type& y = n.op == Op::Conv2d ? n.type : n.op == Op::Conv2dBackData ? g.nodes[n.in[0]].type : g.nodes[n.in[1]].type;
  return {x.dims[0], x.dims[1], x.dims[2], w.dims[0], w.dims[2], y.dims[1], y.dims[2], n.i0, n.i1};
}

// Convolutions split the batch into this many fixed slices that run in parallel.
constexpr int64_t kConvChunks = 4;

// How a convolution op runs (see conv() for each path):
//   Direct     1x1, stride 1, no padding: the input itself is the GEMM operand.
//   Flipped    data gradient, stride 1: a convolution of dy with the flipped,
//              transposed filter (im2col of dy + GEMM), no col2im.
//   Im2col     the general case (the data gradient then scatters with col2im).
enum class ConvPath { Direct, Flipped, Im2col };
ConvPath conv_path(const Node& n, const ConvDims& d) {
  if (d.K == 1 && d.s == 1 && d.p == 0) return ConvPath::Direct;
  if (n.op == Op::Conv2dBackData && d.s == 1 && d.p <= d.K - 1) return ConvPath::Flipped;
  return ConvPath::Im2col;
}

// Floats of one slice's im2col buffer.
int64_t conv_col_floats(const Node& n, const ConvDims& d) {
  switch (conv_path(n, d)) {
    case ConvPath::Direct: return 0;
    case ConvPath::Flipped: return (d.O * d.K * d.K * d.H * d.W + 15) / 16 * 16;
    default: return d.col_floats();
  }
}

// The per-sample GEMM C[M,N] = A[M,K] B[K,N] of a convolution op on its path;
// conv() emits exactly these sizes, and the scratch is planned from them.
struct GemmDims {
  int64_t M, N, K;
};
GemmDims conv_gemm(const Node& n, const ConvDims& d) {
  if (n.op == Op::Conv2d) return {d.O, d.hw(), d.ckk()};
  if (n.op == Op::Conv2dBackFilter) return {d.O, d.ckk(), d.hw()};
  if (conv_path(n, d) == ConvPath::Flipped) return {d.C, d.H * d.W, d.O * d.K * d.K};
  return {d.ckk(), d.hw(), d.O};
}

// Scratch of one slice of a convolution kernel: one sample's im2col buffer plus GEMM packing.
int64_t conv_chunk_floats(const Graph& g, const Node& n) {
  const ConvDims d = conv_dims(g, n);
  const GemmDims m = conv_gemm(n, d);
  const size_t gs = ddpm::gemm_scratch_floats((int)m.M, (int)m.N, (int)m.K);
  return conv_col_floats(n, d) + (int64_t)(gs + 15) / 16 * 16;
}

// Scratch of a whole convolution kernel: every slice's, plus per-slice partial
// filter gradients for the filter-gradient op, or the flipped filter.
int64_t conv_scratch(const Graph& g, const Node& n) {
  const ConvDims d = conv_dims(g, n);
  int64_t s = kConvChunks * conv_chunk_floats(g, n);
  if (n.op == Op::Conv2dBackFilter) s += kConvChunks * ((d.O * d.ckk() + 15) / 16 * 16);
  if (n.op == Op::Conv2dBackData && conv_path(n, d) == ConvPath::Flipped) s += (d.O * d.ckk() + 15) / 16 * 16;
  return s;
}

// The GEMM C[M,N] = op(A)[M,K] op(B)[K,N] of a matmul node, with the batch
// factored out: activations [B,...,K] are B * rows rows, so M = B * rows (NN, NT)
// or K = B * rows (TN, which contracts over the batch).
struct MatmulDims {
  int64_t rows, N, K, M;  // NN/NT: M = B * rows, K given; TN: K = B * rows, M given
  bool tn;
  std::string batch_rows(const std::string& B) const { return rows == 1 ? B : fmt::format("{} * {}", B, rows); }
  std::string m(const std::string& B) const { return tn ? fmt::format("{}", M) : batch_rows(B); }
  std::string k(const std::string& B) const { return tn ? batch_rows(B) : fmt::format("{}", K); }
  int64_t m(int64_t B) const { return tn ? M : B * rows; }
  int64_t k(int64_t B) const { return tn ? B * rows : K; }
};
MatmulDims matmul_dims(const Graph& g, const Node& mm) {
  const Type& ta = g.nodes[mm.in[0]].type;
  const Type& tb = g.nodes[mm.in[1]].type;
  const int64_t ka = ta.dims.back(), rows = ta.numel() / ka;
  if (mm.i0 == kNN) return {rows, tb.dims[1], ka, 0, false};
  if (mm.i0 == kNT) return {rows, tb.dims[0], ka, 0, false};
  return {rows, tb.dims.back(), 0, ka, true};
}

// Per-sample scratch of a kernel that sums per channel into per-sample partials
// (C floats per sum), else 0.
int64_t channel_partials_per_sample(const Graph& g, const Kernel& kern) {
  if (kern.reduce != Kernel::Reduce::Channels && kern.kind != KernelKind::Norm) return 0;
  int64_t R = 0;
  for (NodeId id : kern.nodes) R += g.nodes[id].op == Op::SumTo;
  return R * kern.domain.dims[0];
}

// Options of an elementwise body.
struct BodyOpts {
  // > 0: the caller never lets a SIMD vector straddle two channels of this many
  // elements, so per-channel operands ([C,1,1], [B,C,1,1]) are read as scalars.
  int64_t chan_hw = 0;
  bool stores = true;                      // store the kernel's outputs
  const std::set<NodeId>* only = nullptr;  // emit only these members (no sums)
  std::string ret;                         // a final statement, e.g. "return v7;"
  std::string x_norm;                      // Norm kernels: the x of the normalization
  std::string name = "body";               // the lambda's name
};

// Adds n spaces after every newline but a final one (for a lambda emitted nested).
std::string indent(const std::string& s, int n) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    r += s[i];
    if (s[i] == '\n' && i + 1 < s.size()) r += std::string(n, ' ');
  }
  return r;
}

struct Emitter {
  const Graph& g;
  const std::string prefix;
  std::string out;
  std::map<std::string, std::string> tables;  // content key → name, shared per module
  std::string* table_defs;
  int* table_counter;

  std::string table_name(const std::vector<float>& data) {
    std::string key(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
    auto it = tables.find(key);
    if (it != tables.end()) return it->second;
    std::string name = fmt::format("tab{}", (*table_counter)++);
    tables[key] = name;
    *table_defs += float_array(name, data);
    return name;
  }

  // Pointer expression for a stored value.
  std::string ptr(NodeId id) {
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
        if (s.index > 0) return fmt::format("(e.state_out + {} * e.B)", s.per_sample);
        return "e.x_out";
      case Slot::Where::Loss: return "e.loss";
      default: DDPM_ICE(fmt::format("{}: value %{} ({}) has no storage", g.name, id, op_name(n.op)));
    }
  }

  // The spec lines a set of nodes comes from: "file:line" of each node's own
  // position and of the entry-level call that reached it.
  std::string spec_lines(const std::vector<NodeId>& ids) {
    std::set<std::pair<std::string, int>> lines;
    for (NodeId id : ids)
      for (size_t k = 0; k < g.nodes[id].locs.size(); ++k) {
        const Loc& l = g.nodes[id].locs[k];
        if (l.file && (k == 0 || k + 1 == g.nodes[id].locs.size())) lines.insert({l.file->path, l.line});
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

  std::string op_list(const std::vector<NodeId>& ids) {
    std::string s;
    for (NodeId id : ids) s += fmt::format("{}{}", s.empty() ? "" : " ", op_name(g.nodes[id].op));
    return s;
  }

  void header(size_t k, const Kernel& kern, const std::string& what) {
    out += fmt::format("// {}_k{}: {} {}\n", prefix, k, what, kern.domain.str());
    out += fmt::format("//   ops:  {}\n", op_list(kern.nodes));
    std::string lines = spec_lines(kern.nodes);
    if (!lines.empty()) out += fmt::format("//   spec: {}\n", lines);
  }

  // A broadcast read (numpy rules) of `base` (type ti) in domain d, lane by lane:
  // the index of domain element q in the input, as in broadcast_index().
  std::string gather(const std::string& base, const Type& ti, const Type& d) {
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
  static bool per_channel(const Type& ti, const Type& d) {
    if (d.dims.size() < 2 || ti.dims.size() != d.dims.size() || ti.dims[0] != d.dims[0] || ti.dims[0] == 1) return false;
    for (size_t k = 1; k < ti.dims.size(); ++k)
      if (ti.dims[k] != 1) return false;
    return true;
  }

  // Elementwise body: a generic lambda (tag, b, j, acc) computing the kernel's
  // members for element (b, j). `inside` marks nodes computed in this body.
  std::string body(const Kernel& kern, const std::vector<NodeId>& members, const std::string& cols,
                   std::vector<NodeId>* reduce_nodes, const BodyOpts& o = {}) {
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
      if (n.op == Op::Const) return fmt::format("T({})", flt(n.value));
      if (n.op == Op::InvBatch) return fmt::format("T({} / (float)e.B)", flt(n.value));
      if (n.op == Op::ConstTensor) {
        std::string t = table_name(n.data);
        if (n.type.dims.empty()) return fmt::format("T({}[0])", t);
        if (o.chan_hw > 0 && per_channel(n.type, d)) return fmt::format("T({}[ch])", t);
        return n.type.dims == d.dims ? fmt::format("ld<T>({} + j)", t) : gather(t, n.type, d);
      }
      if (n.op == Op::Input && (n.name == "t" || n.name == "s")) return fmt::format("T(e.{})", n.name);
      std::string p = ptr(x);
      const Type& ti = n.type;
      if (ti == d) return fmt::format("ld<T>({} + b * {} + j)", p, cols);
      if (ti.dims.empty() && !ti.batched) return fmt::format("T({}[0])", p);
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
        if (o.only) continue;
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
      if (o.stores && std::find(kern.outputs.begin(), kern.outputs.end(), id) != kern.outputs.end())
        s += fmt::format("    st({} + b * {} + j, v{});\n", ptr(id), cols, id);
    }
    if (!o.ret.empty()) s += "    " + o.ret + "\n";
    s += "  };\n";
    return s;
  }

  // `float* const outs[R] = {...};`: where each of a kernel's sums is stored.
  std::string outs_decl(const std::vector<NodeId>& reds) {
    std::string ptrs;
    for (size_t i = 0; i < reds.size(); ++i) ptrs += fmt::format("{}{}", i ? ", " : "", ptr(reds[i]));
    return fmt::format("  float* const outs[{}] = {{{}}};\n", reds.size(), ptrs);
  }

  // Norm kernels: the normalized value of element (b, j), from x and the row's statistics.
  static std::string xhat(const std::string& x, const std::string& cols) {
    return fmt::format("(ld<T>({} + b * {} + j) - T(mean)) * T(rstd)", x, cols);
  }

  // Does an elementwise kernel read a per-channel value (then it loops channel by
  // channel and reads those values as scalars)?
  bool reads_per_channel(const Kernel& kern, const std::vector<NodeId>& members) {
    std::set<NodeId> inside(members.begin(), members.end());
    for (NodeId id : members)
      for (NodeId x : g.nodes[id].in)
        if (!inside.count(x) && per_channel(g.nodes[x].type, kern.domain)) return true;
    return false;
  }

  // A group normalization with the elementwise ops fused around it. Per (sample,
  // group) row: the mean and variance of x, then (backward) the sums of dy and
  // dy * xhat, then one sweep computing every member; the per-channel sums go to
  // per-sample partials, added in sample order at the end.
  void norm(size_t k, const Kernel& kern) {
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
    out += "  parallel_chunks(e.B * " + fmt::format("{}", G) + ", [&](int64_t task) {\n";
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

  // A reduction that is not over everything, the batch, or the features (e.g. a
  // conv bias gradient [B,C,H,W] -> [C,1,1]): one output element per task, each
  // summing its inputs in a fixed order.
  void reduce_general(size_t k, const Kernel& kern) {
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

  void elementwise(size_t k, const Kernel& kern) {
    if (kern.reduce == Kernel::Reduce::General) return reduce_general(k, kern);
    if (kern.reduce == Kernel::Reduce::Channels || (kern.reduce == Kernel::Reduce::None && kern.domain.batched &&
                                                     reads_per_channel(kern, kern.nodes)))
      return by_channel(k, kern);
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
  void by_channel(size_t k, const Kernel& kern) {
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

  void gemm(size_t k, const Kernel& kern) {
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

  void conv(size_t k, const Kernel& kern) {
    const Node& cn = g.nodes[kern.nodes[0]];
    const ConvDims d = conv_dims(g, cn);
    const ConvPath path = conv_path(cn, d);
    const bool direct = path == ConvPath::Direct;
    std::string what = cn.op == Op::Conv2d ? (direct ? "conv2d 1x1 (GEMM)" : "conv2d (im2col + GEMM)")
                       : cn.op == Op::Conv2dBackData
                           ? (direct ? "conv2d data gradient 1x1 (GEMM)"
                              : path == ConvPath::Flipped ? "conv2d data gradient (im2col of dy + GEMM with the flipped filter)"
                                                          : "conv2d data gradient (GEMM + col2im)")
                           : (direct ? "conv2d filter gradient 1x1 (GEMM, summed over the batch)"
                                     : "conv2d filter gradient (im2col + GEMM, summed over the batch)");
    if (cn.op == Op::Conv2d && kern.nodes.size() > 1) what += " with fused epilogue";
    header(k, kern, what + ",");
    out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
    out += fmt::format("  // x [B,{},{},{}], w [{},{},{},{}], y [B,{},{},{}], stride {}, padding {}\n", d.C, d.H, d.W, d.O,
                       d.C, d.K, d.K, d.O, d.Ho, d.Wo, d.s, d.p);
    const int64_t xs = d.C * d.H * d.W, ys = d.O * d.Ho * d.Wo, chunk = conv_chunk_floats(g, cn);
    const GemmDims gm = conv_gemm(cn, d);
    if (path == ConvPath::Flipped) {
      // wt[c, (o, ki, kj)] = w[o, c, K-1-ki, K-1-kj], after every slice's scratch.
      out += fmt::format("  float* wt = e.scratch + {} * {};\n", kConvChunks, chunk);
      out += fmt::format("  flip_filter({}, {}, {}, {}, wt);\n", ptr(cn.in[1]), d.O, d.C, d.K);
    }
    // The batch is cut into kConvChunks fixed slices (never by thread count); each
    // runs its samples in order with its own scratch, and the slices run in parallel.
    out += fmt::format("  const int64_t nchunk = std::min<int64_t>(e.B, {});\n", kConvChunks);
    out += "  parallel_chunks(nchunk, [&](int64_t c) {\n";
    const int64_t colf = conv_col_floats(cn, d);
    if (colf > 0)
      out += fmt::format("    float* col = e.scratch + c * {};  // [{}, {}]\n    float* gs = col + {};\n", chunk,
                         path == ConvPath::Flipped ? d.O * d.K * d.K : d.ckk(), path == ConvPath::Flipped ? d.H * d.W : d.hw(),
                         colf);
    else
      out += fmt::format("    float* gs = e.scratch + c * {};\n", chunk);
    out += "    const int64_t b0 = c * e.B / nchunk, b1 = (c + 1) * e.B / nchunk;\n";
    std::string im2col = fmt::format("im2col({{x}} + b * {}, {}, {}, {}, {}, {}, {}, {}, {}, col);", xs, d.C, d.H, d.W,
                                     d.K, d.s, d.p, d.Ho, d.Wo);
    // The GEMM operand [C*K*K, Ho*Wo] of sample b: the im2col buffer, or x itself.
    auto operand = [&](const std::string& x) { return direct ? fmt::format("{} + b * {}", x, xs) : std::string("col"); };
    if (cn.op == Op::Conv2d) {
      std::string x = ptr(cn.in[0]), w = ptr(cn.in[1]), y = ptr(kern.nodes[0]);
      std::vector<NodeId> epi(kern.nodes.begin() + 1, kern.nodes.end());
      if (!epi.empty()) {
        out += fmt::format("    const int64_t cols = {};\n", ys);
        BodyOpts o;
        o.chan_hw = d.hw();  // tiles are rows of one output channel
        out += "    " + indent(body(kern, epi, "cols", nullptr, o), 2);
      }
      out += "    for (int64_t b = b0; b < b1; ++b) {\n";
      if (!direct) out += "      " + fmt::format(fmt::runtime(im2col), fmt::arg("x", x)) + "\n";
      std::string call = fmt::format("{}, {}, {}, {}, {}, false, {}, {}, false, {} + b * {}, {}, gs", gm.M, gm.N,
                                     gm.K, w, gm.K, operand(x), gm.N, y, ys, gm.N);
      if (epi.empty()) {
        out += "      gemm_plain(" + call + ");\n";
      } else {
        out += "      gemm_epilogue(" + call + ", [&](int i0, int i1, int j0, int j1) {\n";
        out += fmt::format("        for (int64_t i = i0; i < i1; ++i)\n          for_cols(i * {0} + j0, i * {0} + j1, "
                           "[&](auto tag, int64_t j) {{ body(tag, b, j, nullptr); }});\n", d.hw());
        out += "      });\n";
      }
      out += "    }\n  });\n";
    } else if (cn.op == Op::Conv2dBackData) {
      std::string gy = ptr(cn.in[0]), w = ptr(cn.in[1]), dx = ptr(kern.nodes[0]);
      out += "    for (int64_t b = b0; b < b1; ++b) {\n";
      if (path == ConvPath::Flipped) {
        out += fmt::format("      im2col({} + b * {}, {}, {}, {}, {}, 1, {}, {}, {}, col);\n", gy, ys, d.O, d.Ho, d.Wo, d.K,
                           d.K - 1 - d.p, d.H, d.W);
        out += fmt::format("      gemm_plain({}, {}, {}, wt, {}, false, col, {}, false, {} + b * {}, {}, gs);\n", gm.M, gm.N,
                           gm.K, gm.K, gm.N, dx, xs, gm.N);
      } else if (direct) {
        out += fmt::format("      gemm_plain({}, {}, {}, {}, {}, true, {} + b * {}, {}, false, {} + b * {}, {}, gs);\n", gm.M,
                           gm.N, gm.K, w, gm.M, gy, ys, gm.N, dx, xs, gm.N);
      } else {
        out += fmt::format("      gemm_plain({}, {}, {}, {}, {}, true, {} + b * {}, {}, false, col, {}, gs);\n", gm.M,
                           gm.N, gm.K, w, gm.M, gy, ys, gm.N, gm.N);
        out += fmt::format("      col2im(col, {}, {}, {}, {}, {}, {}, {}, {}, {} + b * {});\n", d.C, d.H, d.W, d.K, d.s,
                           d.p, d.Ho, d.Wo, dx, xs);
      }
      out += "    }\n  });\n";
    } else {
      // Each slice sums its samples into its own partial dW; the partials are then
      // added in slice order.
      std::string x = ptr(cn.in[0]), gy = ptr(cn.in[1]), dw = ptr(kern.nodes[0]);
      const int64_t wf = (d.O * d.ckk() + 15) / 16 * 16;
      out += fmt::format("    float* part = e.scratch + {} * {} + c * {};\n", kConvChunks, chunk, wf);
      out += "    for (int64_t b = b0; b < b1; ++b) {\n";
      if (!direct) out += "      " + fmt::format(fmt::runtime(im2col), fmt::arg("x", x)) + "\n";
      out += fmt::format("      gemm_plain({}, {}, {}, {} + b * {}, {}, false, {}, {}, true, part, {}, gs, b > b0);\n",
                         gm.M, gm.N, gm.K, gy, ys, gm.K, operand(x), gm.K, gm.N);
      out += "    }\n  });\n";
      out += fmt::format("  sum_partials(e.scratch + {} * {}, nchunk, {}, {}, {});\n", kConvChunks, chunk, wf,
                         d.O * d.ckk(), dw);
    }
    out += "}\n\n";
  }

  void layout(size_t k, const Kernel& kern) {
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

  // One op computed by one prelude call (ops.h, OpClass::Call).
  void call(size_t k, const Kernel& kern) {
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

  void kernels() {
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
                           conv_scratch(g, g.nodes[kern.nodes[0]]));
      if (int64_t cp = channel_partials_per_sample(g, kern); cp > 0 && seen.insert(fmt::format("cp{}", cp)).second)
        out += fmt::format("  scratch = std::max<int64_t>(scratch, {} * (int64_t)B);  // per-channel partial sums\n", cp);
      if (kern.kind != KernelKind::Gemm) continue;
      const MatmulDims md = matmul_dims(g, g.nodes[kern.nodes[0]]);
      const std::string args = fmt::format("{}, {}, {}", md.m("B"), md.N, md.k("B"));
      if (seen.insert(args).second)
        out += fmt::format("  scratch = std::max<int64_t>(scratch, (int64_t)gemm_scratch_floats({}));\n", args);
    }
    out += fmt::format("  return {} * (int64_t)B + {} + (scratch + 15) / 16 * 16;\n}}\n\n", g.arena_per_sample,
                       g.arena_fixed);
  }
};

}  // namespace

int64_t arena_floats(const Graph& g, int B) {
  int64_t scratch = 0;
  for (auto& kern : g.kernels) {
    if (kern.kind == KernelKind::Conv) scratch = std::max(scratch, conv_scratch(g, g.nodes[kern.nodes[0]]));
    scratch = std::max(scratch, channel_partials_per_sample(g, kern) * B);
    if (kern.kind != KernelKind::Gemm) continue;
    const MatmulDims md = matmul_dims(g, g.nodes[kern.nodes[0]]);
    int64_t s = ddpm::gemm_scratch_floats((int)md.m(B), (int)md.N, (int)md.k(B));
    scratch = std::max(scratch, s);
  }
  return g.arena_per_sample * B + g.arena_fixed + (scratch + 15) / 16 * 16;
}

std::vector<std::string> emit_module_parts(const Compiled& c, const std::string& spec_hash, bool split) {
  const Model& m = c.model;
  // part 0: training and loss; part 1 (when split): samplers and eps.
  struct Part {
    std::string tables, body;
    int counter = 0;
    std::map<std::string, std::string> shared_tables;
  };
  Part parts[2];
  auto emit_graph = [&](Part& pt, const Graph& g, const std::string& prefix) {
    Emitter em{g, prefix, "", std::move(pt.shared_tables), &pt.tables, &pt.counter};
    em.kernels();
    pt.shared_tables = std::move(em.tables);
    pt.body += fmt::format("// ---- entry {}: {} kernels, arena {} floats per sample + {} ----\n\n", prefix,
                           g.kernels.size(), g.arena_per_sample, g.arena_fixed);
    pt.body += em.out;
  };
  Part& sp = parts[split ? 1 : 0];
  emit_graph(parts[0], c.train, "train");
  emit_graph(parts[0], c.loss, "loss");
  for (size_t i = 0; i < c.samplers.size(); ++i) emit_graph(sp, c.samplers[i].second, "sampler_" + c.samplers[i].first);
  if (c.model.has_eps) emit_graph(sp, c.eps, "eps");

  auto header = [&](int part) {
    std::string s;
    s += fmt::format("// Generated by ddpmc {} from {}. Do not edit.\n", DDPMC_VERSION, m.spec_path);
    s += fmt::format("// spec hash {}\n", spec_hash);
    if (split)
      s += fmt::format("// Part {} of 2 (compiled in parallel): {}.\n", part,
                       part == 0 ? "the training step, the loss and the module descriptor" : "the samplers and eps");
    s += "// Kernels are listed per entry point in execution order; each names the spec lines it fuses.\n";
    s += "#include \"ddpm_prelude.h\"\n\n";
    s += "namespace {\nusing namespace ddpm;\nusing namespace ddpm::gen;\n\n";
    s += "// Everything a kernel reads besides its own arena slices.\n";
    s += "struct Env {\n  int64_t B;\n  float* A;        // arena\n  float* scratch;  // kernel scratch (GEMM packing)\n";
    s += "  const float* params;\n  float* grads;\n  const float* in_data;\n  const float* in_x;\n";
    s += "  float t, s;\n  uint64_t seed, step;\n  int64_t row0;    // global index of sample 0 (samplers)\n  float* loss;\n  float* x_out;\n";
    s += "  const float* in_label;  // training: class indices [B] (a spec with a label)\n";
    s += "  const float* args;      // samplers: sampling-time arguments\n  const float* state_in;  // samplers: state from the previous step\n";
    s += "  float* state_out;       // samplers: state for the next step\n  float first, last;      // samplers: 1 on the first / last step\n};\n\n";
    return s;
  };
  auto tables = [&](const Part& pt) {
    return "\n// Tables folded from the spec's constant arithmetic (see passes/simplify.cpp).\n" + pt.tables + "\n";
  };
  const std::string align = "float* align64(void* p) { return (float*)(((uintptr_t)p + 63) & ~(uintptr_t)63); }\n\n";
  // Entry points of the samplers and eps (in part 1 when split).
  std::string sampler_arena_cases;
  for (size_t i = 0; i < c.samplers.size(); ++i)
    sampler_arena_cases += fmt::format("    case {}: return sampler_{}_arena_floats(B) * 4 + 64;\n", i + 1, c.samplers[i].first);
  std::string eps_arena_case =
      c.model.has_eps ? fmt::format("    case {}: return eps_arena_floats(B) * 4 + 64;\n", c.samplers.size() + 2) : "";
  // Sampler descriptors (ABI 4): arguments with defaults, and state sizes.
  std::string sampler_infos;
  for (size_t i = 0; i < c.samplers.size(); ++i) {
    const SamplerInfo& si = m.sampler_info.at(i);
    std::string names, defaults;
    for (auto& a : si.args) names += fmt::format("\"{}\", ", a.name), defaults += flt(a.default_value) + ", ";
    sampler_infos += fmt::format("const char* const kArgNames{}[] = {{{}nullptr}};\nconst float kArgDefaults{}[] = {{{}0.0f}};\n", i,
                                 names, i, defaults);
  }
  // Split: part 0's descriptor links to it, so it needs external linkage.
  sampler_infos += split ? "extern const ddpm_sampler_info kSamplerInfo[];\nconst ddpm_sampler_info kSamplerInfo[] = {\n"
                         : "const ddpm_sampler_info kSamplerInfo[] = {\n";
  for (size_t i = 0; i < c.samplers.size(); ++i)
    sampler_infos += fmt::format("    {{\"{}\", {}, kArgNames{}, kArgDefaults{}, {}}},\n", c.samplers[i].first,
                                 m.sampler_info[i].args.size(), i, i, m.sampler_info[i].state_floats);
  sampler_infos += "    {nullptr, 0, nullptr, nullptr, 0}};\n\n";
  std::string sampler_entries = sampler_infos;
  sampler_entries += "int sampler_step4(int sampler, void* arena, int B, const float* params, const float* x_in, int t, int s,\n"
       "                  uint64_t seed, uint64_t step, float* x_out, int64_t row0, const float* args,\n"
       "                  const float* state_in, float* state_out, int flags) {\n"
       "  if (B < 1 || t < 1 || t > " + fmt::format("{}", m.diffusion.T) + " || s < 0 || s >= t) return 1;\n"
       "  if (sampler < 0 || sampler >= " + fmt::format("{}", c.samplers.size()) + ") return 2;\n"
       "  if (kSamplerInfo[sampler].state_floats > 0 && (!state_in || !state_out)) return 3;\n"
       "  Env e{};\n  e.B = B;\n  e.A = align64(arena);\n  e.params = params;\n  e.in_x = x_in;\n"
       "  e.t = (float)t;\n  e.s = (float)s;\n  e.seed = seed;\n  e.step = step;\n  e.row0 = row0;\n  e.x_out = x_out;\n"
       "  e.args = args ? args : kSamplerInfo[sampler].arg_defaults;\n  e.state_in = state_in;\n  e.state_out = state_out;\n"
       "  e.first = (flags & DDPM_STEP_FIRST) ? 1.0f : 0.0f;\n  e.last = (flags & DDPM_STEP_LAST) ? 1.0f : 0.0f;\n"
       "  switch (sampler) {\n";
  for (size_t i = 0; i < c.samplers.size(); ++i) {
    const Graph& g = c.samplers[i].second;
    sampler_entries += fmt::format("    case {}:\n      e.scratch = e.A + {} * (int64_t)B + {};\n      sampler_{}_run(e);\n      return 0;\n",
                     i, g.arena_per_sample, g.arena_fixed, c.samplers[i].first);
  }
  sampler_entries += "    default: return 2;\n  }\n}\n\n";
  sampler_entries += "// The ABI 3 entry: the sampler's default arguments; samplers with state need sampler_step4.\n"
       "int sampler_step(int sampler, void* arena, int B, const float* params, const float* x_in, int t, int s,\n"
       "                 uint64_t seed, uint64_t step, float* x_out, int64_t row0) {\n"
       "  return sampler_step4(sampler, arena, B, params, x_in, t, s, seed, step, x_out, row0, nullptr, nullptr, nullptr,\n"
       "                       s == 0 ? DDPM_STEP_LAST : 0);\n}\n\n";
  if (c.model.has_eps) {
    sampler_entries += "int eps_eval(void* arena, int B, const float* params, const float* x, int t, float* eps) {\n"
         "  if (B < 1 || t < 1 || t > " + fmt::format("{}", m.diffusion.T) + ") return 1;\n"
         "  Env e{};\n  e.B = B;\n  e.A = align64(arena);\n"
         "  e.scratch = e.A + " + fmt::format("{} * (int64_t)B + {}", c.eps.arena_per_sample, c.eps.arena_fixed) +
         ";\n  e.params = params;\n  e.in_x = x;\n  e.t = (float)t;\n  e.x_out = eps;\n  eps_run(e);\n  return 0;\n}\n\n";
  }

  std::vector<std::string> out;
  std::string s = header(0);
  // Schedule tables for the descriptor.
  auto tofloat = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  s += float_array("sched_beta", tofloat(m.diffusion.beta));
  s += float_array("sched_alpha", tofloat(m.diffusion.alpha));
  s += float_array("sched_abar", tofloat(m.diffusion.abar));
  s += tables(parts[0]);
  s += parts[0].body;

  // Entry points.
  if (split) {
    // Part 1's entry points, linked from the other object file.
    s += "}  // namespace\n\nnamespace ddpm_part1 {\n"
         "int64_t arena_bytes(int entry, int B);\n"
         "int sampler_step(int sampler, void* arena, int B, const float* params, const float* x_in, int t, int s,\n"
         "                 uint64_t seed, uint64_t step, float* x_out, int64_t row0);\n"
         "int sampler_step4(int sampler, void* arena, int B, const float* params, const float* x_in, int t, int s,\n"
         "                  uint64_t seed, uint64_t step, float* x_out, int64_t row0, const float* args,\n"
         "                  const float* state_in, float* state_out, int flags);\n"
         "extern const ddpm_sampler_info kSamplerInfo[];\n";
    if (c.model.has_eps) s += "int eps_eval(void* arena, int B, const float* params, const float* x, int t, float* eps);\n";
    s += "}  // namespace ddpm_part1\n\nnamespace {\n\n";
  }
  s += "int64_t arena_bytes(int entry, int B) {\n  switch (entry) {\n";
  s += "    case 0: return train_arena_floats(B) * 4 + 64;\n";
  if (!split) s += sampler_arena_cases;
  s += fmt::format("    case {}: return loss_arena_floats(B) * 4 + 64;\n", c.samplers.size() + 1);
  if (!split) s += eps_arena_case;
  s += split ? "    default: return ddpm_part1::arena_bytes(entry, B);\n  }\n}\n\n" : "    default: return -1;\n  }\n}\n\n";
  s += align;
  const std::string need_labels = m.label_classes > 0 ? "  if (!labels) return 3;\n" : "";
  s += "int train_step_labels(void* arena, int B, const float* params, const float* x0, const float* labels,\n"
       "                      uint64_t seed, uint64_t step, float* grads, float* loss) {\n"
       "  if (B < 1) return 1;\n" + need_labels +
       "  Env e{};\n  e.B = B;\n  e.A = align64(arena);\n"
       "  e.scratch = e.A + " + fmt::format("{} * (int64_t)B + {}", c.train.arena_per_sample, c.train.arena_fixed) +
       ";\n  e.params = params;\n  e.grads = grads;\n  e.in_data = x0;\n  e.in_label = labels;\n  e.seed = seed;\n  e.step = step;\n  e.loss = loss;\n  train_run(e);\n  return 0;\n}\n\n";
  s += "int train_step(void* arena, int B, const float* params, const float* x0, uint64_t seed, uint64_t step,\n"
       "               float* grads, float* loss) {\n"
       "  return train_step_labels(arena, B, params, x0, nullptr, seed, step, grads, loss);\n}\n\n";
  s += "int loss_eval_labels(void* arena, int B, const float* params, const float* x0, const float* labels, uint64_t seed,\n"
       "                     uint64_t step, float* loss) {\n"
       "  if (B < 1) return 1;\n" + need_labels +
       "  Env e{};\n  e.B = B;\n  e.A = align64(arena);\n"
       "  e.scratch = e.A + " + fmt::format("{} * (int64_t)B + {}", c.loss.arena_per_sample, c.loss.arena_fixed) +
       ";\n  e.params = params;\n  e.in_data = x0;\n  e.in_label = labels;\n  e.seed = seed;\n  e.step = step;\n  e.loss = loss;\n  loss_run(e);\n  return 0;\n}\n\n";
  s += "int loss_eval(void* arena, int B, const float* params, const float* x0, uint64_t seed, uint64_t step, float* loss) {\n"
       "  return loss_eval_labels(arena, B, params, x0, nullptr, seed, step, loss);\n}\n\n";
  if (!split) s += sampler_entries;

  // Descriptor.
  s += "const ddpm_param_info kParams[] = {\n";
  for (auto& p : m.params) {
    std::string dims;
    for (size_t i = 0; i < 4; ++i) dims += fmt::format("{}{}", i ? ", " : "", i < p.type.dims.size() ? p.type.dims[i] : 0);
    s += fmt::format("    {{\"{}\", {}, {{{}}}, {}, {}, {}}},\n", p.name, p.type.dims.size(), dims, p.offset,
                     p.type.numel(), flt(p.init_bound));
  }
  s += "};\n";
  s += "const char* const kSamplers[] = {";
  for (auto& sp : c.samplers) s += fmt::format("\"{}\", ", sp.first);
  s += "nullptr};\n\n";
  std::string ddims;
  for (size_t i = 0; i < 4; ++i) ddims += fmt::format("{}{}", i ? ", " : "", i < m.data.dims.size() ? m.data.dims[i] : 0);
  const std::string q = split ? "ddpm_part1::" : "";
  s += "const ddpm_module kModule = {\n";
  s += fmt::format("    DDPM_ABI_VERSION, \"{}\", \"{}\", \"{}\",\n", spec_hash, DDPMC_VERSION, m.spec_path);
  s += fmt::format("    {}, \"{}\", sched_beta, sched_alpha, sched_abar,\n", m.diffusion.T, m.diffusion.schedule);
  s += fmt::format("    {}, {{{}}}, {},\n", m.data.dims.size(), ddims, m.data.numel());
  s += fmt::format("    {}, kParams, {},\n", m.params.size(), m.param_floats);
  s += fmt::format("    {}, kSamplers,\n", c.samplers.size());
  s += fmt::format("    arena_bytes, train_step, loss_eval, {}sampler_step, {},\n", q,
                   c.model.has_eps ? q + "eps_eval" : "nullptr");
  s += fmt::format("    {}kSamplerInfo, {}sampler_step4, {},\n", q, q,
                   c.model.eps_predicts == Prediction::X0  ? "DDPM_PREDICTS_X0"
                   : c.model.eps_predicts == Prediction::V ? "DDPM_PREDICTS_V"
                                                           : "DDPM_PREDICTS_EPS");
  s += fmt::format("    {}, train_step_labels, loss_eval_labels,\n}};\n\n", m.label_classes);
  s += "}  // namespace\n\n";
  s += "extern \"C\" __attribute__((visibility(\"default\"))) const ddpm_module* ddpm_module_v1(void) { return &kModule; }\n";
  out.push_back(std::move(s));
  if (split) {
    std::string t = header(1) + tables(parts[1]) + parts[1].body + align;
    t += "}  // namespace\n\nnamespace ddpm_part1 {\n\n";
    t += "int64_t arena_bytes(int entry, int B) {\n  switch (entry) {\n" + sampler_arena_cases + eps_arena_case +
         "    default: return -1;\n  }\n}\n\n";
    t += sampler_entries;
    t += "}  // namespace ddpm_part1\n";
    out.push_back(std::move(t));
  }
  return out;
}

std::string emit_module(const Compiled& c, const std::string& spec_hash) {
  return emit_module_parts(c, spec_hash, false)[0];
}

}  // namespace ddpmc
