// The spec language's abstract syntax tree: the parser's output, lowering's input.
//
// Every node carries the Loc of its first token, so that any later error can point
// at the spec. Names are resolved and shapes inferred later, in lower.cpp; the AST
// itself is untyped.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "diag.h"

namespace ddpmc {

struct Expr;
using ExprP = std::unique_ptr<Expr>;

// One argument at a call site: positional (name empty) or keyword (`name = value`).
struct Arg {
  std::string name;
  Loc loc;  // of the name for keyword arguments, else of the value
  ExprP value;
};

enum class ExprKind {
  Number,  // 1000, 1e-4, 0.5; is_int is true when written without '.', 'e' or 'E'
  String,  // "text" (used by import and string-valued settings)
  Name,    // x, abar, eps
  List,    // [a, b, c]
  Unary,   // -a            (op = '-')
  Binary,  // a + b, a - b, a * b, a / b   (op is the character)
  Call,    // name(args...)  callee in `name`
  Index,   // base[index]   items = {base, index}
};

struct Expr {
  ExprKind kind;
  Loc loc;
  double number = 0;
  bool is_int = false;
  std::string name;          // Name, Call (callee), String (text)
  char op = 0;               // Unary, Binary
  std::vector<ExprP> items;  // List elements; Unary {a}; Binary {a, b}; Index {base, index}
  std::vector<Arg> args;     // Call
};

// A statement in a function body: `name = expr` or `return expr`.
struct Stmt {
  enum class Kind { Assign, Return } kind;
  Loc loc;
  std::string name;  // Assign target
  Loc name_loc;
  ExprP value;
};

// A type annotation on a net parameter or result: `[2]`, `[1, 28, 28]`, `step`, or
// `label` (a class index: the declared label, or a sampler's class argument).
struct TypeAnn {
  enum class Kind { Tensor, Step, Label, Time } kind = Kind::Tensor;
  Loc loc;
  std::vector<long long> dims;  // Tensor only; the batch axis is implicit and not written
};

struct ParamDecl {
  std::string name;
  Loc loc;
  std::optional<TypeAnn> type;  // required for `net`, optional elsewhere
  ExprP default_value;          // `fn f(x, n = 4)`; may be null
};

enum class DefKind { Fn, Net, Loss, Sampler, Ode };

// fn / net / loss / sampler / ode (`ode name(x, t)`: the probability-flow ODE's dx/dt). `loss { ... }` has an empty name and no params.
struct FuncDef {
  DefKind kind;
  std::string name;
  Loc loc;       // of the keyword
  Loc name_loc;  // of the name (== loc for loss)
  std::vector<ParamDecl> params;
  std::optional<TypeAnn> result;  // `-> [2]`
  // `net ... -> [2] predicts v`: what a net predicts ("eps", "x0", "v" or "eps_var";
  // "" when not declared) and where it says so.
  std::string predicts;
  Loc predicts_loc;
  // `sampler name(x, t, s) state(d: [2], t_prev: step) { ... }`: per-sample values
  // carried from one sampler step to the next (typed; zero before the first step).
  std::vector<ParamDecl> state;
  std::vector<Stmt> body;
  Loc end_loc;  // of the closing brace
};

// `key = expr` inside `diffusion { ... }`.
struct Setting {
  std::string key;
  Loc loc;
  ExprP value;
};

struct DiffusionDecl {
  Loc loc;
  std::vector<Setting> settings;
};

// `data x0: [2]`
struct DataDecl {
  std::string name;
  Loc loc;
  TypeAnn type;
};

// `label y: 10`: a class index in 0..classes-1 per training sample, read beside the data.
struct LabelDecl {
  std::string name;
  Loc loc;
  long long classes = 0;
  Loc classes_loc;
};

// `import std` or `import "path/to/file.ddpm"`
struct ImportDecl {
  std::string path;  // as written, without quotes
  Loc loc;
};

// One parsed file. Items keep their source order within each vector.
struct Module {
  const SourceFile* file = nullptr;
  std::vector<ImportDecl> imports;
  std::vector<DiffusionDecl> diffusions;  // more than one is a (lowering) error
  std::vector<DataDecl> datas;
  std::vector<LabelDecl> labels;
  std::vector<FuncDef> defs;
};

}  // namespace ddpmc
