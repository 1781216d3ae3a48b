// Front end: a spec's main file and everything it imports → parsed Modules.
//
// load_program() reads the main file, parses it (parser.h), then follows its
// `import`s depth-first, parsing each imported file exactly once, and returns the
// modules in dependency order (every file after the files it imports, the main
// file last). Lowering consumes the Program. All source text is owned by the
// caller's Sources, which must outlive the Program (Locs point into it).
//
// Every file gets a SourceFile::name that does not depend on how its path was
// spelled (the main file's file name; an import relative to the main file's
// directory); the spec hash and the generated code use names, never paths.
//
// Import resolution: a name or string that is a key of embedded_stdlib() ("std" for
// compiler/stdlib/std.ddpm) names that embedded file, whose SourceFile path is the
// key itself; embedded files win over files on disk of the same name. Anything
// else is a path relative to the importing file's directory, with ".ddpm" appended
// when missing. Errors, reported at the `import` keyword: the file cannot be found
// or read, or the imports form a cycle (the message lists it).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "ast.h"

namespace ddpmc {

struct Program {
  std::vector<Module> modules;  // dependency order: imports before importers, main file last, each file once
};

// The standard library spec files, by name without ".ddpm". Defined in a file that
// compiler/embed.cmake generates at build time from compiler/stdlib/*.ddpm.
const std::map<std::string, std::string>& embedded_stdlib();

// Reads main_path from disk. A missing or unreadable main file is a UserError
// without a location.
Program load_program(Sources& sources, const std::string& main_path);

// Parses `text` as if it were the file path_label (imports are resolved relative
// to path_label's directory). For tests, fuzzing and tools that already hold the text.
Program load_program_text(Sources& sources, const std::string& path_label, const std::string& text);

// The same, but every file import resolves in `imports` (keyed by the import's path
// relative to the main file's directory, as SourceFile::name spells it) and never
// on disk: a spec rebuilt from the sources a checkpoint carries.
Program load_program_files(Sources& sources, const std::string& path_label, const std::string& text,
                           const std::map<std::string, std::string>& imports);

}  // namespace ddpmc
