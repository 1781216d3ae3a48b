// Per-op tests, table-driven: one row per primitive op (and per broadcasting
// pattern that codegen supports). For each row a small graph computes
//   loss = sum(op(inputs) * r)        r: fixed random weights (a randn node)
// where the inputs are built from parameters, so that
//   1. autodiff's gradient (interpreted in double) matches central finite
//      differences of the interpreted loss, for every parameter element;
//   2. one module compiled from all rows together matches the interpreter:
//      the loss and every gradient (so every op's emitted forward and backward code).
// Dimension legend: B batch (symbolic), N = 3 features, K = 4.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "diffusion.h"
#include "interp.h"
#include "module.h"
#include "ops.h"
#include "passes/passes.h"
#include "test_support.h"
#include "common/prelude/align.h"

using namespace ddpmc;
using namespace ddpm_test;

namespace {

struct Ctx {
  Model& m;
  Builder& b;
  int stream = 100;
  // A parameter of type t; batched types become p[dims] broadcast times (1 + 0.2 randn),
  // so that every sample differs and the value still depends on p.
  NodeId input(const Type& t) {
    Type pt{false, t.dims};
    int idx = (int)m.params.size();
    m.params.push_back(ParamInfo{"p" + std::to_string(idx), pt, 1.0f});
    Node p{Op::Param};
    p.type = pt;
    p.name = m.params.back().name;
    p.index = idx;
    NodeId id = b.add(std::move(p));
    if (!t.batched) return id;
    Node r{Op::RandN};
    r.type = t;
    r.i0 = stream++;
    NodeId noise = b.add(std::move(r));
    return b.mul(b.broadcast(id, t), b.add2(b.cnst(1.0), b.mul(noise, b.cnst(0.2))));
  }
};

struct OpCase {
  const char* name;
  std::function<NodeId(Ctx&)> build;
  bool positive = false;  // parameters must be positive (log, sqrt, div)
};

const Type BN{true, {3}}, N{false, {3}}, Bs{true, {}}, S{false, {}};

NodeId un(Ctx& c, Op op, const Type& t) { return c.b.unary(op, c.input(t)); }
NodeId bin(Ctx& c, Op op, const Type& a, const Type& b) { return c.b.binary(op, c.input(a), c.input(b)); }

// x [B,2,5,5], w [3,2,3,3]; for the gradient ops the output-shaped operand is built
// from the forward shape rule.
NodeId conv(Ctx& c, Op op, int64_t stride, int64_t pad) {
  const Type x{true, {2, 5, 5}}, w{false, {3, 2, 3, 3}};
  const int64_t o = (5 + 2 * pad - 3) / stride + 1;
  const Type y{true, {3, o, o}};
  Node n{op};
  n.i0 = stride;
  n.i1 = pad;
  if (op == Op::Conv2d) n.in = {c.input(x), c.input(w)};
  if (op == Op::Conv2dBackData) n.in = {c.input(y), c.input(w)}, n.type = x;
  if (op == Op::Conv2dBackFilter) n.in = {c.input(x), c.input(y)}, n.type = w;
  return c.b.add(std::move(n));
}

// An input centred on zero (values of both signs), for the ops with a kink or a
// branch at zero; the compiled test draws every parameter positive.
NodeId centred(Ctx& c, const Type& t) { return c.b.binary(Op::Sub, c.input(t), c.b.cnst(1.0)); }
NodeId cmp_where(Ctx& c, Op cmp) {
  Node w{Op::Where};
  w.in = {c.b.binary(cmp, centred(c, BN), centred(c, BN)), c.input(BN), c.input(N)};
  return c.b.add(std::move(w));
}
NodeId rand_u(Ctx& c, const Type& t) {
  Node u{Op::RandU};
  u.type = t;
  u.i0 = c.stream++;
  return c.b.add(std::move(u));
}

NodeId gnorm(Ctx& c, NodeId x, int64_t groups) {
  Node n{Op::GroupNorm};
  n.in = {x};
  n.i0 = groups;
  n.value = 1e-5;
  return c.b.add(std::move(n));
}

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> k = {
      {"neg", [](Ctx& c) { return un(c, Op::Neg, BN); }},
      {"exp", [](Ctx& c) { return un(c, Op::Exp, BN); }},
      {"log", [](Ctx& c) { return un(c, Op::Log, BN); }, true},
      {"sqrt", [](Ctx& c) { return un(c, Op::Sqrt, BN); }, true},
      {"sin", [](Ctx& c) { return un(c, Op::Sin, BN); }},
      {"cos", [](Ctx& c) { return un(c, Op::Cos, BN); }},
      {"sigmoid", [](Ctx& c) { return un(c, Op::Sigmoid, BN); }},
      {"square", [](Ctx& c) { return un(c, Op::Square, BN); }},
      {"clip", [](Ctx& c) {
         Node n{Op::Clip};
         n.in = {c.input(BN)};
         n.value = -0.5;
         n.value2 = 0.6;
         return c.b.add(std::move(n));
       }},
      {"stop_gradient (only the direct path gets a gradient)", [](Ctx& c) {
         NodeId x = c.input(BN);
         return c.b.mul(x, c.b.unary(Op::StopGradient, c.b.unary(Op::Exp, x)));
       }},
      {"maximum [B,N],[N]", [](Ctx& c) { return c.b.binary(Op::Maximum, centred(c, BN), centred(c, N)); }},
      {"minimum [B,N],[B]", [](Ctx& c) { return c.b.binary(Op::Minimum, centred(c, BN), centred(c, Bs)); }},
      {"abs", [](Ctx& c) { return c.b.unary(Op::Abs, centred(c, BN)); }},
      {"relu", [](Ctx& c) { return c.b.unary(Op::Relu, centred(c, BN)); }},
      {"tanh", [](Ctx& c) { return c.b.unary(Op::Tanh, centred(c, BN)); }},
      {"where(less)", [](Ctx& c) { return cmp_where(c, Op::Less); }},
      {"where(less_equal)", [](Ctx& c) { return cmp_where(c, Op::LessEqual); }},
      {"where(greater)", [](Ctx& c) { return cmp_where(c, Op::Greater); }},
      {"where(greater_equal)", [](Ctx& c) { return cmp_where(c, Op::GreaterEqual); }},
      // equal on drawn uniforms against a threshold: label dropout's mask.
      {"where(equal) on uniform noise", [](Ctx& c) {
         NodeId drop = c.b.binary(Op::Less, rand_u(c, Bs), c.b.cnst(0.5));
         Node w{Op::Where};
         w.in = {c.b.binary(Op::Equal, drop, c.b.cnst(1.0)), c.input(N), c.input(BN)};
         return c.b.add(std::move(w));
       }},
      {"uniform noise scales a value", [](Ctx& c) { return c.b.mul(rand_u(c, BN), c.input(BN)); }},
      {"softmax [B,N]", [](Ctx& c) { return c.b.unary(Op::Softmax, c.b.mul(c.input(BN), c.b.cnst(3.0))); }},
      {"softmax [B,5,19] (rows longer than a SIMD vector)", [](Ctx& c) { return c.b.unary(Op::Softmax, centred(c, Type{true, {5, 19}})); }},
      {"log_softmax [B,N]", [](Ctx& c) { return c.b.unary(Op::LogSoftmax, c.b.mul(c.input(BN), c.b.cnst(3.0))); }},
      {"log_softmax [B,5,19] (rows longer than a SIMD vector)",
       [](Ctx& c) { return c.b.unary(Op::LogSoftmax, centred(c, Type{true, {5, 19}})); }},
      {"log_softmax of logits near 100 [B,2,37] (max-shifted; vectors and a tail)",
       [](Ctx& c) { return c.b.unary(Op::LogSoftmax, c.b.add2(c.b.mul(centred(c, Type{true, {2, 37}}), c.b.cnst(4.0)), c.b.cnst(100.0))); }},
      {"transpose [B,2,3,5]", [](Ctx& c) { return c.b.transpose(c.input(Type{true, {2, 3, 5}})); }},
      {"bmm [B,3,4] x [B,4,5]", [](Ctx& c) { return c.b.bmm(c.input(Type{true, {3, 4}}), c.input(Type{true, {4, 5}})); }},
      {"bmm [B,2,3,4] x [B,2,4,21] (a SIMD vector and a tail)",
       [](Ctx& c) { return c.b.bmm(c.input(Type{true, {2, 3, 4}}), c.input(Type{true, {2, 4, 21}})); }},
      {"matmul NN over the last axis of [B,5,3]",
       [](Ctx& c) { return c.b.matmul(c.input(Type{true, {5, 3}}), c.input(Type{false, {3, 4}}), kNN); }},
      {"matmul NN of [B,5,3] with an epilogue (not fused: rows are not samples)", [](Ctx& c) {
         NodeId y = c.b.matmul(c.input(Type{true, {5, 3}}), c.input(Type{false, {3, 4}}), kNN);
         return c.b.unary(Op::Sigmoid, c.b.add2(y, c.input(Type{true, {}})));
       }},
      {"add [B,N]+[B,N]", [](Ctx& c) { return bin(c, Op::Add, BN, BN); }},
      {"add [B,N]+[N]", [](Ctx& c) { return bin(c, Op::Add, BN, N); }},
      {"sub [B]-[B,N]", [](Ctx& c) { return bin(c, Op::Sub, Bs, BN); }},
      {"sub [N]-[]", [](Ctx& c) { return bin(c, Op::Sub, N, S); }},
      {"mul [B,N]*[B]", [](Ctx& c) { return bin(c, Op::Mul, BN, Bs); }},
      {"mul []*[B,N]", [](Ctx& c) { return bin(c, Op::Mul, S, BN); }},
      {"div [B,N]/[N]", [](Ctx& c) { return bin(c, Op::Div, BN, N); }, true},
      {"div [B]/[B,N]", [](Ctx& c) { return bin(c, Op::Div, Bs, BN); }, true},
      {"add [B,C,H,W]+[C,1,1] (per channel)", [](Ctx& c) { return bin(c, Op::Add, Type{true, {2, 3, 4}}, Type{false, {2, 1, 1}}); }},
      {"mul [B,C,1,1]*[B,C,H,W]", [](Ctx& c) { return bin(c, Op::Mul, Type{true, {2, 1, 1}}, Type{true, {2, 3, 4}}); }},
      {"sub [W]-[B,C,H,W]", [](Ctx& c) { return bin(c, Op::Sub, Type{false, {4}}, Type{true, {2, 3, 4}}); }},
      {"sum_to [B,C,H,W]->[C,1,1]", [](Ctx& c) { return c.b.sum_to(c.input(Type{true, {2, 3, 4}}), Type{false, {2, 1, 1}}); }},
      {"sum_to [B,C,H,W]->[B,C,1,1]", [](Ctx& c) { return c.b.sum_to(c.input(Type{true, {2, 3, 4}}), Type{true, {2, 1, 1}}); }},
      {"broadcast [N]->[B,N]", [](Ctx& c) { return c.b.broadcast(c.input(N), BN); }},
      {"broadcast []->[B]", [](Ctx& c) { return c.b.broadcast(c.input(S), Bs); }},
      {"sum_to [B,N]->[N]", [](Ctx& c) { return c.b.sum_to(c.input(BN), N); }},
      {"sum_to [B,N]->[B]", [](Ctx& c) { return c.b.sum_to(c.input(BN), Bs); }},
      {"sum_to [B,N]->[]", [](Ctx& c) { return c.b.sum_to(c.input(BN), S); }},
      {"matmul NN", [](Ctx& c) { return c.b.matmul(c.input(BN), c.input(Type{false, {3, 4}}), kNN); }},
      {"matmul NT", [](Ctx& c) { return c.b.matmul(c.input(BN), c.input(Type{false, {4, 3}}), kNT); }},
      {"matmul TN", [](Ctx& c) { return c.b.matmul(c.input(BN), c.input(Type{true, {4}}), kTN); }},
      {"conv2d 3x3 stride 1 pad 1", [](Ctx& c) { return conv(c, Op::Conv2d, 1, 1); }},
      {"conv2d 3x3 stride 2 pad 1", [](Ctx& c) { return conv(c, Op::Conv2d, 2, 1); }},
      {"conv2d 3x3 stride 1 pad 0 (data gradient: flipped filter, padding 2)", [](Ctx& c) { return conv(c, Op::Conv2d, 1, 0); }},
      {"conv2d 1x1", [](Ctx& c) {
         Node n{Op::Conv2d};
         n.in = {c.input(Type{true, {2, 4, 3}}), c.input(Type{false, {3, 2, 1, 1}})};
         n.i0 = 1;
         return c.b.add(std::move(n));
       }},
      {"conv2d_back_data stride 2", [](Ctx& c) { return conv(c, Op::Conv2dBackData, 2, 1); }},
      {"conv2d_back_filter stride 2", [](Ctx& c) { return conv(c, Op::Conv2dBackFilter, 2, 1); }},
      {"concat", [](Ctx& c) { return c.b.concat({c.input(BN), c.input(Type{true, {2}})}); }},
      {"slice", [](Ctx& c) { return c.b.slice(c.input(Type{true, {5}}), 1, 3); }},
      {"concat on channels", [](Ctx& c) { return c.b.concat({c.input(Type{true, {2, 3, 2}}), c.input(Type{true, {1, 3, 2}})}, 0); }},
      {"slice on channels", [](Ctx& c) { return c.b.slice(c.input(Type{true, {4, 2, 3}}), 1, 2, 0); }},
      {"reshape", [](Ctx& c) {
         Node n{Op::Reshape};
         n.in = {c.input(Type{true, {2, 3, 2}})};
         n.type = Type{true, {2, 6}};
         return c.b.add(std::move(n));
       }},
      {"upsample2x", [](Ctx& c) { return c.b.unary(Op::Upsample2x, c.input(Type{true, {2, 3, 2}})); }},
      {"pool2x_sum", [](Ctx& c) { return c.b.unary(Op::Pool2xSum, c.input(Type{true, {2, 4, 6}})); }},
      {"group_norm [B,4,3,2], 2 groups", [](Ctx& c) { return gnorm(c, c.input(Type{true, {4, 3, 2}}), 2); }},
      {"layer norm: group_norm [B,20], 1 group", [](Ctx& c) { return gnorm(c, c.input(Type{true, {20}}), 1); }},
      {"group_norm [B,6,5], 3 groups (rows not a multiple of the SIMD width)",
       [](Ctx& c) { return gnorm(c, c.input(Type{true, {6, 5}}), 3); }},
      // The fused loop nest of a ResBlock: silu(normalize(x) * (1 + scale) + shift),
      // with 28 elements per channel (one SIMD vector and a tail).
      {"group_norm + affine + silu (fused, recomputed in the backward)", [](Ctx& c) {
         const Type x{true, {4, 4, 7}}, pc{false, {4, 1, 1}};
         NodeId a = c.b.add2(c.b.mul(gnorm(c, c.input(x), 2), c.b.add2(c.b.cnst(1.0), c.input(pc))), c.input(pc));
         return c.b.mul(a, c.b.unary(Op::Sigmoid, a));
       }},
      {"lookup", [](Ctx& c) {
         Node u{Op::UniformStep};
         u.type = Bs;
         u.i0 = c.stream++;
         u.i1 = 10;
         NodeId t = c.b.add(std::move(u));
         Node l{Op::Lookup};
         l.in = {t};
         for (int i = 0; i <= 10; ++i) l.data.push_back(0.1f * i + 0.05f);
         return c.b.mul(c.b.add(std::move(l)), c.input(BN));
       }},
  };
  return k;
}

