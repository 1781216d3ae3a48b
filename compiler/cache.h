// The module cache: where the module builder (build.h) keeps compiled modules,
// and what it checks and bounds about them.
//
// Layout of the cache directory: KEY.so (the module), KEY.sum (its checksum,
// common/checksum.h, checked before every load), KEY.cpp and KEY.1.cpp (its
// generated C++), KEY.lock (held while KEY is being built), KEY.PID.log (a build's
// compiler output, kept only when that build fails) and pch-HASH/ (the
// precompiled prelude of the current toolchain). KEY hashes the generated C++ and
// the toolchain, which names the target's real CPU features (target_cpu_flags),
// never the text -march=native, so a cache shared between machines cannot hand
// one machine another's instructions. A module's last use is the mtime of its
// .so (a cache hit touches it); the cache is bounded by least-recently-used
// eviction after each build (default_cache_cap).
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace ddpmc {

// $DDPM_CACHE_DIR, else $XDG_CACHE_HOME/ddpmc, else ~/.cache/ddpmc.
std::string default_cache_dir();

// The cache is the user's alone (as ssh and ccache require of their files): "" if
// `path` (a directory or a module file) is owned by this user and writable by
// nobody else; otherwise why not, in a few words.
std::string private_problem(const std::string& path);
// Creates the cache directory with mode 0700 if it is missing; throws a one-line
// UserError naming it and the fix if it is not private (private_problem).
void open_private_cache(const std::string& dir);

// The C++ compiler's expansion of -march=`march` ("native" by default, or
// $DDPMC_MARCH): "-march=znver3 -mmmx ... -mtune=znver3". Modules are compiled
// with exactly these flags and keyed by them. Throws a UserError if the compiler
// does not know the target.
std::string target_cpu_flags(const std::string& march);
// target_cpu_flags($DDPMC_MARCH or "native").
std::string target_cpu_flags();

// "" if `so` loads, exports ddpm_module_v1 with this ABI version and has spec
// hash `spec_hash`; otherwise what is wrong with it, in a few words.
std::string module_problem(const std::string& so, const std::string& spec_hash);

struct CacheEntry {
  std::string key;      // the file name stem; "pch-…" for a precompiled prelude
  std::string spec;     // the spec the module was generated from ("" if unknown)
  uint64_t bytes = 0;   // all of the entry's files
  std::filesystem::file_time_type used;  // mtime of the .so (of the folder for pch-…)
};

// Every module (and precompiled prelude) in `dir`, most recently used first.
std::vector<CacheEntry> list_cache(const std::string& dir);

// The default bound on the cache's size: $DDPM_CACHE_MAX_MB megabytes, else 2 GiB.
// Throws a UserError if DDPM_CACHE_MAX_MB is set but not a whole number of megabytes.
uint64_t default_cache_cap();

// An entry a prune left in place, and why.
struct KeptEntry {
  CacheEntry entry;
  std::string why;  // "being built by another process", "the module just built", ...
};

struct PruneResult {
  int removed = 0;      // entries removed (modules and precompiled preludes)
  bool removed_prelude = false;
  uint64_t bytes = 0;
  std::vector<KeptEntry> kept;  // most recently used first
};

// Removes modules unused for longer than `older_than` (if given), then the least
// recently used ones until the cache holds at most `max_bytes`. With
// `prune_prelude`, the precompiled prelude (about 100 MB; the next build makes it
// again) goes last, if the cache is still over `max_bytes` without any module.
// Never removes the entry `keep` (the module just built) or a module another
// process is building.
PruneResult prune_cache(const std::string& dir, uint64_t max_bytes,
                        std::optional<std::chrono::seconds> older_than = std::nullopt, const std::string& keep = "",
                        bool prune_prelude = false);

}  // namespace ddpmc
