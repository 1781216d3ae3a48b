// The ELF completeness check (see elf_check.h).
#include "elf_check.h"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <vector>

namespace ddpmc {

std::string elf_problem(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return "it cannot be read";
  const uint64_t size = (uint64_t)f.tellg();
  Elf64_Ehdr eh;
  if (size < sizeof eh) return "it is truncated (shorter than an ELF header)";
  f.seekg(0);
  f.read(reinterpret_cast<char*>(&eh), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return "it is not an ELF file";
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return "it is not a 64-bit little-endian ELF file";
  if (eh.e_phentsize != sizeof(Elf64_Phdr) && eh.e_phnum > 0) return "its program headers are damaged";
  auto inside = [&](uint64_t off, uint64_t len) { return off <= size && len <= size - off; };
  if (!inside(eh.e_phoff, (uint64_t)eh.e_phnum * eh.e_phentsize) ||
      !inside(eh.e_shoff, (uint64_t)eh.e_shnum * eh.e_shentsize))
    return "it is truncated";
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  f.seekg((std::streamoff)eh.e_phoff);
  f.read(reinterpret_cast<char*>(ph.data()), (std::streamsize)(ph.size() * sizeof(Elf64_Phdr)));
  if (!f) return "it is truncated";
  for (const Elf64_Phdr& p : ph)
    if (p.p_type == PT_LOAD && !inside(p.p_offset, p.p_filesz)) return "it is truncated";
  return "";
}

}  // namespace ddpmc
