// `ddpmc cache`: lists the module cache (each module's key, size, last use and
// spec; the total against the size cap) and, with --prune, removes modules unused
// for --older-than days (default 7), then the least recently used ones down to
// --max-mb (default: the cap, $DDPM_CACHE_MAX_MB or 2048), then the precompiled
// prelude if the cache is still too big, and says what it kept and why. See
// compiler/cache.h.
#pragma once
#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace ddpm_tools {

struct CacheCommand {
  std::string dir;       // empty: the default cache
  bool prune = false;
  double older_than_days = 7;
  int64_t max_mb = -1;   // -1: the default cap
};

CLI::App* add_cache_command(CLI::App& app, CacheCommand& c);
int run_cache_command(const CacheCommand& c);

}  // namespace ddpm_tools
