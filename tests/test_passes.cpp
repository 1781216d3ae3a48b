// Pass tests: each pass on a small input against the expected output, structural
// invariants of fuse and memplan on the real moons model (kernel count, kernel
// order, non-overlapping live buffers), and the golden generated C++ of moons
// (UPDATE_GOLDEN=1 rewrites tests/golden/moons.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "codegen.h"
#include "conv_plan.h"
#include "diffusion.h"
#include "ops.h"
#include "passes/passes.h"
#include "test_support.h"
#include "common/prelude/align.h"
#include "common/prelude/winograd.h"
#include "common/prelude/winograd4.h"

using namespace ddpmc;
using namespace ddpm_test;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

NodeId lookup(Builder& b, NodeId t, const std::vector<double>& table) {
  Node n{Op::Lookup};
  n.in = {t};
  n.data.assign(table.begin(), table.end());
  return b.add(std::move(n));
}

int count_op(const Graph& g, Op op) {
  int k = 0;
  for (auto& n : g.nodes) k += n.op == op;
  return k;
}

Compiled moons() {
  return compile_spec_text("models/moons.ddpm", read_text(source_path("models/moons.ddpm")));
}

}  // namespace

TEST_CASE("simplify: diffusion arithmetic on tables folds into one lookup (NaN entries included)") {
  Model m;
  Diffusion d = make_diffusion("linear", 1000, {}, Loc{});
  Graph g;
  Builder b(g);
  Node t{Op::Input};
  t.type = Type{true, {}};
  t.name = "t";
  NodeId tid = b.add(std::move(t));
  // beta[t] / sqrt(1 - abar[t]): at t = 0 this is 0/0 = NaN, which must not make
  // common-subexpression elimination confuse this table with beta's.
  NodeId beta = lookup(b, tid, d.beta);
  NodeId coef = b.binary(Op::Div, beta, b.unary(Op::Sqrt, b.binary(Op::Sub, b.cnst(1.0), lookup(b, tid, d.abar))));
  g.outputs = {coef, beta};
  g.output_names = {"coef", "beta"};
  Graph s = simplify(g);
  CHECK(count_op(s, Op::Lookup) == 2);
  CHECK(count_op(s, Op::Div) == 0);
  CHECK(count_op(s, Op::Sqrt) == 0);
  const Node& c = s.nodes[s.outputs[0]];
  REQUIRE(c.op == Op::Lookup);
  CHECK(std::isnan(c.data[0]));
  CHECK(c.data[1] == doctest::Approx(d.beta[1] / std::sqrt(1 - d.abar[1])).epsilon(1e-5));
  CHECK(c.data[1000] == doctest::Approx(d.beta[1000] / std::sqrt(1 - d.abar[1000])).epsilon(1e-5));
  CHECK(s.outputs[0] != s.outputs[1]);
}

TEST_CASE("simplify: constant folding, identities, CSE and dead code") {
  Model m;
  Graph g;
  Builder b(g);
  Node x{Op::Input};
  x.type = Type{true, {3}};
  x.name = "x";
  NodeId xi = b.add(std::move(x));
  NodeId five = b.add2(b.cnst(2.0), b.cnst(3.0));           // folds to 5
  NodeId e1 = b.unary(Op::Exp, xi), e2 = b.unary(Op::Exp, xi);  // CSE: one exp
  NodeId y = b.mul(b.add2(e1, b.cnst(0.0)), b.cnst(1.0));   // identities vanish
  NodeId z = b.mul(b.add2(y, e2), five);
  b.unary(Op::Sin, xi);                                     // dead
  g.outputs = {z};
  g.output_names = {"z"};
  Graph s = simplify(g);
  // Expected: x, exp(x), add(exp, exp), const 5, mul.
  CHECK(s.nodes.size() == 5);
  CHECK(count_op(s, Op::Exp) == 1);
  CHECK(count_op(s, Op::Sin) == 0);
  int consts = 0;
  for (auto& n : s.nodes) {
    if (n.op != Op::Const) continue;
    consts++;
    CHECK(n.value == 5.0);
  }
  CHECK(consts == 1);
  const Node& out = s.nodes[s.outputs[0]];
  CHECK(out.op == Op::Mul);
  CHECK(s.nodes[out.in[0]].op == Op::Add);
  CHECK(s.nodes[out.in[0]].in[0] == s.nodes[out.in[0]].in[1]);
}

