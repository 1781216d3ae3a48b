// Parser: tokens → AST (ast.h) for one spec file.
//
// parse_module() lexes the file (lexer.h) and runs a recursive-descent parser over
// the grammar below, producing one Module. Imports are only recorded here; they are
// resolved by frontend.h, and names and shapes are checked later by lowering.
//
//   file     := item*
//   item     := 'import' (NAME | STRING)
//             | 'diffusion' '{' (setting ';'?)* '}'
//             | 'data' NAME ':' type
//             | ('fn' | 'net') NAME '(' params? ')' ('->' type)? block
//             | 'loss' block
//             | 'sampler' NAME '(' params? ')' block
//   setting  := NAME '=' expr
//   params   := param (',' param)*        param := NAME (':' type)? ('=' expr)?
//   type     := '[' INT (',' INT)* ']' | 'step'
//   block    := '{' stmt* '}'
//   stmt     := ('return' expr | NAME '=' expr) ';'?
//   expr     := term (('+' | '-') term)*
//   term     := unary (('*' | '/') unary)*
//   unary    := '-' unary | postfix
//   postfix  := primary ('[' expr ']' | '(' args? ')')*    the callee must be a plain NAME
//   primary  := INT | FLOAT | STRING | NAME | '(' expr ')' | '[' (expr (',' expr)*)? ']'
//   args     := arg (',' arg)*             arg := NAME '=' expr | expr
//
// Keywords are contextual: they are ordinary names except where the grammar asks
// for them. Newlines are not statement terminators; an expression continues while
// the next token is a binary operator, so `return a\n  + b` is one expression.
//
// Locations. Every node's loc is its first token, with one exception: a Binary
// expression's loc is its OPERATOR token, so that a shape error in `a + b` points
// at the '+'. A parenthesized expression is returned as its inner expression (no
// node for the parentheses). Index.loc is the base's first token; Call.loc is the
// callee name; Arg.loc is the keyword for keyword arguments, else the value's loc;
// Stmt.name_loc is the assigned name (== loc for return); ParamDecl.loc is the
// parameter's name; TypeAnn.loc is its '[' or 'step'; FuncDef.loc is the keyword,
// name_loc the name (== loc for loss) and end_loc the closing '}'; ImportDecl,
// DataDecl and DiffusionDecl locs are their keywords; Setting.loc is the key.
//
// Errors throw UserError. Besides plain syntax errors the parser rejects: duplicate
// keyword arguments in one call, a positional argument after a keyword argument,
// duplicate parameter names, shape dimensions that are not positive integers,
// statements outside a block, calls on anything but a name (`(a)(b)`), and
// expressions more than kMaxExprDepth levels deep (each nesting level and each
// binary operator in a chain counts one), so no later recursive pass can overflow
// the stack. An unclosed block is reported at its opening '{'. An error about a
// missing token points at the unexpected token when it is on the same line, and
// just after the previous token otherwise (where the missing token belongs).
#pragma once
#include "ast.h"

namespace ddpmc {

inline constexpr int kMaxExprDepth = 256;

Module parse_module(const SourceFile* f);

}  // namespace ddpmc
