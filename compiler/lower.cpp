// Lowering, the evaluator (see lower.h and lower_impl.h): names, expressions,
// calls to builtins and to fn/net (inlined), and the checks of shapes and types.
//
// Scopes: a function body sees its parameters and its own assignments, then the
// globals (schedule tables beta, alpha, abar, abar_prev, beta_tilde; T; pi), then
// every fn/net defined in any loaded module. The loss also sees the `data` name.
// Builtins (the primitive-op surface of the language) are in lower_builtins.cpp.
#include "lower.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "diffusion.h"
#include "lower_impl.h"

namespace ddpmc::lowering {

NodeId Lowerer::make(Node n, const Loc& loc, const char* what) {
  std::string err;
  if (n.locs.empty()) {
    n.locs.push_back(loc);
    for (auto it = top().call_locs.rbegin(); it != top().call_locs.rend(); ++it) n.locs.push_back(*it);
  }
  if (!b_)  // outside a net, loss or sampler (the diffusion block): there is no graph to add to
    user_error(loc, fmt::format("{} makes a tensor, but only numbers are allowed here", what),
               "the diffusion block takes numbers, e.g. steps = 1000");
  check_expansion(loc);
  NodeId id = b_->add(std::move(n), &err);
  if (id >= 0) check_size(b_->type(id).dims, loc, fmt::format("the result of {}", what));
  if (id < 0) {
    const bool norm = std::string(what) == "normalize";
    user_error(loc, fmt::format("{} in {}: {}", norm ? "bad shape" : "shape mismatch", what, err),
               shape_hint(what, err));
  }
  return id;
}

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
    return "normalize (and group_norm) take feature maps [C,H,W] or [C,N] per sample, channels first, or [N] "
           "features (layer norm)";
  }
  if (what == "bmm") return "bmm multiplies each sample's [...,M,K] by its [...,K,N]; transpose(x) swaps the last two axes";
  if (what == "transpose" || what == "softmax" || what == "log_softmax")
    return "it works on activations (batched); transpose needs at least two per-sample axes";
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
  if (v.kind == Value::Kind::Tensor && !v.arg.empty())
    user_error(loc, fmt::format("{} must be a compile-time number, but '{}' is a sampling-time argument", what, v.arg),
               "sampling-time arguments are set per call (ddpm-sample --arg); shapes, sizes and bounds must be "
               "known when the module is built");
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

Value Lowerer::step_flag(const std::string& which, const Loc& loc) {
  if (!sampler_)
    user_error(loc, fmt::format("{}_step() is only defined in a sampler", which),
                "the loss trains on single steps; use it in a `sampler` block");
  auto it = flags_.find(which);
  if (it == flags_.end()) {
    Node n{Op::Input};
    n.type = Type{false, {}};
    n.name = "flag/" + which;
    n.locs = {loc};
    graph_->input_names.push_back(n.name);
    it = flags_.emplace(which, b_->add(std::move(n))).first;
  }
  return tensor(it->second);
}

