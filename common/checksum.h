// File checksums that guard every module before dlopen (XXH3-128 from Debian's
// libxxhash). The module cache records one beside each module (KEY.sum), ddpm-train
// records the run's module.so in its checkpoint, and a module whose bytes do not
// match its recorded checksum is rebuilt or refused, never loaded: a damaged
// module would crash the tools or, worse, silently change the arithmetic. This
// detects damage, not tampering (a checksum stored beside a file can be replaced
// with it); run directories are not trusted at all (README "Threat model").
#pragma once
#include <string>

namespace ddpmc {

// "xxh3-128:" followed by 32 hex digits, of the whole file. Throws a UserError
// naming `path` if it cannot be read.
std::string file_checksum(const std::string& path);

// "" if `path` has checksum `recorded` (surrounding whitespace ignored); otherwise why
// not, in a few words.
std::string checksum_problem(const std::string& path, const std::string& recorded);

}  // namespace ddpmc