// loss += sum(out * r) for a case's output node.
NodeId weighted_sum(Ctx& c, NodeId out) {
  Node r{Op::RandN};
  r.type = c.b.type(out);
  if (!r.type.batched) r.type.batched = true;  // unbatched outputs are broadcast against batched weights
  r.i0 = c.stream++;
  NodeId w = c.b.add(std::move(r));
  return c.b.sum_to(c.b.mul(out, w), S);
}

Model base_model() {
  Model m;
  m.spec_path = "test_ops";
  m.diffusion = make_diffusion("linear", 10, {}, Loc{});
  m.data = Type{true, {3}};
  m.data_name = "x0";
  return m;
}

void finish(Model& m, NodeId loss) {
  m.loss.outputs = {loss};
  m.loss.output_names = {"loss"};
  int64_t off = 0;
  for (auto& p : m.params) {
    p.offset = off;
    off += ddpm::simd::align_floats(p.type.numel());
  }
  m.param_floats = off;
}

std::vector<double> init_params(const Model& m, bool positive, uint32_t seed) {
  std::vector<double> p(m.param_floats, 0.0);
  auto v = uniform_floats(m.param_floats, positive ? 0.5f : -1.0f, positive ? 1.5f : 1.0f, seed);
  for (auto& pi : m.params)
    for (int64_t e = 0; e < pi.type.numel(); ++e) p[pi.offset + e] = v[pi.offset + e];
  return p;
}

