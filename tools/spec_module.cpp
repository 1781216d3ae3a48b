// Spec → module for the tools (see spec_module.h).
#include "spec_module.h"

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "build.h"

namespace ddpm_tools {

std::string module_for(const std::string& spec_or_so, const std::string& cache_dir) {
  if (std::filesystem::path(spec_or_so).extension() != ".ddpm") return spec_or_so;
  ddpmc::BuildOptions opt;
  opt.cache_dir = cache_dir;
  ddpmc::BuiltModule b = ddpmc::build_module(spec_or_so, opt);
  if (b.cache_hit)
    fmt::print(stderr, "using cached module for {} ({})\n", spec_or_so, b.so_path);
  else
    fmt::print(stderr, "compiled {} in {:.1f} s\n", spec_or_so, b.compile_seconds);
  return b.so_path;
}

}  // namespace ddpm_tools