Value Lowerer::lookup(const std::string& name, const Loc& loc) {
  auto& vars = top().vars;
  if (auto it = vars.find(name); it != vars.end()) return it->second;
  if (auto it = globals_.find(name); it != globals_.end()) return it->second;
  if (defs_.count(name) || builtins().count(name))
    user_error(loc, fmt::format("'{}' is a function, not a value", name), fmt::format("call it: {}(...)", name));
  if (supervised_ && (name == "T" || name == "beta" || name == "alpha" || name == "abar" || name == "abar_prev" ||
                      name == "beta_tilde"))
    no_diffusion(loc, name == "T" ? "'T' is the number of diffusion steps"
                                  : fmt::format("'{}' is a diffusion schedule table", name));
  if (m_.diffusion.continuous && (name == "T" || name == "beta" || name == "alpha" || name == "abar" ||
                                  name == "abar_prev" || name == "beta_tilde"))
    user_error(loc,
               name == "T" ? std::string("'T' is the number of steps of a discrete-time diffusion, but this spec's time is continuous")
                           : fmt::format("'{}' is a table of a discrete-time diffusion, but this spec's time is continuous", name),
               "write the schedule as an expression of t, e.g. `fn abar(t) { return exp(-0.5 * t * t * (20 - 0.1) - 0.1 * t) }` "
               "(the VP-SDE with beta(t) = 0.1 + t (20 - 0.1))");
  if (label_ && name == label_->name)
    user_error(loc, fmt::format("'{}' is the training label, which only the loss sees", name),
               "a sampler takes its class as an argument, e.g. `sampler cfg(x, t, s, w = 3, class = 0)`");
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
  const Op op = e.op == '+' ? Op::Add : e.op == '-' ? Op::Sub : e.op == '*' ? Op::Mul : Op::Div;
  if (a.kind == Value::Kind::Number && b.kind == Value::Kind::Number) {
    if (e.op == '/' && b.num == 0) user_error(e.loc, "division by zero in a compile-time expression", "check the divisor");
    const double x[2] = {a.num, b.num};
    const double r = op_row(op).eval(Node{op}, x);  // the op's own row, as for a tensor
    if (!std::isfinite(r))
      user_error(e.loc, fmt::format("{} {} {} overflows to infinity in a compile-time expression", a.num, e.op, b.num),
                 "numbers in a spec are doubles; check the magnitudes");
    return number(r);
  }
  const char* what = e.op == '+' ? "'+'" : e.op == '-' ? "'-'" : e.op == '*' ? "'*'" : "'/'";
  NodeId x = as_node(a, e.items[0]->loc, what), y = as_node(b, e.items[1]->loc, what);
  Node n{op};
  n.in = {x, y};
  std::string err;
  Type t;
  if (!broadcast_type(b_->type(x), b_->type(y), t))
    user_error(e.loc, fmt::format("shape mismatch: {} {} {}", shape_str(b_->type(x)), e.op, shape_str(b_->type(y))),
               "elementwise operands must have the same shape per sample, or one must be a scalar");
  Value r = tensor(make(std::move(n), e.loc, what));
  r.arg = a.arg.empty() ? b.arg : a.arg;  // computed from a sampling-time argument
  return r;
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
      if (a.kind == Value::Kind::Number) return number(op_row(Op::Neg).eval(Node{Op::Neg}, &a.num));
      Node n{Op::Neg};
      n.in = {as_node(a, e.items[0]->loc, "'-'")};
      Value r = tensor(make(std::move(n), e.loc, "'-'"));
      r.arg = a.arg;
      return r;
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
      if (ode_)
        user_error(e.items[1]->loc,
                   fmt::format("ode '{}' runs in continuous time, where {} has no entry: its tables are indexed by "
                               "whole steps",
                               ode_->name, base.str),
                   "write the schedule's continuous-time limit as expressions of t in (0, 1], as "
                   "models/moons.ddpm's ode does for the linear schedule");
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
  if (ann.kind == TypeAnn::Kind::Label) return "label";
  if (ann.kind == TypeAnn::Kind::Time) return "time";
  std::string s = "[";
  for (size_t i = 0; i < ann.dims.size(); ++i) s += fmt::format("{}{}", i ? "," : "", ann.dims[i]);
  return s + "]";
}

void Lowerer::check_type(const TypeAnn& ann, const Value& v, const Loc& loc, const std::string& what) {
  if (ann.kind == TypeAnn::Kind::Label) {
    if (!label_)
      user_error(ann.loc, fmt::format("{} is declared `label`, but the spec declares no label", what),
                 "declare one next to the data, e.g. `label y: 10`, and train with labels (--labels, or fashion-mnist)");
    if (v.kind != Value::Kind::Number && (v.kind != Value::Kind::Tensor || !b_->type(v.node).dims.empty()))
      user_error(loc,
                 fmt::format("{} must be a class index (one number per sample), got {}", what,
                             v.kind == Value::Kind::Tensor ? shape_str(b_->type(v.node)) : kind_name(v)),
                 fmt::format("pass the label ({}), a sampler's class argument, or a number", label_->name));
    const ClassIndex ci = class_index(v);
    if (!ci.ok)
      user_error(loc, fmt::format("{} must be a class index, got {}", what, ci.problem),
                 fmt::format("pass the label ({}), a sampler's argument, a whole number, or where(cond, a, b) of "
                             "these; arithmetic and random values are not class indices",
                             label_->name));
    use_class_index(ci, loc, what);
    return;
  }
  if (ann.kind == TypeAnn::Kind::Step) {
    if (m_.diffusion.continuous)
      user_error(ann.loc, fmt::format("{} is typed `step`, but this diffusion's time is continuous", what),
                 "declare it `time`: a real number per sample, such as the sampler's t or uniform_time()");
    // The ode of a discrete-time spec runs in the continuous-time limit: its net takes
    // real steps (t T for t in (0, 1]).
    if (ode_ && (v.kind == Value::Kind::Number ||
                 (v.kind == Value::Kind::Tensor && b_->type(v.node).dims.empty())))
      return;
    if (v.kind != Value::Kind::Tensor || !v.is_step)
      user_error(loc, fmt::format("{} must be a step, got {}", what, kind_name(v)),
                 "pass the sampler's t, or t = uniform_step() in the loss");
    return;
  }
  if (ann.kind == TypeAnn::Kind::Time) {
    // A real number per sample ([B]) or one for all samples ([] or a number).
    if (v.kind == Value::Kind::Number) return;
    if (v.kind != Value::Kind::Tensor || !b_->type(v.node).dims.empty())
      user_error(loc,
                 fmt::format("{} must be a time (one number per sample), got {}", what,
                             v.kind == Value::Kind::Tensor ? shape_str(b_->type(v.node)) : kind_name(v)),
                 "pass the sampler's t, uniform_time() in the loss, or any [B] expression of them");
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
  ++expanded_calls_;
  check_expansion(call.loc);
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
  } catch (const ExpansionError&) {
    throw;
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

}  // namespace ddpmc::lowering
