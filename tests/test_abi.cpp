// Older modules keep working: a version-3 module (the moons module emitted by
// this compiler, its descriptor cut back to version 3 and its version-4 fields
// poisoned, so that a runtime reading them would crash or ask for labels) trains,
// samples, and refuses sampler arguments, as version-3 modules did.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "codegen.h"
#include "common/diag.h"
#include "runtime/module.h"
#include "runtime/sample.h"
#include "runtime/train.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

void replace_once(std::string& s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  s.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("abi: a version 3 module still trains and samples, without arguments") {
  const fs::path dir = fs::path(DDPM_BINARY_DIR) / "test-abi";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string cpp = ddpmc::emit_module(ddpmc::compile_spec_file(ddpm_test::source_path("models/moons.ddpm")), "v3");
  replace_once(cpp, "    DDPM_ABI_VERSION, ", "    3, ");
  replace_once(cpp, "    kSamplerInfo, sampler_step4, DDPM_PREDICTS_EPS,\n    0, train_step_labels, loss_eval_labels,\n",
               "    nullptr, nullptr, 7,\n    99, nullptr, nullptr,\n");
  std::ofstream(dir / "v3.cpp") << cpp;
  const std::string so = (dir / "v3.so").string();
  const std::string cmd = std::string("'") + DDPMC_CXX + "' -std=c++20 -O1 -march=native -fPIC -shared -I'" +
                          DDPMC_RUNTIME_INCLUDE_DIR + "' '" + (dir / "v3.cpp").string() + "' -o '" + so + "' -ltbb";
  REQUIRE(std::system(cmd.c_str()) == 0);
  CHECK(ddpm::Module(so)->abi_version == 3);

  ddpm::TrainConfig c;
  c.model = so;
  c.data = "moons";
  c.steps = 300;
  c.batch = 64;
  c.threads = 2;
  c.out = (dir / "run").string();
  c.seed = 1;
  c.quiet = true;
  REQUIRE(ddpm::train(c) == 0);
  ddpm::SampleConfig s;
  s.run_dir = c.out;
  s.sampler = "ddim";
  s.steps = 20;
  s.n = 50;
  s.threads = 2;
  s.quiet = true;
  CHECK(ddpm::sample_to_vector(s).size() == 100);
  s.args = {"eta=1"};
  try {
    ddpm::sample_to_vector(s);
    FAIL("expected an error");
  } catch (const ddpmc::UserError& e) {
    CHECK(std::string(e.what()).find("sampler 'ddim' takes no arguments") != std::string::npos);
  }
}
