// Lowering, the spec's structure (see lower.h and lower_impl.h): the schedule
// tables, the data declaration, the globals, and one graph per entry point (the
// loss, each sampler, and the noise predictor for ddpm-eval). The diffusion block's
// settings are read in lower_diffusion.cpp.
// A spec without a diffusion block is a supervised model: lower_supervised.cpp.
#include "lower.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "diffusion.h"
#include "lower_impl.h"
#include "common/prelude/align.h"

namespace ddpmc::lowering {

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
    for (auto& d : mod.labels) {
      if (label_)
        user_error(d.loc, fmt::format("duplicate definition: label '{}' (a spec has at most one label)", d.name),
                   fmt::format("the first one is at {}:{}", label_->loc.file->path, label_->loc.line));
      label_ = &d;
    }
    for (auto& f : mod.defs) {
      std::string key = f.kind == DefKind::Loss ? std::string("loss") : f.name;
      if (f.kind == DefKind::Sampler) key = "sampler " + f.name;
      if (f.kind == DefKind::Ode) key = "ode " + f.name;
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
  has_diffusion_ = diff != nullptr;
  if (diff && !m_.diffusion.continuous) {
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
    if (label_) m_.label_classes = label_->classes;
  }
  // No diffusion block and a label: a supervised model (lower_supervised.cpp).
  supervised_ = !diff && label_;
  m_.supervised = supervised_;
}

void Lowerer::start_graph(Graph& g, const std::string& name) {
  g.name = name;
  graph_ = &g;
  expanded_calls_ = 0;
  features_at_.clear();
  b_ = std::make_unique<Builder>(g);
  next_stream_ = 1;
}

Graph Lowerer::lower_entry(const FuncDef& f, const std::string& graph_name) {
  Graph g;
  start_graph(g, graph_name);
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
    if (label_) {
      if (label_->name == data_->name)
        user_error(label_->loc, fmt::format("label '{}' has the data's name", label_->name), "name it e.g. `label y: 10`");
      Value y = input("label", Type{true, {}}, label_->loc, false);
      y.classes = label_->classes;
      fr.vars[label_->name] = y;
    }
  } else if (f.kind == DefKind::Ode) {
    // The probability-flow ODE's dx/dt at (x, t): t is a real time, shared by the batch.
    if (f.params.size() != 2)
      user_error(f.name_loc,
                 fmt::format("wrong number of parameters: ode '{}' must take (x, t), it takes {}", f.name, f.params.size()),
                 "x is the sample and t the time; the ode returns dx/dt");
    for (const ParamDecl& p : f.params)
      if (p.type || p.default_value)
        user_error(p.loc, fmt::format("ode parameter '{}' takes no type or default", p.name),
                   "x has the data's shape and t is a time; write `ode name(x, t)`");
    fr.vars[f.params[0].name] = input("x", data_type_, f.params[0].loc, false);
    fr.vars[f.params[1].name] = input("t", Type{true, {}}, f.params[1].loc, false);
  } else {
    if (f.params.size() < 3)
      user_error(f.name_loc,
                 fmt::format("wrong number of parameters: sampler '{}' must take (x, t, s), it takes {}", f.name, f.params.size()),
                 "x is the current sample, t the current step and s the step to go to; sampling-time "
                 "arguments follow with defaults, as in (x, t, s, w = 3)");
    for (size_t i = 0; i < 3; ++i)
      if (f.params[i].type || f.params[i].default_value)
        user_error(f.params[i].loc, fmt::format("sampler parameter '{}' takes no type or default", f.params[i].name),
                   "x has the data's shape and t, s are steps; write `sampler name(x, t, s)`");
    fr.vars[f.params[0].name] = input("x", data_type_, f.params[0].loc, false);
    // Discrete time: t and s are steps (they index the tables); continuous: real times.
    const bool steps = !m_.diffusion.continuous;
    fr.vars[f.params[1].name] = input("t", Type{true, {}}, f.params[1].loc, steps);
    fr.vars[f.params[2].name] = input("s", Type{true, {}}, f.params[2].loc, steps);
    sampler_ = &f;
    flags_.clear();
    sampler_info_ = SamplerInfo{};
    // Sampling-time arguments: scalars the caller passes on each step, with defaults.
    for (size_t i = 3; i < f.params.size(); ++i) {
      const ParamDecl& p = f.params[i];
      if (p.type || !p.default_value)
        user_error(p.loc, fmt::format("sampling-time argument '{}' of sampler '{}' needs a default and no type", p.name, f.name),
                   fmt::format("write it as `{} = 1.0`; ddpm-sample --arg {}=VALUE overrides the default", p.name, p.name));
      Frame dflt;
      stack_.push_back(&dflt);
      const double v = as_number(eval(*p.default_value), p.default_value->loc, "a sampling-time argument's default");
      stack_.pop_back();
      Value a = input("arg/" + p.name, Type{false, {}}, p.loc, false);
      g.nodes[a.node].i0 = (int64_t)sampler_info_.args.size();
      a.arg = p.name;
      fr.vars[p.name] = a;
      sampler_info_.args.push_back({p.name, v});
    }
    // State: zero before the first step, then what the previous step left in the variable.
    for (const ParamDecl& p : f.state) {
      if (!p.type || p.default_value)
        user_error(p.loc, fmt::format("state '{}' of sampler '{}' needs a type and no default", p.name, f.name),
                   fmt::format("write e.g. state({}: {}) (data-shaped) or state({}: step); state starts at zero", p.name,
                               type_ann_str(data_->type), p.name));
      const bool step = p.type->kind == TypeAnn::Kind::Step;
      if (step && m_.diffusion.continuous)
        user_error(p.type->loc, fmt::format("state '{}' is typed `step`, but this diffusion's time is continuous", p.name),
                   fmt::format("type it `{}: time`", p.name));
      const bool scalar = step || p.type->kind == TypeAnn::Kind::Time || p.type->kind == TypeAnn::Kind::Label;
      Type t{true, scalar ? std::vector<int64_t>{} : std::vector<int64_t>(p.type->dims.begin(), p.type->dims.end())};
      Value v = input("state/" + p.name, t, p.loc, step);
      // A label state holds a class index checked when it was written.
      if (p.type->kind == TypeAnn::Kind::Label) v.classes = std::max<int64_t>(1, std::max(m_.label_values, m_.label_classes));
      g.nodes[v.node].i0 = sampler_info_.state_floats;
      fr.vars[p.name] = v;
      sampler_info_.state.push_back({p.name, t, step, sampler_info_.state_floats});
      sampler_info_.state_floats += t.numel();
    }
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
  } else if (f.kind == DefKind::Ode) {
    if (r.kind != Value::Kind::Tensor || b_->type(r.node) != data_type_)
      user_error(rloc,
                 fmt::format("shape mismatch: ode '{}' must return dx/dt in the data shape {}, got {}", f.name,
                             shape_str(data_type_), r.kind == Value::Kind::Tensor ? shape_str(b_->type(r.node)) : kind_name(r)),
                 "an ode returns the drift of the probability-flow ODE at (x, t)");
    // The drift must be a function of (x, t): the likelihood integrates it and its divergence.
    for (const Node& n : g.nodes)
      if (n.op == Op::RandN || n.op == Op::RandU || n.op == Op::UniformStep)
        user_error(n.locs.empty() ? f.name_loc : n.locs.back(),
                   fmt::format("ode '{}' draws random numbers, but the probability-flow ODE is deterministic", f.name),
                   "the ode returns dx/dt as a function of x and t only; noise belongs in a sampler");
    g.outputs = {r.node};
    g.output_names = {"drift"};
  } else {
    if (r.kind != Value::Kind::Tensor || b_->type(r.node) != data_type_)
      user_error(rloc,
                 fmt::format("shape mismatch: sampler '{}' must return the data shape {}, got {}", f.name,
                             shape_str(data_type_), r.kind == Value::Kind::Tensor ? shape_str(b_->type(r.node)) : kind_name(r)),
                 "a sampler returns the next sample x_s");
    g.outputs = {r.node};
    g.output_names = {"x_out"};
    for (size_t k = 0; k < f.state.size(); ++k) {
      const ParamDecl& p = f.state[k];
      const Value& v = fr.vars[p.name];
      if (v.kind == Value::Kind::Tensor && g.nodes[v.node].op == Op::Input && g.nodes[v.node].name == "state/" + p.name)
        user_error(p.loc, fmt::format("state '{}' of sampler '{}' is read but never written", p.name, f.name),
                   fmt::format("assign the value the next step should see, e.g. `{} = ...` before the return", p.name));
      check_type(*p.type, v, p.loc, fmt::format("the value left in state '{}'", p.name));
      // A class index may be a number or one argument for all samples: state is per sample.
      NodeId out = as_node(v, p.loc, "state");
      if (!b_->type(out).batched) out = b_->broadcast(out, Type{true, b_->type(out).dims});
      g.outputs.push_back(out);
      g.output_names.push_back("state/" + p.name);
    }
    m_.sampler_info.push_back(sampler_info_);
    sampler_ = nullptr;
  }
  stack_.clear();
  b_.reset();
  graph_ = nullptr;
  return g;
}

