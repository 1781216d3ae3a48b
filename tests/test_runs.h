// Configurations for the suites that train a small model and sample from it
// (test_solvers, test_models, test_conditioning): quiet, 2 threads, modules built
// through the test cache.
#pragma once
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>

#include "runtime/safetensors.h"
#include "runtime/sample.h"
#include "runtime/train.h"
#include "tools/spec_module.h"

namespace ddpm_test {

// A directory private to this test process, removed when it exits. ctest runs each
// test case of a suite as its own process, in parallel under -j: two of them training
// into one directory would read each other's half-written checkpoints.
// The checkpoints of runs a and b hold the same step and the same bits in every tensor
// (params, EMA and both Adam moments).
inline void require_same_checkpoint(const std::filesystem::path& a, const std::filesystem::path& b) {
  const ddpm::SafeTensors sa = ddpm::read_safetensors((a / "checkpoint.safetensors").string());
  const ddpm::SafeTensors sb = ddpm::read_safetensors((b / "checkpoint.safetensors").string());
  REQUIRE(sa.tensors.size() == sb.tensors.size());
  CHECK(sa.metadata.at("step") == sb.metadata.at("step"));
  for (const auto& [name, t] : sa.tensors) {
    auto it = sb.tensors.find(name);
    REQUIRE_MESSAGE(it != sb.tensors.end(), name);
    REQUIRE(it->second.second.size() == t.second.size());
    CHECK_MESSAGE(std::memcmp(it->second.second.data(), t.second.data(), t.second.size() * sizeof(float)) == 0,
                  "tensor differs: ", name, " between ", a.string(), " and ", b.string());
  }
}

inline std::filesystem::path process_dir(const std::string& suite, const std::string& name) {
  struct Cleanup {
    std::vector<std::filesystem::path> dirs;
    ~Cleanup() {
      std::error_code ec;
      for (const auto& d : dirs) std::filesystem::remove_all(d, ec);
    }
  };
  static Cleanup cleanup;
  std::filesystem::path p = std::filesystem::path(DDPM_BINARY_DIR) / suite / (name + "." + std::to_string(::getpid()));
  cleanup.dirs.push_back(p);
  return p;
}

// A quiet 2-thread run of `spec` (relative to the source tree) on `data` into a
// fresh directory `out`; the module is built through the test cache.
inline ddpm::TrainConfig run_config(const std::string& spec, const std::string& data, const std::filesystem::path& out,
                                    int64_t steps, int batch, uint64_t seed) {
  std::filesystem::remove_all(out);
  std::filesystem::create_directories(out.parent_path());
  ddpm::TrainConfig c;
  c.model = std::string(DDPM_SOURCE_DIR) + "/" + spec;
  const ddpm_tools::ModuleFile mf = ddpm_tools::module_for(c.model, std::string(DDPM_TEST_CACHE));
  c.module_so = mf.so;  // as ddpm-train does: checked, and its source in every checkpoint
  c.module_checksum = mf.checksum;
  c.spec_sources = mf.sources;
  c.data = data;
  c.steps = steps;
  c.batch = batch;
  c.threads = 2;
  c.out = out.string();
  c.seed = seed;
  c.log_every = 1000;
  c.ckpt_every = 100000;
  c.quiet = true;
  return c;
}

// Quiet 2-thread sampling of n points from a run directory.
inline ddpm::SampleConfig draw_config(const std::filesystem::path& run, const std::string& sampler, int steps, int64_t n) {
  ddpm::SampleConfig s;
  s.run_dir = run.string();
  s.sampler = sampler;
  s.steps = steps;
  s.n = n;
  s.threads = 2;
  s.quiet = true;
  return s;
}

}  // namespace ddpm_test
