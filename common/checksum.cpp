// File checksums (see checksum.h).
#include "checksum.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <xxhash.h>

#include "diag.h"

namespace ddpmc {

std::string file_checksum(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) user_error_noloc(fmt::format("cannot read {}: {}", path, std::strerror(errno)), "check the path");
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(), &XXH3_freeState);
  if (!st || XXH3_128bits_reset(st.get()) != XXH_OK) DDPM_ICE("XXH3_createState failed");
  std::vector<char> buf(1 << 16);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) XXH3_128bits_update(st.get(), buf.data(), n);
  if (std::ferror(f.get())) user_error_noloc(fmt::format("cannot read {}: read error", path), "check the file");
  const XXH128_hash_t h = XXH3_128bits_digest(st.get());
  return fmt::format("xxh3-128:{:016x}{:016x}", h.high64, h.low64);
}

std::string checksum_problem(const std::string& path, const std::string& recorded) {
  // Whitespace around the recorded text is not part of it: a KEY.sum written by hand
  // (`echo ... > KEY.sum`) ends in a newline.
  const size_t first = recorded.find_first_not_of(" \t\r\n");
  const std::string expected =
      first == std::string::npos ? "" : recorded.substr(first, recorded.find_last_not_of(" \t\r\n") - first + 1);
  if (expected.empty()) return "no checksum is recorded for it";
  std::string actual;
  try {
    actual = file_checksum(path);
  } catch (const UserError&) {
    return "it cannot be read";
  }
  if (actual != expected) return fmt::format("its checksum is {}, not the recorded {}", actual, expected);
  return "";
}

}  // namespace ddpmc
