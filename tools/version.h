// What `--version` prints for every tool: the version, the module ABI it loads,
// the compiler that built it, and the CPU features of this machine that modules
// use. ddpmc and ddpm-train, which compile modules, add the target the modules are
// compiled for (tools/spec_module.h).
#pragma once
#include <string>

namespace ddpm_tools {

// "sse4.2 avx avx2 fma avx512f ..." (x86-64) or "neon (the aarch64 baseline)".
std::string cpu_features();

// The whole text, several lines, ending in a newline-free line; `more` (lines) is
// appended as it is.
std::string version_text(const std::string& tool, const std::string& more = "");

}  // namespace ddpm_tools
