// The primitive op table: one row per op (see ops.h), and the Builder that
// creates shape-checked nodes from it. Autodiff, the interpreter, constant folding,
// codegen and lowering (a builtin or operator on numbers) all read these rows; adding
// an op means adding a row here and a row in the op tests.
#include "ops.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace ddpmc {

bool broadcast_type(const Type& a, const Type& b, Type& out) {
  out.batched = a.batched || b.batched;
  const size_t n = std::max(a.dims.size(), b.dims.size());
  out.dims.assign(n, 1);
  for (size_t k = 0; k < n; ++k) {
    int64_t da = k < n - a.dims.size() ? 1 : a.dims[k - (n - a.dims.size())];
    int64_t db = k < n - b.dims.size() ? 1 : b.dims[k - (n - b.dims.size())];
    if (da != db && da != 1 && db != 1) return false;
    out.dims[k] = da == 1 ? db : da;
  }
  return true;
}

int64_t broadcast_index(const Type& in, const Type& d, int64_t j) {
  const size_t n = d.dims.size(), off = n - in.dims.size();
  int64_t idx = 0, inner = 1, istride = 1;
  for (size_t k = n; k-- > 0;) {
    const int64_t dk = d.dims[k], ik = k < off ? 1 : in.dims[k - off];
    if (ik != 1) idx += ((j / inner) % dk) * istride;
    inner *= dk;
    istride *= ik;
  }
  return idx;
}

