// Compile-time numbers, table-driven: every elementwise op row with a scalar reference
// (OpRow::eval in compiler/ops.cpp) against what the language computes for the same op
// on numbers. Each operand tuple is spelled as a spec-level constant expression, the
// default of a sampling-time argument (`sampler probe(x, t, s, v0 = exp(0.5), ...)`),
// and lowering must fold it to the row's value bit for bit, or, where the row's value is
// not finite, reject the spec (numbers in a spec are always finite).
//
// The rows are read from the op table, so an op added as a row is covered: it is
// spelled as the builtin of the same name, unless kSpellings below spells it (an
// operator, or a builtin whose attributes are arguments) or lists it as internal (no
// spec-level spelling). A row that is neither fails the first test case.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/diag.h"
#include "frontend.h"
#include "lower.h"
#include "ops.h"

using namespace ddpmc;

namespace {

struct Spelling {
  const char* row;
  const char* format;  // {0}, {1}, {2}: the operands; nullptr: internal, no spec-level spelling
  void (*attrs)(Node&) = nullptr;  // the node attributes the spelling fixes
};

const std::vector<Spelling> kSpellings = {
    {"add", "({0}) + ({1})"},
    {"sub", "({0}) - ({1})"},
    {"mul", "({0}) * ({1})"},
    {"div", "({0}) / ({1})"},
    {"neg", "-({0})"},
    {"clip", "clip({0}, -0.5, 0.6)", [](Node& n) { n.value = -0.5, n.value2 = 0.6; }},
    {"clip_mask", nullptr},  // clip's derivative mask, made by autodiff
    {"broadcast", nullptr},  // made by lowering and autodiff to stretch a value to a shape
};

const Spelling* spelling_of(const OpRow& r) {
  for (const Spelling& s : kSpellings)
    if (std::string(s.row) == r.name) return &s;
  return nullptr;
}

bool is_builtin(const std::string& name) {
  static const std::vector<std::string> names = builtin_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

// The elementwise rows with a scalar reference, in table order.
std::vector<const OpRow*> scalar_rows() {
  static const Op kAllOps[] = {
#define DDPM_OP(name) Op::name,
#include "ops.def"
#undef DDPM_OP
  };
  std::vector<const OpRow*> out;
  for (Op op : kAllOps)
    if (const OpRow& r = op_row(op); r.cls == OpClass::Elementwise && r.eval) out.push_back(&r);
  return out;
}

// The spec expression of row r on operands x, or "" when r has no spec-level spelling.
std::string spell(const OpRow& r, const std::vector<double>& x) {
  std::vector<std::string> a;
  for (double v : x) a.push_back(fmt::format("{}", v));  // shortest round-trip form
  if (const Spelling* s = spelling_of(r)) {
    if (!s->format) return "";
    return fmt::format(fmt::runtime(s->format), a.size() > 0 ? a[0] : "", a.size() > 1 ? a[1] : "",
                       a.size() > 2 ? a[2] : "");
  }
  std::string call = std::string(r.name) + "(";
  for (size_t i = 0; i < a.size(); ++i) call += (i ? ", " : "") + a[i];
  return call + ")";
}

double row_value(const OpRow& r, const std::vector<double>& x) {
  Node n{r.op};
  if (const Spelling* s = spelling_of(r); s && s->attrs) s->attrs(n);
  return r.eval(n, x.data());
}

// Every tuple of `arity` operands from values of both signs, zero, and large magnitudes.
std::vector<std::vector<double>> operand_tuples(int arity) {
  const double values[] = {0.5, -0.75, 0.0, 2.25, 800.0, 1e300};
  std::vector<std::vector<double>> out{{}};
  for (int k = 0; k < arity; ++k) {
    std::vector<std::vector<double>> next;
    for (auto& t : out)
      for (double v : values) {
        next.push_back(t);
        next.back().push_back(v);
      }
    out = std::move(next);
  }
  return out;
}

// A spec whose sampler `probe` has one sampling-time argument per expression, each
// defaulting to it.
std::string probe_spec(const std::vector<std::string>& exprs) {
  std::string args;
  for (size_t i = 0; i < exprs.size(); ++i) args += fmt::format(", v{} = {}", i, exprs[i]);
  return "diffusion { steps = 10 }\n"
         "data x0: [2]\n"
         "loss { return mean(square(x0 - param([2]))) }\n"
         "sampler probe(x, t, s" + args + ") { return x }\n";
}

Model lower_text(const std::string& text) {
  Sources sources;
  Program p = load_program_text(sources, "probe.ddpm", text);
  return lower(p, "probe.ddpm");
}

}  // namespace

TEST_CASE("ops: every elementwise row with a scalar reference has a spec spelling or is listed as internal") {
  const auto rows = scalar_rows();
  CHECK(rows.size() >= 27);  // add .. where when this test was written
  for (const OpRow* r : rows) {
    INFO("row " << r->name << ": name a builtin after it, or spell it (or list it as internal) in kSpellings");
    CHECK((spelling_of(*r) != nullptr || is_builtin(r->name)));
  }
  for (const Spelling& s : kSpellings) {
    INFO("kSpellings lists " << s.row << ", which is not an elementwise row with a scalar reference");
    CHECK(std::any_of(rows.begin(), rows.end(), [&](const OpRow* r) { return std::string(r->name) == s.row; }));
  }
}

TEST_CASE("ops: a spec's constant expression of each elementwise op folds to the op row's value") {
  for (const OpRow* r : scalar_rows()) {
    if (spell(*r, std::vector<double>(r->arity, 1.0)).empty()) continue;  // internal
    SUBCASE(r->name) {
      std::vector<std::string> exprs;
      std::vector<double> want;
      for (const auto& x : operand_tuples(r->arity)) {
        const double v = row_value(*r, x);
        if (!std::isfinite(v)) continue;
        exprs.push_back(spell(*r, x));
        want.push_back(v);
      }
      REQUIRE(!exprs.empty());
      const Model m = lower_text(probe_spec(exprs));
      REQUIRE(m.sampler_info.size() == 1);
      REQUIRE(m.sampler_info[0].args.size() == exprs.size());
      for (size_t i = 0; i < exprs.size(); ++i) {
        INFO(exprs[i] << " folds to " << fmt::format("{}", m.sampler_info[0].args[i].default_value)
                      << "; the row gives " << fmt::format("{}", want[i]));
        // Bit for bit: -0 and 0 differ in the generated code.
        CHECK(std::bit_cast<uint64_t>(m.sampler_info[0].args[i].default_value) == std::bit_cast<uint64_t>(want[i]));
      }
    }
  }
}

TEST_CASE("ops: a constant expression whose op row value is not finite is a compile error") {
  int cases = 0;
  for (const OpRow* r : scalar_rows()) {
    for (const auto& x : operand_tuples(r->arity)) {
      const std::string e = spell(*r, x);
      if (e.empty() || std::isfinite(row_value(*r, x))) continue;
      INFO(e << " is " << row_value(*r, x) << " by the row");
      CHECK_THROWS_AS(lower_text(probe_spec({e})), UserError);
      ++cases;
    }
  }
  CHECK(cases > 0);  // log(0), sqrt(-0.75), exp(800), 1e300 * 1e300, 0.5 / 0, ...
}