// eps(x, t) = net(x, t), or net(x, t, label), for the noise-predictor net (see Model::has_eps).
Graph Lowerer::lower_eps(const FuncDef& net) {
  Graph g;
  start_graph(g, "eps");
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
  std::vector<const char*> args = {"x", "t"};
  if (net.params.size() == 3) {
    Value y = input("label", Type{true, {}}, false);
    y.classes = label_->classes;
    fr.vars["label"] = y;
    args.push_back("label");
    m_.eps_labelled = true;
  }
  Expr call{ExprKind::Call, net.name_loc};
  call.name = net.name;
  for (const char* a : args) {
    Arg arg;
    arg.loc = net.name_loc;
    arg.value = std::make_unique<Expr>(Expr{ExprKind::Name, net.name_loc});
    arg.value->name = a;
    call.args.push_back(std::move(arg));
  }
  Value r = call_user(net, call);
  // The declared prediction, converted to eps with x_t = a x0 + s eps, a = sqrt(abar_t),
  // s = sqrt(1 - abar_t): from x0, eps = (x_t - a x0) / s; from v = a eps - s x0,
  // eps = a v + s x_t. The coefficients are tables indexed by t.
  NodeId out = r.node;
  if (net.predicts == "eps_var") {
    // eps and v stacked on the first axis; the variance interpolates log beta_t and
    // log beta_tilde_t by frac = (v + 1) / 2 (Nichol & Dhariwal 2021).
    const int64_t C = data_type_.dims[0];
    NodeId v = b_->slice(out, C, C, 0);
    NodeId frac = b_->mul(b_->add2(v, b_->cnst(1.0)), b_->cnst(0.5));
    g.outputs = {b_->slice(out, 0, C, 0), frac};
    g.output_names = {"eps", "frac"};
    stack_.clear();
    b_.reset();
    graph_ = nullptr;
    return g;
  }
  if (!net.predicts.empty() && net.predicts != "eps") {
    const auto& abar = m_.diffusion.abar;
    auto table = [&](auto f) {
      Node n{Op::Lookup};
      n.in = {fr.vars["t"].node};
      for (size_t k = 0; k < abar.size(); ++k) n.data.push_back((float)(k == 0 ? 0.0 : f(abar[k])));
      return make(std::move(n), net.predicts_loc, "a prediction conversion");
    };
    const NodeId x = fr.vars["x"].node;
    if (net.predicts == "x0") {
      NodeId a = table([](double ab) { return std::sqrt(ab) / std::sqrt(1 - ab); });
      NodeId inv_s = table([](double ab) { return 1 / std::sqrt(1 - ab); });
      out = b_->binary(Op::Sub, b_->mul(inv_s, x), b_->mul(a, out));
    } else {
      NodeId a = table([](double ab) { return std::sqrt(ab); }), s = table([](double ab) { return std::sqrt(1 - ab); });
      out = b_->add2(b_->mul(a, out), b_->mul(s, x));
    }
  }
  g.outputs = {out};
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
  if (!has_diffusion_ && !label_)
    user_error(loss->loc, "the spec has no 'diffusion' block",
               "add `diffusion { steps = 1000  schedule = linear(beta_min = 1e-4, beta_max = 0.02) }`, or declare a "
               "label (`label y: 10`) for a supervised model trained on data and labels");
  if (!data_) user_error(loss->loc, "the spec has no 'data' declaration", "add e.g. `data x0: [2]` before the loss");
  if (supervised_) {
    run_supervised(*loss);
    return;
  }
  m_.loss = lower_entry(*loss, "loss");
  const size_t trained = m_.params.size();
  for (auto* s : samplers) m_.samplers.emplace_back(s->name, lower_entry(*s, "sampler_" + s->name));
  if (m_.params.size() > trained)
    user_error(param_locs_[trained],
               fmt::format("parameter '{}' is created by a sampler but the loss never uses it, so it would never be trained",
                           m_.params[trained].name),
               "create parameters inside the `net` that the loss calls, and call that net from the sampler");
  lower_odes();
  // The noise predictor for ddpm-eval: exactly one net typed (x: data, t: step) -> data,
  // or (x: data, t: step, y: label) -> data when the spec declares a label.
  std::vector<const FuncDef*> eps_nets;
  for (auto& [name, f] : defs_) {
    const size_t n = f->params.size();
    if (f->kind != DefKind::Net || !(n == 2 || (n == 3 && label_)) || !f->result) continue;
    auto is_data = [&](const TypeAnn& a, int64_t first_factor = 1) {
      if (a.kind != TypeAnn::Kind::Tensor || a.dims.size() != data_type_.dims.size()) return false;
      std::vector<int64_t> d(a.dims.begin(), a.dims.end());
      if (d[0] % first_factor != 0) return false;
      d[0] /= first_factor;
      return d == data_type_.dims;
    };
    const auto& p0 = f->params[0].type;
    const auto& p1 = f->params[1].type;
    const bool labelled = n == 3 && f->params[2].type && f->params[2].type->kind == TypeAnn::Kind::Label;
    // `predicts eps_var`: eps and the variance's v, stacked on the first axis.
    const int64_t out_factor = f->predicts == "eps_var" ? 2 : 1;
    if (out_factor == 2 && p0 && p1 && is_data(*p0) && p1->kind == TypeAnn::Kind::Step && !is_data(*f->result, 2))
      user_error(f->predicts_loc,
                 fmt::format("net '{}' predicts eps_var, so its result must stack eps and v on the first axis: "
                             "twice the data's, {}, but it is declared {}",
                             f->name, [&] {
                               std::vector<int64_t> d = data_type_.dims;
                               d[0] *= 2;
                               return Type{false, d}.str();
                             }(),
                             type_ann_str(*f->result)),
                 "declare e.g. `-> [4] predicts eps_var` for data [2], and split it with slice(o, 0, 2) and slice(o, 2, 2)");
    if (p0 && p1 && is_data(*p0) && p1->kind == TypeAnn::Kind::Step && is_data(*f->result, out_factor) &&
        (n == 2 || labelled))
      eps_nets.push_back(f);
  }
  if (eps_nets.size() == 1) {
    const size_t before = m_.params.size();
    Graph eps = lower_eps(*eps_nets[0]);
    const std::string& pr = eps_nets[0]->predicts;
    m_.eps_predicts = pr == "x0" ? Prediction::X0 : pr == "v" ? Prediction::V : Prediction::Eps;
    m_.eps_learned_var = pr == "eps_var";
    if (m_.params.size() == before) {  // only if it uses the trained parameters
      m_.eps = std::move(eps);
      m_.has_eps = true;
    } else {
      m_.eps_labelled = false;
      m_.params.resize(before);
      param_locs_.resize(before);
      for (auto it = param_index_.begin(); it != param_index_.end();)
        it = it->second >= (int)before ? param_index_.erase(it) : std::next(it);
    }
  }
  assign_offsets();
}

