// runtime/evaluator.h on the modules this branch can build: a diffusion module is
// refused as an evaluator with one line, and the evaluator's weight reader takes
// tensors by name ("ema/<name>" or "<name>"), checks the spec hash, and names a
// missing tensor. (A supervised module runs through Evaluator::run in
// tests/test_eval_quality.cpp, which needs the supervised specs of branch h17a.)
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/evaluator.h"
#include "runtime/safetensors.h"
#include "test_runs.h"
#include "test_shell.h"

namespace fs = std::filesystem;

namespace {

ddpm::Module tiny_module() {
  const ddpm_tools::ModuleFile mf = ddpm_tools::module_for(std::string(DDPM_SOURCE_DIR) + "/tests/specs/tiny_image.ddpm",
                                                           std::string(DDPM_TEST_CACHE));
  return ddpm::Module(mf.so, mf.checksum);
}

// Writes every parameter of `m` as prefix + name, parameter i filled with i + 1.
void write_weights(const fs::path& path, const ddpm_module& m, const std::string& prefix,
                   const std::string& spec_hash, std::vector<std::vector<float>>& store) {
  std::vector<ddpm::TensorView> views;
  store.clear();
  for (int i = 0; i < m.n_params; ++i) store.emplace_back((size_t)m.params[i].numel, (float)(i + 1));
  for (int i = 0; i < m.n_params; ++i)
    views.push_back({prefix + m.params[i].name,
                     std::vector<int64_t>(m.params[i].dims, m.params[i].dims + m.params[i].rank),
                     store[(size_t)i].data()});
  ddpm::write_safetensors(path.string(), views, {{"spec_hash", spec_hash}});
}

}  // namespace

TEST_CASE("evaluator: a diffusion module is not an evaluator (one line)") {
  ddpm::Module mod = tiny_module();
  std::vector<float> params((size_t)mod->param_floats, 0.0f);
  const std::string e = ddpm_test::user_error_of([&] { ddpm::Evaluator ev(std::move(mod), params, "tiny_image"); });
  CHECK(e.find("tiny_image is not a supervised model") != std::string::npos);
  CHECK(std::count(e.begin(), e.end(), '\n') <= 2);  // the message and its hint
}

TEST_CASE("evaluator: weights are read by name and shape, whatever compiler version wrote them") {
  const fs::path dir = ddpm_test::process_dir("evaluator", "weights");
  fs::create_directories(dir);
  const ddpm::Module mod = tiny_module();
  const ddpm_module& m = mod.get();
  std::vector<std::vector<float>> store;
  for (const std::string prefix : {"ema/"}) {
    write_weights(dir / "w.safetensors", m, prefix, m.spec_hash, store);
    const std::vector<float> p = ddpm::load_evaluator_weights((dir / "w.safetensors").string(), mod);
    REQUIRE((int64_t)p.size() == m.param_floats);
    for (int i = 0; i < m.n_params; ++i) CHECK(p[(size_t)m.params[i].offset] == (float)(i + 1));
  }
  write_weights(dir / "other.safetensors", m, "ema/", "0123", store);  // another compiler version's hash
  CHECK(ddpm::load_evaluator_weights((dir / "other.safetensors").string(), mod).size() == (size_t)m.param_floats);
  write_weights(dir / "wrong.safetensors", m, "param/", m.spec_hash, store);
  CHECK(ddpm_test::user_error_of([&] { ddpm::load_evaluator_weights((dir / "wrong.safetensors").string(), mod); })
            .find("has no tensor 'ema/") != std::string::npos);
  CHECK(!ddpm_test::user_error_of([&] { ddpm::load_evaluator_weights((dir / "missing.safetensors").string(), mod); })
             .empty());
}
