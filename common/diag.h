// Diagnostics: source files, locations and the two kinds of error.
//
// A UserError is a mistake in the user's spec (or flags, or data). Its message is
// fully formatted as
//     file:line:col: error: MESSAGE
//       <the source line>
//       <caret under the column>
//     hint: HINT
// An InternalError is a bug in ddpmc itself and names the C++ file and line.
// Library code throws; only tools/ decide exit codes.
#pragma once
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddpmc {

struct SourceFile {
  std::string path;                 // as given by the user (or "std" for the embedded stdlib)
  // The file's name independent of where it was read from: the main spec's file name,
  // an import as a path relative to the main spec's directory, "std" for the stdlib.
  // Generated code and the spec hash use it, so neither depends on how a path is spelled.
  std::string name;
  std::string text;
  std::vector<size_t> line_starts;  // byte offset of each line's first character
  std::string line(int line_no) const;  // 1-based; without the newline
};

// A position in a source file. line and col are 1-based; col counts bytes.
struct Loc {
  const SourceFile* file = nullptr;
  int line = 0;
  int col = 0;
};

// Owns every source file of one compilation; Locs point into it.
class Sources {
 public:
  SourceFile* add(std::string path, std::string text);  // name defaults to path
  const SourceFile* find(const std::string& path) const;  // nullptr if not loaded

 private:
  std::deque<std::unique_ptr<SourceFile>> files_;
};

class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& formatted) : std::runtime_error(formatted) {}
};

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& formatted) : std::logic_error(formatted) {}
};

// A source line as a diagnostic shows it: at most about 120 bytes around column
// `col` (with "..." where it is cut), control bytes and invalid UTF-8 escaped as
// \xNN, and the spaces (and tabs) that put a caret under column `col`.
struct EchoedLine {
  std::string text, caret;
};
EchoedLine echo_source_line(const std::string& line, int col);

// Formats the message described at the top of this file.
std::string format_diagnostic(const Loc& loc, const std::string& message, const std::string& hint);

[[noreturn]] void user_error(const Loc& loc, const std::string& message, const std::string& hint);
// For errors that have no source location (a flag, a file that cannot be read).
[[noreturn]] void user_error_noloc(const std::string& message, const std::string& hint);
[[noreturn]] void internal_error(const char* file, int line, const std::string& message);

}  // namespace ddpmc

#define DDPM_ICE(msg) ::ddpmc::internal_error(__FILE__, __LINE__, (msg))
#define DDPM_CHECK(cond, msg)                 \
  do {                                        \
    if (!(cond)) DDPM_ICE(std::string("check failed: " #cond ": ") + (msg)); \
  } while (0)
