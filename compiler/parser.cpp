// Parser: tokens → AST for one spec file (grammar and Loc conventions in parser.h).
//
// A recursive-descent parser with one token of lookahead (two where a statement or
// a keyword argument starts with `NAME =`). It stops at the first error and throws
// a UserError whose message names what was expected and what was found, and whose
// hint says how to fix it. Expression depth is bounded (kMaxExprDepth) so hostile
// input cannot overflow the stack here or in later passes.
#include "parser.h"

#include <fmt/format.h>

#include <set>
#include <string_view>

#include "lexer.h"

namespace ddpmc {
namespace {

const char* kStmtHint = "a statement is 'name = expression' or 'return expression'";
const char* kExprHint =
    "an expression is a number, a name, a call such as 'f(x)', a list such as '[a, b]', "
    "or these combined with + - * / and parentheses";
const char* kTypeHint =
    "a type is a per-sample shape such as '[2]' or '[1, 28, 28]' (the batch axis is implicit), "
    "'step' for a diffusion step, 'time' for a continuous time, or 'label' for a class index";

bool is_item_keyword(std::string_view s) {
  return s == "import" || s == "diffusion" || s == "data" || s == "label" || s == "fn" || s == "net" ||
         s == "loss" || s == "sampler" || s == "ode";
}

std::string where(const Loc& l) { return fmt::format("line {}, column {}", l.line, l.col); }

class Parser {
 public:
  explicit Parser(const SourceFile* f) : f_(f), toks_(lex(f)) {}

  Module run() {
    Module m;
    m.file = f_;
    while (!at(Tok::Eof)) item(m);
    return m;
  }

 private:
  const SourceFile* f_;
  std::vector<Token> toks_;
  size_t i_ = 0;
  int depth_ = 0;

  // ---- token access ----
  const Token& cur() const { return toks_[i_]; }
  const Token& peek(size_t n) const { return toks_[std::min(i_ + n, toks_.size() - 1)]; }
  const Token& prev() const { return toks_[i_ == 0 ? 0 : i_ - 1]; }
  bool at(Tok k) const { return cur().kind == k; }
  bool at_name(std::string_view s) const { return cur().kind == Tok::Name && cur().text == s; }
  const Token& advance() {
    const Token& t = toks_[i_];
    if (t.kind != Tok::Eof) ++i_;
    return t;
  }

  // Where to point when the current token is not what was expected: at the token if
  // it is on the same line as the previous one, else just after the previous token.
  Loc missing_loc() const {
    if (i_ > 0 && cur().loc.line != prev().end.line) return prev().end;
    return cur().loc;
  }

  [[noreturn]] void fail_expected(const std::string& expected, const std::string& hint) {
    user_error(missing_loc(), fmt::format("expected {}, found {}", expected, describe(cur())), hint);
  }

  [[noreturn]] void unterminated(const Token& brace, const std::string& what) {
    std::string hint;
    if (at(Tok::Eof))
      hint = fmt::format("add '}}' at the end of {}", what);
    else
      hint = fmt::format("add '}}' to close {} before '{}' on line {}", what, cur().text, cur().loc.line);
    user_error(brace.loc, "unterminated block: this '{' is never closed", hint);
  }

  // Each nesting level and each operator of a chain (a + b + c nests to the
  // left) counts; `in_chain` says which one went over the limit, for the message.
  void enter(const Loc& loc, bool in_chain = false) {
    if (++depth_ <= kMaxExprDepth) return;
    if (in_chain)
      user_error(loc, fmt::format("expression is too long: more than {} operators and nesting levels in one "
                                  "expression", kMaxExprDepth),
                 "split the chain into several assignments, such as 'a = x1 + ... + x100' followed by "
                 "'b = a + x101 + ...'");
    user_error(loc, fmt::format("expression is too deep: more than {} nested levels", kMaxExprDepth),
               "split it into several assignments, such as 'a = ...' followed by 'b = f(a)'");
  }
  void leave(int n = 1) { depth_ -= n; }