// stop_gradient(x) means "x held constant": for the finite differences, each
// stop_gradient node becomes an input fed with its value at the unperturbed parameters.
Graph freeze_stop_gradients(const Graph& g, const Model& m, InterpEnv& env) {
  Graph f = g;
  auto vals = interpret_all(g, m, env);
  for (size_t i = 0; i < f.nodes.size(); ++i) {
    if (f.nodes[i].op != Op::StopGradient) continue;
    Node& n = f.nodes[i];
    n.op = Op::Input;
    n.in.clear();
    n.name = "frozen" + std::to_string(i);
    f.input_names.push_back(n.name);
    env.inputs[n.name] = vals[i];
  }
  return f;
}

}  // namespace

TEST_CASE("ops: every primitive's gradient matches central finite differences (double)") {
  for (const OpCase& oc : cases()) {
    SUBCASE(oc.name) {
      Model m = base_model();
      Builder b(m.loss);
      Ctx c{m, b};
      NodeId loss = weighted_sum(c, oc.build(c));
      finish(m, loss);
      verify(m.loss, m);
      Graph train = simplify(autodiff(m.loss, m));
      verify(train, m);
      InterpEnv env;
      env.B = 5;
      env.seed = 42;
      env.step = 3;
      env.params = init_params(m, oc.positive, 17);
      auto grads = interpret(train, m, env);
      const Graph fd_loss = freeze_stop_gradients(m.loss, m, env);
      const double h = 1e-6;
      for (size_t pi = 0; pi < m.params.size(); ++pi) {
        for (int64_t e = 0; e < m.params[pi].type.numel(); ++e) {
          InterpEnv up = env, dn = env;
          up.params[m.params[pi].offset + e] += h;
          dn.params[m.params[pi].offset + e] -= h;
          double fd = (interpret(fd_loss, m, up)[0][0] - interpret(fd_loss, m, dn)[0][0]) / (2 * h);
          double ad = grads[1 + pi][e];
          INFO(oc.name << ": d loss / d " << m.params[pi].name << "[" << e << "] autodiff " << ad << " fd " << fd);
          CHECK(std::abs(ad - fd) <= 1e-6 * (1 + std::abs(fd)));
        }
      }
    }
  }
}

