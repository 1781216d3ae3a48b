// libFuzzer target over the compiler's front end: lexer, parser, imports and
// lowering (shapes, names, inlining, constant tables). Built only with
// -DDDPM_FUZZ=ON and clang (tools/fuzz.sh), with AddressSanitizer and
// UndefinedBehaviorSanitizer. An input must be accepted or rejected with a
// UserError; an InternalError or any other exception aborts (a crash for
// libFuzzer), as does a sanitizer report or a hang past -timeout.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/diag.h"
#include "compiler/frontend.h"
#include "compiler/lower.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    ddpmc::Sources sources;
    ddpmc::Program program = ddpmc::load_program_text(sources, "fuzz.ddpm", text);
    ddpmc::lower(program, "fuzz.ddpm");
  } catch (const ddpmc::UserError&) {
    // A clean rejection.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_frontend: not a user error: %s\n", e.what());
    std::abort();
  }
  return 0;
}
