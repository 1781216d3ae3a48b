// The primitive op table and the node builder that applies its shape rules.
//
// Every primitive op is one row: name, class, arity, shape rule, reference
// evaluation (elementwise ops: a scalar function), emitted C++ (elementwise ops: an
// expression template over `T`, which is float or xsimd::batch<float>), and the
// gradient rule. Composite layers (linear, silu, sinusoidal) are written in the
// spec standard library, compiler/stdlib/std.ddpm, on top of these rows.
#pragma once
#include <string>
#include <vector>

#include "ir.h"

namespace ddpmc {

// Call: a standalone kernel that one prelude function computes (softmax, transpose,
// batched matmul); `emit` is then that call, with {0}, {1} the inputs, {y} the
// output, and the sizes {mats} (batch times the leading axes), {m} × {k} (the first
// input's last two axes; m = 1 for rank 1) and {n} (the output's last axis).
enum class OpClass { Leaf, Elementwise, Reduce, Contraction, Norm, Layout, Call };

class Builder;

struct OpRow {
  Op op;
  const char* name;
  OpClass cls;
  int arity;  // -1: variadic
  // Output type from input types and the node's attributes; "" on success, else
  // a message describing the mismatch in the user's terms.
  std::string (*shape)(const Node& n, const std::vector<Type>& in, Type& out);
  // Elementwise ops: reference evaluation of one element of node n, in double precision;
  // also the op's value on compile-time numbers (lowering, constant folding).
  double (*eval)(const Node& n, const double* x);
  // Elementwise ops: emitted C++; {0}, {1}, {2} name the inputs. Helpers are in common/prelude/ddpm_prelude*.h.
  const char* emit;
  // Adjoint contributions: din[i] receives the gradient for input i (or -1 for none).
  // Contributions may have a broadcast type; autodiff sums them back to the input's type.
  void (*grad)(Builder& b, const Node& n, NodeId self, NodeId g, std::vector<NodeId>& din);
};

const OpRow& op_row(Op op);

// The operand roles of a convolution node (conv2d and its two gradients): which of its values
// is the input x [C,H,W], the filter w [O,C,K,K] and the output y [O,Ho,Wo], as an index into
// the node's inputs, or -1 for the node's own value. The one place that knows which is which.
struct ConvRoles {
  int x, w, y;
};
inline ConvRoles conv_roles(Op op) {
  if (op == Op::Conv2d) return {0, 1, -1};
  if (op == Op::Conv2dBackData) return {-1, 1, 0};
  return {0, -1, 1};  // Conv2dBackFilter
}
inline bool is_conv(Op op) { return op == Op::Conv2d || op == Op::Conv2dBackData || op == Op::Conv2dBackFilter; }
inline const char* op_name(Op op) { return op_row(op).name; }
inline bool is_elementwise(Op op) { return op_row(op).cls == OpClass::Elementwise; }
// Values no kernel computes: the caller's buffers and constants emitted inline.
inline bool is_leaf_value(Op op) {
  return op == Op::Input || op == Op::Param || op == Op::Const || op == Op::ConstTensor || op == Op::InvBatch;
}

// numpy broadcasting of the per-sample dims (right-aligned; a dim of 1 or a
// missing dim stretches); the result is batched if either side is.
bool broadcast_type(const Type& a, const Type& b, Type& out);
// For an input of type `in` broadcast to domain `d` (numpy rules), the index into
// the input's per-sample values of the domain's per-sample element j.
int64_t broadcast_index(const Type& in, const Type& d, int64_t j);

// The per-sample axis a Concat or Slice works on, and the element counts before it
// (outer, including the batch when batched) and from it on (inner) for a type.
int64_t layout_axis(const Node& n, const Type& t);
int64_t dims_from(const Type& t, int64_t axis);  // product of dims[axis:]

// Creates nodes in a Graph, applying the op table's shape rules.
class Builder {
 public:
  explicit Builder(Graph& g) : g(g) {}
  Graph& g;
  std::vector<Loc> locs;  // attached to every node created

  // Adds n (its type is computed unless it is a leaf). On a shape error returns -1
  // and stores the message in *err; with err == nullptr a shape error is internal.
  NodeId add(Node n, std::string* err = nullptr);

  const Type& type(NodeId id) const { return g.nodes[id].type; }
  NodeId cnst(double v);
  NodeId unary(Op op, NodeId a);
  NodeId binary(Op op, NodeId a, NodeId b);
  NodeId add2(NodeId a, NodeId b) { return binary(Op::Add, a, b); }
  NodeId mul(NodeId a, NodeId b) { return binary(Op::Mul, a, b); }
  NodeId sum_to(NodeId a, const Type& t);
  NodeId broadcast(NodeId a, const Type& t);
  NodeId matmul(NodeId a, NodeId b, int mode);
  NodeId transpose(NodeId a) { return unary(Op::Transpose, a); }
  NodeId bmm(NodeId a, NodeId b) { return binary(Op::Bmm, a, b); }
  NodeId slice(NodeId a, int64_t start, int64_t len, int64_t axis = -1);
  NodeId concat(const std::vector<NodeId>& parts, int64_t axis = -1);
  NodeId zeros(const Type& t) { return broadcast(cnst(0.0), t); }
};

}  // namespace ddpmc