namespace {

using Types = std::vector<Type>;

std::string leaf_shape(const Node& n, const Types&, Type& out) {
  out = n.type;
  return "";
}

std::string ew_shape(const Node& n, const Types& in, Type& out) {
  out = in[0];
  for (size_t i = 1; i < in.size(); ++i) {
    Type t;
    if (!broadcast_type(out, in[i], t))
      return fmt::format("shapes {} and {} do not match", out.str(), in[i].str());
    out = t;
  }
  return "";
}

std::string broadcast_shape(const Node& n, const Types& in, Type& out) {
  Type t;
  if (!broadcast_type(in[0], n.type, t) || t != n.type)
    return fmt::format("cannot broadcast {} to {}", in[0].str(), n.type.str());
  out = n.type;
  return "";
}

std::string lookup_shape(const Node& n, const Types& in, Type& out) {
  if (!in[0].dims.empty()) return fmt::format("a step index must be a scalar per sample, got {}", in[0].str());
  out = in[0];
  return "";
}

std::string sumto_shape(const Node& n, const Types& in, Type& out) {
  Type t;
  if (!broadcast_type(n.type, in[0], t) || t != in[0])
    return fmt::format("cannot sum {} down to {}", in[0].str(), n.type.str());
  out = n.type;
  return "";
}

// Matmul legend: activations are batched [..., K] (any rank: the leading axes act
// as more rows, M = B * prod(leading)); weights are [K, N].
std::string matmul_shape(const Node& n, const Types& in, Type& out) {
  const Type &a = in[0], &b = in[1];
  auto bad = [&](const char* why) {
    return fmt::format("matmul of {} and {}: {}", a.str(), b.str(), why);
  };
  if (!a.batched || a.dims.empty()) return bad("the first operand must be batched activations [B,...,K]");
  const int64_t ka = a.dims.back();
  switch (n.i0) {
    case kNN:
      if (b.batched || b.dims.size() != 2) return bad("expected [B,...,K] times a weight [K,N]");
      if (ka != b.dims[0]) return bad(fmt::format("inner dimensions {} and {} differ", ka, b.dims[0]).c_str());
      out = a;
      out.dims.back() = b.dims[1];
      return "";
    case kNT:
      if (b.batched || b.dims.size() != 2 || ka != b.dims[1]) return bad("expected [B,...,N] times [K,N]^T");
      out = a;
      out.dims.back() = b.dims[0];
      return "";
    case kTN: {
      std::vector<int64_t> la(a.dims.begin(), a.dims.end() - 1), lb(b.dims.begin(), b.dims.end() - (b.dims.empty() ? 0 : 1));
      if (!b.batched || b.dims.empty() || la != lb) return bad("expected [B,...,K]^T times [B,...,N]");
      out = Type{false, {ka, b.dims.back()}};
      return "";
    }
  }
  return bad("unknown mode");
}

// Call ops work on the last axis (softmax) or the last two (transpose, bmm) of
// batched values; the leading axes index independent matrices.
std::string softmax_shape(const Node& n, const Types& in, Type& out) {
  if (!in[0].batched || in[0].dims.empty())
    return fmt::format("softmax works over the last axis of batched activations, got {}", in[0].str());
  if (in.size() > 1 && in[1] != in[0]) return fmt::format("softmax gradient: {} and {} differ", in[0].str(), in[1].str());
  out = in[0];
  return "";
}
std::string transpose_shape(const Node& n, const Types& in, Type& out) {
  if (!in[0].batched || in[0].dims.size() < 2)
    return fmt::format("transpose swaps the last two axes of batched activations [B,...,M,K], got {}", in[0].str());
  out = in[0];
  std::swap(out.dims[out.dims.size() - 1], out.dims[out.dims.size() - 2]);
  return "";
}
std::string bmm_shape(const Node& n, const Types& in, Type& out) {
  const Type &a = in[0], &b = in[1];
  if (!a.batched || !b.batched || a.dims.size() < 2 || a.dims.size() != b.dims.size())
    return fmt::format("bmm multiplies batched matrices [B,...,M,K] and [B,...,K,N] of one rank, got {} and {}", a.str(), b.str());
  const size_t r = a.dims.size();
  for (size_t d = 0; d + 2 < r; ++d)
    if (a.dims[d] != b.dims[d]) return fmt::format("bmm of {} and {}: the leading axes differ", a.str(), b.str());
  if (a.dims[r - 1] != b.dims[r - 2])
    return fmt::format("bmm of {} and {}: inner dimensions {} and {} differ", a.str(), b.str(), a.dims[r - 1], b.dims[r - 2]);
  out = a;
  out.dims[r - 1] = b.dims[r - 1];
  return "";
}

// Convolution legend: x [B,C,H,W], w [O,C,K,K], y [B,O,Ho,Wo] with
// Ho = (H + 2 pad - K) / stride + 1 (and Wo alike). Attributes: i0 = stride, i1 = pad.
std::string conv_out(const Type& x, const Type& w, int64_t stride, int64_t pad, Type& out) {
  if (!x.batched || x.dims.size() != 3 || w.batched || w.dims.size() != 4)
    return fmt::format("conv2d needs x [C,H,W] per sample and w [O,C,K,K], got {} and {}", x.str(), w.str());
  if (w.dims[1] != x.dims[0])
    return fmt::format("conv2d of {} with {}: the input has {} channels but the kernel expects {}", x.str(), w.str(),
                       x.dims[0], w.dims[1]);
  if (w.dims[2] != w.dims[3]) return fmt::format("conv2d kernels must be square, got {}", w.str());
  if (stride < 1 || pad < 0) return fmt::format("conv2d needs stride >= 1 and padding >= 0, got {} and {}", stride, pad);
  const int64_t K = w.dims[2], Ho = (x.dims[1] + 2 * pad - K) / stride + 1, Wo = (x.dims[2] + 2 * pad - K) / stride + 1;
  if (x.dims[1] + 2 * pad < K || x.dims[2] + 2 * pad < K || Ho < 1 || Wo < 1)
    return fmt::format("conv2d of {} with a {}x{} kernel and padding {} leaves no output", x.str(), K, K, pad);
  out = Type{true, {w.dims[0], Ho, Wo}};
  return "";
}

std::string conv_shape(const Node& n, const Types& in, Type& out) { return conv_out(in[0], in[1], n.i0, n.i1, out); }

// (g [B,O,Ho,Wo], w [O,C,K,K]) -> x's type, preset on the node.
std::string conv_back_data_shape(const Node& n, const Types& in, Type& out) {
  Type y;
  std::string e = conv_out(n.type, in[1], n.i0, n.i1, y);
  if (!e.empty()) return e;
  if (y != in[0]) return fmt::format("conv2d data gradient: {} does not match the output {}", in[0].str(), y.str());
  out = n.type;
  return "";
}

// (x [B,C,H,W], g [B,O,Ho,Wo]) -> w's type, preset on the node.
std::string conv_back_filter_shape(const Node& n, const Types& in, Type& out) {
  Type y;
  std::string e = conv_out(in[0], n.type, n.i0, n.i1, y);
  if (!e.empty()) return e;
  if (y != in[1]) return fmt::format("conv2d filter gradient: {} does not match the output {}", in[1].str(), y.str());
  out = n.type;
  return "";
}

std::string concat_shape(const Node& n, const Types& in, Type& out) {
  out = in[0];
  if (out.dims.empty()) return fmt::format("cannot concatenate scalars {}", out.str());
  const int64_t a = n.axis < 0 ? (int64_t)out.dims.size() - 1 : n.axis;
  if (a >= (int64_t)out.dims.size()) return fmt::format("concat axis {} is out of range for {}", a, out.str());
  for (size_t i = 1; i < in.size(); ++i) {
    const Type& t = in[i];
    bool ok = t.batched == out.batched && t.dims.size() == out.dims.size();
    for (size_t d = 0; ok && d < t.dims.size(); ++d) ok = (int64_t)d == a || t.dims[d] == out.dims[d];
    if (!ok) return fmt::format("cannot concatenate {} and {} on axis {}", out.str(), t.str(), a);
    out.dims[a] += t.dims[a];
  }
  return "";
}

std::string slice_shape(const Node& n, const Types& in, Type& out) {
  const int64_t a = n.axis < 0 ? (int64_t)in[0].dims.size() - 1 : n.axis;
  if (in[0].dims.empty() || a >= (int64_t)in[0].dims.size() || n.i0 < 0 || n.i1 <= 0 || n.i0 + n.i1 > in[0].dims[a])
    return fmt::format("slice [{}, {}) on axis {} out of range for {}", n.i0, n.i0 + n.i1, a, in[0].str());
  out = in[0];
  out.dims[a] = n.i1;
  return "";
}

std::string reshape_shape(const Node& n, const Types& in, Type& out) {
  if (in[0].batched != n.type.batched || in[0].numel() != n.type.numel())
    return fmt::format("cannot reshape {} ({} elements per sample) to {} ({})", in[0].str(), in[0].numel(), n.type.str(),
                       n.type.numel());
  out = n.type;
  return "";
}

// Nearest-neighbour upsampling by 2 of [C,H,W] -> [C,2H,2W], and its adjoint, the
// sum over 2x2 blocks [C,2H,2W] -> [C,H,W].
std::string upsample_shape(const Node& n, const Types& in, Type& out) {
  if (in[0].dims.size() != 3) return fmt::format("upsample needs [C,H,W] per sample, got {}", in[0].str());
  out = in[0];
  out.dims[1] *= 2;
  out.dims[2] *= 2;
  return "";
}
std::string pool_shape(const Node& n, const Types& in, Type& out) {
  if (in[0].dims.size() != 3 || in[0].dims[1] % 2 || in[0].dims[2] % 2)
    return fmt::format("2x2 pooling needs [C,H,W] with even H and W, got {}", in[0].str());
  out = in[0];
  out.dims[1] /= 2;
  out.dims[2] /= 2;
  return "";
}

// Group normalization legend: x [B,C,rest...] per sample; G = i0 groups of C/G
// consecutive channels; each (sample, group) row of C/G * prod(rest) elements is
// standardized: xhat = (x - mean) / sqrt(var + eps), eps = value. The backward op
// (x, dy) -> dx recomputes the row statistics from x.
// A rank-1 x [N] is N channels of one element each: normalize(x, 1) is LayerNorm.
std::string gn_check(const Node& n, const Type& x) {
  if (!x.batched || x.dims.empty())
    return fmt::format("group normalization needs [C,H,W], [C,N] or [N] per sample, got {}", x.str());
  if (n.i0 < 1 || x.dims[0] % n.i0)
    return fmt::format("group normalization: {} channels do not split into {} equal groups", x.dims[0], n.i0);
  return "";
}
std::string groupnorm_shape(const Node& n, const Types& in, Type& out) {
  out = in[0];
  return gn_check(n, in[0]);
}
std::string groupnorm_back_shape(const Node& n, const Types& in, Type& out) {
  if (in[0] != in[1]) return fmt::format("group normalization gradient: {} and {} differ", in[0].str(), in[1].str());
  out = in[0];
  return gn_check(n, in[0]);
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Gradient rules. `self` is the node's own id (its output), g its adjoint.
using GB = Builder;
void no_grad(GB&, const Node&, NodeId, NodeId, std::vector<NodeId>&) {}
void g_add(GB&, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {g, g}; }
void g_sub(GB& b, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {g, b.unary(Op::Neg, g)}; }
void g_mul(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, n.in[1]), b.mul(g, n.in[0])};
}
void g_div(GB& b, const Node& n, NodeId self, NodeId g, std::vector<NodeId>& d) {
  NodeId ga = b.binary(Op::Div, g, n.in[1]);
  d = {ga, b.unary(Op::Neg, b.mul(ga, self))};
}
void g_neg(GB& b, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {b.unary(Op::Neg, g)}; }
void g_exp(GB& b, const Node&, NodeId self, NodeId g, std::vector<NodeId>& d) { d = {b.mul(g, self)}; }
void g_log(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.binary(Op::Div, g, n.in[0])};
}
void g_sqrt(GB& b, const Node&, NodeId self, NodeId g, std::vector<NodeId>& d) {
  d = {b.binary(Op::Div, b.mul(g, b.cnst(0.5)), self)};
}
void g_sin(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, b.unary(Op::Cos, n.in[0]))};
}
void g_cos(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.unary(Op::Neg, b.mul(g, b.unary(Op::Sin, n.in[0])))};
}
void g_sigmoid(GB& b, const Node&, NodeId self, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(b.mul(g, self), b.binary(Op::Sub, b.cnst(1.0), self))};
}
void g_square(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, b.mul(n.in[0], b.cnst(2.0)))};
}
void g_clip(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  Node m{Op::ClipMask};
  m.in = {n.in[0]};
  m.value = n.value;
  m.value2 = n.value2;
  d = {b.mul(g, b.add(std::move(m)))};
}
void g_broadcast(GB&, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {g}; }
void g_sumto(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.broadcast(g, b.type(n.in[0]))};
}
void g_matmul(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  NodeId x = n.in[0], y = n.in[1];
  switch (n.i0) {
    case kNN: d = {b.matmul(g, y, kNT), b.matmul(x, g, kTN)}; break;   // C = X W
    case kNT: d = {b.matmul(g, y, kNN), b.matmul(g, x, kTN)}; break;   // C = G W^T
    case kTN: d = {b.matmul(y, g, kNT), b.matmul(x, g, kNN)}; break;   // C = X^T G
  }
}
// Convolutions are bilinear; each of the three ops' adjoints is one of the others.
NodeId conv_node(GB& b, Op op, NodeId a, NodeId c, const Node& like, const Type& preset) {
  Node n{op};
  n.in = {a, c};
  n.i0 = like.i0;
  n.i1 = like.i1;
  n.type = preset;
  return b.add(std::move(n));
}
void g_conv(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {  // y = conv(x, w)
  d = {conv_node(b, Op::Conv2dBackData, g, n.in[1], n, b.type(n.in[0])),
       conv_node(b, Op::Conv2dBackFilter, n.in[0], g, n, b.type(n.in[1]))};
}
void g_conv_back_data(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {  // y = BD(gy, w)
  d = {conv_node(b, Op::Conv2d, g, n.in[1], n, Type{}), conv_node(b, Op::Conv2dBackFilter, g, n.in[0], n, b.type(n.in[1]))};
}
void g_conv_back_filter(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {  // y = BF(x, gy)
  d = {conv_node(b, Op::Conv2dBackData, n.in[1], g, n, b.type(n.in[0])), conv_node(b, Op::Conv2d, n.in[0], g, n, Type{})};
}
void g_concat(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  const int64_t a = layout_axis(n, b.type(n.in[0]));
  int64_t at = 0;
  d.clear();
  for (NodeId in : n.in) {
    int64_t len = b.type(in).dims[a];
    d.push_back(b.slice(g, at, len, a));
    at += len;
  }
}
void g_slice(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  Type full = b.type(n.in[0]);
  const int64_t a = layout_axis(n, full);
  std::vector<NodeId> parts;
  auto zero_part = [&](int64_t len) {
    Type t = full;
    t.dims[a] = len;
    parts.push_back(b.zeros(t));
  };
  if (n.i0 > 0) zero_part(n.i0);
  parts.push_back(g);
  int64_t rest = full.dims[a] - n.i0 - n.i1;
  if (rest > 0) zero_part(rest);
  d = {parts.size() == 1 ? g : b.concat(parts, a)};
}
void g_reshape(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  Node r{Op::Reshape};
  r.in = {g};
  r.type = b.type(n.in[0]);
  d = {b.add(std::move(r))};
}
void g_groupnorm(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  Node nb{Op::GroupNormBack};
  nb.in = {n.in[0], g};
  nb.i0 = n.i0;
  nb.value = n.value;
  d = {b.add(std::move(nb))};
}
// maximum/minimum: the gradient goes to the operand that was taken (a on ties).
void g_max(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, b.binary(Op::GreaterEqual, n.in[0], n.in[1])), b.mul(g, b.binary(Op::Less, n.in[0], n.in[1]))};
}
void g_min(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, b.binary(Op::LessEqual, n.in[0], n.in[1])), b.mul(g, b.binary(Op::Greater, n.in[0], n.in[1]))};
}
void g_abs(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  NodeId z = b.cnst(0.0);
  d = {b.mul(g, b.binary(Op::Sub, b.binary(Op::Greater, n.in[0], z), b.binary(Op::Less, n.in[0], z)))};
}
void g_relu(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, b.binary(Op::Greater, n.in[0], b.cnst(0.0)))};
}
void g_tanh(GB& b, const Node&, NodeId self, NodeId g, std::vector<NodeId>& d) {
  d = {b.mul(g, b.binary(Op::Sub, b.cnst(1.0), b.unary(Op::Square, self)))};
}
NodeId where_node(GB& b, NodeId c, NodeId x, NodeId y) {
  Node n{Op::Where};
  n.in = {c, x, y};
  return b.add(std::move(n));
}
void g_where(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {
  NodeId z = b.cnst(0.0);
  d = {-1, where_node(b, n.in[0], g, z), where_node(b, n.in[0], z, g)};
}
void g_softmax(GB& b, const Node&, NodeId self, NodeId g, std::vector<NodeId>& d) {
  d = {b.binary(Op::SoftmaxBack, self, g)};
}
void g_log_softmax(GB& b, const Node&, NodeId self, NodeId g, std::vector<NodeId>& d) {
  d = {b.binary(Op::LogSoftmaxBack, self, g)};
}
void g_transpose(GB& b, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {b.transpose(g)}; }
void g_bmm(GB& b, const Node& n, NodeId, NodeId g, std::vector<NodeId>& d) {  // C = A B
  d = {b.bmm(g, b.transpose(n.in[1])), b.bmm(b.transpose(n.in[0]), g)};
}
void g_upsample(GB& b, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {b.unary(Op::Pool2xSum, g)}; }
void g_pool(GB& b, const Node&, NodeId, NodeId g, std::vector<NodeId>& d) { d = {b.unary(Op::Upsample2x, g)}; }

#define EW1(fn) [](const Node& n, const double* x) -> double { return fn; }
const OpRow kRows[] = {
    // op, name, class, arity, shape, eval, emit, grad
    {Op::Input, "input", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::Param, "param", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::Const, "const", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::ConstTensor, "const_tensor", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::InvBatch, "inv_batch", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::RandN, "randn", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::UniformStep, "uniform_step", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::RandU, "rand_uniform", OpClass::Leaf, 0, leaf_shape, nullptr, nullptr, no_grad},
    {Op::Add, "add", OpClass::Elementwise, 2, ew_shape, EW1(x[0] + x[1]), "({0} + {1})", g_add},
    {Op::Sub, "sub", OpClass::Elementwise, 2, ew_shape, EW1(x[0] - x[1]), "({0} - {1})", g_sub},
    {Op::Mul, "mul", OpClass::Elementwise, 2, ew_shape, EW1(x[0] * x[1]), "({0} * {1})", g_mul},
    {Op::Div, "div", OpClass::Elementwise, 2, ew_shape, EW1(x[0] / x[1]), "({0} / {1})", g_div},
    {Op::Neg, "neg", OpClass::Elementwise, 1, ew_shape, EW1(-x[0]), "(-{0})", g_neg},
    {Op::Exp, "exp", OpClass::Elementwise, 1, ew_shape, EW1(std::exp(x[0])), "vexp({0})", g_exp},
    {Op::Log, "log", OpClass::Elementwise, 1, ew_shape, EW1(std::log(x[0])), "vlog({0})", g_log},
    {Op::Sqrt, "sqrt", OpClass::Elementwise, 1, ew_shape, EW1(std::sqrt(x[0])), "vsqrt({0})", g_sqrt},
    {Op::Sin, "sin", OpClass::Elementwise, 1, ew_shape, EW1(std::sin(x[0])), "vsin({0})", g_sin},
    {Op::Cos, "cos", OpClass::Elementwise, 1, ew_shape, EW1(std::cos(x[0])), "vcos({0})", g_cos},
    {Op::Sigmoid, "sigmoid", OpClass::Elementwise, 1, ew_shape, EW1(sigmoid(x[0])), "vsigmoid({0})", g_sigmoid},
    {Op::Square, "square", OpClass::Elementwise, 1, ew_shape, EW1(x[0] * x[0]), "({0} * {0})", g_square},
    // clip(x, lo, hi) and its derivative mask: 1 strictly inside (lo, hi), else 0.
    {Op::Clip, "clip", OpClass::Elementwise, 1, ew_shape, EW1(std::min(std::max(x[0], n.value), n.value2)),
     "vclip({0}, {lo}, {hi})", g_clip},
    {Op::ClipMask, "clip_mask", OpClass::Elementwise, 1, ew_shape, EW1(x[0] > n.value && x[0] < n.value2 ? 1.0 : 0.0),
     "vclip_mask({0}, {lo}, {hi})", no_grad},
    {Op::Broadcast, "broadcast", OpClass::Elementwise, 1, broadcast_shape, EW1(x[0]), "{0}", g_broadcast},
    // Lookup's element value is table[x]; eval and emit are special-cased on the table.
    {Op::Lookup, "lookup", OpClass::Elementwise, 1, lookup_shape, nullptr, "vlookup<T>({table}, {0})", no_grad},
    {Op::StopGradient, "stop_gradient", OpClass::Elementwise, 1, ew_shape, EW1(x[0]), "{0}", no_grad},
    {Op::Maximum, "maximum", OpClass::Elementwise, 2, ew_shape, EW1(std::max(x[0], x[1])), "vmax({0}, {1})", g_max},
    {Op::Minimum, "minimum", OpClass::Elementwise, 2, ew_shape, EW1(std::min(x[0], x[1])), "vmin({0}, {1})", g_min},
    {Op::Abs, "abs", OpClass::Elementwise, 1, ew_shape, EW1(std::abs(x[0])), "vabs({0})", g_abs},
    {Op::Relu, "relu", OpClass::Elementwise, 1, ew_shape, EW1(std::max(x[0], 0.0)), "vrelu({0})", g_relu},
    {Op::Tanh, "tanh", OpClass::Elementwise, 1, ew_shape, EW1(std::tanh(x[0])), "vtanh({0})", g_tanh},
    // Comparisons: 1 where they hold, else 0; no gradient.
    {Op::Less, "less", OpClass::Elementwise, 2, ew_shape, EW1(x[0] < x[1] ? 1.0 : 0.0), "vlt({0}, {1})", no_grad},
    {Op::LessEqual, "less_equal", OpClass::Elementwise, 2, ew_shape, EW1(x[0] <= x[1] ? 1.0 : 0.0), "vle({0}, {1})", no_grad},
    {Op::Greater, "greater", OpClass::Elementwise, 2, ew_shape, EW1(x[0] > x[1] ? 1.0 : 0.0), "vgt({0}, {1})", no_grad},
    {Op::GreaterEqual, "greater_equal", OpClass::Elementwise, 2, ew_shape, EW1(x[0] >= x[1] ? 1.0 : 0.0), "vge({0}, {1})",
     no_grad},
    {Op::Equal, "equal", OpClass::Elementwise, 2, ew_shape, EW1(x[0] == x[1] ? 1.0 : 0.0), "veq({0}, {1})", no_grad},
    {Op::Where, "where", OpClass::Elementwise, 3, ew_shape, EW1(x[0] != 0 ? x[1] : x[2]), "vwhere({0}, {1}, {2})", g_where},
    {Op::SumTo, "sum_to", OpClass::Reduce, 1, sumto_shape, nullptr, nullptr, g_sumto},
    {Op::Matmul, "matmul", OpClass::Contraction, 2, matmul_shape, nullptr, nullptr, g_matmul},
    {Op::Conv2d, "conv2d", OpClass::Contraction, 2, conv_shape, nullptr, nullptr, g_conv},
    {Op::Conv2dBackData, "conv2d_back_data", OpClass::Contraction, 2, conv_back_data_shape, nullptr, nullptr, g_conv_back_data},
    {Op::Conv2dBackFilter, "conv2d_back_filter", OpClass::Contraction, 2, conv_back_filter_shape, nullptr, nullptr,
     g_conv_back_filter},
    {Op::GroupNorm, "group_norm", OpClass::Norm, 1, groupnorm_shape, nullptr, nullptr, g_groupnorm},
    {Op::GroupNormBack, "group_norm_back", OpClass::Norm, 2, groupnorm_back_shape, nullptr, nullptr, no_grad},
    {Op::Concat, "concat", OpClass::Layout, -1, concat_shape, nullptr, nullptr, g_concat},
    {Op::Slice, "slice", OpClass::Layout, 1, slice_shape, nullptr, nullptr, g_slice},
    {Op::Reshape, "reshape", OpClass::Layout, 1, reshape_shape, nullptr, nullptr, g_reshape},
    {Op::Upsample2x, "upsample2x", OpClass::Layout, 1, upsample_shape, nullptr, nullptr, g_upsample},
    {Op::Pool2xSum, "pool2x_sum", OpClass::Layout, 1, pool_shape, nullptr, nullptr, g_pool},
    {Op::Softmax, "softmax", OpClass::Call, 1, softmax_shape, nullptr, "softmax_rows({0}, {y}, {mats} * {m}, {k})", g_softmax},
    // (y, dy) -> dx = y * (dy - sum(dy * y)) over the last axis.
    {Op::SoftmaxBack, "softmax_back", OpClass::Call, 2, softmax_shape, nullptr,
     "softmax_back_rows({0}, {1}, {y}, {mats} * {m}, {k})", no_grad},
    // y = x - max - log(sum(exp(x - max))) over the last axis (max-shifted: safe for large logits).
    {Op::LogSoftmax, "log_softmax", OpClass::Call, 1, softmax_shape, nullptr, "log_softmax_rows({0}, {y}, {mats} * {m}, {k})",
     g_log_softmax},
    // (y, dy) -> dx = dy - exp(y) * sum(dy) over the last axis (y the log_softmax output).
    {Op::LogSoftmaxBack, "log_softmax_back", OpClass::Call, 2, softmax_shape, nullptr,
     "log_softmax_back_rows({0}, {1}, {y}, {mats} * {m}, {k})", no_grad},
    {Op::Transpose, "transpose", OpClass::Call, 1, transpose_shape, nullptr, "transpose_mats({0}, {y}, {mats}, {m}, {k})",
     g_transpose},
    {Op::Bmm, "bmm", OpClass::Call, 2, bmm_shape, nullptr, "bmm_mats({0}, {1}, {y}, {mats}, {m}, {k}, {n})", g_bmm},
};
#undef EW1

}  // namespace