  // ---- items ----
  void item(Module& m) {
    const Token& t = cur();
    if (t.kind == Tok::Name) {
      if (t.text == "import") return import_decl(m);
      if (t.text == "diffusion") return diffusion_decl(m);
      if (t.text == "data") return data_decl(m);
      if (t.text == "label") return label_decl(m);
      if (t.text == "fn") return func_def(m, DefKind::Fn);
      if (t.text == "net") return func_def(m, DefKind::Net);
      if (t.text == "loss") return func_def(m, DefKind::Loss);
      if (t.text == "sampler") return func_def(m, DefKind::Sampler);
      if (t.text == "ode") return func_def(m, DefKind::Ode);
      if (t.text == "return")
        user_error(t.loc, "'return' outside a block",
                   "put 'return ...' inside the body of a 'fn', 'net', 'loss' or 'sampler'");
      if (peek(1).kind == Tok::Equals)
        user_error(t.loc, fmt::format("assignment to '{}' outside a block", t.text),
                   "statements go inside the body of a 'fn', 'net', 'loss' or 'sampler'; settings such as "
                   "'steps = 1000' go inside 'diffusion { ... }'");
    }
    if (t.kind == Tok::RBrace)
      user_error(t.loc, "unexpected '}' at top level", "remove it; it does not close any open block");
    user_error(t.loc,
               fmt::format("expected 'import', 'diffusion', 'data', 'label', 'fn', 'net', 'loss', 'sampler' or 'ode', found {}",
                           describe(t)),
               "each top-level item starts with one of these keywords");
  }

  void import_decl(Module& m) {
    ImportDecl d;
    d.loc = advance().loc;
    if (at(Tok::Name)) {
      d.path = std::string(advance().text);
    } else if (at(Tok::String)) {
      const Token& s = advance();
      d.path = string_value(s);
      if (d.path.empty())
        user_error(s.loc, "empty import path", "write the file to import, as in 'import \"layers.ddpm\"'");
    } else {
      fail_expected("a module name or a quoted path after 'import'",
                    "write 'import std' or 'import \"path/to/file.ddpm\"'");
    }
    m.imports.push_back(std::move(d));
  }

  void diffusion_decl(Module& m) {
    DiffusionDecl d;
    d.loc = advance().loc;
    if (!at(Tok::LBrace))
      fail_expected("'{' after 'diffusion'", "write the settings in braces, as in 'diffusion { steps = 1000 }'");
    const Token& brace = advance();
    const std::string what = "the 'diffusion' block";
    for (;;) {
      if (at(Tok::RBrace)) break;
      if (at(Tok::Eof)) unterminated(brace, what);
      if (!at(Tok::Name))
        fail_expected("a setting name or '}' in the 'diffusion' block",
                      "settings are written 'name = value', as in 'steps = 1000'");
      if (peek(1).kind != Tok::Equals) {
        if (is_item_keyword(cur().text)) unterminated(brace, what);
        const Token& key = advance();
        fail_expected(fmt::format("'=' after the setting '{}'", key.text),
                      fmt::format("settings are written 'name = value', as in '{} = 1000'", key.text));
      }
      Setting s;
      s.key = cur().text;
      s.loc = advance().loc;
      advance();  // '='
      s.value = expr();
      d.settings.push_back(std::move(s));
      if (at(Tok::Semicolon)) advance();
    }
    advance();  // '}'
    m.diffusions.push_back(std::move(d));
  }

  void data_decl(Module& m) {
    DataDecl d;
    d.loc = advance().loc;
    if (!at(Tok::Name)) fail_expected("a name after 'data'", "declare the data as 'data x0: [2]'");
    d.name = advance().text;
    if (!at(Tok::Colon))
      fail_expected(fmt::format("':' after 'data {}'", d.name),
                    fmt::format("give the shape of one sample, as in 'data {}: [2]'", d.name));
    advance();
    d.type = type_ann();
    m.datas.push_back(std::move(d));
  }

  void label_decl(Module& m) {
    LabelDecl d;
    d.loc = advance().loc;
    if (!at(Tok::Name)) fail_expected("a name after 'label'", "declare a class label as 'label y: 10' (ten classes)");
    d.name = advance().text;
    if (!at(Tok::Colon))
      fail_expected(fmt::format("':' after 'label {}'", d.name),
                    fmt::format("give the number of classes, as in 'label {}: 10'", d.name));
    advance();
    d.classes_loc = cur().loc;
    if (!at(Tok::Int) || cur().number < 1 || cur().number > 1000000)
      fail_expected("a number of classes (1 to 1000000)", fmt::format("write e.g. 'label {}: 10'", d.name));
    d.classes = (long long)advance().number;
    m.labels.push_back(std::move(d));
  }