TEST_CASE("simplify: (p * q) * r becomes p * (q * r) only when q * r is already a node") {
  Graph g;
  Builder b(g);
  auto input = [&](const char* name, std::vector<int64_t> dims) {
    Node x{Op::Input};
    x.type = Type{true, std::move(dims)};
    x.name = name;
    return b.add(std::move(x));
  };
  NodeId x = input("x", {4}), gr = input("g", {4}), v = input("v", {4}), c = input("c", {});
  NodeId s = b.unary(Op::Sigmoid, x);
  NodeId y = b.mul(x, s);                        // SiLU's forward x * s
  NodeId dx = b.mul(b.mul(gr, x), s);            // (g * x) * s: x * s exists -> g * y
  NodeId other = b.mul(b.mul(gr, v), s);         // (g * v) * s: v * s does not exist -> unchanged
  NodeId bcast = b.mul(b.mul(gr, c), x);         // c is a [] scalar: broadcasts are left alone
  g.outputs = {y, dx, other, bcast};
  g.output_names = {"y", "dx", "other", "bcast"};
  Graph out = simplify(g);
  const Node& d = out.nodes[out.outputs[1]];
  REQUIRE(d.op == Op::Mul);
  CHECK(out.nodes[d.in[0]].op == Op::Input);
  CHECK(out.nodes[d.in[0]].name == "g");
  CHECK(d.in[1] == out.outputs[0]);  // the forward product itself
  const Node& o = out.nodes[out.outputs[2]];
  CHECK(out.nodes[o.in[0]].op == Op::Mul);  // still (g * v) * s
  CHECK(out.nodes[o.in[1]].op == Op::Sigmoid);
  const Node& bc = out.nodes[out.outputs[3]];
  CHECK(out.nodes[bc.in[0]].op == Op::Mul);
  CHECK(out.nodes[bc.in[1]].op == Op::Input);
  // x is read by sigmoid, the forward product and the broadcast case only: g * x is gone.
  int users_of_x = 0;
  for (const Node& n : out.nodes)
    for (NodeId i : n.in) users_of_x += out.nodes[i].op == Op::Input && out.nodes[i].name == "x";
  CHECK(users_of_x == 3);  // sigmoid(x), x * s, and (g * c) * x
}

TEST_CASE("autodiff: the training graph has the loss then one gradient per parameter, in order") {
  Compiled c = moons();
  REQUIRE(c.train.outputs.size() == 1 + c.model.params.size());
  CHECK(c.train.output_names[0] == "loss");
  for (size_t i = 0; i < c.model.params.size(); ++i) {
    CHECK(c.train.output_names[1 + i] == "grad/" + c.model.params[i].name);
    CHECK(c.train.nodes[c.train.outputs[1 + i]].type == c.model.params[i].type);
  }
  CHECK(c.model.params[0].name == "eps_theta/linear.0/w");
  CHECK(c.model.params[7].name == "eps_theta/linear.3/b");
}

TEST_CASE("fuse: the moons training step is a handful of kernels, in dependency order") {
  Compiled c = moons();
  const Graph& g = c.train;
  int prim = 0;
  for (auto& n : g.nodes)
    prim += n.op != Op::Input && n.op != Op::Param && n.op != Op::Const && n.op != Op::ConstTensor &&
            n.op != Op::InvBatch;
  int gemm_with_epilogue = 0, gemms = 0;
  for (auto& k : g.kernels) {
    gemms += k.kind == KernelKind::Gemm;
    gemm_with_epilogue += k.kind == KernelKind::Gemm && k.nodes.size() > 1;
  }
  MESSAGE("moons train: " << g.kernels.size() << " kernels from " << prim << " primitive ops, " << gemms << " GEMMs");
  CHECK(prim >= 60);
  CHECK(g.kernels.size() <= 23);
  CHECK(g.kernels.size() * 2 < (size_t)prim);
  CHECK(gemms == 11);  // 4 forward, 4 weight gradients, 3 input gradients (none for the data)
  CHECK(gemm_with_epilogue >= 7);  // bias + SiLU forward, SiLU' backward
  // Every computed node is in exactly one kernel, after the kernels of its inputs.
  std::vector<int> kernel_of(g.nodes.size(), -1);
  for (size_t k = 0; k < g.kernels.size(); ++k)
    for (NodeId id : g.kernels[k].nodes) {
      CHECK(kernel_of[id] == -1);
      kernel_of[id] = (int)k;
    }
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Op op = g.nodes[i].op;
    bool leaf = op == Op::Input || op == Op::Param || op == Op::Const || op == Op::ConstTensor || op == Op::InvBatch;
    CHECK((kernel_of[i] >= 0) != leaf);
    for (NodeId x : g.nodes[i].in)
      if (kernel_of[x] >= 0) CHECK(kernel_of[x] <= kernel_of[i]);
  }
}

