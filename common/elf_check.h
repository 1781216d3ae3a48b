// A sanity check of a shared library file before dlopen: a truncated or damaged
// ELF file can make the dynamic loader read past the end of its mapping, which
// kills the process with SIGBUS instead of returning an error. Both the module
// cache (compiler/cache.cpp) and the runtime's module loader check first.
#pragma once
#include <string>

namespace ddpmc {

// "" if `path` is a complete 64-bit little-endian ELF file (its program and
// section header tables and every loadable segment lie inside the file);
// otherwise what is wrong, in a few words ("it is truncated").
std::string elf_problem(const std::string& path);

}  // namespace ddpmc
