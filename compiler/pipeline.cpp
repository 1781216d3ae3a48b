// The pass pipeline, in order (see pipeline.h). The verifier runs after every
// pass; it is cheap next to the C++ build that follows.
#include "pipeline.h"

#include <fmt/format.h>

#include "conv_plan.h"
#include "frontend.h"
#include "lower.h"
#include "ops.h"
#include "passes/passes.h"

namespace ddpmc {

const std::vector<std::string>& pass_names() {
  static const std::vector<std::string> names = {"lower", "autodiff", "vjp", "simplify", "remat", "fuse", "prologue", "memplan"};
  return names;
}

namespace {

struct Runner {
  const Model& m;
  const std::string& dump_after;
  std::string* dump;
  void after(const std::string& pass, const Graph& g) {
    verify(g, m);
    if (dump && (dump_after == pass || dump_after == "all"))
      *dump += fmt::format("; after {}\n{}\n", pass, print_graph(g));
  }
  Graph finish(Graph g) {
    g = simplify(g);
    after("simplify", g);
    g = remat(g);
    after("remat", g);
    g = fuse(g);
    after("fuse", g);
    g = fuse_prologue(g);
    after("prologue", g);
    g = memplan(g, m);
    after("memplan", g);
    return g;
  }
};

}  // namespace

Compiled compile_model(Model model, const std::string& dump_after, std::string* dump) {
  if (!dump_after.empty() && dump_after != "all") {
    bool ok = false;
    for (auto& p : pass_names()) ok = ok || p == dump_after;
    if (!ok) {
      std::string all;
      for (auto& p : pass_names()) all += (all.empty() ? "" : ", ") + p;
      user_error_noloc(fmt::format("unknown pass '{}' for --dump-after", dump_after), "passes: " + all + ", or all");
    }
  }
  Compiled c;
  c.model = std::move(model);
  Runner r{c.model, dump_after, dump};
  r.after("lower", c.model.loss);
  for (auto& s : c.model.samplers) r.after("lower", s.second);
  Graph train = autodiff(c.model.loss, c.model);
  r.after("autodiff", train);
  c.train = r.finish(std::move(train));
  c.loss = r.finish(c.model.loss);
  for (auto& [name, g] : c.model.samplers) c.samplers.emplace_back(name, r.finish(g));
  if (c.model.has_eps) {
    r.after("lower", c.model.eps);
    c.eps = r.finish(c.model.eps);
  }
  if (c.model.has_ode) {
    r.after("lower", c.model.ode);
    Graph v = vjp(c.model.ode, c.model);
    r.after("vjp", v);
    c.ode = r.finish(c.model.ode);
    c.ode_vjp = r.finish(std::move(v));
  }
  if (c.model.supervised) {
    r.after("lower", c.model.classify);
    c.classify = r.finish(c.model.classify);
  }
  return c;
}

double graph_flops(const Graph& g, int B) {
  double f = 0;
  for (auto& n : g.nodes) {
    const OpRow& row = op_row(n.op);
    double rows = n.type.batched ? B : 1;
    if (n.op == Op::Matmul) {
      const Type& a = g.nodes[n.in[0]].type;
      const Type& b = g.nodes[n.in[1]].type;
      // Activations [B,...,K] are B * prod(leading) rows of K.
      double k = n.i0 == kTN ? B * (double)a.numel() / a.dims.back() : a.dims.back();
      double out = n.i0 == kTN ? (double)a.dims.back() * b.dims.back() : rows * n.type.numel();
      f += 2 * out * k;
    } else if (is_conv(n.op)) {
      // 2 * B * O * Ho * Wo * C * K * K for each of the three (the direct convolution's count,
      // whatever path runs it: Winograd layers do fewer multiplies than this).
      const ConvDims d = conv_dims(g, n);
      f += 2.0 * B * (double)(d.O * d.hw()) * (double)d.ckk();
    } else if (n.op == Op::Bmm) {
      const Type& a = g.nodes[n.in[0]].type;
      f += 2.0 * rows * n.type.numel() * a.dims.back();
    } else if (row.cls == OpClass::Call) {
      f += rows * n.type.numel() * (n.op == Op::Transpose ? 0 : 4);
    } else if (row.cls == OpClass::Elementwise || n.op == Op::RandN || n.op == Op::RandU || n.op == Op::UniformStep) {
      f += rows * n.type.numel();
    } else if (row.cls == OpClass::Norm) {
      // Statistics (3 per element) and the normalization (2); the backward op
      // also sums dy and dy * xhat and combines them (7 more).
      f += rows * n.type.numel() * (n.op == Op::GroupNorm ? 5 : 12);
    } else if (row.cls == OpClass::Reduce) {
      const Type& a = g.nodes[n.in[0]].type;
      f += (a.batched ? B : 1) * a.numel();
    }
  }
  return f;
}

Compiled compile_spec_file(const std::string& path, const std::string& dump_after, std::string* dump) {
  auto sources = std::make_shared<Sources>();
  Program p = load_program(*sources, path);
  Compiled c = compile_model(lower(p, path), dump_after, dump);
  c.sources = sources;
  return c;
}

Compiled compile_spec_sources(const SpecSources& s, const std::string& dump_after, std::string* dump) {
  auto sources = std::make_shared<Sources>();
  auto main = s.files.find(s.main);
  if (main == s.files.end()) DDPM_ICE("compile_spec_sources: the main file is not among the files");
  std::map<std::string, std::string> imports = s.files;
  imports.erase(s.main);
  const std::string label = "<checkpoint>/" + s.main;
  Program p = load_program_files(*sources, label, main->second, imports);
  Compiled c = compile_model(lower(p, label), dump_after, dump);
  c.sources = sources;
  return c;
}

Compiled compile_spec_text(const std::string& path, const std::string& text, const std::string& dump_after,
                           std::string* dump) {
  auto sources = std::make_shared<Sources>();
  Program p = load_program_text(*sources, path, text);
  Compiled c = compile_model(lower(p, path), dump_after, dump);
  c.sources = sources;
  return c;
}

}  // namespace ddpmc
