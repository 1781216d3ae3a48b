// Lowering: AST → typed graph IR, by partial evaluation (see lower.h).
//
// Scopes: a function body sees its parameters and its own assignments, then the
// globals (schedule tables beta, alpha, abar, abar_prev, beta_tilde; T; pi), then
// every fn/net defined in any loaded module. The loss also sees the `data` name.
// Builtins (the primitive-op surface of the language) are listed in kBuiltins.
#include "lower.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include <fmt/format.h>

#include "diffusion.h"
#include "ops.h"

namespace ddpmc {
namespace {

struct Value {
  enum class Kind { None, Number, List, Tensor, Table, String } kind = Kind::None;
  double num = 0;
  std::vector<double> list;
  NodeId node = -1;
  bool is_step = false;  // a tensor of step indices (t, s, uniform_step())
  const std::vector<double>* table = nullptr;
  std::string str;  // String; Table: its name
};

Value number(double v) {
  Value r;
  r.kind = Value::Kind::Number;
  r.num = v;
  return r;
}
Value tensor(NodeId id, bool is_step = false) {
  Value r;
  r.kind = Value::Kind::Tensor;
  r.node = id;
  r.is_step = is_step;
  return r;
}

const char* kind_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Number: return "a number";
    case Value::Kind::List: return "a list";
    case Value::Kind::Tensor: return "a tensor";
    case Value::Kind::Table: return "a schedule table";
    case Value::Kind::String: return "a string";
    default: return "nothing";
  }
}