TEST_CASE("ops: every primitive's compiled forward and backward code matches the interpreter") {
  Model m = base_model();
  Builder b(m.loss);
  Ctx c{m, b};
  NodeId total = -1;
  bool positive_all = true;
  for (const OpCase& oc : cases()) {
    NodeId l = weighted_sum(c, oc.build(c));
    total = total < 0 ? l : b.add2(total, l);
  }
  finish(m, total);
  Compiled comp = compile_model(m);
  auto built = build_compiled(comp, test_build_options());
  ddpm::Module mod(built.so_path);
  REQUIRE(mod->param_floats == m.param_floats);
  // Positive parameters keep log, sqrt and div well defined for every row.
  std::vector<double> pd = init_params(m, positive_all, 23);
  std::vector<float> params(pd.begin(), pd.end());
  for (int B : {1, 5, 37}) {
    CAPTURE(B);
    std::vector<float> x(B * 3, 0.0f), grads(m.param_floats, 0.0f);
    ddpm::AlignedBuffer arena(mod->arena_bytes(0, B));
    float loss = 0;
    REQUIRE(mod->train_step(arena.data(), B, params.data(), x.data(), 42, 3, grads.data(), &loss) == 0);
    InterpEnv env;
    env.B = B;
    env.seed = 42;
    env.step = 3;
    env.params = pd;
    env.inputs["data"] = std::vector<double>(x.begin(), x.end());
    auto ref = interpret(comp.train, comp.model, env);
    CHECK(std::abs(loss - ref[0][0]) <= 1e-4 * (1 + std::abs(ref[0][0])));
    for (size_t i = 0; i < m.params.size(); ++i) {
      INFO("gradient of " << m.params[i].name);
      CHECK(rel_error(grads.data() + m.params[i].offset, ref[1 + i].data(), m.params[i].type.numel()) <= 1e-4);
    }
  }
}
