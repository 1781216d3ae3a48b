// Module builder: spec file → emitted C++ → shared library, through a cache.
//
// The spec hash (stored in the module and in every checkpoint) is a hash of every
// spec source (the main file and its imports, each by its SourceFile::name and
// text, never by path) and the compiler version: it names the model and its
// parameter layout, and the same spec read from any directory or path spelling
// has the same hash. The cache file is keyed by a hash of the
// generated C++ itself plus the toolchain (C++ compiler, flags, and the runtime
// headers the module includes), so a changed compiler never reuses a stale module.
// A cache hit returns the existing .so without compiling.
#pragma once
#include <string>

#include "common/spec_sources.h"

namespace ddpmc {

struct BuildOptions {
  std::string cache_dir;          // default: $DDPM_CACHE_DIR, else $XDG_CACHE_HOME/ddpmc, else ~/.cache/ddpmc
  std::string emit_cpp;           // if set, also copy the generated C++ here
  std::string output_so;          // if set, also copy the .so here
  std::string dump_after;         // pass name, or "all"; dumps go to stderr
  bool verbose = false;           // print the compiler command line
};

struct BuiltModule {
  std::string so_path;    // in the cache
  std::string spec_hash;  // hex
  std::string checksum;   // of the .so (common/checksum.h), recorded beside it in the cache as KEY.sum
  SpecSources sources;    // the spec's own files, for checkpoints (common/spec_sources.h)
  bool cache_hit = false;
  double compile_seconds = 0;  // 0 on a cache hit
};

// Throws UserError for errors in the spec, and UserError (with the compiler's
// output attached) if the system C++ compiler fails.
BuiltModule build_module(const std::string& spec_path, const BuildOptions& opt = {});

// The folder of the generated-code headers (common/prelude) that modules are
// compiled against: $DDPMC_PRELUDE_DIR if set; else, for an installed ddpmc,
// PREFIX/include/ddpmc next to PREFIX/bin; else the source tree's common/prelude.
std::string prelude_dir();

// The same from a spec's own sources (a checkpoint's copy, common/spec_sources.h).
BuiltModule build_module_sources(const SpecSources& sources, const BuildOptions& opt = {});

struct Compiled;
// The same for an already compiled model (tests build hand-made graphs this way).
BuiltModule build_compiled(const Compiled& c, const BuildOptions& opt = {});

// The spec hash of a compiled spec (what build_compiled stores in the module).
std::string spec_hash(const Compiled& c);

}  // namespace ddpmc
