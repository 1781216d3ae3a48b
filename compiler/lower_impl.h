// Internals of lowering (see lower.h), shared by its files:
//   lower.cpp          the evaluator: names, expressions, calls, shapes and types;
//   lower_diffusion.cpp the diffusion block: discrete or continuous time;
//   lower_entry.cpp    the spec's structure: tables, globals, data, and
//                      one graph per entry point (loss, samplers, the noise predictor),
//                      and the bounds on how far an entry point may expand;
//   lower_builtins.cpp the builtin table, the language surface over the primitive ops;
//   lower_labels.cpp   class indices: what may reach a `label` parameter or an embed;
//   lower_ode.cpp      the probability-flow ODE (`ode name(x, t)`) for ddpm-eval --nll ode;
//   lower_supervised.cpp  a spec without a diffusion block (a supervised model):
//                      its checks, its classify graph, and features(...).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "frontend.h"
#include "ir.h"
#include "ops.h"

namespace ddpmc::lowering {

struct Value {
  enum class Kind { None, Number, List, Tensor, Table, String } kind = Kind::None;
  double num = 0;
  std::vector<double> list;
  NodeId node = -1;
  bool is_step = false;  // a tensor of step indices (t, s, uniform_step())
  std::string arg;       // a sampler's sampling-time argument: its name
  // A class index with values 0..classes-1: the declared label, or where(...) of
  // class indices (e.g. where(drop, 10, y) reaches 0..10).
  int64_t classes = 0;
  std::vector<std::string> class_args;  // sampling-time arguments that where(...) passes on as class indices
  const std::vector<double>* table = nullptr;
  std::string str;  // String; Table: its name
};

inline Value number(double v) {
  Value r;
  r.kind = Value::Kind::Number;
  r.num = v;
  return r;
}
inline Value tensor(NodeId id, bool is_step = false) {
  Value r;
  r.kind = Value::Kind::Tensor;
  r.node = id;
  r.is_step = is_step;
  return r;
}

inline const char* kind_name(const Value& v) {
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
inline size_t edit_distance(const std::string& a, const std::string& b) {
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

inline std::string shape_str(const Type& t) {
  // Users write per-sample shapes; show the batch axis as B.
  return t.str();
}

// The most elements one tensor may have (per sample when batched): 2^31 floats,
// 8 GiB. Larger sizes are mistakes (a typo'd exponent), reported at the spec line.
constexpr double kMaxTensorElements = 2147483648.0;

inline void check_size(const std::vector<int64_t>& dims, const Loc& loc, const std::string& what) {
  double n = 1;
  for (int64_t d : dims) n *= (double)d;
  if (n > kMaxTensorElements)
    user_error(loc, fmt::format("{} has {:.4g} elements{}, more than ddpmc allows (2^31 = 2,147,483,648)", what, n,
                                " (" + fmt::format("{:.4g}", n * 4 / 1073741824.0) + " GiB of floats)"),
               "check the sizes: a parameter of 1e15 floats would not fit in any machine's memory");
}

// How far one entry point (the loss, a sampler, the noise predictor) may expand:
// user-function calls inlined, and nodes in its graph before differentiation. The
// shipped U-Nets use a few hundred calls and under a thousand nodes; these bounds
// stop a spec whose calls multiply (twenty nested functions each calling the one
// below twice make 2^20 calls) within seconds, with its call chain named.
constexpr int64_t kMaxExpandedCalls = 50000;
constexpr size_t kMaxGraphNodes = 200000;

// The error for an entry point past those bounds; not annotated again by each
// enclosing call (its message names the chain already).
class ExpansionError : public UserError {
 public:
  using UserError::UserError;
};

// A hint that applies to the shape error `err` of op `what` (lower.cpp).
std::string shape_hint(const std::string& what, const std::string& err);

// What a value is as a class index (Lowerer::class_index).
struct ClassIndex {
  bool ok = false;      // the label, a sampler's argument, a whole number >= 0, or where(...) of these
  int64_t hi = 0;       // the values known at compile time lie in 0..hi-1
  std::vector<std::string> args;  // sampling-time arguments whose values (checked at run time) are used
  std::string problem;  // why it is not one (ok == false)
};

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
  const Diffusion& diffusion() const { return m_.diffusion; }
  Value reduce(BuiltinCall& c, bool mean);
  // first_step() / last_step(): 1 on the sampler's first (last) step, else 0.
  Value step_flag(const std::string& which, const Loc& loc);
  // The value as a class index, and its use by a `label` parameter or an embed at
  // `loc`: in the loss it widens the model's label_values, in a sampler a
  // sampling-time argument becomes a class argument and a fixed index must be one
  // the net was trained on.
  ClassIndex class_index(const Value& v) const;
  void use_class_index(const ClassIndex& ci, const Loc& loc, const std::string& what);
  // where(cond, a, b) of two class indices is a class index reaching both ranges.
  static Value where_class(Value r, const ClassIndex& a, const ClassIndex& b);
  // "loss -> f20 -> f19 -> ...": the user-function calls being expanded.
  std::string call_chain() const;
  // Throws ExpansionError when the entry point being lowered grows past
  // kMaxExpandedCalls or kMaxGraphNodes.
  void check_expansion(const Loc& loc);
  int64_t expanded_calls_ = 0;  // in the entry point being lowered
  // A spec without a diffusion block but with a label: a supervised model.
  bool supervised_ = false;
  bool has_diffusion_ = false;  // the spec has a diffusion block (discrete or continuous time)
  // features(x): x, marked (in the classify graph) as the net's features output.
  Value features(BuiltinCall& c);
  // The error for a diffusion-only construct (`what`) in a supervised spec.
  [[noreturn]] void no_diffusion(const Loc& loc, const std::string& what);

 private:
  const Program& prog_;
  Model& m_;
  std::map<std::string, const FuncDef*> defs_;
  std::set<std::string> sampler_names_;
  std::map<std::string, Value> globals_;
  std::map<std::string, int> param_index_;
  std::vector<Loc> param_locs_;
  const DataDecl* data_ = nullptr;
 public:
  const LabelDecl* label_ = nullptr;  // `label y: K`, if declared
 private:
  const FuncDef* sampler_ = nullptr;       // the sampler being lowered, if any
  const FuncDef* ode_ = nullptr;           // the ode being lowered, if any
  std::map<std::string, NodeId> flags_;    // its first/last-step flag inputs
  SamplerInfo sampler_info_;

  void collect();
  void assign_offsets();
  // Supervised specs (lower_supervised.cpp): checks, the loss, and the classify graph.
  void run_supervised(const FuncDef& loss);
  const FuncDef* classify_net(const FuncDef& loss);
  Graph lower_classify(const FuncDef& net);
  // Makes `g` (named `name`) the graph being built: a fresh builder, call and stream counters.
  void start_graph(Graph& g, const std::string& name);
  std::map<const FuncDef*, Loc> features_at_;  // per net: its features(...) call, in the entry being lowered
  bool capture_features_ = false;               // lowering the classify graph
  NodeId features_node_ = -1;
  Loc features_loc_;
  void lower_diffusion(const DiffusionDecl& d);
  Graph lower_entry(const FuncDef& f, const std::string& graph_name);
  Graph lower_eps(const FuncDef& net);
  // The spec's `ode` (lower_ode.cpp): its drift graph, checked, in Model::ode.
  void lower_odes();
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

}  // namespace ddpmc::lowering
