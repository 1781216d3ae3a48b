// Driver: `ddpmc check` — runs the whole compiler on a spec (everything but the
// C++ build) and reports parameters, FLOPs per training step, kernels and arena bytes.
#include "driver.h"

#include <fmt/format.h>

#include "codegen.h"
#include "ops.h"
#include "pipeline.h"

namespace ddpmc {
namespace {

std::string thousands(long long v) {
  std::string s = std::to_string(v), out;
  int n = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (n && n % 3 == 0 && *it != '-') out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
    ++n;
  }
  return out;
}

CheckReport report(const Compiled& c, int batch) {
  CheckReport r;
  r.batch = batch;
  for (auto& p : c.model.params) r.n_params += p.type.numel();
  r.flops_per_step = graph_flops(c.train, batch);
  r.arena_bytes = arena_floats(c.train, batch) * 4;
  int prim_ops = 0;
  for (auto& n : c.train.nodes) prim_ops += !is_leaf_value(n.op);
  std::string s = fmt::format("{}: ok\n", c.model.spec_path);
  s += fmt::format("  parameters      {} in {} tensors ({:.1f} KiB)\n", thousands(r.n_params), c.model.params.size(),
                   r.n_params * 4 / 1024.0);
  if (c.model.supervised)
    s += fmt::format("  data            {} per sample, {} classes; supervised (no diffusion): {} logits{}\n",
                     c.model.data.str(), c.model.label_classes, c.model.logits_numel,
                     c.model.features_numel > 0 ? fmt::format(", {} features", c.model.features_numel) : "");
  else if (const Diffusion& d = c.model.diffusion; d.continuous)
    s += fmt::format("  data            {} per sample, continuous time in [{:g}, {:g}], {} grid{}, {} sampling steps by default\n",
                     c.model.data.str(), d.t_min, d.t_max, d.grid,
                     d.grid == "karras" ? fmt::format(" (rho = {:g})", d.rho) : "", d.sample_steps);
  else
    s += fmt::format("  data            {} per sample, T = {}, {} schedule\n", c.model.data.str(), c.model.diffusion.T,
                     c.model.diffusion.schedule);
  s += fmt::format("  FLOPs per step  {} (training step, forward + backward, batch {})\n",
                   flops_text(r.flops_per_step), batch);
  s += fmt::format("  arena           {} bytes at batch {} (training step; {} floats per sample + {})\n",
                   thousands(r.arena_bytes), batch, c.train.arena_per_sample, c.train.arena_fixed);
  s += fmt::format("  kernels         train {} (from {} primitive ops)", c.train.kernels.size(), prim_ops);
  for (auto& [name, g] : c.samplers) s += fmt::format(", sampler {} {}", name, g.kernels.size());
  s += "\n";
  for (auto& [name, g] : c.samplers)
    s += fmt::format("  sampler {:<8} arena {} bytes at batch {}, {} per step\n", name,
                     thousands(arena_floats(g, batch) * 4), batch, flops_text(graph_flops(g, batch)));
  if (c.model.has_ode)
    s += fmt::format("  ode {:<12} t in [{:g}, {:g}], prior N(0, {:g}^2 I); vjp arena {} bytes at batch {}, {} per call "
                     "(ddpm-eval --nll ode)\n",
                     c.model.ode_name, c.model.diffusion.ode_t_min, c.model.diffusion.ode_t_max, c.model.diffusion.prior_std,
                     thousands(arena_floats(c.ode_vjp, batch) * 4), batch, flops_text(graph_flops(c.ode_vjp, batch)));
  if (c.model.supervised)
    s += fmt::format("  classify        arena {} bytes at batch {}, {} per call\n", thousands(arena_floats(c.classify, batch) * 4),
                     batch, flops_text(graph_flops(c.classify, batch)));
  r.text = s;
  return r;
}

}  // namespace

std::string flops_text(double flops) {
  if (!(flops >= 1000)) return fmt::format("{:g} FLOP", flops);
  const char* units[] = {"kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"};
  int u = 0;
  double v = flops / 1e3;
  while (v >= 999.9995 && u < 4) v /= 1000, ++u;  // 999.9999 MFLOP shows as 1.000 GFLOP
  return fmt::format("{:.3f} {}", v, units[u]);
}

CheckReport check_spec_file(const std::string& path, int batch) { return report(compile_spec_file(path), batch); }

CheckReport check_spec_text(const std::string& path_label, const std::string& text, int batch) {
  return report(compile_spec_text(path_label, text), batch);
}

CheckReport check_spec_sources_json(const std::string& json, int batch) {
  return report(compile_spec_sources(SpecSources::from_json(json, "the checkpoint")), batch);
}

}  // namespace ddpmc