TEST_CASE("simplify + fuse: of SiLU's forward values only sigmoid(z) and z * sigmoid(z) are stored, 1 - sigmoid(z) is recomputed in the backward epilogue") {
  Compiled c = moons();
  const Graph& g = c.train;
  std::vector<int> kernel_of(g.nodes.size(), -1);
  std::vector<bool> stored(g.nodes.size(), false);
  for (size_t k = 0; k < g.kernels.size(); ++k) {
    for (NodeId id : g.kernels[k].nodes) kernel_of[id] = (int)k;
    for (NodeId id : g.kernels[k].outputs) stored[id] = true;
  }
  int moved = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (n.op != Op::Sub || g.nodes[n.in[1]].op != Op::Sigmoid) continue;
    const NodeId s = n.in[1];
    INFO("node " << i);
    CHECK_FALSE(stored[i]);
    // It sits in a GEMM epilogue of the backward pass, not in the forward kernel of its sigmoid...
    CHECK(kernel_of[i] != kernel_of[s]);
    CHECK(g.kernels[kernel_of[i]].kind == KernelKind::Gemm);
    // ...after the contraction, and before its users in that kernel.
    const auto& nodes = g.kernels[kernel_of[i]].nodes;
    const auto at = std::find(nodes.begin(), nodes.end(), (NodeId)i) - nodes.begin();
    CHECK(at >= 1);
    for (size_t j = 0; j < g.nodes.size(); ++j)
      for (NodeId x : g.nodes[j].in)
        if (x == (NodeId)i) {
          CHECK(kernel_of[j] == kernel_of[i]);
          CHECK(std::find(nodes.begin(), nodes.end(), (NodeId)j) - nodes.begin() > at);
        }
    ++moved;
  }
  CHECK(moved == 3);  // one per hidden SiLU
  // The forward epilogues store sigmoid(z) and SiLU(z) only: the backward reads z * sigmoid(z)
  // where it read z (simplify's reassociation), and 1 - sigmoid(z) is recomputed. Two [B,128]
  // values per layer, not four.
  for (const Node& n : g.nodes)
    if (n.op == Op::Sigmoid) CHECK_FALSE(stored[n.in[0]]);
  CHECK(g.arena_per_sample <= 1168);
}

TEST_CASE("conv plan: the U-Net's 3x3 layers take F(4x4,3x3) at 28x28 and 7x7, the width's Winograd at 14x14") {
  Compiled c = compile_spec_file(source_path("models/fashion_unet.ddpm"));
  const Graph& g = c.train;
  int at14 = 0, at28 = 0, at7 = 0;
  for (const Node& n : g.nodes) {
    if (n.op != Op::Conv2d && n.op != Op::Conv2dBackData) continue;
    const ConvDims d = conv_dims(g, n);
    if (d.K != 3 || d.s != 1 || d.C < 16 || d.O < 16) continue;
    const ConvPath p = conv_path(n, d);
    INFO("conv " << d.C << "->" << d.O << " at " << d.H << "x" << d.W << (n.op == Op::Conv2d ? " forward" : " data gradient"));
    if (d.H == 14) {
      // Either transform, chosen by the module at its width; the plan reserves the larger scratch.
      ++at14;
      CHECK(p == ConvPath::WinogradByWidth);
      const ddpm::conv::Shape s = n.op == Op::Conv2d ? conv_shape(d) : dgrad_shape(d);
      CHECK(conv_chunk_floats(g, n) == std::max(ddpm::wino4::slice_floats(s), ddpm::wino::slice_floats(s)));
    } else {
      ++(d.H == 28 ? at28 : at7);
      CHECK(p == ConvPath::Winograd4);
    }
  }
  // Forward and data gradient: 64->64 (8 each) and 128->64 at 14x14, 32->32 and 64->32 at 28x28,
  // 64->64 at 7x7.
  CHECK(at14 == 2 * (8 + 1));
  CHECK(at28 > 0);
  CHECK(at7 > 0);
  // On 16 and 4 lanes the modules take F(4x4,3x3) there, on 8 F(2x2,3x3) (bench_conv).
  CHECK(ddpm::wino_by_width::kF4x4 == (ddpm::simd::kLanes != 8));
}

