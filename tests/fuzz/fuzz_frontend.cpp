// libFuzzer target over the compiler: everything `ddpmc check` runs (lexer, parser,
// imports, lowering with its expansion bounds, autodiff, the passes and code
// generation; not the C++ build). Built only with -DDDPM_FUZZ=ON and clang
// (tools/fuzz.sh), with AddressSanitizer and UndefinedBehaviorSanitizer. An input
// must be accepted or rejected with a UserError. What the tools would report with
// exit status 70 (an InternalError, or any other exception such as bad_alloc)
// aborts, a crash for libFuzzer, as does a sanitizer report, a hang past -timeout
// or memory past -rss_limit_mb. An input that starts with '{' is read as the spec
// sources a checkpoint carries (common/spec_sources.h), the path by which a run
// directory from anyone reaches the compiler; any other input is one spec file.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/diag.h"
#include "compiler/driver.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    if (!text.empty() && text[0] == '{')
      ddpmc::check_spec_sources_json(text);
    else
      ddpmc::check_spec_text("fuzz.ddpm", text);
  } catch (const ddpmc::UserError&) {
    // A clean rejection: exit status 1 in the tools.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_frontend: this input would exit with status 70 (internal error): %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "fuzz_frontend: this input throws something that is not an exception\n");
    std::abort();
  }
  return 0;
}
