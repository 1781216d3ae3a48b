// Parser tests: the lexer, the parser's AST and Locs, and import loading.
//
// The main check parses the example spec from DESIGN.md and walks the resulting AST
// structurally. Smaller cases pin down tokens, keyword arguments, statement
// boundaries without newlines, error messages for syntax the parser must reject,
// the depth limit on hostile nesting, and the dependency order of imports.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/diag.h"
#include "compiler/frontend.h"
#include "compiler/lexer.h"
#include "compiler/parser.h"

using namespace ddpmc;
namespace fs = std::filesystem;

namespace {

// The example from DESIGN.md, "The spec language (sketch)", verbatim.
const char* kDesignExample = R"(# two moons, 2-D points
diffusion { steps = 1000  schedule = linear(beta_min = 1e-4, beta_max = 0.02) }

data x0: [2]                         # one sample; the batch axis is implicit

net eps_theta(x: [2], t: step) -> [2] {
  h = concat(x, sinusoidal(t, 64))
  h = silu(linear(h, 128))           # linear() owns a weight and a bias
  h = silu(linear(h, 128))
  return linear(h, 2)
}

loss {
  t   = uniform_step()               # one t per sample
  eps = randn()                      # shaped like x0
  xt  = sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps
  return mean(square(eps - eps_theta(xt, t)))
}

sampler ddpm(x, t, s) {              # one reverse step, t → s = t-1
  eps = eps_theta(x, t)
  return (x - beta[t] / sqrt(1 - abar[t]) * eps) / sqrt(alpha[t])
         + sqrt(beta_tilde[t]) * randn()
}

sampler ddim(x, t, s) {              # deterministic DDIM, any s < t
  eps = eps_theta(x, t)
  x0  = (x - sqrt(1 - abar[t]) * eps) / sqrt(abar[t])
  return sqrt(abar[s]) * x0 + sqrt(1 - abar[s]) * eps
}
)";

Module parse(Sources& src, const std::string& text) { return parse_module(src.add("t.ddpm", text)); }

// The first line of the UserError that parsing `text` raises, or "" if it parses.
std::string parse_error(const std::string& text) {
  Sources src;
  try {
    parse(src, text);
  } catch (const UserError& e) {
    std::string s = e.what();
    return s.substr(0, s.find('\n'));
  }
  return "";
}