  TypeAnn type_ann() {
    TypeAnn t;
    t.loc = cur().loc;
    if (at_name("step")) {
      advance();
      t.kind = TypeAnn::Kind::Step;
      return t;
    }
    if (at_name("label")) {
      advance();
      t.kind = TypeAnn::Kind::Label;
      return t;
    }
    if (at_name("time")) {
      advance();
      t.kind = TypeAnn::Kind::Time;
      return t;
    }
    if (!at(Tok::LBracket)) fail_expected("a type", kTypeHint);
    advance();
    t.kind = TypeAnn::Kind::Tensor;
    if (at(Tok::RBracket))
      user_error(cur().loc, "a shape needs at least one dimension", "write '[1]' for a single value per sample");
    for (;;) {
      const Token& d = cur();
      if (d.kind != Tok::Int || d.number < 1)
        user_error(missing_loc(),
                   fmt::format("shape dimensions must be positive integers, found {}", describe(d)),
                   "write each dimension as a whole number of at least 1, as in '[1, 28, 28]'; "
                   "the batch axis is implicit and not written");
      if (d.number > 2147483647.0)
        user_error(d.loc, fmt::format("dimension {} is too large", d.text),
                   "each dimension must be at most 2147483647");
      t.dims.push_back((long long)d.number);
      advance();
      if (at(Tok::Comma)) {
        advance();
        continue;
      }
      if (at(Tok::RBracket)) break;
      fail_expected("',' or ']' in the shape", "separate dimensions with ',' and close the shape with ']'");
    }
    advance();  // ']'
    return t;
  }

  void func_def(Module& m, DefKind kind) {
    FuncDef d;
    d.kind = kind;
    const Token& kw = advance();
    d.loc = kw.loc;
    d.name_loc = kw.loc;
    std::string what;
    if (kind == DefKind::Loss) {
      what = "the 'loss' block";
      if (at(Tok::Name) && peek(1).kind == Tok::LBrace)
        user_error(cur().loc, "'loss' takes no name", "write 'loss { ... }'");
    } else {
      std::string form = kind == DefKind::Net       ? "net name(x: [2], t: step) -> [2] { ... }"
                         : kind == DefKind::Sampler ? "sampler name(x, t, s) { ... }"
                         : kind == DefKind::Ode     ? "ode name(x, t) { ... }"
                                                    : "fn name(x) { ... }";
      if (!at(Tok::Name)) fail_expected(fmt::format("a name after '{}'", kw.text), fmt::format("write '{}'", form));
      d.name = cur().text;
      d.name_loc = advance().loc;
      what = fmt::format("the body of '{} {}'", kw.text, d.name);
      if (!at(Tok::LParen))
        fail_expected(fmt::format("'(' after '{} {}'", kw.text, d.name),
                      fmt::format("write the parameter list, even if it is empty: '{} {}() {{ ... }}'", kw.text,
                                  d.name));
      params(d, std::string(kw.text), d.params);
      if (kind != DefKind::Sampler && kind != DefKind::Ode && at(Tok::Arrow)) {
        advance();
        d.result = type_ann();
        if (kind == DefKind::Net && at(Tok::Name) && cur().text == "predicts") {
          advance();
          if (!at(Tok::Name) ||
              (cur().text != "eps" && cur().text != "x0" && cur().text != "v" && cur().text != "eps_var"))
            fail_expected("'eps', 'x0', 'v' or 'eps_var' after 'predicts'",
                          "a net predicts the noise (eps), the clean data (x0), v = sqrt(abar) eps - sqrt(1 - abar) x0, "
                          "or eps and a variance interpolation (eps_var: twice the data's first axis)");
          d.predicts = cur().text;
          d.predicts_loc = advance().loc;
        }
      }
      if (kind == DefKind::Sampler && at(Tok::Name) && cur().text == "state" && peek(1).kind == Tok::LParen) {
        advance();
        params(d, "sampler state of", d.state);
      }
    }
    if (!at(Tok::LBrace)) {
      std::string hint = fmt::format("the body is '{{ ... }}' holding statements and a 'return'");
      if (kind != DefKind::Loss && kind != DefKind::Sampler && kind != DefKind::Ode && at(Tok::LBracket))
        hint = "write '->' before the result type, as in '-> [2]'";
      fail_expected(fmt::format("'{{' to start {}", what), hint);
    }
    const Token& brace = advance();
    for (;;) {
      if (at(Tok::RBrace)) break;
      d.body.push_back(stmt(brace, what));
    }
    d.end_loc = advance().loc;
    m.defs.push_back(std::move(d));
  }

