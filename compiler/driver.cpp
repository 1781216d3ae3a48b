// Driver (temporary front-end-only version): spec → Program, so that parse and
// import errors surface through check_spec_file()/check_spec_text(). The full
// version adds lowering, type checking and the memory plan and fills the numbers.
#include "driver.h"

#include <fmt/format.h>

#include "frontend.h"

namespace ddpmc {
namespace {

CheckReport report(const Program& p, int batch) {
  CheckReport r;
  r.batch = batch;
  size_t defs = 0;
  for (const Module& m : p.modules) defs += m.defs.size();
  r.text = fmt::format("parsed {} file(s), {} definition(s)\n", p.modules.size(), defs);
  return r;
}

}  // namespace

CheckReport check_spec_file(const std::string& path, int batch) {
  Sources sources;
  Program p = load_program(sources, path);
  return report(p, batch);
}

CheckReport check_spec_text(const std::string& path_label, const std::string& text, int batch) {
  Sources sources;
  Program p = load_program_text(sources, path_label, text);
  return report(p, batch);
}

}  // namespace ddpmc
