// The bounds on what flags and models may make the tools allocate
// (runtime/memory_plan.h, common/input_limits.h): --batch, -n and the parameters
// are checked against the machine's memory before anything is allocated, and the
// error names the bytes needed, the limit and what fits. The model is
// tests/specs/cond2d.ddpm (2-D points, a guided sampler).
#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

#include "common/diag.h"
#include "common/input_limits.h"
#include "runtime/memory_plan.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "runtime/train.h"
#include "test_runs.h"
#include "tools/spec_module.h"
#include "test_shell.h"

namespace {

ddpm::Module cond2d() {
  return ddpm::Module(ddpm_tools::module_for(std::string(DDPM_SOURCE_DIR) + "/tests/specs/cond2d.ddpm",
                                             std::string(DDPM_TEST_CACHE)).so);
}

using ddpm_test::user_error_of;

// DDPM_MEMORY_LIMIT_MB for the scope of one check.
struct MemoryLimit {
  explicit MemoryLimit(const char* mb) { ::setenv("DDPM_MEMORY_LIMIT_MB", mb, 1); }
  ~MemoryLimit() { ::unsetenv("DDPM_MEMORY_LIMIT_MB"); }
};

}  // namespace

TEST_CASE("limits: a --batch beyond memory is a user error naming the bytes needed and the batch that fits") {
  ddpm::Module mod = cond2d();
  CHECK_NOTHROW(ddpm::check_train_memory(mod.get(), 256, 1));
  const std::string msg = user_error_of([&] { ddpm::check_train_memory(mod.get(), 2000000000, 1); });
  CAPTURE(msg);
  CHECK(msg.find("training with --batch 2000000000 (2000000000 rows per module call) needs ") != std::string::npos);
  CHECK(msg.find(" of memory this machine allows") != std::string::npos);
  CHECK(msg.find("hint: use --batch ") != std::string::npos);
  // Slices cut the rows per call, and so the memory.
  MemoryLimit limit("64");
  const std::string sliced = user_error_of([&] { ddpm::check_train_memory(mod.get(), 1 << 20, 1); });
  CHECK(sliced.find("needs ") != std::string::npos);
  CHECK_NOTHROW(ddpm::check_train_memory(mod.get(), 1 << 20, 1024));
}

TEST_CASE("limits: ddpm-train --batch 2000000000 stops before allocating, with a user error") {
  const auto dir = ddpm_test::process_dir("test-limits", "train");
  std::filesystem::create_directories(dir);
  const float x[8] = {1, 0, -1, 0, 1, 0, -1, 0}, y[4] = {0, 1, 0, 1};
  ddpm::write_npy((dir / "x.npy").string(), x, {4, 2});
  ddpm::write_npy((dir / "y.npy").string(), y, {4});
  ddpm::TrainConfig c = ddpm_test::run_config("tests/specs/cond2d.ddpm", (dir / "x.npy").string(), dir / "run", 1,
                                              2000000000, 1);
  c.labels = (dir / "y.npy").string();
  CHECK(user_error_of([&] { ddpm::train(c); }).find("training with --batch 2000000000") != std::string::npos);
}

TEST_CASE("limits: parameters beyond memory are a user error naming their size") {
  ddpm::Module mod = cond2d();
  MemoryLimit limit("0.01");
  const std::string msg = user_error_of([&] { ddpm::check_train_memory(mod.get(), 1, 1); });
  CAPTURE(msg);
  CHECK(msg.find("the model's " + std::to_string(mod->param_floats) + " parameter floats") != std::string::npos);
  CHECK(msg.find("more than the 10.2 KiB of memory") != std::string::npos);
}

TEST_CASE("limits: a -n beyond memory is a user error naming the bytes needed and the -n that fits") {
  ddpm::Module mod = cond2d();
  CHECK_NOTHROW(ddpm::check_sample_memory(mod.get(), 0, 1000, 500, 1000));
  const std::string msg =
      user_error_of([&] { ddpm::check_sample_memory(mod.get(), 0, 100000000000000LL, 500, 100000000000000LL); });
  CAPTURE(msg);
  CHECK(msg.find("sampling 100000000000000 samples of 2 floats at --batch 500 needs ") != std::string::npos);
  CHECK(msg.find("hint: use -n ") != std::string::npos);
  // --class all keeps K * n samples.
  MemoryLimit limit("1");
  CHECK_NOTHROW(ddpm::check_sample_memory(mod.get(), 0, 10000, 500, 10000));
  CHECK(user_error_of([&] { ddpm::check_sample_memory(mod.get(), 0, 100000, 500, 200000); }).find("needs") !=
        std::string::npos);
}