TEST_CASE("remat + fuse + prologue: each GroupNorm + affine + SiLU is one loop nest forward and one backward, forward ones inside their convolution (U-Net)") {
  Compiled c = compile_spec_file(source_path("models/fashion_unet.ddpm"));
  const Graph& g = c.train;
  // 9 ResBlocks with two group_norm each, and the output head's.
  const int layers = 19;
  int fwd = 0, bwd = 0, prologues = 0;
  for (auto& k : g.kernels) {
    if (!k.prologue.empty()) {
      // The forward nest moved into the convolution it feeds (passes/prologue.cpp): the
      // convolution computes its input while copying it, and that input has no storage.
      ++prologues;
      std::multiset<Op> ops;
      for (NodeId id : k.prologue) ops.insert(g.nodes[id].op);
      CHECK(ops.count(Op::GroupNorm) == 1);
      CHECK(ops.count(Op::Sigmoid) == 1);
      CHECK(g.nodes[k.nodes[0]].op == Op::Conv2d);
      CHECK(g.slots[g.nodes[k.nodes[0]].in[0]].where == Slot::Where::None);
      continue;
    }
    if (k.kind != KernelKind::Norm) continue;
    std::multiset<Op> ops;
    for (NodeId id : k.nodes) ops.insert(g.nodes[id].op);
    if (ops.count(Op::GroupNormBack)) {
      ++bwd;
      // The forward values recomputed (normalize, sigmoid), the gradient chain,
      // the scale and shift gradient sums, and the normalization's backward.
      CHECK(ops.count(Op::GroupNormBack) == 1);
      CHECK(ops.count(Op::GroupNorm) == 1);
      CHECK(ops.count(Op::Sigmoid) == 1);
      CHECK(ops.count(Op::SumTo) >= 2);
    } else {
      ++fwd;
      CHECK(ops.count(Op::GroupNorm) == 1);
      CHECK(ops.count(Op::Sigmoid) == 1);
      // Only the SiLU output (the next convolution's input) is stored.
      REQUIRE(k.outputs.size() == 1);
      CHECK(g.nodes[k.outputs[0]].op == Op::Mul);
    }
  }
  // Every forward nest of the U-Net feeds one convolution and only it, so all are prologues.
  CHECK(prologues == layers);
  CHECK(fwd == 0);
  CHECK(bwd == layers);
  // No other kernel reads a normalized value, so the forward never stores one.
  for (auto& n : g.nodes)
    for (NodeId x : n.in)
      if (g.nodes[x].op == Op::GroupNorm) CHECK(is_elementwise(n.op));
  // The samplers run the forward nests only, all as prologues, and so are the two upsamplings
  // in front of the decoder's convolutions (in training the filter gradient reads those too).
  int sampler_norms = 0, norm_prologues = 0, up_prologues = 0, train_up = 0;
  const Graph& s = c.samplers[0].second;
  for (auto& k : s.kernels) {
    sampler_norms += k.kind == KernelKind::Norm;
    if (k.prologue.empty()) continue;
    (s.nodes[k.prologue.back()].op == Op::Upsample2x ? up_prologues : norm_prologues) += 1;
  }
  for (auto& k : g.kernels) train_up += !k.prologue.empty() && g.nodes[k.prologue.back()].op == Op::Upsample2x;
  CHECK(sampler_norms == 0);
  CHECK(norm_prologues == layers);
  CHECK(up_prologues == 2);
  CHECK(train_up == 0);
}

TEST_CASE("prologue: a group norm whose output is also used elsewhere stays its own kernel") {
  // Here h feeds a convolution and the returned sum, so it must be stored: no prologue.
  const std::string spec = R"(import std
diffusion { steps = 10  schedule = linear(beta_min = 1e-4, beta_max = 0.02) }
data x0: [16, 8, 8]
net eps_theta(x: [16, 8, 8], t: step) -> [16, 8, 8] {
  h = silu(group_norm(x, 4))
  return conv(h, 16) + h
}
loss {
  t = uniform_step()
  eps = randn()
  xt = sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps
  return mean(square(eps - eps_theta(xt, t)))
}
sampler ddpm(x, t, s) {
  return x - eps_theta(x, t)
}
)";
  Compiled c = compile_spec_text("prologue_shared.ddpm", spec);
  for (auto& [name, g] : c.samplers) {
    int norms = 0, prologues = 0;
    for (auto& k : g.kernels) {
      norms += k.kind == KernelKind::Norm;
      prologues += !k.prologue.empty();
    }
    CHECK(norms == 1);
    CHECK(prologues == 0);
  }
}

