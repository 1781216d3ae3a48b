// Lexer: spec text → tokens (see lexer.h). A single forward scan over the bytes of
// one SourceFile; it tracks line and column itself so every token gets an exact
// Loc, and it reports the first lexical error as a UserError pointing at it.
#include "lexer.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <system_error>

namespace ddpmc {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

const char* kPunctHint =
    "outside comments and strings a spec uses only names, numbers, \"strings\" and the symbols "
    "( ) [ ] { } , : = + - * / -> ;";

class Lexer {
 public:
  explicit Lexer(const SourceFile* f) : f_(f), s_(f->text.data()), n_(f->text.size()) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    out.reserve(n_ / 4 + 8);  // typical specs have about one token per 3-5 bytes
    if (n_ >= 3 && s_[0] == '\xEF' && s_[1] == '\xBB' && s_[2] == '\xBF') pos_ = 3;  // a UTF-8 byte order mark
    for (;;) {
      skip_space_and_comments();
      if (pos_ >= n_) break;
      out.push_back(next());
    }
    Token eof;
    eof.kind = Tok::Eof;
    eof.loc = out.empty() ? Loc{f_, 1, 1} : out.back().end;
    eof.end = eof.loc;
    out.push_back(eof);
    return out;
  }

 private:
  // Raw pointer access keeps the scan fast in unoptimized sanitizer builds too.
  const SourceFile* f_;
  const char* s_;
  size_t n_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;

  Loc here() const { return Loc{f_, line_, (int)(pos_ - line_start_) + 1}; }
  Loc at(size_t p) const { return Loc{f_, line_, (int)(p - line_start_) + 1}; }
  char peek(size_t ahead = 0) const { return pos_ + ahead < n_ ? s_[pos_ + ahead] : '\0'; }