const OpRow& op_row(Op op) {
  const OpRow& r = kRows[(int)op];
  DDPM_CHECK(r.op == op, "op table out of order");
  return r;
}

NodeId Builder::add(Node n, std::string* err) {
  const OpRow& row = op_row(n.op);
  if (row.arity >= 0 && (int)n.in.size() != row.arity)
    DDPM_ICE(fmt::format("{} takes {} inputs, got {}", row.name, row.arity, n.in.size()));
  std::vector<Type> in;
  for (NodeId i : n.in) in.push_back(g.nodes.at(i).type);
  Type out;
  std::string e = row.shape(n, in, out);
  if (!e.empty()) {
    if (err) {
      *err = e;
      return -1;
    }
    DDPM_ICE(fmt::format("shape rule of {} failed: {}", row.name, e));
  }
  n.type = out;
  if (n.locs.empty()) n.locs = locs;
  return g.add(std::move(n));
}

NodeId Builder::cnst(double v) {
  Node n{Op::Const};
  n.value = v;
  return add(std::move(n));
}
NodeId Builder::unary(Op op, NodeId a) {
  Node n{op};
  n.in = {a};
  return add(std::move(n));
}
NodeId Builder::binary(Op op, NodeId a, NodeId b) {
  Node n{op};
  n.in = {a, b};
  return add(std::move(n));
}
NodeId Builder::sum_to(NodeId a, const Type& t) {
  if (type(a) == t) return a;
  Node n{Op::SumTo};
  n.in = {a};
  n.type = t;
  return add(std::move(n));
}
NodeId Builder::broadcast(NodeId a, const Type& t) {
  if (type(a) == t) return a;
  Node n{Op::Broadcast};
  n.in = {a};
  n.type = t;
  return add(std::move(n));
}
NodeId Builder::matmul(NodeId a, NodeId b, int mode) {
  Node n{Op::Matmul};
  n.in = {a, b};
  n.i0 = mode;
  return add(std::move(n));
}
NodeId Builder::slice(NodeId a, int64_t start, int64_t len, int64_t axis) {
  Node n{Op::Slice};
  n.in = {a};
  n.i0 = start;
  n.i1 = len;
  n.axis = axis;
  return add(std::move(n));
}
NodeId Builder::concat(const std::vector<NodeId>& parts, int64_t axis) {
  Node n{Op::Concat};
  n.in = parts;
  n.axis = axis;
  return add(std::move(n));
}

int64_t layout_axis(const Node& n, const Type& t) { return n.axis < 0 ? (int64_t)t.dims.size() - 1 : n.axis; }
int64_t dims_from(const Type& t, int64_t axis) {
  int64_t p = 1;
  for (size_t d = (size_t)axis; d < t.dims.size(); ++d) p *= t.dims[d];
  return p;
}

}  // namespace ddpmc