TEST_CASE("codegen: a large module splits into two translation units with disjoint kernels") {
  Compiled c = compile_spec_file(source_path("models/fashion_unet.ddpm"));
  const auto one = emit_module_parts(c, "h", false);
  const auto two = emit_module_parts(c, "h", true);
  REQUIRE(one.size() == 1);
  REQUIRE(two.size() == 2);
  auto count = [](const std::string& s, const std::string& w) {
    size_t n = 0;
    for (size_t at = s.find(w); at != std::string::npos; at = s.find(w, at + 1)) ++n;
    return n;
  };
  for (const char* k : {"static void train_k", "static void loss_k", "static void sampler_ddpm_k", "static void eps_k"}) {
    CAPTURE(k);
    CHECK(count(one[0], k) > 0);
    CHECK(count(two[0], k) + count(two[1], k) == count(one[0], k));
  }
  CHECK(count(two[0], "static void sampler_") == 0);
  CHECK(count(two[1], "static void train_k") == 0);
  // The descriptor (in part 0) points at part 1's entry points.
  CHECK(count(two[0], "ddpm_part1::sampler_step,") == 1);
  CHECK(count(two[0], "ddpm_part1::sampler_step4,") == 1);
  CHECK(count(two[0], "ddpm_part1::kSamplerInfo,") == 1);
  CHECK(count(two[1], "int sampler_step(") == 1);
  CHECK(count(two[1], "int sampler_step4(") == 1);
}

TEST_CASE("memplan: the U-Net training step at batch 64 fits in 200 MiB of arena") {
  // DESIGN.md's memory target. The plan is deterministic, so this is a property
  // of the compiler (kernel order, remat, liveness), not of the machine.
  Compiled c = compile_spec_file(source_path("models/fashion_unet.ddpm"));
  const double mib = (double)arena_floats(c.train, 64) * 4 / (1 << 20);
  MESSAGE("U-Net training arena at batch 64: " << mib << " MiB");
  CHECK(mib <= 200.0);
  CHECK(mib > 50.0);  // the saved activations alone are more than this
}

TEST_CASE("memplan: values that are live at the same time never share arena memory") {
  Compiled c = moons();
  for (const Graph* g : {&c.train, &c.loss, &c.samplers[0].second}) {
    CAPTURE(g->name);
    std::vector<int> def(g->nodes.size(), -1), last(g->nodes.size(), -1);
    for (size_t k = 0; k < g->kernels.size(); ++k)
      for (NodeId id : g->kernels[k].nodes) {
        def[id] = (int)k;
        for (NodeId x : g->nodes[id].in) last[x] = std::max(last[x], (int)k);
      }
    struct Buf {
      bool batched;
      int64_t off, size;
      int b, e;
    };
    std::vector<Buf> bufs;
    for (auto& k : g->kernels)
      for (NodeId id : k.outputs) {
        const Slot& s = g->slots[id];
        CHECK(s.where != Slot::Where::None);
        if (s.where != Slot::Where::Arena) continue;
        const Type& t = g->nodes[id].type;
        int64_t off = t.batched ? s.per_sample : s.fixed;
        CHECK(off % 16 == 0);
        bufs.push_back({t.batched, off, t.numel(), def[id], std::max(def[id], last[id])});
      }
    for (size_t i = 0; i < bufs.size(); ++i)
      for (size_t j = i + 1; j < bufs.size(); ++j) {
        const Buf &a = bufs[i], &b = bufs[j];
        bool time = !(a.e < b.b || b.e < a.b);
        bool space = a.batched == b.batched && a.off < b.off + b.size && b.off < a.off + a.size;
        CHECK_FALSE((time && space));
      }
    // Reuse happens: the plan is smaller than giving every value its own buffer.
    int64_t sum = 0;
    for (auto& b : bufs)
      if (b.batched) sum += ddpm::simd::align_floats(b.size);
    CHECK(g->arena_per_sample < sum);
  }
}

TEST_CASE("codegen: the moons module is deterministic and matches the golden file") {
  const std::string golden = source_path("tests/golden/moons.cpp");
  std::string a = emit_module(moons(), "golden"), b = emit_module(moons(), "golden");
  CHECK(a == b);
  if (const char* u = std::getenv("UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::ofstream(golden, std::ios::binary) << a;
    MESSAGE("rewrote " << golden);
  }
  std::string want = read_text(golden);
  REQUIRE_MESSAGE(!want.empty(), "missing " << golden << "; run the tests with UPDATE_GOLDEN=1");
  CHECK_MESSAGE(a == want, "generated code differs from " << golden
                                                          << "; if the change is intended, rerun with UPDATE_GOLDEN=1");
}
