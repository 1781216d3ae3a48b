// Class indices in lowering: what may reach a `label` parameter or an embed.
//
// A class index is the declared label (0..K-1), a whole number >= 0 (a fixed
// class, such as guidance's "no class"), a sampler's sampling-time argument (its
// value is checked by the runtime), or where(cond, a, b) of two of these, which
// reaches both ranges: where(drop, 10, y) with `label y: 10` reaches 0..10.
// Anything computed (randn([]), y + 1, t) is not one. The loss sets the range the
// net is trained on (Model::label_values); a sampler may pass only indices in it,
// and its arguments that are used as class indices are recorded so that
// ddpm-sample checks --class / --arg against that range.
#include <cmath>

#include <fmt/format.h>

#include "lower_impl.h"

namespace ddpmc::lowering {

ClassIndex Lowerer::class_index(const Value& v) const {
  ClassIndex ci;
  if (v.kind == Value::Kind::Number) {
    if (!(v.num == std::floor(v.num)) || v.num < 0 || v.num > 1e9) {
      ci.problem = fmt::format("the number {}, which is not a whole number >= 0", v.num);
      return ci;
    }
    ci.ok = true;
    ci.hi = (int64_t)v.num + 1;
    return ci;
  }
  if (v.kind != Value::Kind::Tensor) {
    ci.problem = kind_name(v);
    return ci;
  }
  const Node& n = graph_->nodes[v.node];
  if (!b_->type(v.node).dims.empty()) {
    ci.problem = b_->type(v.node).str();
    return ci;
  }
  if (v.classes > 0 || !v.class_args.empty()) {
    ci.ok = true;
    ci.hi = v.classes;
    ci.args = v.class_args;
    return ci;
  }
  if (!v.arg.empty() && n.op == Op::Input && n.name == "arg/" + v.arg) {
    ci.ok = true;
    ci.args = {v.arg};
    return ci;
  }
  ci.problem = "a computed value";
  return ci;
}

void Lowerer::use_class_index(const ClassIndex& ci, const Loc& loc, const std::string& what) {
  if (!sampler_) {
    if (!stack_.empty() && stack_[0]->fn && stack_[0]->fn->kind == DefKind::Loss)
      m_.label_values = std::max(m_.label_values, ci.hi);
    return;
  }
  for (const std::string& name : ci.args)
    for (SamplerArg& a : sampler_info_.args) a.is_class |= a.name == name;
  const int64_t trained = std::max(m_.label_values, m_.label_classes);
  if (ci.hi > trained)
    user_error(loc,
               fmt::format("{} can be class {}, but the loss trains the net on classes 0..{} only", what, ci.hi - 1,
                           trained - 1),
               "pass a class the loss uses (the label, or the \"no class\" index it drops labels to)");
}

Value Lowerer::where_class(Value r, const ClassIndex& a, const ClassIndex& b) {
  if (r.kind != Value::Kind::Tensor || !a.ok || !b.ok) return r;
  r.classes = std::max(a.hi, b.hi);
  r.class_args = a.args;
  r.class_args.insert(r.class_args.end(), b.args.begin(), b.args.end());
  return r;
}

}  // namespace ddpmc::lowering
