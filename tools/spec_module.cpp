// Spec → module for the tools (see spec_module.h).
#include "spec_module.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "build.h"
#include "cache.h"
#include "common/diag.h"
#include "tool_main.h"
#include "version.h"

namespace ddpm_tools {

std::string module_for(const std::string& spec_or_so, const std::string& cache_dir) {
  if (std::filesystem::path(spec_or_so).extension() != ".ddpm") return spec_or_so;
  ddpmc::default_cache_cap();  // a bad $DDPM_CACHE_MAX_MB is an error before the build, not after it
  ddpmc::BuildOptions opt;
  opt.cache_dir = cache_dir;
  ddpmc::BuiltModule b = ddpmc::build_module(spec_or_so, opt);
  if (g_quiet_rank) return b.so_path;  // rank 0 of an mpirun job reports it
  if (b.cache_hit)
    fmt::print(stderr, "using cached module for {} ({})\n", spec_or_so, b.so_path);
  else
    fmt::print(stderr, "compiled {} in {:.1f} s\n", spec_or_so, b.compile_seconds);
  return b.so_path;
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