  void skip_space_and_comments() {
    while (pos_ < n_) {
      char c = s_[pos_];
      if (c == '\n') {
        ++pos_;
        ++line_;
        line_start_ = pos_;
      } else if (c == '\r') {
        lone_cr_check();
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\v' || c == '\f') {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < n_ && s_[pos_] != '\n') {
          if (s_[pos_] == '\r') lone_cr_check();
          ++pos_;
        }
      } else {
        break;
      }
    }
  }

  // A carriage return ends a line only before a line feed (CRLF); a file with
  // classic Mac (CR-only) line endings would otherwise read as one long line.
  void lone_cr_check() const {
    if (pos_ + 1 < n_ && s_[pos_ + 1] == '\n') return;
    if (pos_ + 1 >= n_) return;
    user_error(here(), "a carriage return without a line feed: this file has CR-only (classic Mac) line endings",
               "convert it to LF line endings, for example with `tr '\\r' '\\n' < OLD > NEW`");
  }

  Token make(Tok kind, size_t start) {
    Token t;
    t.kind = kind;
    t.text = std::string_view(s_ + start, pos_ - start);
    t.loc = at(start);
    t.end = here();
    return t;
  }

  Token next() {
    size_t start = pos_;
    char c = s_[pos_];
    if (is_name_start(c)) {
      while (pos_ < n_ && is_name_char(s_[pos_])) ++pos_;
      return make(Tok::Name, start);
    }
    if (is_digit(c) || (c == '.' && is_digit(peek(1)))) return number();
    if (c == '"') return string();
    Tok kind;
    switch (c) {
      case '(': kind = Tok::LParen; break;
      case ')': kind = Tok::RParen; break;
      case '[': kind = Tok::LBracket; break;
      case ']': kind = Tok::RBracket; break;
      case '{': kind = Tok::LBrace; break;
      case '}': kind = Tok::RBrace; break;
      case ',': kind = Tok::Comma; break;
      case ':': kind = Tok::Colon; break;
      case '=': kind = Tok::Equals; break;
      case '+': kind = Tok::Plus; break;
      case '*': kind = Tok::Star; break;
      case '/': kind = Tok::Slash; break;
      case ';': kind = Tok::Semicolon; break;
      case '-':
        if (peek(1) == '>') {
          pos_ += 2;
          return make(Tok::Arrow, start);
        }
        kind = Tok::Minus;
        break;
      default: unexpected_character();
    }
    ++pos_;
    return make(kind, start);
  }

  Token number() {
    size_t start = pos_;
    bool is_float = false;
    bool bad_exponent = false;
    while (is_digit(peek())) ++pos_;
    if (peek() == '.') {
      is_float = true;
      ++pos_;
      while (is_digit(peek())) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      is_float = true;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit(peek())) bad_exponent = true;
      while (is_digit(peek())) ++pos_;
    }
    bool runs_on = is_name_char(peek()) || peek() == '.';
    if (bad_exponent || runs_on) {
      size_t clean_end = pos_;
      while (is_name_char(peek()) || peek() == '.') ++pos_;
      std::string text(s_ + start, pos_ - start);
      int dots = 0;
      for (char ch : text) dots += ch == '.';
      std::string hint;
      if (dots > 1)
        hint = "a number has at most one '.', as in '0.02'";
      else if (bad_exponent && clean_end == pos_)
        hint = "an exponent needs digits after the 'e', as in '1e-4'";
      else
        hint = "a number cannot run into letters; separate it from a name with a space or an operator "
               "(names start with a letter or '_')";
      user_error(at(start), fmt::format("malformed number '{}'", text), hint);
    }
    Token t = make(is_float ? Tok::Float : Tok::Int, start);
    double v = 0;
    auto [p, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
    if (ec == std::errc::result_out_of_range || (ec == std::errc() && !std::isfinite(v)))
      user_error(t.loc, fmt::format("number '{}' is out of range", t.text),
                 "numbers must lie between about 1e-308 and 1e308 in magnitude");
    if (ec != std::errc() || p != t.text.data() + t.text.size())
      user_error(t.loc, fmt::format("malformed number '{}'", t.text),
                 "write numbers like '1000', '0.02', '.5' or '1e-4'");
    t.number = v;
    return t;
  }

  Token string() {
    size_t start = pos_;
    ++pos_;
    while (pos_ < n_ && s_[pos_] != '"' && s_[pos_] != '\n') ++pos_;
    if (pos_ >= n_ || s_[pos_] != '"')
      user_error(at(start), "unterminated string: this '\"' is never closed",
                 "add '\"' before the end of the line; a string cannot span lines");
    ++pos_;
    return make(Tok::String, start);
  }

  [[noreturn]] void unexpected_character() {
    Loc loc = here();
    unsigned char c = (unsigned char)s_[pos_];
    if (c >= 0x80) {
      // Show the whole UTF-8 sequence when it is one, so the user sees the character.
      size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      bool valid = n > 1 && pos_ + n <= n_;
      for (size_t i = 1; valid && i < n; ++i) valid = ((unsigned char)s_[pos_ + i] & 0xC0) == 0x80;
      if (!valid)
        user_error(loc, fmt::format("unexpected byte 0x{:02x}", (unsigned)c),
                   "the spec must be ASCII outside comments and strings; this byte is not even valid UTF-8");
      std::string ch(s_ + pos_, n);
      std::string hint = "the spec must be ASCII outside comments and strings";
      if (ch == "\u2212" || ch == "\u2013" || ch == "\u2014") hint = "use the ASCII minus sign '-'";
      else if (ch == "\u00d7" || ch == "\u00b7" || ch == "\u22c5") hint = "use '*' to multiply";
      else if (ch == "\u00f7") hint = "use '/' to divide";
      else if (ch == "\u201c" || ch == "\u201d") hint = "use plain double quotes '\"' for strings";
      else if (ch == "\u00a0") hint = "this is a non-breaking space; replace it with a normal space";
      user_error(loc, fmt::format("unexpected character '{}'", ch), hint);
    }
    if (c < 0x20 || c == 0x7f)
      user_error(loc, fmt::format("unexpected control character 0x{:02x}", (unsigned)c),
                 "remove it; a spec is plain text");
    std::string hint;
    switch (c) {
      case '\'': hint = "strings use double quotes, as in \"std\""; break;
      case '>': hint = "the only arrow is '->', written before a result type"; break;
      case '.': hint = "'.' only appears inside numbers such as '0.5'"; break;
      case '^': hint = "there is no power operator; multiply, as in 'x * x'"; break;
      case '%': hint = "there is no '%' operator; comments start with '#'"; break;
      default: hint = std::string("remove it; ") + kPunctHint;
    }
    user_error(loc, fmt::format("unexpected character '{}'", (char)c), hint);
  }
};

}  // namespace

std::vector<Token> lex(const SourceFile* file) { return Lexer(file).run(); }

std::string string_value(const Token& t) {
  if (t.kind != Tok::String || t.text.size() < 2) return std::string(t.text);
  return std::string(t.text.substr(1, t.text.size() - 2));
}

std::string_view tok_spelling(Tok kind) {
  switch (kind) {
    case Tok::Name: return "a name";
    case Tok::Int: return "an integer";
    case Tok::Float: return "a number";
    case Tok::String: return "a string";
    case Tok::LParen: return "'('";
    case Tok::RParen: return "')'";
    case Tok::LBracket: return "'['";
    case Tok::RBracket: return "']'";
    case Tok::LBrace: return "'{'";
    case Tok::RBrace: return "'}'";
    case Tok::Comma: return "','";
    case Tok::Colon: return "':'";
    case Tok::Equals: return "'='";
    case Tok::Plus: return "'+'";
    case Tok::Minus: return "'-'";
    case Tok::Star: return "'*'";
    case Tok::Slash: return "'/'";
    case Tok::Arrow: return "'->'";
    case Tok::Semicolon: return "';'";
    case Tok::Eof: return "end of file";
  }
  return "?";
}

std::string describe(const Token& t) {
  switch (t.kind) {
    case Tok::Name: return fmt::format("'{}'", t.text);
    case Tok::Int:
    case Tok::Float: return fmt::format("number '{}'", t.text);
    case Tok::String: return fmt::format("string {}", t.text);
    default: return std::string(tok_spelling(t.kind));
  }
}

}  // namespace ddpmc