void Lowerer::assign_offsets() {
  int64_t off = 0;
  for (auto& p : m_.params) {
    p.offset = off;
    off += ddpm::simd::align_floats(p.type.numel());
  }
  m_.param_floats = off;
}

std::string Lowerer::call_chain() const {
  std::vector<std::string> names;
  for (const Frame* g : stack_)
    if (g->fn) names.push_back(g->fn->name.empty() ? std::string("loss") : g->fn->name);
  std::string chain;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names.size() > 12 && i == 6) {
      chain += fmt::format(" -> ... ({} more)", names.size() - 11);
      i = names.size() - 6;
    }
    chain += (i ? " -> " : "") + names[i];
  }
  return chain;
}

void Lowerer::check_expansion(const Loc& loc) {
  const bool calls = expanded_calls_ > kMaxExpandedCalls;
  if (!calls && (!graph_ || graph_->nodes.size() < kMaxGraphNodes)) return;
  const std::string entry = stack_.empty() || !stack_[0]->fn ? std::string("this entry point")
                            : stack_[0]->fn->kind == DefKind::Loss ? std::string("the loss")
                                                                   : fmt::format("'{}'", stack_[0]->fn->name);
  throw ExpansionError(format_diagnostic(
      loc,
      calls ? fmt::format("{} expands to more than {} function calls (at {})", entry, kMaxExpandedCalls, call_chain())
            : fmt::format("{} expands to more than {} graph nodes (at {})", entry, kMaxGraphNodes, call_chain()),
      "every call is inlined, so functions that each call the next more than once multiply; compute a value once "
      "and reuse it, or call fewer functions"));
}

}  // namespace ddpmc::lowering

namespace ddpmc {

Model lower(const Program& program, const std::string& spec_path) {
  Model m;
  m.spec_path = spec_path;
  if (!program.modules.empty()) m.spec_name = program.modules.back().file->name;
  // Names, not paths: the hash is a function of the content (and the layout of the
  // imports relative to the main file), never of how the path was spelled.
  for (auto& mod : program.modules) {
    m.sources_text += fmt::format("{} {}\n{}\n", mod.file->name, mod.file->text.size(), mod.file->text);
    if (!embedded_stdlib().count(mod.file->name)) m.sources.files[mod.file->name] = mod.file->text;
  }
  m.sources.main = m.spec_name;
  lowering::Lowerer L(program, m);
  L.run();
  verify(m.loss, m);
  for (auto& s : m.samplers) verify(s.second, m);
  if (m.has_eps) verify(m.eps, m);
  if (m.supervised) verify(m.classify, m);
  if (m.has_ode) verify(m.ode, m);
  return m;
}

}  // namespace ddpmc
