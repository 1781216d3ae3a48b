// Lowering of a supervised spec (see lower.h and lower_impl.h): a spec without a
// `diffusion` block that declares `data`, a `label` and one `net` (x: <data shape>),
// trained by a `loss` such as cross_entropy(classify(x0), y).
//
// Its graphs are the loss (trained through train_step_labels, as a labelled
// diffusion model is) and "classify": the net alone on input "x", with outputs
// "logits" and, where the net marks a value with features(...), "features" (the
// module's classify_eval, ABI version 6). Everything that only a diffusion gives
// meaning to (uniform_step(), the schedule tables, T, samplers, `step` parameters)
// is a one-line error at the spec line.
#include <fmt/format.h>

#include "lower_impl.h"

namespace ddpmc::lowering {

namespace {

const char* kSupervisedHint =
    "a spec without a diffusion block is a supervised model (data, label, one net, loss); add a `diffusion { ... }` "
    "block to train a diffusion model";

std::string ann_str(const TypeAnn& a) {
  std::string s = "[";
  for (size_t i = 0; i < a.dims.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", a.dims[i]);
  return s + "]";
}

}  // namespace

void Lowerer::no_diffusion(const Loc& loc, const std::string& what) {
  user_error(loc, fmt::format("{}, but this spec has no 'diffusion' block", what), kSupervisedHint);
}

Value Lowerer::features(BuiltinCall& c) {
  const Value& v = c.arg(0);
  const FuncDef* net = nullptr;
  for (auto it = stack_.rbegin(); it != stack_.rend() && !net; ++it)
    if ((*it)->fn && (*it)->fn->kind == DefKind::Net) net = (*it)->fn;
  if (!net)
    user_error(c.call.loc, "features(...) marks a value inside a net, but this call is not in one",
               "call it in the net's body, e.g. `f = features(relu(linear(h, 128)))`");
  if (v.kind != Value::Kind::Tensor || !b_->type(v.node).batched)
    user_error(c.locs[0],
               fmt::format("features(...) expects per-sample activations, got {}",
                           v.kind == Value::Kind::Tensor ? shape_str(b_->type(v.node)) : kind_name(v)),
               "mark a hidden layer of the net, e.g. features(relu(linear(h, 128)))");
  auto [it, fresh] = features_at_.emplace(net, c.call.loc);
  const Loc& first = it->second;
  if (!fresh && (first.file != c.call.loc.file || first.line != c.call.loc.line || first.col != c.call.loc.col))
    user_error(c.call.loc, fmt::format("net '{}' marks a second value with features(...)", net->name),
               fmt::format("a net has at most one features value; the first is at {}:{}:{}", first.file->path,
                           first.line, first.col));
  if (capture_features_) {
    features_node_ = v.node;
    features_loc_ = c.call.loc;
  }
  return v;  // the identity: the gradient passes through
}

// The net classify_eval runs: the one net taking just (x: <data shape>).
const FuncDef* Lowerer::classify_net(const FuncDef& loss) {
  std::vector<const FuncDef*> nets, fits;
  for (auto& [name, f] : defs_) {
    if (f->kind != DefKind::Net) continue;
    nets.push_back(f);
    const auto& p = f->params;
    if (p.size() == 1 && p[0].type && p[0].type->kind == TypeAnn::Kind::Tensor &&
        std::vector<int64_t>(p[0].type->dims.begin(), p[0].type->dims.end()) == data_type_.dims)
      fits.push_back(f);
  }
  auto later = [](const FuncDef* a, const FuncDef* b) {
    return a->loc.file == b->loc.file ? a->loc.line < b->loc.line : a->loc.file->path < b->loc.file->path;
  };
  std::sort(nets.begin(), nets.end(), later);
  std::sort(fits.begin(), fits.end(), later);
  const std::string want = fmt::format("(x: {})", ann_str(data_->type));
  if (fits.size() > 1)
    user_error(fits[1]->name_loc,
               fmt::format("a supervised spec has one net taking {}, but '{}' and '{}' both do", want,
                           fits[0]->name, fits[1]->name),
               "make the helper a `fn` (functions are inlined and may be called from the net)");
  if (fits.empty() && nets.size() == 1)
    user_error(nets[0]->name_loc,
               fmt::format("net '{}' of a supervised spec must take just the data, {}", nets[0]->name, want),
               "classify_eval runs the net on a batch of data; take other inputs from inside the net");
  if (fits.empty())
    user_error(loss.loc, fmt::format("a supervised spec needs one net taking {}, and this one has none", want),
               fmt::format("declare it, e.g. `net classify(x: {}) -> [10] {{ ... }}`, and call it from the loss",
                           ann_str(data_->type)));
  return fits[0];
}

void Lowerer::run_supervised(const FuncDef& loss) {
  for (auto& mod : prog_.modules)
    for (auto& f : mod.defs) {
      if (f.kind == DefKind::Sampler) no_diffusion(f.name_loc, fmt::format("sampler '{}' draws diffusion samples", f.name));
      if (f.kind == DefKind::Ode) no_diffusion(f.name_loc, fmt::format("ode '{}' is a diffusion's probability-flow ODE", f.name));
      for (const ParamDecl& p : f.params)
        if (p.type && p.type->kind == TypeAnn::Kind::Step)
          no_diffusion(p.type->loc, fmt::format("parameter '{}' of '{}' is a diffusion step", p.name, f.name));
    }
  const FuncDef* net = classify_net(loss);
  m_.loss = lower_entry(loss, "loss");
  const size_t trained = m_.params.size();
  m_.classify = lower_classify(*net);
  if (m_.params.size() > trained)
    user_error(net->name_loc,
               fmt::format("net '{}' creates parameter '{}' that the loss never uses, so it would never be trained",
                           net->name, m_.params[trained].name),
               fmt::format("call the net from the loss, e.g. `return cross_entropy({}({}), {})`", net->name,
                           data_->name, label_->name));
  assign_offsets();
}

// logits = net(x), and the value the net marks with features(...).
Graph Lowerer::lower_classify(const FuncDef& net) {
  Graph g;
  start_graph(g, "classify");
  capture_features_ = true;
  features_node_ = -1;
  Frame fr;
  fr.path = "classify";
  stack_.assign(1, &fr);
  Node in{Op::Input};
  in.type = data_type_;
  in.name = "x";
  in.locs = {net.loc};
  g.input_names.push_back("x");
  fr.vars["x"] = tensor(b_->add(std::move(in)));
  Expr call{ExprKind::Call, net.name_loc};
  call.name = net.name;
  Arg arg;
  arg.loc = net.name_loc;
  arg.value = std::make_unique<Expr>(Expr{ExprKind::Name, net.name_loc});
  arg.value->name = "x";
  call.args.push_back(std::move(arg));
  Value r = call_user(net, call);
  const Loc& rloc = net.body.back().value->loc;
  if (r.kind != Value::Kind::Tensor || !b_->type(r.node).batched)
    user_error(rloc,
               fmt::format("net '{}' of a supervised spec must return per-sample logits, got {}", net.name,
                           r.kind == Value::Kind::Tensor ? shape_str(b_->type(r.node)) : kind_name(r)),
               "return the last layer's output, e.g. linear(f, 10)");
  g.outputs = {r.node};
  g.output_names = {"logits"};
  m_.logits_numel = b_->type(r.node).numel();
  if (features_node_ >= 0) {
    if (features_node_ == r.node || g.nodes[features_node_].op == Op::Input)
      user_error(features_loc_,
                 fmt::format("features(...) marks the net's {}, not a hidden value",
                             features_node_ == r.node ? "output" : "input"),
                 "mark a hidden layer (classify_eval returns the logits already), e.g. features(relu(linear(h, 128)))");
    g.outputs.push_back(features_node_);
    g.output_names.push_back("features");
    m_.features_numel = b_->type(features_node_).numel();
  }
  capture_features_ = false;
  stack_.clear();
  b_.reset();
  graph_ = nullptr;
  return g;
}

}  // namespace ddpmc::lowering