  void params(FuncDef& d, const std::string& kw, std::vector<ParamDecl>& into) {
    advance();  // '('
    if (at(Tok::RParen)) {
      advance();
      return;
    }
    for (;;) {
      if (!at(Tok::Name))
        fail_expected("a parameter name", "parameters are written 'name', 'name: type' or 'name = default'");
      ParamDecl p;
      p.name = cur().text;
      p.loc = advance().loc;
      for (const auto* list : {&d.params, &d.state})
        for (const ParamDecl& q : *list)
          if (q.name == p.name)
            user_error(p.loc, fmt::format("duplicate parameter '{}' in '{} {}'", p.name, kw, d.name),
                       fmt::format("'{}' is already a parameter at {}; give each parameter its own name", p.name,
                                   where(q.loc)));
      if (at(Tok::Colon)) {
        advance();
        p.type = type_ann();
      }
      if (at(Tok::Equals)) {
        advance();
        p.default_value = expr();
      }
      into.push_back(std::move(p));
      if (at(Tok::Comma)) {
        advance();
        continue;
      }
      if (at(Tok::RParen)) break;
      fail_expected(fmt::format("',' or ')' after the parameter '{}'", into.back().name),
                    "separate parameters with ',' and close the list with ')'");
    }
    advance();  // ')'
  }

  Stmt stmt(const Token& brace, const std::string& what) {
    if (at(Tok::Eof)) unterminated(brace, what);
    Stmt s;
    s.loc = cur().loc;
    s.name_loc = cur().loc;
    if (!at(Tok::Name)) {
      std::string hint = kStmtHint;
      if (at(Tok::RParen) || at(Tok::RBracket)) hint = "remove it; it does not close anything";
      fail_expected("a statement", hint);
    }
    if (cur().text == "return") {
      advance();
      s.kind = Stmt::Kind::Return;
      s.value = expr();
    } else if (peek(1).kind == Tok::Equals) {
      s.kind = Stmt::Kind::Assign;
      s.name = advance().text;
      advance();  // '='
      s.value = expr();
    } else {
      if (is_item_keyword(cur().text)) unterminated(brace, what);
      const Token& name = advance();
      fail_expected(fmt::format("'=' after '{}'", name.text), kStmtHint);
    }
    if (at(Tok::Semicolon)) advance();
    return s;
  }

  // ---- expressions ----
  static ExprP node(ExprKind k, const Loc& loc) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->loc = loc;
    return e;
  }

  ExprP expr() {
    enter(cur().loc);
    ExprP lhs = term();
    int chain = 0;
    while (at(Tok::Plus) || at(Tok::Minus)) {
      const Token& op = advance();
      enter(op.loc, true);
      ++chain;
      ExprP rhs = term();
      ExprP b = node(ExprKind::Binary, op.loc);
      b->op = op.text[0];
      b->items.push_back(std::move(lhs));
      b->items.push_back(std::move(rhs));
      lhs = std::move(b);
    }
    leave(chain + 1);
    return lhs;
  }

  ExprP term() {
    ExprP lhs = unary();
    int chain = 0;
    while (at(Tok::Star) || at(Tok::Slash)) {
      const Token& op = advance();
      enter(op.loc, true);
      ++chain;
      ExprP rhs = unary();
      ExprP b = node(ExprKind::Binary, op.loc);
      b->op = op.text[0];
      b->items.push_back(std::move(lhs));
      b->items.push_back(std::move(rhs));
      lhs = std::move(b);
    }
    leave(chain);
    return lhs;
  }

  ExprP unary() {
    if (!at(Tok::Minus)) return postfix();
    const Token& op = advance();
    enter(op.loc);
    ExprP e = node(ExprKind::Unary, op.loc);
    e->op = '-';
    e->items.push_back(unary());
    leave();
    return e;
  }

