// The shipped models that other suites do not cover: models/moons_cosine_v.ddpm
// (cosine schedule, v-prediction) trains and samples near the data, and its
// module declares its prediction; models/fashion_cond.ddpm (class-conditional
// U-Net with attention and a guided sampler) builds, takes labels in a training
// step, its guided sampler runs with the class and weight set per call, and its
// noise predictor for the bound (eps_eval_labels) takes a class per sample.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <cmath>
#include <filesystem>

#include "module.h"
#include "runtime/data2d.h"
#include "runtime/sample.h"
#include "runtime/swd.h"
#include "runtime/train.h"
#include "test_runs.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ddpm_test;

TEST_CASE("models: moons_cosine_v (v-prediction, cosine schedule) samples near the data") {
  const fs::path run = fs::path(DDPM_BINARY_DIR) / "test-models" / "moons_cosine_v";
  const ddpm::TrainConfig c = run_config("models/moons_cosine_v.ddpm", "moons", run, 3000, 256, 5);
  REQUIRE(ddpm::train(c) == 0);
  ddpm::Module mod(c.module_so);
  CHECK(mod->eps_predicts == DDPM_PREDICTS_V);
  const int n = 2000;
  std::vector<float> ref(n * 2);
  ddpm::sample_2d("moons", n, 777, 0, ref.data());
  for (const char* sampler : {"ddim", "ddpm"}) {
    auto x = ddpm::sample_to_vector(draw_config(run, sampler, std::string(sampler) == "ddim" ? 50 : 0, n));
    const double w = ddpm::sliced_wasserstein_2d(x.data(), n, ref.data(), n);
    MESSAGE(std::string(sampler) << ": SWD to fresh moons " << w << " (N(0, I) is about 0.22 away)");
    CHECK(w < 0.11);
  }
}

TEST_CASE("models: fashion_cond builds, trains a step with labels, samples a guided step and predicts eps per class") {
  ddpm::Module mod(ddpm_tools::module_for(source_path("models/fashion_cond.ddpm"),
                                          std::string(DDPM_TEST_CACHE)).so);
  REQUIRE(mod->label_classes == 10);
  const int idx = mod.sampler_index("cfg");
  REQUIRE(idx >= 0);
  REQUIRE(mod->sampler_info[idx].n_args == 2);
  CHECK(std::string(mod->sampler_info[idx].arg_names[0]) == "w");
  CHECK(std::string(mod->sampler_info[idx].arg_names[1]) == "class");
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
  const int B = 2;
  std::vector<float> params(mod->param_floats, 0.0f), grads(mod->param_floats);
  for (int i = 0; i < mod->n_params; ++i) {
    auto v = uniform_floats(mod->params[i].numel, -mod->params[i].init_bound, mod->params[i].init_bound, 90 + i);
    std::copy(v.begin(), v.end(), params.begin() + mod->params[i].offset);
  }
  auto x = uniform_floats(B * 784, -1, 1, 91);
  const float labels[B] = {3, 7};
  ddpm::AlignedBuffer ta(mod->arena_bytes(0, B)), sa(mod->arena_bytes(1 + idx, B));
  float loss = 0;
  CHECK(mod->train_step(ta.data(), B, params.data(), x.data(), 1, 1, grads.data(), &loss) == 3);  // labels needed
  REQUIRE(mod->train_step_labels(ta.data(), B, params.data(), x.data(), labels, 1, 1, grads.data(), &loss) == 0);
  CHECK(std::isfinite(loss));
  std::vector<float> out3(B * 784), out7(B * 784);
  const float a3[2] = {3, 3}, a7[2] = {3, 7};
  REQUIRE(mod->sampler_step4(idx, sa.data(), B, params.data(), x.data(), 500, 490, 1, 2, out3.data(), 0, a3, nullptr,
                             nullptr, 0) == 0);
  REQUIRE(mod->sampler_step4(idx, sa.data(), B, params.data(), x.data(), 500, 490, 1, 2, out7.data(), 0, a7, nullptr,
                             nullptr, 0) == 0);
  bool finite = true;
  for (float v : out3) finite = finite && std::isfinite(v);
  CHECK(finite);
  CHECK(out3 != out7);  // the class reaches the net through the embedding

  // The noise predictor for ddpm-eval's bound takes the labels too (ABI version 5).
  REQUIRE(mod->abi_version >= 5);
  REQUIRE((mod->eps_eval_labels != nullptr));
  ddpm::AlignedBuffer ea(mod->arena_bytes(2 + mod->n_samplers, B));
  std::vector<float> e37(B * 784), e73(B * 784);
  const float l37[B] = {3, 7}, l73[B] = {7, 3};
  CHECK(mod->eps_eval(ea.data(), B, params.data(), x.data(), 500, e37.data()) == 3);  // labels needed
  REQUIRE(mod->eps_eval_labels(ea.data(), B, params.data(), x.data(), l37, 500, e37.data()) == 0);
  REQUIRE(mod->eps_eval_labels(ea.data(), B, params.data(), x.data(), l73, 500, e73.data()) == 0);
  for (float v : e37) finite = finite && std::isfinite(v);
  CHECK(finite);
  CHECK(e37 != e73);
}
