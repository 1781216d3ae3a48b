// Helpers for the tests that run the built tools (build/tools/*) as a user would,
// read the files they write, or expect a one-line user error from a call.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "common/diag.h"

namespace ddpm_test {

// The path of a built tool: tool_path("ddpm-sample").
inline std::string tool_path(const char* name) { return std::string(DDPM_BINARY_DIR) + "/tools/" + name; }

// Runs a shell command; returns its exit status (128 + the signal if one killed it)
// and sets `out` to its stdout and stderr together.
inline int run_shell(const std::string& cmd, std::string& out) {
  out.clear();
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// A whole file's bytes ("" if it cannot be read).
inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The message of the UserError f throws, or "" if it throws none.
template <class F>
std::string user_error_of(F f) {
  try {
    f();
  } catch (const ddpmc::UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace ddpm_test