std::string full_error(const std::string& text) {
  Sources src;
  try {
    parse(src, text);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

void check_loc(const Loc& l, int line, int col) {
  CHECK(l.file != nullptr);
  CHECK(l.line == line);
  CHECK(l.col == col);
}

}  // namespace

TEST_CASE("parser: lexer tokens, numbers and comments") {
  Sources src;
  auto toks = lex(src.add("t.ddpm", "x = 1000 1e-4 0.02 2.5e3 .5 \"std\" -> # comment ( ignored\n;"));
  REQUIRE(toks.size() == 11);
  CHECK(toks[0].kind == Tok::Name);
  CHECK(toks[1].kind == Tok::Equals);
  CHECK(toks[2].kind == Tok::Int);
  CHECK(toks[2].number == 1000);
  CHECK(toks[3].kind == Tok::Float);
  CHECK(toks[3].number == doctest::Approx(1e-4));
  CHECK(toks[4].number == doctest::Approx(0.02));
  CHECK(toks[5].number == 2500);
  CHECK(toks[6].kind == Tok::Float);
  CHECK(toks[6].number == 0.5);
  CHECK(toks[7].kind == Tok::String);
  CHECK(string_value(toks[7]) == "std");
  CHECK(toks[8].kind == Tok::Arrow);
  CHECK(toks[9].kind == Tok::Semicolon);
  check_loc(toks[9].loc, 2, 1);
  CHECK(lex(src.add("e.ddpm", "  # only a comment\n\n")).back().kind == Tok::Eof);
  // A byte order mark, CRLF line ends and tabs are fine; columns count bytes.
  auto crlf = lex(src.add("w.ddpm", "\xEF\xBB\xBF" "data x0:\r\n\t[2]\r\n"));
  REQUIRE(crlf.size() == 7);
  check_loc(crlf[0].loc, 1, 4);
  check_loc(crlf[3].loc, 2, 2);

  CHECK(parse_error("data x0: [1e]") == "t.ddpm:1:11: error: malformed number '1e'");
  CHECK(parse_error("fn f() { return 1.2.3 }") == "t.ddpm:1:17: error: malformed number '1.2.3'");
  CHECK(parse_error("fn f() { return 12abc }") == "t.ddpm:1:17: error: malformed number '12abc'");
  CHECK(parse_error("fn f() { return 1e999 }") == "t.ddpm:1:17: error: number '1e999' is out of range");
  CHECK(parse_error("fn f() {\n  return x @ y\n}") == "t.ddpm:2:12: error: unexpected character '@'");
  CHECK(parse_error("import \"abc\ndata x0: [2]") ==
        "t.ddpm:1:8: error: unterminated string: this '\"' is never closed");
  CHECK(parse_error("fn f() { return a \xe2\x88\x92 b }") == "t.ddpm:1:19: error: unexpected character '\xe2\x88\x92'");
  CHECK(parse_error("fn f() { return a \x01 }") == "t.ddpm:1:19: error: unexpected control character 0x01");
}

TEST_CASE("parser: the DESIGN.md example parses to the expected AST") {
  Sources src;
  Module m = parse(src, kDesignExample);
  CHECK(m.file != nullptr);
  CHECK(m.imports.empty());

  REQUIRE(m.diffusions.size() == 1);
  const DiffusionDecl& d = m.diffusions[0];
  check_loc(d.loc, 2, 1);
  REQUIRE(d.settings.size() == 2);
  CHECK(d.settings[0].key == "steps");
  check_loc(d.settings[0].loc, 2, 13);
  CHECK(d.settings[0].value->kind == ExprKind::Number);
  CHECK(d.settings[0].value->is_int);
  CHECK(d.settings[0].value->number == 1000);
  CHECK(d.settings[1].key == "schedule");
  const Expr& sched = *d.settings[1].value;
  REQUIRE(sched.kind == ExprKind::Call);
  CHECK(sched.name == "linear");
  check_loc(sched.loc, 2, 38);
  REQUIRE(sched.args.size() == 2);
  CHECK(sched.args[0].name == "beta_min");
  check_loc(sched.args[0].loc, 2, 45);
  CHECK(sched.args[0].value->kind == ExprKind::Number);
  CHECK_FALSE(sched.args[0].value->is_int);
  CHECK(sched.args[0].value->number == doctest::Approx(1e-4));
  CHECK(sched.args[1].name == "beta_max");
  CHECK(sched.args[1].value->number == doctest::Approx(0.02));

  REQUIRE(m.datas.size() == 1);
  CHECK(m.datas[0].name == "x0");
  check_loc(m.datas[0].loc, 4, 1);
  CHECK(m.datas[0].type.kind == TypeAnn::Kind::Tensor);
  CHECK(m.datas[0].type.dims == std::vector<long long>{2});
  check_loc(m.datas[0].type.loc, 4, 10);

  REQUIRE(m.defs.size() == 4);
  const FuncDef& net = m.defs[0];
  CHECK(net.kind == DefKind::Net);
  CHECK(net.name == "eps_theta");
  check_loc(net.loc, 6, 1);
  check_loc(net.name_loc, 6, 5);
  check_loc(net.end_loc, 11, 1);
  REQUIRE(net.params.size() == 2);
  CHECK(net.params[0].name == "x");
  REQUIRE(net.params[0].type);
  CHECK(net.params[0].type->dims == std::vector<long long>{2});
  CHECK(net.params[1].name == "t");
  check_loc(net.params[1].loc, 6, 23);
  REQUIRE(net.params[1].type);
  CHECK(net.params[1].type->kind == TypeAnn::Kind::Step);
  CHECK(net.params[1].default_value == nullptr);
  REQUIRE(net.result);
  CHECK(net.result->dims == std::vector<long long>{2});
  REQUIRE(net.body.size() == 4);
  CHECK(net.body[0].kind == Stmt::Kind::Assign);
  CHECK(net.body[0].name == "h");
  check_loc(net.body[0].name_loc, 7, 3);
  CHECK(net.body[3].kind == Stmt::Kind::Return);
  check_loc(net.body[3].loc, 10, 3);
  // h = silu(linear(h, 128))  — the comment after it is ignored.
  const Expr& silu = *net.body[1].value;
  REQUIRE(silu.kind == ExprKind::Call);
  CHECK(silu.name == "silu");
  REQUIRE(silu.args.size() == 1);
  CHECK(silu.args[0].name.empty());
  CHECK(silu.args[0].value->kind == ExprKind::Call);
  CHECK(silu.args[0].value->name == "linear");
  CHECK(silu.args[0].value->args.size() == 2);

  const FuncDef& loss = m.defs[1];
  CHECK(loss.kind == DefKind::Loss);
  CHECK(loss.name.empty());
  CHECK(loss.params.empty());
  check_loc(loss.loc, 13, 1);
  check_loc(loss.name_loc, 13, 1);
  check_loc(loss.end_loc, 18, 1);
  REQUIRE(loss.body.size() == 4);
  CHECK(loss.body[0].name == "t");
  CHECK(loss.body[1].name == "eps");
  // xt  = sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps
  const Expr& xt = *loss.body[2].value;
  REQUIRE(xt.kind == ExprKind::Binary);
  CHECK(xt.op == '+');
  check_loc(xt.loc, 16, 28);  // the operator
  const Expr& lhs = *xt.items[0];
  REQUIRE(lhs.kind == ExprKind::Binary);
  CHECK(lhs.op == '*');
  const Expr& sqrt_abar = *lhs.items[0];
  REQUIRE(sqrt_abar.kind == ExprKind::Call);
  const Expr& index = *sqrt_abar.args[0].value;
  REQUIRE(index.kind == ExprKind::Index);
  REQUIRE(index.items.size() == 2);
  CHECK(index.items[0]->name == "abar");
  CHECK(index.items[1]->name == "t");
  check_loc(index.loc, 16, 14);

  const FuncDef& ddpm = m.defs[2];
  CHECK(ddpm.kind == DefKind::Sampler);
  CHECK(ddpm.name == "ddpm");
  REQUIRE(ddpm.params.size() == 3);
  CHECK(ddpm.params[2].name == "s");
  CHECK_FALSE(ddpm.params[0].type);
  CHECK_FALSE(ddpm.result);
  REQUIRE(ddpm.body.size() == 2);
  // The return expression continues on the next line with '+'.
  const Stmt& ret = ddpm.body[1];
  CHECK(ret.kind == Stmt::Kind::Return);
  const Expr& sum = *ret.value;
  REQUIRE(sum.kind == ExprKind::Binary);
  CHECK(sum.op == '+');
  check_loc(sum.loc, 23, 10);
  const Expr& quotient = *sum.items[0];
  REQUIRE(quotient.kind == ExprKind::Binary);
  CHECK(quotient.op == '/');
  const Expr& product = *sum.items[1];
  REQUIRE(product.kind == ExprKind::Binary);
  CHECK(product.op == '*');
  CHECK(product.items[0]->kind == ExprKind::Call);
  CHECK(product.items[0]->name == "sqrt");
  CHECK(product.items[1]->kind == ExprKind::Call);
  CHECK(product.items[1]->name == "randn");
  CHECK(product.items[1]->args.empty());
  check_loc(ddpm.end_loc, 24, 1);

  const FuncDef& ddim = m.defs[3];
  CHECK(ddim.name == "ddim");
  REQUIRE(ddim.body.size() == 3);
  CHECK(ddim.body[1].name == "x0");
  CHECK(ddim.body[2].kind == Stmt::Kind::Return);
  check_loc(ddim.end_loc, 30, 1);
}

TEST_CASE("parser: statements, unary minus, lists, strings and semicolons") {
  Sources src;
  Module m = parse(src,
                   "import std\nimport \"layers/unet\"\n"
                   "fn f(a, n: [3] = 4) -> [3] { y = -a * -2; z = [1, 2.5, y]; w = g(\"s\", k = n)[0] return y - z }");
  REQUIRE(m.imports.size() == 2);
  CHECK(m.imports[0].path == "std");
  CHECK(m.imports[1].path == "layers/unet");
  check_loc(m.imports[1].loc, 2, 1);
  REQUIRE(m.defs.size() == 1);
  const FuncDef& f = m.defs[0];
  CHECK(f.kind == DefKind::Fn);
  REQUIRE(f.params.size() == 2);
  REQUIRE(f.params[1].default_value);
  CHECK(f.params[1].default_value->number == 4);
  REQUIRE(f.body.size() == 4);
  const Expr& y = *f.body[0].value;
  REQUIRE(y.kind == ExprKind::Binary);
  CHECK(y.op == '*');
  CHECK(y.items[0]->kind == ExprKind::Unary);
  CHECK(y.items[1]->kind == ExprKind::Unary);
  CHECK(y.items[1]->items[0]->number == 2);
  const Expr& z = *f.body[1].value;
  REQUIRE(z.kind == ExprKind::List);
  CHECK(z.items.size() == 3);
  const Expr& w = *f.body[2].value;
  REQUIRE(w.kind == ExprKind::Index);
  REQUIRE(w.items[0]->kind == ExprKind::Call);
  CHECK(w.items[0]->args[0].value->kind == ExprKind::String);
  CHECK(w.items[0]->args[0].value->name == "s");
  CHECK(w.items[0]->args[1].name == "k");
  CHECK(f.body[3].kind == Stmt::Kind::Return);
  CHECK(f.body[3].value->op == '-');

  // Precedence and left associativity: a - b - c * d = (a - b) - (c * d).
  Module p = parse(src, "fn g() { return a - b - c * d }");
  const Expr& e = *p.defs[0].body[0].value;
  CHECK(e.op == '-');
  CHECK(e.items[0]->op == '-');
  CHECK(e.items[1]->op == '*');
}

TEST_CASE("parser: syntax errors have precise messages") {
  CHECK(parse_error("diffusion { schedule = linear(beta_min = 1, beta_min = 2) }") ==
        "t.ddpm:1:45: error: duplicate keyword argument 'beta_min' in the call to 'linear'");
  CHECK(parse_error("fn f() { return g(a = 1, 2) }") ==
        "t.ddpm:1:26: error: positional argument after keyword argument 'a' in the call to 'g'");
  CHECK(parse_error("data x0: [2, 0]") ==
        "t.ddpm:1:14: error: shape dimensions must be positive integers, found number '0'");
  CHECK(parse_error("data x0: [2.5]") ==
        "t.ddpm:1:11: error: shape dimensions must be positive integers, found number '2.5'");
  CHECK(parse_error("data x0: [-1]") == "t.ddpm:1:11: error: shape dimensions must be positive integers, found '-'");
  CHECK(parse_error("data x0: [99999999999]") == "t.ddpm:1:11: error: dimension 99999999999 is too large");
  CHECK(parse_error("fn f(a, b) { return (a)(b) }") ==
        "t.ddpm:1:24: error: cannot call this expression: only a name can be called");
  CHECK(parse_error("fn f(a, b) { return g(a)(b) }") ==
        "t.ddpm:1:25: error: cannot call this expression: only a name can be called");
  CHECK(parse_error("fn f(a) { return 2(a) }") ==
        "t.ddpm:1:19: error: cannot call this expression: only a name can be called");
  CHECK(parse_error("return 1") == "t.ddpm:1:1: error: 'return' outside a block");
  CHECK(parse_error("x = 1") == "t.ddpm:1:1: error: assignment to 'x' outside a block");
  CHECK(parse_error("fn f(a) {\n  return a\n") == "t.ddpm:1:9: error: unterminated block: this '{' is never closed");
  CHECK(parse_error("diffusion { steps = 10\n") ==
        "t.ddpm:1:11: error: unterminated block: this '{' is never closed");
  CHECK(parse_error("fn f(a) {\n  return g(a\n}") ==
        "t.ddpm:2:13: error: expected ')' to close the call to 'g', found '}'");
  CHECK(parse_error("fn f(a) {\n  return g(a b)\n}") ==
        "t.ddpm:2:14: error: expected ')' to close the call to 'g', found 'b'");
  CHECK(parse_error("fn f(a) { return a + }") == "t.ddpm:1:22: error: expected an expression after '+', found '}'");
  CHECK(parse_error("fn f(a) { return g(a,) }") ==
        "t.ddpm:1:22: error: expected an expression after ',', found ')'");
  CHECK(parse_error("fn f(a) { return a +") ==
        "t.ddpm:1:21: error: expected an expression after '+', found end of file");
  CHECK(parse_error("fn f(a, a) { return a }") == "t.ddpm:1:9: error: duplicate parameter 'a' in 'fn f'");
  CHECK(parse_error("fn f(a) { g(a) }") == "t.ddpm:1:12: error: expected '=' after 'g', found '('");
  CHECK(parse_error("nett f(a) { return a }") ==
        "t.ddpm:1:1: error: expected 'import', 'diffusion', 'data', 'label', 'fn', 'net', 'loss', 'sampler' or 'ode', found 'nett'");
  CHECK(parse_error("net f(x: [2]) [2] { return x }") ==
        "t.ddpm:1:15: error: expected '{' to start the body of 'net f', found '['");
  CHECK(parse_error("loss main { return 0 }") == "t.ddpm:1:6: error: 'loss' takes no name");
  CHECK(parse_error("import 3") ==
        "t.ddpm:1:8: error: expected a module name or a quoted path after 'import', found number '3'");
  CHECK(parse_error("fn f() { return 1 } }") == "t.ddpm:1:21: error: unexpected '}' at top level");

  // The message is complete: source line, caret, hint.
  std::string full = full_error("fn f(a) {\n  return g(a\n}");
  CHECK(full ==
        "t.ddpm:2:13: error: expected ')' to close the call to 'g', found '}'\n"
        "    return g(a\n"
        "              ^\n"
        "hint: add ')' after the last argument, or ',' between two arguments\n");
  // A block cut off by the next item is reported at its '{' and names that item.
  std::string cut = full_error("net f(x: [2]) -> [2] {\n  return x\n\nloss {\n  return 0\n}\n");
  CHECK(cut.find("t.ddpm:1:22: error: unterminated block") == 0);
  CHECK(cut.find("hint: add '}' to close the body of 'net f' before 'loss' on line 4") != std::string::npos);
}

TEST_CASE("parser: deep nesting is an error, not a stack overflow") {
  const int n = 10000;
  for (const char* open : {"(", "[", "-", "f(", "a["}) {
    std::string text = "fn f(a) { return ";
    for (int i = 0; i < n; ++i) text += open;
    text += "a }";
    INFO("nesting with " << open);
    CHECK(parse_error(text).find("error: expression is too deep: more than 256 nested levels") !=
          std::string::npos);
  }
  // A long flat chain is bounded too, since later passes recurse over it.
  std::string chain = "fn f(a) { return a";
  for (int i = 0; i < n; ++i) chain += " + a";
  chain += " }";
  // ... and called a chain that is too long, not "nested".
  CHECK(parse_error(chain).find("expression is too long: more than 256 operators") != std::string::npos);
  CHECK(parse_error(chain).find("nested") == std::string::npos);

  // Reasonable depth is fine.
  std::string ok = "fn f(a) { return ";
  for (int i = 0; i < 100; ++i) ok += "(";
  ok += "a";
  for (int i = 0; i < 100; ++i) ok += ") + a";
  ok += " }";
  CHECK(parse_error(ok) == "");
}

TEST_CASE("parser: imports load in dependency order, each file once") {
  fs::path dir = fs::temp_directory_path() / ("ddpmc_parser_test_" + std::to_string(::getpid()));
  fs::create_directories(dir / "lib");
  auto write = [&](const fs::path& p, const std::string& text) { std::ofstream(dir / p) << text; };
  write("lib/a.ddpm", "fn a(x) { return x }\n");
  write("lib/b.ddpm", "import \"a\"\nfn b(x) { return a(x) }\n");
  write("main.ddpm", "import \"lib/a.ddpm\"\nimport \"lib/b\"\nimport std\nimport \"std\"\nfn m(x) { return b(x) }\n");

  Sources src;
  Program p = load_program(src, (dir / "main.ddpm").string());
  REQUIRE(p.modules.size() == 4);
  CHECK(fs::path(p.modules[0].file->path).filename() == "a.ddpm");
  CHECK(fs::path(p.modules[1].file->path).filename() == "b.ddpm");
  CHECK(p.modules[2].file->path == "std");
  CHECK(fs::path(p.modules[3].file->path).filename() == "main.ddpm");
  CHECK(p.modules[3].defs[0].name == "m");

  // load_program_text resolves imports relative to the label's directory.
  Sources src2;
  Program q = load_program_text(src2, (dir / "virtual.ddpm").string(), "import \"lib/b\"\n");
  REQUIRE(q.modules.size() == 3);
  CHECK(q.modules[2].file->text == "import \"lib/b\"\n");

  // A self-import is a cycle, reported at the import.
  write("self.ddpm", "data x0: [2]\nimport \"self\"\n");
  Sources src3;
  try {
    load_program(src3, (dir / "self.ddpm").string());
    FAIL("a self-import was accepted");
  } catch (const UserError& e) {
    std::string first = std::string(e.what()).substr(0, std::string(e.what()).find('\n'));
    CHECK(first == (dir / "self.ddpm").string() + ":2:1: error: import cycle: self.ddpm -> self.ddpm");
  }
  fs::remove_all(dir);
}
