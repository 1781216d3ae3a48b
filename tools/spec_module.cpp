// Spec or run directory → module file for the tools (see spec_module.h).
#include "spec_module.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "build.h"
#include "cache.h"
#include "common/diag.h"
#include "common/spec_sources.h"
#include "runtime/safetensors.h"
#include "tool_main.h"
#include "version.h"

namespace ddpm_tools {

namespace fs = std::filesystem;

namespace {

void report(const std::string& what, const ddpmc::BuiltModule& b) {
  if (g_quiet_rank) return;  // rank 0 of an mpirun job reports it
  if (b.cache_hit)
    fmt::print(stderr, "using cached module for {} ({})\n", what, b.so_path);
  else
    fmt::print(stderr, "compiled {} in {:.1f} s\n", what, b.compile_seconds);
}

}  // namespace

ModuleFile module_for(const std::string& spec_or_so, const std::string& cache_dir) {
  if (fs::path(spec_or_so).extension() != ".ddpm") return {spec_or_so, "", ""};
  ddpmc::default_cache_cap();  // a bad $DDPM_CACHE_MAX_MB is an error before the build, not after it
  ddpmc::BuildOptions opt;
  opt.cache_dir = cache_dir;
  ddpmc::BuiltModule b = ddpmc::build_module(spec_or_so, opt);
  report(spec_or_so, b);
  return {b.so_path, b.checksum, b.sources.to_json()};
}

ModuleFile module_for_run(const std::string& run_dir, bool trust_module, const std::string& cache_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec))
    ddpmc::user_error_noloc(fmt::format("run directory {} does not exist", run_dir),
                            "pass the --out directory of a ddpm-train run");
  const std::string ckpt = (fs::path(run_dir) / "checkpoint.safetensors").string();
  if (!fs::exists(ckpt, ec))
    ddpmc::user_error_noloc(fmt::format("{} is not a training run: {} is missing", run_dir, ckpt),
                            "train first with `ddpm-train SPEC --out DIR`");
  const std::map<std::string, std::string> meta = ddpm::read_safetensors_metadata(ckpt);
  auto get = [&](const char* key) {
    auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };
  if (trust_module) {
    const std::string so = (fs::path(run_dir) / "module.so").string();
    const std::string sum = get("module_checksum");
    if (sum.empty())
      fmt::print(stderr, "note: {} records no module checksum (an older run); loading {} unchecked, as "
                 "--trust-module asks\n", ckpt, so);
    return {so, sum, get("spec_sources")};
  }
  const std::string text = get("spec_sources");
  if (text.empty())
    ddpmc::user_error_noloc(fmt::format("checkpoint {} carries no spec source (written by an older ddpmc or "
                                        "trained from a .so), so its module cannot be rebuilt",
                                        ckpt),
                            "pass --trust-module to load the run's own module.so, or resume the run once with "
                            "`ddpm-train SPEC --out DIR --resume` to record its source");
  const ddpmc::SpecSources sources = ddpmc::SpecSources::from_json(text, "checkpoint " + ckpt);
  ddpmc::default_cache_cap();
  ddpmc::BuildOptions opt;
  opt.cache_dir = cache_dir;
  const ddpmc::BuiltModule b = ddpmc::build_module_sources(sources, opt);
  const std::string want = get("spec_hash");
  if (b.spec_hash != want)
    ddpmc::user_error_noloc(fmt::format("the source in checkpoint {} compiles to spec hash {}, but the checkpoint "
                                        "records {}",
                                        ckpt, b.spec_hash, want.empty() ? "none" : want),
                            "it was trained with another ddpmc version, or the file was edited; train again, or "
                            "pass --trust-module to load the run's own module.so");
  report(fmt::format("{} (from its checkpoint's source)", run_dir), b);
  return {b.so_path, b.checksum, text};
}

std::string compiling_version_text(const std::string& tool) {
  const char* env = std::getenv("DDPMC_MARCH");
  const std::string march = env && *env ? env : "native";
  std::string target;
  try {
    const std::string flags = ddpmc::target_cpu_flags(march);
    const auto at = flags.find("-march=");
    target = flags.substr(at + 7, flags.find(' ', at) - at - 7);
  } catch (const ddpmc::UserError&) {
    target = "(the C++ compiler does not know it)";
  }
  return version_text(tool, fmt::format("modules     compiled by {} for -march={} = {} ($DDPMC_MARCH changes it)",
                                        DDPMC_CXX, march, target));
}

}  // namespace ddpm_tools
