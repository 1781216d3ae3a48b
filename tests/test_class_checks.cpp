// Class indices end to end: the compiler records which sampler arguments are class
// indices and the classes the loss trains (ABI 5: label_values,
// sampler_arg_is_class), and the sampler's argument parsing (what --class and
// --arg become) accepts only whole numbers in that range, the "no class" index
// included, and each argument once. Also: a sampler state declared `label` compiles
// (it was an internal error). The model is tests/specs/cond2d.ddpm: `label y: 2`,
// dropout to class 2, sampler cfg(x, t, s, w = 1, class = 0).
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/diag.h"
#include "compiler/driver.h"
#include "compiler/pipeline.h"
#include "runtime/module.h"
#include "runtime/sample.h"
#include "tools/spec_module.h"

namespace {

const std::string kSpec = std::string(DDPM_SOURCE_DIR) + "/tests/specs/cond2d.ddpm";

ddpm::Module cond2d() {
  return ddpm::Module(ddpm_tools::module_for(kSpec, std::string(DDPM_TEST_CACHE)).so);
}

std::string args_error(const ddpm::Module& mod, const std::vector<std::string>& settings) {
  try {
    ddpm::sampler_args(mod.get(), mod.sampler_index("cfg"), settings);
  } catch (const ddpmc::UserError& e) {
    return e.what();
  }
  return "no error";
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("classes: the module says which sampler arguments are class indices and which classes the loss trains") {
  ddpm::Module mod = cond2d();
  REQUIRE(mod->abi_version >= 5);
  CHECK(mod->label_classes == 2);
  CHECK(mod->label_values == 3);  // where(drop, 2, y): class 2 is "no class"
  const int idx = mod.sampler_index("cfg");
  REQUIRE(idx >= 0);
  REQUIRE(mod->sampler_info[idx].n_args == 2);
  CHECK(mod->sampler_arg_is_class[idx][0] == 0);  // w
  CHECK(mod->sampler_arg_is_class[idx][1] == 1);  // class
}

TEST_CASE("classes: --class and --arg class must be a whole number in the model's classes") {
  ddpm::Module mod = cond2d();
  for (const char* ok : {"class=0", "class=1", "class=2"}) CHECK(args_error(mod, {ok}) == "no error");
  for (const char* bad : {"class=99", "class=-1", "class=1.5", "class=3"}) {
    CAPTURE(bad);
    const std::string msg = args_error(mod, {bad});
    CHECK(msg.find("class " + std::string(bad).substr(6) + " is not a class of the model: its classes are 0..1, or 2 "
                   "for no class") != std::string::npos);
  }
  CHECK(args_error(mod, {"w=99"}) == "no error");  // not a class index
}

TEST_CASE("classes: --class 1 with --arg class=0 is an error, not the first one silently") {
  ddpm::Module mod = cond2d();
  const std::string msg = args_error(mod, {"class=0", "class=1"});
  CHECK(msg.find("the class is given twice: class=0 and class=1") != std::string::npos);
  CHECK(msg.find("--class N is the same as --arg class=N") != std::string::npos);
}

TEST_CASE("classes: a sampler state declared label compiles") {
  std::string text = read_text(kSpec);
  const std::string head = "sampler cfg(x, t, s, w = 1, class = 0) {\n";
  const size_t at = text.find(head);
  REQUIRE(at != std::string::npos);
  for (const char* value : {"1", "class", "where(first_step(), class, k)"}) {
    CAPTURE(value);
    std::string spec = text;
    spec.replace(at, head.size(),
                 "sampler cfg(x, t, s, w = 1, class = 0) state(k: label) {\n  k = " + std::string(value) + "\n");
    spec.replace(spec.find("eps_theta(x, t, class)"), 22, "eps_theta(x, t, k)");
    CHECK_NOTHROW(ddpmc::check_spec_text("state_label.ddpm", spec));
  }
}

TEST_CASE("classes: every sampler argument that where() passes to a label is a class argument") {
  std::string spec = read_text(kSpec);
  const std::string head = "sampler cfg(x, t, s, w = 1, class = 0) {\n";
  spec.replace(spec.find(head), head.size(),
               "sampler cfg(x, t, s, w = 1, class = 0, other = 1) {\n  c = where(less(w, 0), class, other)\n");
  spec.replace(spec.find("eps_theta(x, t, class)"), 22, "eps_theta(x, t, c)");
  const ddpmc::Compiled c = ddpmc::compile_spec_text("two_class_args.ddpm", spec);
  REQUIRE(c.model.sampler_info.size() == 1);
  const auto& args = c.model.sampler_info[0].args;
  REQUIRE(args.size() == 3);
  CHECK_FALSE(args[0].is_class);  // w only chooses
  CHECK(args[1].is_class);
  CHECK(args[2].is_class);
  CHECK(c.model.label_values == 3);
}