// Edit distance for "did you mean" hints.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> d(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) d[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = d[0];
    d[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = d[j];
      d[j] = std::min({d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return d[b.size()];
}

std::string shape_hint(const std::string& what, const std::string& err);

// The most elements one tensor may have (per sample when batched): 2^31 floats,
// 8 GiB. Larger sizes are mistakes (a typo'd exponent), reported at the spec line.
constexpr double kMaxTensorElements = 2147483648.0;

void check_size(const std::vector<int64_t>& dims, const Loc& loc, const std::string& what) {
  double n = 1;
  for (int64_t d : dims) n *= (double)d;
  if (n > kMaxTensorElements)
    user_error(loc, fmt::format("{} has {:.4g} elements{}, more than ddpmc allows (2^31 = 2,147,483,648)", what, n,
                                " (" + fmt::format("{:.4g}", n * 4 / 1073741824.0) + " GiB of floats)"),
               "check the sizes: a parameter of 1e15 floats would not fit in any machine's memory");
}

std::string shape_str(const Type& t) {
  // Users write per-sample shapes; show the batch axis as B.
  return t.str();
}

struct Frame {
  const FuncDef* fn = nullptr;
  std::map<std::string, Value> vars;
  std::string path;                  // parameter name prefix
  std::map<std::string, int> calls;  // per-callee call counter, for stable names
  std::vector<Loc> call_locs;        // call sites from the entry point down to here
};

struct BuiltinCall;
using BuiltinFn = std::function<Value(BuiltinCall&)>;
struct Builtin {
  std::vector<const char*> params;  // names, in positional order
  int required;                     // how many must be given; -1: variadic positional
  const char* doc;
  BuiltinFn fn;
};

class Lowerer;

struct BuiltinCall {
  Lowerer& L;
  const Expr& call;
  std::vector<Value> args;  // by position in Builtin::params (None if not given)
  std::vector<Loc> locs;
  std::map<std::string, std::pair<Value, Loc>> kw;  // variadic builtins: their keyword arguments
  const Value& arg(size_t i) const { return args[i]; }
};

class Lowerer {
 public:
  Lowerer(const Program& prog, Model& m) : prog_(prog), m_(m) {}

  void run();

  // --- used by builtins ---
  Graph* graph_ = nullptr;
  std::unique_ptr<Builder> b_;
  std::vector<Frame*> stack_;
  Type data_type_;
  int next_stream_ = 1;
  std::string pending_param_name_;

  NodeId as_node(const Value& v, const Loc& loc, const char* what);
  NodeId make(Node n, const Loc& loc, const char* what);
  double as_number(const Value& v, const Loc& loc, const char* what);
  int64_t as_int(const Value& v, const Loc& loc, const char* what);
  NodeId param(const std::string& name, const Type& t, float bound, const Loc& loc);
  Frame& top() { return *stack_.back(); }
  int steps_T() const { return m_.diffusion.T; }
  Value reduce(BuiltinCall& c, bool mean);

 private:
  const Program& prog_;
  Model& m_;
  std::map<std::string, const FuncDef*> defs_;
  std::set<std::string> sampler_names_;
  std::map<std::string, Value> globals_;
  std::map<std::string, int> param_index_;
  std::vector<Loc> param_locs_;
  const DataDecl* data_ = nullptr;

  void collect();
  void lower_diffusion(const DiffusionDecl& d);
  Graph lower_entry(const FuncDef& f, const std::string& graph_name);
  Graph lower_eps(const FuncDef& net);
  Value eval(const Expr& e);
  Value eval_call(const Expr& e);
  Value call_user(const FuncDef& f, const Expr& call);
  Value run_body(const FuncDef& f);
  Value lookup(const std::string& name, const Loc& loc);
  Value binary(const Expr& e, const Value& a, const Value& b);
  void check_type(const TypeAnn& ann, const Value& v, const Loc& loc, const std::string& what);
  std::string type_ann_str(const TypeAnn& ann);
};

const std::map<std::string, Builtin>& builtins();

NodeId Lowerer::make(Node n, const Loc& loc, const char* what) {
  std::string err;
  if (n.locs.empty()) {
    n.locs.push_back(loc);
    for (auto it = top().call_locs.rbegin(); it != top().call_locs.rend(); ++it) n.locs.push_back(*it);
  }
  NodeId id = b_->add(std::move(n), &err);
  if (id >= 0) check_size(b_->type(id).dims, loc, fmt::format("the result of {}", what));
  if (id < 0) {
    const bool norm = std::string(what) == "normalize";
    user_error(loc, fmt::format("{} in {}: {}", norm ? "bad shape" : "shape mismatch", what, err),
               shape_hint(what, err));
  }
  return id;
}

// A hint that applies to the shape error `err` of op `what`.
std::string shape_hint(const std::string& what, const std::string& err) {
  auto has = [&](const char* s) { return err.find(s) != std::string::npos; };
  if (what == "matmul") {
    if (has("inner dimensions"))
      return "matmul(x, w) multiplies [B,K] by [K,N]: the weight's first axis must be the input's last, as in "
             "param([dim(x, -1), N])";
    return "write matmul(x, w) with the per-sample activations x ([B,K]) first and a [K,N] weight second";
  }
  if (what == "normalize") {
    if (has("equal groups")) return "the channel count (axis 0) must be a multiple of the number of groups";
    return "normalize (and group_norm) take feature maps: [C,H,W] or [C,N] per sample, channels first";
  }
  if (has("do not match") || has("cannot broadcast"))
    return "shapes are per sample with the batch axis B; they must be equal, or one side a scalar";
  return "shapes are per sample (the batch axis B is implicit); check the operands' shapes against the operation";
}

NodeId Lowerer::as_node(const Value& v, const Loc& loc, const char* what) {
  if (v.kind == Value::Kind::Tensor) return v.node;
  if (v.kind == Value::Kind::Number) {
    Node n{Op::Const};
    n.value = v.num;
    return make(std::move(n), loc, what);
  }
  user_error(loc, fmt::format("{} expects a tensor or a number, got {}", what, kind_name(v)),
             v.kind == Value::Kind::Table ? "index a schedule table with a step, e.g. abar[t]"
                                          : "arithmetic works on tensors and numbers only");
}

double Lowerer::as_number(const Value& v, const Loc& loc, const char* what) {
  if (v.kind != Value::Kind::Number)
    user_error(loc, fmt::format("{} must be a compile-time number, got {}", what, kind_name(v)),
               "use a literal or an expression of literals, dim(x, -1), T or pi");
  return v.num;
}

int64_t Lowerer::as_int(const Value& v, const Loc& loc, const char* what) {
  double d = as_number(v, loc, what);
  if (d != std::floor(d) || std::abs(d) > 1e12)
    user_error(loc, fmt::format("{} must be a whole number, got {}", what, d),
               "sizes, axes and indices are whole numbers; check the arithmetic that produced this value");
  return (int64_t)d;
}

NodeId Lowerer::param(const std::string& name, const Type& t, float bound, const Loc& loc) {
  auto it = param_index_.find(name);
  int idx;
  if (it == param_index_.end()) {
    idx = (int)m_.params.size();
    m_.params.push_back(ParamInfo{name, t, bound});
    // Where the user caused it: the outermost call site, else the param() itself.
    param_locs_.push_back(top().call_locs.empty() ? loc : top().call_locs.front());
    param_index_[name] = idx;
  } else {
    idx = it->second;
    if (m_.params[idx].type != t)
      user_error(loc, fmt::format("parameter '{}' is created again with shape {} but was {}", name, t.str(),
                                  m_.params[idx].type.str()),
                 "give each param() call its own name by assigning it to a different variable");
  }
  Node n{Op::Param};
  n.type = t;
  n.name = name;
  n.index = idx;
  return make(std::move(n), loc, "param");
}

Value Lowerer::lookup(const std::string& name, const Loc& loc) {
  auto& vars = top().vars;
  if (auto it = vars.find(name); it != vars.end()) return it->second;
  if (auto it = globals_.find(name); it != globals_.end()) return it->second;
  if (defs_.count(name) || builtins().count(name))
    user_error(loc, fmt::format("'{}' is a function, not a value", name), fmt::format("call it: {}(...)", name));
  std::string best;
  size_t bestd = 3;
  auto consider = [&](const std::string& c) {
    size_t d = edit_distance(name, c);
    if (d < bestd) bestd = d, best = c;
  };
  for (auto& [k, _] : vars) consider(k);
  for (auto& [k, _] : globals_) consider(k);
  std::string hint = best.empty() ? fmt::format("assign '{}' before using it, or import the file that defines it", name)
                                  : fmt::format("did you mean '{}'?", best);
  user_error(loc, fmt::format("unknown name '{}'", name), hint);
}

Value Lowerer::binary(const Expr& e, const Value& a, const Value& b) {
  if (a.kind == Value::Kind::Number && b.kind == Value::Kind::Number) {
    if (e.op == '/' && b.num == 0) user_error(e.loc, "division by zero in a compile-time expression", "check the divisor");
    const double r = e.op == '+' ? a.num + b.num : e.op == '-' ? a.num - b.num : e.op == '*' ? a.num * b.num : a.num / b.num;
    if (!std::isfinite(r))
      user_error(e.loc, fmt::format("{} {} {} overflows to infinity in a compile-time expression", a.num, e.op, b.num),
                 "numbers in a spec are doubles; check the magnitudes");
    return number(r);
  }
  const char* what = e.op == '+' ? "'+'" : e.op == '-' ? "'-'" : e.op == '*' ? "'*'" : "'/'";
  NodeId x = as_node(a, e.items[0]->loc, what), y = as_node(b, e.items[1]->loc, what);
  Op op = e.op == '+' ? Op::Add : e.op == '-' ? Op::Sub : e.op == '*' ? Op::Mul : Op::Div;
  Node n{op};
  n.in = {x, y};
  std::string err;
  Type t;
  if (!broadcast_type(b_->type(x), b_->type(y), t))
    user_error(e.loc, fmt::format("shape mismatch: {} {} {}", shape_str(b_->type(x)), e.op, shape_str(b_->type(y))),
               "elementwise operands must have the same shape per sample, or one must be a scalar");
  return tensor(make(std::move(n), e.loc, what));
}

Value Lowerer::eval(const Expr& e) {
  switch (e.kind) {
    case ExprKind::Number: return number(e.number);
    case ExprKind::String: {
      Value v;
      v.kind = Value::Kind::String;
      v.str = e.name;
      return v;
    }
    case ExprKind::Name: return lookup(e.name, e.loc);
    case ExprKind::List: {
      Value v;
      v.kind = Value::Kind::List;
      for (auto& it : e.items) v.list.push_back(as_number(eval(*it), it->loc, "a list element"));
      return v;
    }
    case ExprKind::Unary: {
      Value a = eval(*e.items[0]);
      if (a.kind == Value::Kind::Number) return number(-a.num);
      Node n{Op::Neg};
      n.in = {as_node(a, e.items[0]->loc, "'-'")};
      return tensor(make(std::move(n), e.loc, "'-'"));
    }
    case ExprKind::Binary: {
      Value a = eval(*e.items[0]);
      Value b = eval(*e.items[1]);
      return binary(e, a, b);
    }
    case ExprKind::Index: {
      Value base = eval(*e.items[0]);
      Value idx = eval(*e.items[1]);
      if (base.kind != Value::Kind::Table)
        user_error(e.items[0]->loc, fmt::format("only schedule tables can be indexed, this is {}", kind_name(base)),
                   "the tables are beta, alpha, abar, abar_prev and beta_tilde");
      const auto& tab = *base.table;
      if (idx.kind == Value::Kind::Number) {
        int64_t i = as_int(idx, e.items[1]->loc, "a table index");
        if (i < 0 || i >= (int64_t)tab.size())
          user_error(e.items[1]->loc, fmt::format("index {} is out of range for {}[0..{}]", i, base.str, tab.size() - 1),
                     "schedule tables are indexed by steps 0..T");
        return number(tab[i]);
      }
      if (idx.kind != Value::Kind::Tensor || !idx.is_step)
        user_error(e.items[1]->loc, fmt::format("a schedule table is indexed by a step, got {}", kind_name(idx)),
                   "use the sampler's t or s, or t = uniform_step() in the loss");
      Node n{Op::Lookup};
      n.in = {idx.node};
      n.data.assign(tab.begin(), tab.end());
      return tensor(make(std::move(n), e.loc, "a table lookup"));
    }
    case ExprKind::Call: return eval_call(e);
  }
  DDPM_ICE("unknown expression kind");
}

std::string Lowerer::type_ann_str(const TypeAnn& ann) {
  if (ann.kind == TypeAnn::Kind::Step) return "step";
  std::string s = "[";
  for (size_t i = 0; i < ann.dims.size(); ++i) s += fmt::format("{}{}", i ? "," : "", ann.dims[i]);
  return s + "]";
}

void Lowerer::check_type(const TypeAnn& ann, const Value& v, const Loc& loc, const std::string& what) {
  if (ann.kind == TypeAnn::Kind::Step) {
    if (v.kind != Value::Kind::Tensor || !v.is_step)
      user_error(loc, fmt::format("{} must be a step, got {}", what, kind_name(v)),
                 "pass the sampler's t, or t = uniform_step() in the loss");
    return;
  }
  Type want{true, std::vector<int64_t>(ann.dims.begin(), ann.dims.end())};
  if (v.kind == Value::Kind::Tensor && !b_->type(v.node).batched && b_->type(v.node).dims == want.dims)
    user_error(loc,
               fmt::format("shape mismatch: {} is declared {} per sample, but got {} with no batch axis (one value "
                           "shared by every sample)",
                           what, type_ann_str(ann), shape_str(b_->type(v.node))),
               "a value computed only from parameters and constants is the same for every sample; combine it "
               "with the per-sample input (for example x + p)");
  if (v.kind != Value::Kind::Tensor || b_->type(v.node) != want)
    user_error(loc,
               fmt::format("shape mismatch: {} is declared {} per sample but got {}", what, type_ann_str(ann),
                           v.kind == Value::Kind::Tensor ? shape_str(b_->type(v.node)) : kind_name(v)),
               fmt::format("declared shapes exclude the batch axis: {} means [B,{}]", type_ann_str(ann),
                           type_ann_str(ann).substr(1, type_ann_str(ann).size() - 2)));
}

Value Lowerer::eval_call(const Expr& e) {
  auto bi = builtins().find(e.name);
  if (bi != builtins().end()) {
    const Builtin& B = bi->second;
    BuiltinCall c{*this, e, {}, {}};
    if (B.required < 0) {
      for (auto& a : e.args) {
        if (!a.name.empty()) {
          bool known = false;
          for (auto* p : B.params) known = known || a.name == p;
          if (!known)
            user_error(a.loc, fmt::format("'{}' has no argument named '{}'", e.name, a.name), fmt::format("usage: {}", B.doc));
          c.kw[a.name] = {eval(*a.value), a.value->loc};
          continue;
        }
        c.args.push_back(eval(*a.value));
        c.locs.push_back(a.value->loc);
      }
      if (c.args.empty()) user_error(e.loc, fmt::format("'{}' needs at least one argument", e.name), B.doc);
      return B.fn(c);
    }
    c.args.resize(B.params.size());
    c.locs.assign(B.params.size(), e.loc);
    size_t pos = 0;
    std::string pending = pending_param_name_;
    pending_param_name_.clear();
    for (auto& a : e.args) {
      size_t i = pos;
      if (!a.name.empty()) {
        i = 0;
        while (i < B.params.size() && a.name != B.params[i]) ++i;
        if (i == B.params.size()) {
          std::string ok;
          for (auto* p : B.params) ok += fmt::format("{}{}", ok.empty() ? "" : ", ", p);
          user_error(a.loc, fmt::format("'{}' has no argument named '{}'", e.name, a.name),
                     ok.empty() ? fmt::format("'{}' takes no arguments", e.name) : fmt::format("its arguments are: {}", ok));
        }
      } else {
        ++pos;
      }
      if (i >= B.params.size())
        user_error(a.loc, fmt::format("wrong number of arguments: '{}' takes {} but {} {} given", e.name, B.params.size(), e.args.size(), e.args.size() == 1 ? "was" : "were"),
                   B.doc);
      if (c.args[i].kind != Value::Kind::None)
        user_error(a.loc, fmt::format("argument '{}' of '{}' is given twice", B.params[i], e.name),
                   "pass each argument once, by position or by name");
      c.args[i] = eval(*a.value);
      c.locs[i] = a.value->loc;
    }
    for (int i = 0; i < B.required; ++i)
      if (c.args[i].kind == Value::Kind::None)
        user_error(e.loc, fmt::format("wrong number of arguments: '{}' needs argument '{}'", e.name, B.params[i]), B.doc);
    pending_param_name_ = pending;
    Value r = B.fn(c);
    pending_param_name_.clear();
    return r;
  }
  auto it = defs_.find(e.name);
  if (it == defs_.end() && sampler_names_.count(e.name))
    user_error(e.loc, fmt::format("'{}' is a sampler and cannot be called", e.name),
               "move the shared computation into a `fn` and call that from both places");
  if (it == defs_.end()) {
    std::string best;
    size_t bestd = 3;
    for (auto& [k, _] : defs_)
      if (size_t d = edit_distance(e.name, k); d < bestd) bestd = d, best = k;
    for (auto& [k, _] : builtins())
      if (size_t d = edit_distance(e.name, k); d < bestd) bestd = d, best = k;
    std::string std_fns;  // the standard library's functions, when it is imported
    for (auto& [k, def] : defs_)
      if (def->name_loc.file && def->name_loc.file->path == "std") std_fns += (std_fns.empty() ? "" : ", ") + k;
    std::string hint = !best.empty()    ? fmt::format("did you mean '{}'?", best)
                       : !std_fns.empty() ? "define it with `fn`; the imported standard library has " + std_fns
                                          : "define it with `fn`, or `import std` for linear, silu and sinusoidal";
    user_error(e.loc, fmt::format("unknown name '{}'", e.name), hint);
  }
  return call_user(*it->second, e);
}

Value Lowerer::call_user(const FuncDef& f, const Expr& call) {
  for (Frame* fr : stack_)
    if (fr->fn == &f) {
      std::string chain;
      for (Frame* g : stack_)
        if (g->fn) chain += (g->fn->name.empty() ? std::string("loss") : g->fn->name) + " -> ";
      user_error(call.loc, fmt::format("recursive call to '{}' ({}{})", f.name, chain, f.name),
                 "specs are unrolled at compile time, so recursion is not allowed; write the layers out");
    }
  if (stack_.size() > 200) user_error(call.loc, "calls nested too deeply", "specs are unrolled at compile time; flatten the calls");
  // Bind arguments.
  std::vector<Value> vals(f.params.size());
  std::vector<Loc> locs(f.params.size(), call.loc);
  std::vector<bool> given(f.params.size(), false);
  size_t pos = 0;
  for (auto& a : call.args) {
    size_t i = pos;
    if (!a.name.empty()) {
      i = 0;
      while (i < f.params.size() && a.name != f.params[i].name) ++i;
      if (i == f.params.size())
        user_error(a.loc, fmt::format("'{}' has no parameter named '{}'", f.name, a.name),
                   fmt::format("see its definition at {}:{}", f.loc.file->path, f.loc.line));
    } else {
      ++pos;
    }
    if (i >= f.params.size())
      user_error(a.loc,
                 fmt::format("wrong number of arguments: '{}' takes {} but {} {} given", f.name, f.params.size(),
                             call.args.size(), call.args.size() == 1 ? "was" : "were"),
                 fmt::format("see its definition at {}:{}:{}", f.loc.file->path, f.loc.line, f.loc.col));
    if (given[i])
      user_error(a.loc, fmt::format("argument '{}' of '{}' is given twice", f.params[i].name, f.name),
                 "pass each argument once, by position or by name");
    vals[i] = eval(*a.value);
    locs[i] = a.value->loc;
    given[i] = true;
  }
  Frame fr;
  fr.fn = &f;
  for (size_t i = 0; i < f.params.size(); ++i) {
    if (!given[i]) {
      if (!f.params[i].default_value)
        user_error(call.loc,
                   fmt::format("wrong number of arguments: '{}' takes {} but {} {} given (missing '{}')", f.name,
                               f.params.size(), call.args.size(), call.args.size() == 1 ? "was" : "were",
                               f.params[i].name),
                   fmt::format("see its definition at {}:{}:{}", f.loc.file->path, f.loc.line, f.loc.col));
      Frame dflt;
      dflt.call_locs = top().call_locs;
      stack_.push_back(&dflt);
      vals[i] = eval(*f.params[i].default_value);
      stack_.pop_back();
    }
    if (f.params[i].type) check_type(*f.params[i].type, vals[i], locs[i], fmt::format("argument '{}' of '{}'", f.params[i].name, f.name));
    fr.vars[f.params[i].name] = vals[i];
  }
  if (f.kind == DefKind::Net) {
    fr.path = f.name;  // a net's parameters are shared by every caller
  } else {
    int k = top().calls[f.name]++;
    fr.path = fmt::format("{}{}{}.{}", top().path, top().path.empty() ? "" : "/", f.name, k);
  }
  fr.call_locs = top().call_locs;
  fr.call_locs.push_back(call.loc);
  stack_.push_back(&fr);
  Value r;
  try {
    r = run_body(f);
  } catch (const UserError& err) {
    // Errors inside a function (often the standard library) also name the call site.
    throw UserError(std::string(err.what()) + fmt::format("note: in '{}' called at {}:{}:{}\n", f.name,
                                                          call.loc.file->path, call.loc.line, call.loc.col));
  }
  stack_.pop_back();
  if (f.result) check_type(*f.result, r, call.loc, fmt::format("the result of '{}'", f.name));
  return r;
}

Value Lowerer::run_body(const FuncDef& f) {
  for (size_t i = 0; i < f.body.size(); ++i) {
    const Stmt& s = f.body[i];
    if (s.kind == Stmt::Kind::Return) {
      if (i + 1 < f.body.size())
        user_error(f.body[i + 1].loc, "statement after 'return' is never reached", "remove it, or move the return to the end");
      Value v = eval(*s.value);
      if (v.kind == Value::Kind::None) user_error(s.loc, "return needs a value", "return an expression");
      return v;
    }
    if (s.value->kind == ExprKind::Call && s.value->name == "param") pending_param_name_ = s.name;
    Value v = eval(*s.value);
    pending_param_name_.clear();
    if (globals_.count(s.name))
      user_error(s.name_loc, fmt::format("'{}' is a built-in name and cannot be assigned", s.name), "choose another name");
    top().vars[s.name] = v;
  }
  user_error(f.end_loc, fmt::format("missing return: '{}' ends without a return statement", f.name.empty() ? "loss" : f.name),
             "end the body with `return <expression>`");
}

void Lowerer::lower_diffusion(const DiffusionDecl& d) {
  int T = 1000;
  std::string sched = "linear";
  std::vector<ScheduleArg> args;
  Loc sched_loc = d.loc;
  std::set<std::string> seen;
  Frame fr;
  stack_.push_back(&fr);
  for (auto& s : d.settings) {
    if (!seen.insert(s.key).second)
      user_error(s.loc, fmt::format("setting '{}' is given twice", s.key), "keep one of the two settings");
    if (s.key == "steps") {
      Value v = eval(*s.value);
      int64_t t = as_int(v, s.value->loc, "steps");
      if (t < 2 || t > 100000)
        user_error(s.value->loc, fmt::format("bad schedule argument: steps = {} must be between 2 and 100000", t),
                   "Ho et al. use steps = 1000");
      T = (int)t;
    } else if (s.key == "schedule") {
      const Expr& e = *s.value;
      if (e.kind == ExprKind::Name) {
        sched = e.name;
      } else if (e.kind == ExprKind::Call) {
        sched = e.name;
        int pos = 0;
        for (auto& a : e.args) {
          std::string name = a.name;
          if (name.empty()) {
            for (auto& sp : schedule_specs())
              if (sp.name == sched && pos < (int)sp.params.size()) name = sp.params[pos].first;
            if (name.empty()) name = fmt::format("#{}", pos + 1);
            ++pos;
          }
          args.push_back({name, as_number(eval(*a.value), a.value->loc, "a schedule argument"), a.loc});
        }
      } else {
        user_error(e.loc, "bad schedule argument: expected a schedule such as linear(beta_min = 1e-4, beta_max = 0.02)",
                   "schedules: linear, quadratic, cosine, sigmoid");
      }
      sched_loc = e.loc;
    } else {
      user_error(s.loc, fmt::format("unknown diffusion setting '{}'", s.key), "the settings are: steps, schedule");
    }
  }
  stack_.pop_back();
  m_.diffusion = make_diffusion(sched, T, args, sched_loc);
}

void Lowerer::collect() {
  std::map<std::string, Loc> where;
  const DiffusionDecl* diff = nullptr;
  for (auto& mod : prog_.modules) {
    for (auto& d : mod.diffusions) {
      if (diff)
        user_error(d.loc, "duplicate definition: a spec has one 'diffusion' block",
                   fmt::format("the first one is at {}:{}", diff->loc.file->path, diff->loc.line));
      diff = &d;
    }
    for (auto& d : mod.datas) {
      if (data_)
        user_error(d.loc, fmt::format("duplicate definition: data '{}' (a spec has one data declaration)", d.name),
                   fmt::format("the first one is at {}:{}", data_->loc.file->path, data_->loc.line));
      data_ = &d;
    }
    for (auto& f : mod.defs) {
      std::string key = f.kind == DefKind::Loss ? std::string("loss") : f.name;
      if (f.kind == DefKind::Sampler) key = "sampler " + f.name;
      if (builtins().count(f.name))
        user_error(f.name_loc, fmt::format("'{}' is a built-in and cannot be redefined", f.name), "choose another name");
      if (auto it = where.find(key); it != where.end())
        user_error(f.name_loc, fmt::format("duplicate definition of '{}'", f.kind == DefKind::Loss ? "loss" : f.name),
                   fmt::format("it is already defined at {}:{}:{}", it->second.file->path, it->second.line, it->second.col));
      where[key] = f.name_loc;
      if (f.kind == DefKind::Fn || f.kind == DefKind::Net) defs_[f.name] = &f;
      if (f.kind == DefKind::Sampler) sampler_names_.insert(f.name);
    }
  }
  Frame fr;
  stack_.push_back(&fr);
  if (diff) lower_diffusion(*diff);
  stack_.pop_back();
  auto table = [&](const char* n, const std::vector<double>& t) {
    Value v;
    v.kind = Value::Kind::Table;
    v.table = &t;
    v.str = n;
    globals_[n] = v;
  };
  if (diff) {
    auto& d = m_.diffusion;
    table("beta", d.beta);
    table("alpha", d.alpha);
    table("abar", d.abar);
    table("abar_prev", d.abar_prev);
    table("beta_tilde", d.beta_tilde);
    globals_["T"] = number(d.T);
  }
  globals_["pi"] = number(M_PI);
  if (data_) {
    for (auto d : data_->type.dims)
      if (d <= 0) user_error(data_->type.loc, "data dimensions must be positive", "e.g. data x0: [2]");
    if (data_->type.kind != TypeAnn::Kind::Tensor)
      user_error(data_->type.loc, "data must be a tensor shape", "write e.g. data x0: [2] or data x0: [1, 28, 28]");
    data_type_ = Type{true, std::vector<int64_t>(data_->type.dims.begin(), data_->type.dims.end())};
    check_size(data_type_.dims, data_->loc, "a sample of this data");
    m_.data = data_type_;
    m_.data_name = data_->name;
  }
}

Graph Lowerer::lower_entry(const FuncDef& f, const std::string& graph_name) {
  Graph g;
  g.name = graph_name;
  graph_ = &g;
  b_ = std::make_unique<Builder>(g);
  next_stream_ = 1;
  Frame fr;
  fr.fn = &f;
  fr.path = f.kind == DefKind::Loss ? "loss" : f.name;
  stack_.assign(1, &fr);
  auto input = [&](const std::string& name, const Type& t, const Loc& loc, bool step) {
    Node n{Op::Input};
    n.type = t;
    n.name = name;
    n.locs = {loc};
    g.input_names.push_back(name);
    return tensor(b_->add(std::move(n)), step);
  };
  if (f.kind == DefKind::Loss) {
    fr.vars[data_->name] = input("data", data_type_, data_->loc, false);
  } else {
    if (f.params.size() != 3)
      user_error(f.name_loc,
                 fmt::format("wrong number of parameters: sampler '{}' must take (x, t, s), it takes {}", f.name, f.params.size()),
                 "x is the current sample, t the current step and s the step to go to");
    for (auto& p : f.params)
      if (p.type || p.default_value)
        user_error(p.loc, fmt::format("sampler parameter '{}' takes no type or default", p.name),
                   "x has the data's shape and t, s are steps; write `sampler name(x, t, s)`");
    fr.vars[f.params[0].name] = input("x", data_type_, f.params[0].loc, false);
    fr.vars[f.params[1].name] = input("t", Type{true, {}}, f.params[1].loc, true);
    fr.vars[f.params[2].name] = input("s", Type{true, {}}, f.params[2].loc, true);
  }
  Value r = run_body(f);
  const Loc& rloc = f.body.back().value->loc;
  if (f.kind == DefKind::Loss) {
    if (r.kind != Value::Kind::Tensor || b_->type(r.node) != Type{false, {}})
      user_error(rloc,
                 fmt::format("the loss must be a scalar, got {}",
                             r.kind == Value::Kind::Tensor ? shape_str(b_->type(r.node)) : kind_name(r)),
                 "reduce it with mean(...), e.g. mean(square(eps - eps_theta(xt, t)))");
    g.outputs = {r.node};
    g.output_names = {"loss"};
  } else {
    if (r.kind != Value::Kind::Tensor || b_->type(r.node) != data_type_)
      user_error(rloc,
                 fmt::format("shape mismatch: sampler '{}' must return the data shape {}, got {}", f.name,
                             shape_str(data_type_), r.kind == Value::Kind::Tensor ? shape_str(b_->type(r.node)) : kind_name(r)),
                 "a sampler returns the next sample x_s");
    g.outputs = {r.node};
    g.output_names = {"x_out"};
  }
  stack_.clear();
  b_.reset();
  graph_ = nullptr;
  return g;
}

// eps(x, t) = net(x, t) for the noise-predictor net (see Model::has_eps).
Graph Lowerer::lower_eps(const FuncDef& net) {
  Graph g;
  g.name = "eps";
  graph_ = &g;
  b_ = std::make_unique<Builder>(g);
  next_stream_ = 1;
  Frame fr;
  fr.path = "eps";
  stack_.assign(1, &fr);
  auto input = [&](const std::string& name, const Type& t, bool step) {
    Node n{Op::Input};
    n.type = t;
    n.name = name;
    n.locs = {net.loc};
    g.input_names.push_back(name);
    return tensor(b_->add(std::move(n)), step);
  };
  fr.vars["x"] = input("x", data_type_, false);
  fr.vars["t"] = input("t", Type{true, {}}, true);
  Expr call{ExprKind::Call, net.name_loc};
  call.name = net.name;
  for (const char* a : {"x", "t"}) {
    Arg arg;
    arg.loc = net.name_loc;
    arg.value = std::make_unique<Expr>(Expr{ExprKind::Name, net.name_loc});
    arg.value->name = a;
    call.args.push_back(std::move(arg));
  }
  Value r = call_user(net, call);
  g.outputs = {r.node};
  g.output_names = {"eps"};
  stack_.clear();
  b_.reset();
  graph_ = nullptr;
  return g;
}

void Lowerer::run() {
  collect();
  const FuncDef* loss = nullptr;
  std::vector<const FuncDef*> samplers;
  const Module& main = prog_.modules.back();
  for (auto& mod : prog_.modules)
    for (auto& f : mod.defs) {
      if (f.kind == DefKind::Loss) loss = &f;
      if (f.kind == DefKind::Sampler) samplers.push_back(&f);
    }
  Loc top_loc{main.file, 1, 1};
  if (!loss) user_error(top_loc, "the spec has no 'loss' block", "add `loss { ... return mean(square(eps - eps_theta(xt, t))) }`");
  if (m_.diffusion.T == 0) user_error(loss->loc, "the spec has no 'diffusion' block", "add `diffusion { steps = 1000  schedule = linear(beta_min = 1e-4, beta_max = 0.02) }`");
  if (!data_) user_error(loss->loc, "the spec has no 'data' declaration", "add e.g. `data x0: [2]` before the loss");
  m_.loss = lower_entry(*loss, "loss");
  const size_t trained = m_.params.size();
  for (auto* s : samplers) m_.samplers.emplace_back(s->name, lower_entry(*s, "sampler_" + s->name));
  if (m_.params.size() > trained)
    user_error(param_locs_[trained],
               fmt::format("parameter '{}' is created by a sampler but the loss never uses it, so it would never be trained",
                           m_.params[trained].name),
               "create parameters inside the `net` that the loss calls, and call that net from the sampler");
  // The noise predictor for ddpm-eval: exactly one net typed (x: data, t: step) -> data.
  std::vector<const FuncDef*> eps_nets;
  for (auto& [name, f] : defs_) {
    if (f->kind != DefKind::Net || f->params.size() != 2 || !f->result) continue;
    auto is_data = [&](const TypeAnn& a) {
      return a.kind == TypeAnn::Kind::Tensor && std::vector<int64_t>(a.dims.begin(), a.dims.end()) == data_type_.dims;
    };
    const auto& p0 = f->params[0].type;
    const auto& p1 = f->params[1].type;
    if (p0 && p1 && is_data(*p0) && p1->kind == TypeAnn::Kind::Step && is_data(*f->result)) eps_nets.push_back(f);
  }
  if (eps_nets.size() == 1) {
    const size_t before = m_.params.size();
    Graph eps = lower_eps(*eps_nets[0]);
    if (m_.params.size() == before) {  // only if it uses the trained parameters
      m_.eps = std::move(eps);
      m_.has_eps = true;
    } else {
      m_.params.resize(before);
      param_locs_.resize(before);
      for (auto it = param_index_.begin(); it != param_index_.end();)
        it = it->second >= (int)before ? param_index_.erase(it) : std::next(it);
    }
  }
  int64_t off = 0;
  for (auto& p : m_.params) {
    p.offset = off;
    off += (p.type.numel() + 15) / 16 * 16;
  }
  m_.param_floats = off;
}

// ---- builtins: the language surface over the primitive ops ----

Value unary_builtin(BuiltinCall& c, Op op, double (*f)(double)) {
  const Value& a = c.arg(0);
  if (a.kind == Value::Kind::Number) {
    const double r = f(a.num);
    if (!std::isfinite(r))
      user_error(c.call.loc, fmt::format("{}({}) is {}", c.call.name, a.num, std::isnan(r) ? "NaN" : r > 0 ? "infinite" : "-infinite"),
                 c.call.name == "sqrt"  ? "sqrt needs an argument >= 0"
                 : c.call.name == "log" ? "log needs an argument > 0"
                                        : "the argument is too large for a finite result");
    return number(r);
  }
  Node n{op};
  n.in = {c.L.as_node(a, c.locs[0], c.call.name.c_str())};
  return tensor(c.L.make(std::move(n), c.call.loc, c.call.name.c_str()));
}

Type shape_arg(BuiltinCall& c, size_t i, bool batched) {
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
      {"exp", {{"x"}, 1, "exp(x): elementwise e to the x, of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Exp, [](double x) { return std::exp(x); }); }}},
      {"log", {{"x"}, 1, "log(x): elementwise natural logarithm, of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Log, [](double x) { return std::log(x); }); }}},
      {"sqrt", {{"x"}, 1, "sqrt(x): elementwise square root, of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Sqrt, [](double x) { return std::sqrt(x); }); }}},
      {"sin", {{"x"}, 1, "sin(x): elementwise sine, of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Sin, [](double x) { return std::sin(x); }); }}},
      {"cos", {{"x"}, 1, "cos(x): elementwise cosine, of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Cos, [](double x) { return std::cos(x); }); }}},
      {"sigmoid", {{"x"}, 1, "sigmoid(x): elementwise 1 / (1 + exp(-x)), of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }); }}},
      {"square", {{"x"}, 1, "square(x): elementwise x * x, of a tensor or a number", [](BuiltinCall& c) { return unary_builtin(c, Op::Square, [](double x) { return x * x; }); }}},
      {"clip", {{"x", "lo", "hi"}, 3, "clip(x, lo, hi): elementwise min(max(x, lo), hi); lo and hi are numbers",
                [](BuiltinCall& c) {
         const double lo = c.L.as_number(c.arg(1), c.locs[1], "clip's lower bound");
         const double hi = c.L.as_number(c.arg(2), c.locs[2], "clip's upper bound");
         if (!(lo < hi)) user_error(c.locs[2], fmt::format("clip needs lo < hi, got {} and {}", lo, hi), "e.g. clip(x0, -1, 1)");
         if (c.arg(0).kind == Value::Kind::Number) return number(std::min(std::max(c.arg(0).num, lo), hi));
         Node n{Op::Clip};
         n.in = {c.L.as_node(c.arg(0), c.locs[0], "clip")};
         n.value = lo;
         n.value2 = hi;
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
      {"concat", {{"axis"}, -1, "concat(a, b, ..., axis = -1) joins per-sample tensors on an axis (0: channels)",
                  [](BuiltinCall& c) {
         Node n{Op::Concat};
         for (size_t i = 0; i < c.args.size(); ++i) n.in.push_back(c.L.as_node(c.args[i], c.locs[i], "concat"));
         if (auto it = c.kw.find("axis"); it != c.kw.end()) {
           const int64_t rank = (int64_t)c.L.b_->type(n.in[0]).dims.size();
           int64_t a = c.L.as_int(it->second.first, it->second.second, "axis");
           if (a < 0) a += rank;
           if (a < 0 || a >= rank)
             user_error(it->second.second, fmt::format("axis {} is out of range for rank {}", a, rank),
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
         Node n{Op::UniformStep};
         n.type = Type{true, {}};
         n.i0 = c.L.next_stream_++;
         n.i1 = c.L.steps_T();
         return tensor(c.L.make(std::move(n), c.call.loc, "uniform_step"), true);
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

}  // namespace

Model lower(const Program& program, const std::string& spec_path) {
  Model m;
  m.spec_path = spec_path;
  for (auto& mod : program.modules) m.sources_text += mod.file->path + "\n" + mod.file->text + "\n";
  Lowerer L(program, m);
  L.run();
  verify(m.loss, m);
  for (auto& s : m.samplers) verify(s.second, m);
  if (m.has_eps) verify(m.eps, m);
  return m;
}

std::vector<std::string> builtin_names() {
  std::vector<std::string> names;
  for (auto& [name, _] : builtins()) names.push_back(name);
  return names;
}

}  // namespace ddpmc
