// Diagnostics: formatting of user errors with the source line and a caret.
#include "diag.h"

#include <algorithm>

#include <fmt/format.h>

namespace ddpmc {

std::string SourceFile::line(int line_no) const {
  if (line_no < 1 || line_no > (int)line_starts.size()) return "";
  size_t b = line_starts[line_no - 1];
  size_t e = text.find('\n', b);
  if (e == std::string::npos) e = text.size();
  std::string s = text.substr(b, e - b);
  if (!s.empty() && s.back() == '\r') s.pop_back();
  return s;
}

SourceFile* Sources::add(std::string path, std::string text) {
  auto f = std::make_unique<SourceFile>();
  f->path = std::move(path);
  f->name = f->path;
  f->text = std::move(text);
  f->line_starts.push_back(0);
  for (size_t i = 0; i < f->text.size(); ++i)
    if (f->text[i] == '\n') f->line_starts.push_back(i + 1);
  files_.push_back(std::move(f));
  return files_.back().get();
}

const SourceFile* Sources::find(const std::string& path) const {
  for (auto& f : files_)
    if (f->path == path) return f.get();
  return nullptr;
}

namespace {

constexpr size_t kMaxEcho = 120;  // bytes of a source line shown around the column

// Length of the valid UTF-8 sequence at s[i], or 0 if there is none.
size_t utf8_len(const std::string& s, size_t i) {
  const unsigned char c = (unsigned char)s[i];
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
  return n;
}

}  // namespace

EchoedLine echo_source_line(const std::string& line, int col) {
  // A window of at most kMaxEcho bytes around the column, on character boundaries.
  size_t at = col > 0 ? std::min((size_t)col - 1, line.size()) : 0;
  size_t begin = at > kMaxEcho / 2 ? at - kMaxEcho / 2 : 0;
  while (begin > 0 && begin < line.size() && ((unsigned char)line[begin] & 0xC0) == 0x80) --begin;
  size_t end = std::min(line.size(), begin + kMaxEcho);
  EchoedLine out;
  if (begin > 0) {
    out.text = "...";
    out.caret = "   ";
  }
  for (size_t i = begin; i < end;) {
    const unsigned char c = (unsigned char)line[i];
    std::string shown;
    size_t n = 1;
    if (c == '\t' || (c >= 0x20 && c < 0x7F)) {
      shown = std::string(1, (char)c);
    } else if (size_t u = c >= 0x80 ? utf8_len(line, i) : 0; u > 0) {
      n = u;
      shown = line.substr(i, u);
    } else {
      // Control and invalid bytes never reach the terminal raw.
      shown = fmt::format("\\x{:02x}", c);
    }
    if (i < at) {
      // Keep tabs so the caret lines up; one column per character otherwise.
      if (c == '\t') out.caret += '\t';
      else out.caret += std::string(n > 1 ? 1 : shown.size(), ' ');
    }
    out.text += shown;
    i += n;
  }
  if (end < line.size()) out.text += "...";
  return out;
}

std::string format_diagnostic(const Loc& loc, const std::string& message, const std::string& hint) {
  std::string out;
  if (loc.file) {
    out = fmt::format("{}:{}:{}: error: {}\n", loc.file->path, loc.line, loc.col, message);
    EchoedLine e = echo_source_line(loc.file->line(loc.line), loc.col);
    out += fmt::format("  {}\n  {}^\n", e.text, e.caret);
  } else {
    out = fmt::format("error: {}\n", message);
  }
  if (!hint.empty()) out += fmt::format("hint: {}\n", hint);
  return out;
}

void user_error(const Loc& loc, const std::string& message, const std::string& hint) {
  throw UserError(format_diagnostic(loc, message, hint));
}

void user_error_noloc(const std::string& message, const std::string& hint) {
  throw UserError(format_diagnostic(Loc{}, message, hint));
}

void internal_error(const char* file, int line, const std::string& message) {
  throw InternalError(fmt::format("ddpmc internal error at {}:{}: {}", file, line, message));
}

}  // namespace ddpmc
