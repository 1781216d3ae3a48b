// Lexer: spec text → tokens, the first step of the front end.
//
// lex() turns one SourceFile into a flat vector of tokens ending with an Eof token;
// the parser (parser.h) consumes it. Comments (`#` to end of line) and all
// whitespace, newlines included, are dropped: newlines carry no meaning in the
// spec language. Every token records where it starts and where it ends, so that
// errors can point at a token or just after it (for a missing ')' and the like).
// Lexical errors (an unexpected character, an unterminated string, a malformed or
// out-of-range number) throw UserError via diag.h.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "diag.h"

namespace ddpmc {

enum class Tok {
  Name,       // x, eps_theta, return (keywords are contextual and lexed as names)
  Int,        // 1000 (digits only)
  Float,      // 1e-4, 0.02, 2.5e3, .5
  String,     // "text" (no escapes, no newlines)
  LParen,     // (
  RParen,     // )
  LBracket,   // [
  RBracket,   // ]
  LBrace,     // {
  RBrace,     // }
  Comma,      // ,
  Colon,      // :
  Equals,     // =
  Plus,       // +
  Minus,      // -
  Star,       // *
  Slash,      // /
  Arrow,      // ->
  Semicolon,  // ;
  Eof,
};

struct Token {
  Tok kind = Tok::Eof;
  std::string_view text;  // exact source spelling, pointing into the SourceFile; String includes the quotes
  double number = 0;      // Int and Float
  Loc loc;                // first byte
  Loc end;                // one past the last byte (same line: tokens never span lines)
};

// The Eof token sits just after the last real token (or at 1:1 in an empty file),
// so "found end of file" errors point at the end of the text rather than at an
// empty line below it.
std::vector<Token> lex(const SourceFile* file);

// The contents of a String token, without the quotes.
std::string string_value(const Token& t);

// How a token is named in error messages: "'eps'", "number '12'", "end of file".
std::string describe(const Token& t);

// The spelling of a punctuation kind, e.g. "')'"; used in messages.
std::string_view tok_spelling(Tok kind);

}  // namespace ddpmc
