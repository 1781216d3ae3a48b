// The thin layer above the compiler and the runtime: turning what a user names
// on the command line (a .ddpm spec or a compiled .so) into a module file the
// runtime can load. Only the tools that compile (ddpmc, ddpm-train) link it;
// ddpm-sample and ddpm-eval read run directories and need no compiler.
#pragma once
#include <string>

namespace ddpm_tools {

// A path ending in ".ddpm" is built through the module cache (ddpmc::build_module;
// `cache_dir` empty means the builder's default) and the outcome is reported on
// stderr ("compiled X in 2.3 s" or "using cached module"); the path of the cached
// .so is returned. Any other path is returned as it is (a compiled .so).
std::string module_for(const std::string& spec_or_so, const std::string& cache_dir = "");

// --version of the tools that compile: version_text (version.h) plus the C++
// compiler that builds modules and the target it builds them for.
std::string compiling_version_text(const std::string& tool);

}  // namespace ddpm_tools
