// ddpm-sample: the command line over ddpm::sample (runtime/sample.h).
//
//   ddpm-sample runs/moons --sampler ddim --steps 50 -n 2000 --out x.npy --png x.png
//   ddpm-sample runs/fashion_cond --sampler cfg --arg w=3 --arg class=7
//   mpirun -np 4 ddpm-sample runs/moons ...   (each rank samples a quarter; rank 0 writes the files)
//
// Reads RUN_DIR/checkpoint.safetensors written by ddpm-train, rebuilds its module
// from the spec source the checkpoint carries (through the module cache; the run's
// module.so is loaded only with --trust-module: README "Threat model"), and writes
// the samples as .npy (and a PNG). Exit codes: 0 ok, 1 bad input (a one-line
// error), 2 bad flags, 70 an internal error.
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "common/diag.h"
#include "common/run_files.h"
#include "runtime/sample.h"
#include "dist_main.h"
#include "spec_module.h"
#include "tool_main.h"

int main(int argc, char** argv) {
  ddpm::SampleConfig cfg;
  cfg.threads = (int)std::max(1u, std::thread::hardware_concurrency());
  std::string weights = "ema";
  bool no_png = false;

  CLI::App app{"ddpm-sample: draw samples from a model trained by ddpm-train", "ddpm-sample"};
  app.add_option("run_dir", cfg.run_dir, "a run directory written by ddpm-train --out")->required();
  app.add_option("--sampler", cfg.sampler, "a sampler block of the spec (default: ddpm, else the spec's first sampler)");
  app.add_option("--steps", cfg.steps, "reverse steps K (strided t_i = round(i T / K)); 0 = all T (continuous time: K points of the spec's grid, 0 = its sample_steps)")
      ->capture_default_str();
  app.add_option("-n", cfg.n, "number of samples")->capture_default_str();
  app.add_option("--batch", cfg.batch, "samples per module call")->capture_default_str();
  app.add_option("--threads", cfg.threads, "worker threads (default: all cores)")->capture_default_str();
  app.add_option("--seed", cfg.seed, "random seed")
      ->check(ddpm_tools::whole_in(0, 18446744073709551615.0L))
      ->capture_default_str();
  app.add_option("--weights", weights, "which weights to sample with")
      ->check(CLI::IsMember({"ema", "params"}))
      ->capture_default_str();
  app.add_option("--out", cfg.out_npy, "samples .npy (default: RUN_DIR/samples.npy)");
  app.add_option("--png", cfg.out_png, "PNG scatter plot or image grid (default: next to --out, .png)");
  app.add_flag("--no-png", no_png, "do not write a PNG");
  app.add_flag("-q,--quiet", cfg.quiet, "no progress line");
  bool trust_module = false;
  app.add_flag("--trust-module", trust_module,
               "load the run's own module.so (checked against its checkpoint's checksum) instead of rebuilding "
               "the module from the checkpoint's source: only for runs you made yourself");
  std::string cache_dir;
  app.add_option("--cache-dir", cache_dir, "module cache (default: $DDPM_CACHE_DIR or ~/.cache/ddpmc)");
  app.add_option("--arg", cfg.args, "a sampling-time argument of the sampler, NAME=VALUE (repeatable)");
  std::string cls;
  app.add_option("--class", cls, "the class for a conditional sampler (same as --arg class=N), or 'all': -n of each "
                                 "class, one grid row per class");

  ddpm_tools::quiet_other_ranks();
  if (int rc = ddpm_tools::parse(app, argc, argv, "ddpm-sample"); rc >= 0) return rc;
  auto flag_error = [](const std::string& msg) { return ddpm_tools::flag_error("ddpm-sample", msg); };
  if (cfg.n < 1) return flag_error(fmt::format("-n must be at least 1 (got {})", cfg.n));
  if (cfg.batch < 1) return flag_error(fmt::format("--batch must be at least 1 (got {})", cfg.batch));
  if (cfg.threads < 1) return flag_error(fmt::format("--threads must be at least 1 (got {})", cfg.threads));
  if (cfg.steps < 0) return flag_error(fmt::format("--steps must be >= 0 (got {})", cfg.steps));
  cfg.use_ema = weights == "ema";
  if (cls == "all")
    cfg.class_all = true;
  else if (!cls.empty())
    cfg.args.push_back("class=" + cls);
  namespace fs = std::filesystem;
  if (cfg.out_npy.empty()) cfg.out_npy = (fs::path(cfg.run_dir) / "samples.npy").string();
  if (no_png)
    cfg.out_png.clear();
  else if (cfg.out_png.empty())
    cfg.out_png = fs::path(cfg.out_npy).replace_extension(".png").string();
  if (std::string p = ddpmc::output_problem({{"--out", cfg.out_npy}, {"--png", cfg.out_png}}, cfg.run_dir);
      !p.empty())
    return flag_error(p);

  ddpm::DistSession session(&argc, &argv, "ddpm-sample");
  return ddpm_tools::run_distributed(session, "ddpm-sample", [&] {
    const ddpm_tools::ModuleFile mf = ddpm_tools::module_for_run(cfg.run_dir, trust_module, cache_dir);
    cfg.module_so = mf.so;
    cfg.module_checksum = mf.checksum;
    return ddpm::sample(cfg);
  });
}
