// The layer above the compiler and the runtime that decides which module file a
// tool loads. A spec the user names is built through the module cache; a run
// directory is data, never code: its module is rebuilt from the spec sources its
// checkpoint carries, into the user's own cache, and checked against the spec
// hash the checkpoint records. The run's module.so is loaded only when the user
// says --trust-module, and then only if it has the checksum the checkpoint records.
// (README "Threat model".)
#pragma once
#include <string>

namespace ddpm_tools {

struct ModuleFile {
  std::string so;           // the .so to load
  std::string checksum;     // what it must hash to before dlopen ("" for a .so the user named)
  std::string sources;      // the spec's sources as JSON (common/spec_sources.h), "" if unknown
};

// A path ending in ".ddpm" is built through the module cache (ddpmc::build_module;
// `cache_dir` empty means the builder's default) and the outcome is reported on
// stderr ("compiled X in 2.3 s" or "using cached module"). Any other path is a
// compiled .so the user named, returned as it is.
ModuleFile module_for(const std::string& spec_or_so, const std::string& cache_dir = "");

// The module of a ddpm-train run directory: built from its checkpoint's sources
// through the cache (a one-line error if the checkpoint has none, or if they do not
// compile to its spec hash), or with `trust_module` RUN/module.so itself, verified
// against the checkpoint's module checksum.
ModuleFile module_for_run(const std::string& run_dir, bool trust_module, const std::string& cache_dir = "");

// --version of the tools that compile: version_text (version.h) plus the C++
// compiler that builds modules and the target it builds them for.
std::string compiling_version_text(const std::string& tool);

}  // namespace ddpm_tools
