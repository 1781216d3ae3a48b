// `--version` (see version.h).
#include "version.h"

#include <fmt/format.h>

#include "common/prelude/ddpm_abi.h"

namespace ddpm_tools {

std::string cpu_features() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  std::string s;
  auto add = [&s](const char* name, bool has) {
    if (!has) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add("sse4.2", __builtin_cpu_supports("sse4.2"));
  add("avx", __builtin_cpu_supports("avx"));
  add("avx2", __builtin_cpu_supports("avx2"));
  add("fma", __builtin_cpu_supports("fma"));
  add("avx512f", __builtin_cpu_supports("avx512f"));
  add("avx512bw", __builtin_cpu_supports("avx512bw"));
  add("avx512dq", __builtin_cpu_supports("avx512dq"));
  add("avx512vl", __builtin_cpu_supports("avx512vl"));
  return s.empty() ? "x86-64 baseline (SSE2)" : s;
#elif defined(__aarch64__)
  return "neon (the aarch64 baseline)";
#else
  return "unknown";
#endif
}

std::string version_text(const std::string& tool, const std::string& more) {
#if defined(__clang__)
  const std::string compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  const std::string compiler = "GCC " __VERSION__;
#else
  const std::string compiler = "an unknown C++ compiler";
#endif
  std::string s = fmt::format("{} {}\n", tool, DDPM_VERSION);
  s += fmt::format("module ABI  {} (loads modules of ABI {} to {})\n", DDPM_ABI_VERSION, DDPM_ABI_MIN_VERSION,
                   DDPM_ABI_VERSION);
  s += fmt::format("built with  {}, for the portable baseline of the architecture\n", compiler);
  s += fmt::format("this CPU    {}", cpu_features());
  if (!more.empty()) s += "\n" + more;
  return s;
}

}  // namespace ddpm_tools
