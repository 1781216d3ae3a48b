// Diagnostics: formatting of user errors with the source line and a caret.
#include "diag.h"

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

const SourceFile* Sources::add(std::string path, std::string text) {
  auto f = std::make_unique<SourceFile>();
  f->path = std::move(path);
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

std::string format_diagnostic(const Loc& loc, const std::string& message, const std::string& hint) {
  std::string out;
  if (loc.file) {
    out = fmt::format("{}:{}:{}: error: {}\n", loc.file->path, loc.line, loc.col, message);
    std::string src = loc.file->line(loc.line);
    // Control bytes (a NUL would cut the message short) are shown as spaces.
    for (char& ch : src)
      if ((unsigned char)ch < 0x20 && ch != '\t') ch = ' ';
    std::string caret;
    // Keep tabs so the caret lines up under the source line.
    for (int i = 0; i + 1 < loc.col && i < (int)src.size(); ++i) caret += src[i] == '\t' ? '\t' : ' ';
    out += fmt::format("  {}\n  {}^\n", src, caret);
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
