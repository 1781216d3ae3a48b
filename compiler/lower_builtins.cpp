// Lowering, the builtin table (see lower_impl.h): the names of the language's
// primitive surface, their arguments, and the nodes each one builds.
#include "lower.h"

#include <cmath>

#include <fmt/format.h>

#include "diffusion.h"
#include "lower_impl.h"

namespace ddpmc::lowering {

// An elementwise op of one, two or three operands (tensors or numbers, broadcast);
// on numbers only, computed at compile time by the op's own row (ops.cpp), the
// formula the interpreter and constant folding use.
static Value nary_builtin(BuiltinCall& c, Op op) {
  const size_t k = c.args.size();
  bool numbers = true;
  for (size_t i = 0; i < k; ++i) numbers = numbers && c.arg(i).kind == Value::Kind::Number;
  Node n{op};
  if (numbers) {
    double x[3];
    for (size_t i = 0; i < k; ++i) x[i] = c.arg(i).num;
    return number(op_row(op).eval(n, x));
  }
  for (size_t i = 0; i < k; ++i) n.in.push_back(c.L.as_node(c.arg(i), c.locs[i], c.call.name.c_str()));
  return tensor(c.L.make(std::move(n), c.call.loc, c.call.name.c_str()));
}

// A one-operand op that can leave the finite numbers (exp overflows, log and sqrt
// have a domain): as nary_builtin, and a non-finite number is an error.
static Value checked_builtin(BuiltinCall& c, Op op) {
  Value r = nary_builtin(c, op);
  if (r.kind == Value::Kind::Number && !std::isfinite(r.num))
    user_error(c.call.loc,
               fmt::format("{}({}) is {}", c.call.name, c.arg(0).num,
                           std::isnan(r.num) ? "NaN" : r.num > 0 ? "infinite" : "-infinite"),
               c.call.name == "sqrt"  ? "sqrt needs an argument >= 0"
               : c.call.name == "log" ? "log needs an argument > 0"
                                      : "the argument is too large for a finite result");
  return r;
}

// An op that a prelude function computes whole (softmax, transpose, bmm): its
// operands are batched activations, never numbers.
static Value call_builtin(BuiltinCall& c, Op op) {
  Node n{op};
  for (size_t i = 0; i < c.args.size(); ++i) {
    if (c.arg(i).kind != Value::Kind::Tensor)
      user_error(c.locs[i], fmt::format("{} expects a tensor, got {}", c.call.name, kind_name(c.arg(i))),
                 "it works on activations, e.g. the output of linear(...)");
    n.in.push_back(c.arg(i).node);
  }
  return tensor(c.L.make(std::move(n), c.call.loc, c.call.name.c_str()));
}

static Type shape_arg(BuiltinCall& c, size_t i, bool batched) {
  const Value& v = c.arg(i);
  Type t{batched, {}};
  if (v.kind == Value::Kind::Number) {
    t.dims.push_back(c.L.as_int(v, c.locs[i], "a shape"));
  } else if (v.kind == Value::Kind::List) {
    std::string got;
    for (double d : v.list) got += fmt::format("{}{}", got.empty() ? "" : ", ", d);
    for (double d : v.list) {
      // Checked before the conversion: a NaN or 1e300 has no int64_t value.
      if (!(d >= 1 && d <= kMaxTensorElements && d == std::floor(d)))
        user_error(c.locs[i], fmt::format("shape sizes must be positive whole numbers, got [{}]", got),
                   "e.g. param([64, 128])");
      t.dims.push_back((int64_t)d);
    }
  } else {
    user_error(c.locs[i], fmt::format("a shape must be a list of sizes, got {}", kind_name(v)), "e.g. [64, 128]");
  }
  for (size_t k = 0; k < t.dims.size(); ++k)
    if (t.dims[k] <= 0)
      user_error(c.locs[i], fmt::format("shape sizes must be positive whole numbers, got {}", t.dims[k]),
                 "e.g. param([64, 128])");
  check_size(t.dims, c.locs[i], "this shape");
  return t;
}

// sum/mean over everything (a scalar), or over one per-sample axis kept as size 1.
Value Lowerer::reduce(BuiltinCall& c, bool mean) {
  const char* what = mean ? "mean" : "sum";
  NodeId x = as_node(c.arg(0), c.locs[0], what);
  const Type t = b_->type(x);
  Node s{Op::SumTo};
  s.in = {x};
  s.type = Type{false, {}};
  double count = (double)t.numel();
  if (c.arg(1).kind != Value::Kind::None) {
    int64_t a = as_int(c.arg(1), c.locs[1], "axis");
    const int64_t rank = (int64_t)t.dims.size();
    if (a < 0) a += rank;
    if (a < 0 || a >= rank)
      user_error(c.locs[1], fmt::format("axis {} is out of range for shape {}", as_int(c.arg(1), c.locs[1], "axis"), t.str()),
                 "axes count the per-sample dimensions; -1 is the last");
    s.type = t;
    s.type.dims[a] = 1;
    count = (double)t.dims[a];
  }
  NodeId sum = make(std::move(s), c.call.loc, what);
  if (!mean) return tensor(sum);
  const bool per_batch = t.batched && !b_->type(sum).batched;
  Node k{per_batch ? Op::InvBatch : Op::Const};
  k.value = 1.0 / count;
  NodeId scale = make(std::move(k), c.call.loc, what);
  Node m{Op::Mul};
  m.in = {sum, scale};
  return tensor(make(std::move(m), c.call.loc, what));
}

const std::map<std::string, Builtin>& builtins() {
  static const std::map<std::string, Builtin> m = {
      {"exp", {{"x"}, 1, "exp(x): elementwise e to the x, of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Exp); }}},
      {"log", {{"x"}, 1, "log(x): elementwise natural logarithm, of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Log); }}},
      {"sqrt", {{"x"}, 1, "sqrt(x): elementwise square root, of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Sqrt); }}},
      {"sin", {{"x"}, 1, "sin(x): elementwise sine, of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Sin); }}},
      {"cos", {{"x"}, 1, "cos(x): elementwise cosine, of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Cos); }}},
      {"sigmoid", {{"x"}, 1, "sigmoid(x): elementwise 1 / (1 + exp(-x)), of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Sigmoid); }}},
      {"square", {{"x"}, 1, "square(x): elementwise x * x, of a tensor or a number", [](BuiltinCall& c) { return checked_builtin(c, Op::Square); }}},
      {"tanh", {{"x"}, 1, "tanh(x): elementwise hyperbolic tangent, of a tensor or a number", [](BuiltinCall& c) { return nary_builtin(c, Op::Tanh); }}},
      {"abs", {{"x"}, 1, "abs(x): elementwise |x|, of a tensor or a number", [](BuiltinCall& c) { return nary_builtin(c, Op::Abs); }}},
      {"relu", {{"x"}, 1, "relu(x): elementwise max(x, 0), of a tensor or a number", [](BuiltinCall& c) { return nary_builtin(c, Op::Relu); }}},
      {"maximum", {{"a", "b"}, 2, "maximum(a, b): elementwise larger of a and b (broadcast)", [](BuiltinCall& c) { return nary_builtin(c, Op::Maximum); }}},
      {"minimum", {{"a", "b"}, 2, "minimum(a, b): elementwise smaller of a and b (broadcast)", [](BuiltinCall& c) { return nary_builtin(c, Op::Minimum); }}},
      {"less", {{"a", "b"}, 2, "less(a, b): 1 where a < b, else 0", [](BuiltinCall& c) { return nary_builtin(c, Op::Less); }}},
      {"less_equal", {{"a", "b"}, 2, "less_equal(a, b): 1 where a <= b, else 0", [](BuiltinCall& c) { return nary_builtin(c, Op::LessEqual); }}},
      {"greater", {{"a", "b"}, 2, "greater(a, b): 1 where a > b, else 0", [](BuiltinCall& c) { return nary_builtin(c, Op::Greater); }}},
      {"greater_equal", {{"a", "b"}, 2, "greater_equal(a, b): 1 where a >= b, else 0", [](BuiltinCall& c) { return nary_builtin(c, Op::GreaterEqual); }}},
      {"equal", {{"a", "b"}, 2, "equal(a, b): 1 where a == b, else 0", [](BuiltinCall& c) { return nary_builtin(c, Op::Equal); }}},
      {"where", {{"cond", "a", "b"}, 3, "where(cond, a, b): a where cond is nonzero, else b (broadcast)", [](BuiltinCall& c) {
         return Lowerer::where_class(nary_builtin(c, Op::Where), c.L.class_index(c.arg(1)), c.L.class_index(c.arg(2)));
       }}},
      {"stop_gradient", {{"x"}, 1, "stop_gradient(x): x in the forward pass; no gradient flows through it", [](BuiltinCall& c) {
         if (c.arg(0).kind == Value::Kind::Number) return c.arg(0);
         return nary_builtin(c, Op::StopGradient);
       }}},
      {"softmax", {{"x"}, 1, "softmax(x): over the last axis of batched activations, max-shifted", [](BuiltinCall& c) { return call_builtin(c, Op::Softmax); }}},
      {"log_softmax", {{"x"}, 1, "log_softmax(x): log(softmax(x)) over the last axis of batched activations, max-shifted (safe for large logits)", [](BuiltinCall& c) { return call_builtin(c, Op::LogSoftmax); }}},
      {"features", {{"x"}, 1, "features(x) is x; it marks the value a supervised model's classify_eval returns as the net's features (at most one per net; the gradient passes through)", [](BuiltinCall& c) { return c.L.features(c); }}},
      {"transpose", {{"x"}, 1, "transpose(x: [...,M,K]) -> [...,K,M], batched activations", [](BuiltinCall& c) { return call_builtin(c, Op::Transpose); }}},
      {"bmm", {{"a", "b"}, 2, "bmm(a: [...,M,K], b: [...,K,N]) -> [...,M,N], per sample (batched matrix product)", [](BuiltinCall& c) { return call_builtin(c, Op::Bmm); }}},
      {"uniform", {{"shape"}, 0, "uniform() is U(0, 1) noise shaped like the data; uniform([d...]) per sample, uniform([]) one per sample", [](BuiltinCall& c) {
         Node n{Op::RandU};
         n.type = c.arg(0).kind == Value::Kind::None ? c.L.data_type_ : shape_arg(c, 0, true);
         n.i0 = c.L.next_stream_++;
         return tensor(c.L.make(std::move(n), c.call.loc, "uniform"));
       }}},
      {"embed", {{"y", "classes", "size"}, 3,
                 "embed(y, classes, size): a learned vector of `size` per class index y in 0..classes-1 ([B] -> [B,size])",
                 [](BuiltinCall& c) {
         const int64_t k = c.L.as_int(c.arg(1), c.locs[1], "the number of classes");
         const int64_t size = c.L.as_int(c.arg(2), c.locs[2], "the embedding size");
         if (k < 1 || k > 1000000 || size < 1 || size > 1000000)
           user_error(k < 1 || k > 1000000 ? c.locs[1] : c.locs[2],
                      fmt::format("embed needs 1..1000000 classes and size, got {} and {}", k, size), "e.g. embed(y, 10, 128)");
         const Value& y = c.arg(0);
         const ClassIndex ci = c.L.class_index(y);
         const bool bare_label = c.L.label_ && y.classes == c.L.label_->classes && y.class_args.empty() &&
                                 c.L.graph_->nodes[y.node].op == Op::Input;
         if (ci.ok && k < ci.hi && bare_label)
           user_error(c.locs[1],
                      fmt::format("wrong embedding size: embed has {} rows, but label '{}' has {} classes", k,
                                  c.L.label_->name, y.classes),
                      fmt::format("give it at least {} rows ({} with a null class for guidance)", y.classes, y.classes + 1));
         if (ci.ok && k < ci.hi)
           user_error(c.locs[1],
                      fmt::format("wrong embedding size: embed has {} rows, but its class index can be {}", k, ci.hi - 1),
                      fmt::format("give it at least {} rows, one per class index that reaches it (where(...) adds its "
                                  "values to the label's)", ci.hi));
         if (ci.ok) c.L.use_class_index(ci, c.locs[0], "the class index of embed");
         NodeId yn = c.L.as_node(y, c.locs[0], "embed");
         const Type& yt = c.L.b_->type(yn);
         if (!yt.dims.empty())
           user_error(c.locs[0], fmt::format("embed takes one class index per sample, got {}", yt.str()),
                      "pass the label, a sampler's class argument, or a number");
         if (!yt.batched) yn = c.L.b_->broadcast(yn, Type{true, {}});
         // One-hot rows (y == 0..k-1) times a [k, size] table: the gradient sums into
         // each class's row in batch order (the GEMM's fixed reduction).
         Node ks{Op::ConstTensor};
         ks.type = Type{false, {k}};
         for (int64_t i = 0; i < k; ++i) ks.data.push_back((float)i);
         NodeId classes = c.L.make(std::move(ks), c.call.loc, "embed");
         Node eq{Op::Equal};
         eq.in = {yn, classes};
         NodeId onehot = c.L.make(std::move(eq), c.call.loc, "embed");
         Frame& f = c.L.top();
         const std::string path = fmt::format("{}{}embed.{}", f.path, f.path.empty() ? "" : "/", f.calls["embed"]++);
         NodeId w = c.L.param(path + "/w", Type{false, {k, size}}, 1.0f, c.call.loc);
         Node mm{Op::Matmul};
         mm.in = {onehot, w};
         mm.i0 = kNN;
         return tensor(c.L.make(std::move(mm), c.call.loc, "embed"));
       }}},
      {"first_step", {{}, 0, "first_step() is 1 on a sampler's first step (t = T, or the first of a strided sequence), else 0", [](BuiltinCall& c) { return c.L.step_flag("first", c.call.loc); }}},
      {"last_step", {{}, 0, "last_step() is 1 on a sampler's last step (s = 0), else 0", [](BuiltinCall& c) { return c.L.step_flag("last", c.call.loc); }}},
      {"clip", {{"x", "lo", "hi"}, 3, "clip(x, lo, hi): elementwise min(max(x, lo), hi); lo and hi are numbers",
                [](BuiltinCall& c) {
         const double lo = c.L.as_number(c.arg(1), c.locs[1], "clip's lower bound");
         const double hi = c.L.as_number(c.arg(2), c.locs[2], "clip's upper bound");
         if (!(lo < hi)) user_error(c.locs[2], fmt::format("clip needs lo < hi, got {} and {}", lo, hi), "e.g. clip(x0, -1, 1)");
         Node n{Op::Clip};
         n.value = lo;
         n.value2 = hi;
         if (c.arg(0).kind == Value::Kind::Number) return number(op_row(Op::Clip).eval(n, &c.arg(0).num));
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "clip")};
         return tensor(c.L.make(std::move(n), c.call.loc, "clip"));
       }}},
      {"matmul", {{"x", "w"}, 2, "matmul(x: [K], w: [K, N]) -> [N]", [](BuiltinCall& c) {
         Node n{Op::Matmul};
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "matmul"), c.L.as_node(c.arg(1), c.locs[1], "matmul")};
         n.i0 = kNN;
         return tensor(c.L.make(std::move(n), c.call.loc, "matmul"));
       }}},
      {"conv2d", {{"x", "w", "stride", "padding"}, 2,
                   "conv2d(x: [C,H,W], w: [O,C,K,K], stride = 1, padding = 0) -> [O,Ho,Wo]", [](BuiltinCall& c) {
         Node n{Op::Conv2d};
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "conv2d"), c.L.as_node(c.arg(1), c.locs[1], "conv2d")};
         n.i0 = c.arg(2).kind == Value::Kind::None ? 1 : c.L.as_int(c.arg(2), c.locs[2], "stride");
         n.i1 = c.arg(3).kind == Value::Kind::None ? 0 : c.L.as_int(c.arg(3), c.locs[3], "padding");
         return tensor(c.L.make(std::move(n), c.call.loc, "conv2d"));
       }}},
      {"slice", {{"x", "start", "size", "axis"}, 3, "slice(x, start, size, axis = -1): size elements from index start of a per-sample axis",
                 [](BuiltinCall& c) {
         NodeId x = c.L.as_node(c.arg(0), c.locs[0], "slice");
         const Type& t = c.L.b_->type(x);
         const int64_t rank = (int64_t)t.dims.size();
         if (rank == 0)
           user_error(c.locs[0], fmt::format("slice needs a tensor with a per-sample axis, got {}", shape_str(t)),
                      "slice cuts along an axis of the per-sample shape, e.g. slice(h, 0, 2) of h: [4]");
         int64_t a = rank - 1;
         if (c.arg(3).kind != Value::Kind::None) {
           const int64_t given = c.L.as_int(c.arg(3), c.locs[3], "axis");
           a = given < 0 ? given + rank : given;
           if (a < 0 || a >= rank)
             user_error(c.locs[3], fmt::format("axis {} is out of range for rank {} (valid: {} to {})", given, rank, -rank, rank - 1),
                        "axes count the per-sample dimensions; -1 is the last");
         }
         const int64_t start = c.L.as_int(c.arg(1), c.locs[1], "slice's start");
         const int64_t size = c.L.as_int(c.arg(2), c.locs[2], "slice's size");
         if (start < 0 || size < 1 || start + size > t.dims[(size_t)a])
           user_error(c.locs[start < 0 || start >= t.dims[(size_t)a] ? 1 : 2],
                      fmt::format("slice [{}, {}) is out of range for axis {} of size {}", start, start + size, a,
                                  t.dims[(size_t)a]),
                      fmt::format("start is 0..{} and start + size at most {}", t.dims[(size_t)a] - 1, t.dims[(size_t)a]));
         Node n{Op::Slice};
         n.in = {x};
         n.i0 = start;
         n.i1 = size;
         n.axis = a;
         return tensor(c.L.make(std::move(n), c.call.loc, "slice"));
       }}},
      {"concat", {{"axis"}, -1, "concat(a, b, ..., axis = -1) joins per-sample tensors on an axis (0: channels)",
                  [](BuiltinCall& c) {
         Node n{Op::Concat};
         for (size_t i = 0; i < c.args.size(); ++i) n.in.push_back(c.L.as_node(c.args[i], c.locs[i], "concat"));
         if (auto it = c.kw.find("axis"); it != c.kw.end()) {
           const int64_t rank = (int64_t)c.L.b_->type(n.in[0]).dims.size();
           const int64_t given = c.L.as_int(it->second.first, it->second.second, "axis");
           const int64_t a = given < 0 ? given + rank : given;
           if (a < 0 || a >= rank)
             user_error(it->second.second,
                        fmt::format("axis {} is out of range for rank {} (valid: {} to {})", given, rank, -rank,
                                    rank - 1),
                        "axes count the per-sample dimensions; -1 is the last");
           n.axis = a;
         }
         // A targeted message for the classic U-Net mistake: a skip connection
         // joining maps of different spatial sizes.
         const Type& t0 = c.L.b_->type(n.in[0]);
         const int64_t a = n.axis < 0 ? (int64_t)t0.dims.size() - 1 : n.axis;
         for (size_t i = 1; i < n.in.size(); ++i) {
           const Type& ti = c.L.b_->type(n.in[i]);
           if (ti.dims.size() != t0.dims.size()) continue;
           for (size_t d = 0; d < ti.dims.size(); ++d)
             if ((int64_t)d != a && ti.dims[d] != t0.dims[d])
               user_error(c.locs[i],
                          fmt::format("shape mismatch in concat on axis {}: {} and {} differ on axis {} ({} against {})",
                                      a, t0.str(), ti.str(), d, t0.dims[d], ti.dims[d]),
                          "every axis but the joined one must match; in a U-Net skip connection, check that the up "
                          "path's upsampling undoes the down path's strides");
         }
         return tensor(c.L.make(std::move(n), c.call.loc, "concat"));
       }}},
      {"sum", {{"x", "axis"}, 1, "sum(x) adds every element of every sample; sum(x, axis = k) one axis per sample, kept as size 1",
               [](BuiltinCall& c) { return c.L.reduce(c, false); }}},
      {"mean", {{"x", "axis"}, 1, "mean(x) averages every element of every sample; mean(x, axis = k) one axis per sample, kept as size 1",
                [](BuiltinCall& c) { return c.L.reduce(c, true); }}},
      {"reshape", {{"x", "shape"}, 2, "reshape(x, [d...]) reinterprets each sample with the same element count",
                   [](BuiltinCall& c) {
         Node n{Op::Reshape};
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "reshape")};
         n.type = shape_arg(c, 1, c.L.b_->type(n.in[0]).batched);
         return tensor(c.L.make(std::move(n), c.call.loc, "reshape"));
       }}},
      {"normalize", {{"x", "groups", "eps"}, 2,
                     "normalize(x: [C,...], groups, eps = 1e-5): standardizes each group of C/groups channels of each sample",
                     [](BuiltinCall& c) {
         Node n{Op::GroupNorm};
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "normalize")};
         n.i0 = c.L.as_int(c.arg(1), c.locs[1], "groups");
         n.value = c.arg(2).kind == Value::Kind::None ? 1e-5 : c.L.as_number(c.arg(2), c.locs[2], "eps");
         if (!(n.value > 0)) user_error(c.locs[2], "normalize needs eps > 0", "e.g. normalize(x, 8, eps = 1e-5)");
         return tensor(c.L.make(std::move(n), c.call.loc, "normalize"));
       }}},
      {"upsample", {{"x"}, 1, "upsample(x: [C,H,W]) -> [C,2H,2W], nearest neighbour", [](BuiltinCall& c) {
         Node n{Op::Upsample2x};
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "upsample")};
         return tensor(c.L.make(std::move(n), c.call.loc, "upsample"));
       }}},
      {"param", {{"shape", "bound"}, 1, "param(shape, bound = b) is a parameter initialised U(-b, b)", [](BuiltinCall& c) {
         Type t = shape_arg(c, 0, false);
         double bound = c.arg(1).kind == Value::Kind::None ? 0.0 : c.L.as_number(c.arg(1), c.locs[1], "bound");
         Frame& f = c.L.top();
         std::string leaf = c.L.pending_param_name_;
         if (leaf.empty()) leaf = fmt::format("param.{}", f.calls["param"]);
         f.calls["param"]++;
         std::string name = f.path.empty() ? leaf : f.path + "/" + leaf;
         return tensor(c.L.param(name, t, (float)bound, c.call.loc));
       }}},
      {"randn", {{"shape"}, 0, "randn() is N(0, I) shaped like the data; randn([d...]) per sample", [](BuiltinCall& c) {
         Node n{Op::RandN};
         n.type = c.arg(0).kind == Value::Kind::None ? c.L.data_type_ : shape_arg(c, 0, true);
         n.i0 = c.L.next_stream_++;
         return tensor(c.L.make(std::move(n), c.call.loc, "randn"));
       }}},
      {"uniform_step", {{}, 0, "uniform_step() draws t ~ U{1..T} per sample", [](BuiltinCall& c) {
         if (c.L.supervised_) c.L.no_diffusion(c.call.loc, "uniform_step() draws a diffusion step");
         if (c.L.diffusion().continuous)
           user_error(c.call.loc, "uniform_step() draws a step of discrete time, but this diffusion's time is continuous",
                      "draw a time with uniform_time() (or any expression, e.g. exp(-1.2 + 1.2 * randn([])))");
         Node n{Op::UniformStep};
         n.type = Type{true, {}};
         n.i0 = c.L.next_stream_++;
         n.i1 = c.L.steps_T();
         return tensor(c.L.make(std::move(n), c.call.loc, "uniform_step"), true);
       }}},
      {"uniform_time", {{}, 0, "uniform_time() draws t ~ U(t_min, t_max) per sample (continuous time)", [](BuiltinCall& c) {
         if (c.L.supervised_) c.L.no_diffusion(c.call.loc, "uniform_time() draws a diffusion time");
         const Diffusion& d = c.L.diffusion();
         if (!d.continuous)
           user_error(c.call.loc, "uniform_time() draws a continuous time, but this diffusion's time is discrete",
                      "draw a step with uniform_step(), or add `time = continuous` to the diffusion block");
         Node n{Op::RandU};
         n.type = Type{true, {}};
         n.i0 = c.L.next_stream_++;
         NodeId u = c.L.make(std::move(n), c.call.loc, "uniform_time");
         if (d.t_min == 0 && d.t_max == 1) return tensor(u);
         return tensor(c.L.b_->add2(c.L.b_->mul(u, c.L.b_->cnst(d.t_max - d.t_min)), c.L.b_->cnst(d.t_min)));
       }}},
      {"arange", {{"n"}, 1, "arange(n) is the constant vector [0, 1, ..., n-1]", [](BuiltinCall& c) {
         int64_t n = c.L.as_int(c.arg(0), c.locs[0], "arange's size");
         if (n <= 0 || n > (1 << 24))
           user_error(c.locs[0], fmt::format("arange({}) needs a positive size", n), "use a size between 1 and 16777216");
         Node k{Op::ConstTensor};
         k.type = Type{false, {n}};
         for (int64_t i = 0; i < n; ++i) k.data.push_back((float)i);
         return tensor(c.L.make(std::move(k), c.call.loc, "arange"));
       }}},
      {"dim", {{"x", "axis"}, 2, "dim(x, axis) is a size of x's per-sample shape; axis -1 is the last", [](BuiltinCall& c) {
         NodeId x = c.L.as_node(c.arg(0), c.locs[0], "dim");
         int64_t ax = c.L.as_int(c.arg(1), c.locs[1], "axis");
         const Type& t = c.L.b_->type(x);
         int64_t r = (int64_t)t.dims.size();
         if (ax < 0) ax += r;
         if (ax < 0 || ax >= r)
           user_error(c.locs[1], fmt::format("axis {} is out of range for shape {}", c.L.as_int(c.arg(1), c.locs[1], "axis"), t.str()),
                      "axes count the per-sample dimensions; -1 is the last");
         return number((double)t.dims[ax]);
       }}},
  };
  return m;
}

}  // namespace ddpmc::lowering

namespace ddpmc {

std::vector<std::string> builtin_names() {
  std::vector<std::string> names;
  for (auto& [name, _] : lowering::builtins()) names.push_back(name);
  return names;
}

}  // namespace ddpmc
