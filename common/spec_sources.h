// A spec's own source files, carried by every checkpoint so that a run directory
// is complete without any compiled code (README "Threat model"): the main file's
// name and text, and each file it imports (not the embedded standard library, which
// the compiler version pins) by its name relative to the main file's directory.
// The compiler produces it (compiler/build.h: BuiltModule::sources), ddpm-train
// writes it as the checkpoint metadata key "spec_sources", and the tools rebuild
// the module from it (compiler/build.h: build_module_sources).
#pragma once
#include <cstddef>
#include <map>
#include <string>

namespace ddpmc {

struct SpecSources {
  std::string main;                          // the main file's name, e.g. "moons.ddpm"
  std::map<std::string, std::string> files;  // name -> text; holds `main` too

  // {"main": ..., "files": {name: text}} as one JSON string.
  std::string to_json() const;
  // The inverse. Throws a UserError naming `what` (e.g. the checkpoint) if the text
  // is not such an object, if `main` is not among the files, or if it holds more
  // than kMaxFiles files or kMaxBytes of text.
  static SpecSources from_json(const std::string& text, const std::string& what);

  static constexpr size_t kMaxFiles = 256;
  static constexpr size_t kMaxBytes = 16u << 20;
};

}  // namespace ddpmc