  ExprP postfix() {
    bool callable = at(Tok::Name);
    ExprP e = primary();
    for (;;) {
      if (at(Tok::LBracket)) {
        const Token& lb = advance();
        ExprP idx = expr();
        if (!at(Tok::RBracket)) {
          std::string target = e->kind == ExprKind::Name ? fmt::format("the index into '{}'", e->name) : "the index";
          fail_expected(fmt::format("']' to close {}", target),
                        fmt::format("add ']' after the index; the '[' is at {}", where(lb.loc)));
        }
        advance();
        ExprP ix = node(ExprKind::Index, e->loc);
        ix->items.push_back(std::move(e));
        ix->items.push_back(std::move(idx));
        e = std::move(ix);
        callable = false;
      } else if (at(Tok::LParen)) {
        if (!callable)
          user_error(cur().loc, "cannot call this expression: only a name can be called",
                     "write the function's name directly before '(', as in 'f(x)'; to multiply, write '*'");
        e->kind = ExprKind::Call;
        call_args(*e);
        callable = false;
      } else {
        return e;
      }
    }
  }

  void call_args(Expr& call) {
    advance();  // '('
    if (at(Tok::RParen)) {
      advance();
      return;
    }
    int first_kw = -1;  // index of the first keyword argument
    for (;;) {
      Arg a;
      if (at(Tok::Name) && peek(1).kind == Tok::Equals) {
        a.name = cur().text;
        a.loc = advance().loc;
        for (const Arg& b : call.args)
          if (b.name == a.name)
            user_error(a.loc, fmt::format("duplicate keyword argument '{}' in the call to '{}'", a.name, call.name),
                       fmt::format("'{}' is already given at {}; remove one of them", a.name, where(b.loc)));
        advance();  // '='
        a.value = expr();
      } else {
        if (first_kw >= 0)
          user_error(cur().loc, fmt::format("positional argument after keyword argument '{}' in the call to '{}'",
                                            call.args[first_kw].name, call.name),
                     "put positional arguments before keyword arguments, or name this one as 'name = value'");
        a.loc = cur().loc;
        a.value = expr();
      }
      call.args.push_back(std::move(a));
      if (!call.args.back().name.empty() && first_kw < 0) first_kw = (int)call.args.size() - 1;
      if (at(Tok::Comma)) {
        advance();
        continue;
      }
      if (at(Tok::RParen)) break;
      fail_expected(fmt::format("')' to close the call to '{}'", call.name),
                    "add ')' after the last argument, or ',' between two arguments");
    }
    advance();  // ')'
  }

  ExprP primary() {
    const Token& t = cur();
    switch (t.kind) {
      case Tok::Int:
      case Tok::Float: {
        advance();
        ExprP e = node(ExprKind::Number, t.loc);
        e->number = t.number;
        e->is_int = t.kind == Tok::Int;
        return e;
      }
      case Tok::String: {
        advance();
        ExprP e = node(ExprKind::String, t.loc);
        e->name = string_value(t);
        return e;
      }
      case Tok::Name:
        if (t.text == "return") break;
        {
          advance();
          ExprP e = node(ExprKind::Name, t.loc);
          e->name = t.text;
          return e;
        }
      case Tok::LParen: {
        const Token& lp = advance();
        ExprP e = expr();
        if (!at(Tok::RParen))
          fail_expected("')' to close the parenthesis",
                        fmt::format("add ')' after the expression; the '(' is at {}", where(lp.loc)));
        advance();
        return e;
      }
      case Tok::LBracket: {
        const Token& lb = advance();
        ExprP e = node(ExprKind::List, lb.loc);
        if (at(Tok::RBracket)) {
          advance();
          return e;
        }
        for (;;) {
          e->items.push_back(expr());
          if (at(Tok::Comma)) {
            advance();
            continue;
          }
          if (at(Tok::RBracket)) break;
          fail_expected("']' to close the list",
                        fmt::format("add ']' after the last element, or ',' between two elements; the list "
                                    "starts at {}",
                                    where(lb.loc)));
        }
        advance();
        return e;
      }
      default: break;
    }
    std::string hint = kExprHint;
    if ((t.kind == Tok::RParen || t.kind == Tok::RBracket) && i_ > 0 && prev().kind == Tok::Comma)
      hint = fmt::format("remove the ',' before {}", describe(t));
    else if (t.kind == Tok::Eof)
      hint = "the file ends in the middle of an expression; complete it (and close any open brackets)";
    if (i_ == 0) fail_expected("an expression", hint);
    fail_expected(fmt::format("an expression after '{}'", prev().text), hint);
  }
};

}  // namespace

Module parse_module(const SourceFile* f) { return Parser(f).run(); }

}  // namespace ddpmc
