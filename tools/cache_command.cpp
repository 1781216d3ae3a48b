// `ddpmc cache` (see cache_command.h).
#include "cache_command.h"

#include <chrono>
#include <ctime>

#include <fmt/format.h>

#include "cache.h"
#include "common/diag.h"
#include "tool_main.h"

namespace ddpm_tools {

namespace {

// A size at a readable unit: "12.0 KiB", "6.0 MiB", "2.0 GiB".
std::string mib(uint64_t bytes) {
  if (bytes < (1u << 20)) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  if (bytes < (1u << 30)) return fmt::format("{:.1f} MiB", bytes / 1048576.0);
  return fmt::format("{:.1f} GiB", bytes / 1073741824.0);
}

std::string when(std::filesystem::file_time_type t) {
  auto sys = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::file_clock::to_sys(t));
  std::time_t tt = std::chrono::system_clock::to_time_t(sys);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", std::localtime(&tt));
  return buf;
}

}  // namespace

CLI::App* add_cache_command(CLI::App& app, CacheCommand& c) {
  auto* sub = app.add_subcommand("cache", "list the module cache, or prune it");
  sub->add_option("--cache-dir", c.dir, "module cache (default $DDPM_CACHE_DIR or ~/.cache/ddpmc)");
  auto* prune = sub->add_flag("--prune", c.prune,
                "remove old modules, then the least recently used down to --max-mb, then (if still over it) the "
                "precompiled prelude");
  sub->add_option("--older-than", c.older_than_days, "with --prune: remove modules unused for this many days")
      ->capture_default_str()
      ->check(number_in(0, 36500))
      ->needs(prune);
  sub->add_option("--max-mb", c.max_mb, "with --prune: the size in MiB to prune down to (default: the cap)")
      ->check(whole_in(0, 999999999))
      ->needs(prune);
  return sub;
}

int run_cache_command(const CacheCommand& c) {
  const std::string dir = c.dir.empty() ? ddpmc::default_cache_dir() : c.dir;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    fmt::print("{}: empty (no cache directory yet)\n", dir);
    return 0;
  }
  const uint64_t cap = ddpmc::default_cache_cap();
  if (c.prune) {
    const uint64_t max_bytes = c.max_mb >= 0 ? (uint64_t)c.max_mb << 20 : cap;
    auto older = std::chrono::seconds((int64_t)(c.older_than_days * 86400));
    ddpmc::PruneResult r = ddpmc::prune_cache(dir, max_bytes, older, "", true);
    const int modules = r.removed - (r.removed_prelude ? 1 : 0);
    fmt::print("removed {} module{}{} ({})\n", modules, modules == 1 ? "" : "s",
               r.removed_prelude ? " and the precompiled prelude (the next compile rebuilds it)" : "", mib(r.bytes));
    for (const ddpmc::KeptEntry& k : r.kept) {
      std::string what = k.entry.spec.empty() ? "unknown spec" : k.entry.spec;
      if (what.front() == '(' && what.back() == ')') what = what.substr(1, what.size() - 2);  // (precompiled prelude)
      fmt::print("kept {} ({}, {}): {}\n", k.entry.key.substr(0, 16), what, mib(k.entry.bytes), k.why);
    }
  }
  uint64_t total = 0;
  int modules = 0;
  for (const ddpmc::CacheEntry& e : ddpmc::list_cache(dir)) {
    total += e.bytes;
    modules += e.key.rfind("pch-", 0) != 0;
    fmt::print("{}  {:>10}  {}  {}\n", e.key.substr(0, 16), mib(e.bytes), when(e.used),
               e.spec.empty() ? "(unknown spec)" : e.spec);
  }
  fmt::print("{}: {} module{}, {} (cap {}; set DDPM_CACHE_MAX_MB to change it)\n", dir, modules,
             modules == 1 ? "" : "s", mib(total), mib(cap));
  return 0;
}

}  // namespace ddpm_tools
