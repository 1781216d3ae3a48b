// Supervised specs (no diffusion block; ABI version 6): a conv classifier's
// classify_eval (logits and features) and its training step against the
// interpreter; training a small classifier of 2-D points lowers the loss and the
// weights it ships (weights.safetensors, read back by load_weights) classify its
// data; resuming is bit-exact and the thread count changes nothing; and what only
// a diffusion model has (previews, sampling, the bound) is a one-line error.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "driver.h"
#include "interp.h"
#include "philox.h"
#include "runtime/checkpoint.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/weights.h"
#include "test_runs.h"
#include "test_shell.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ddpm_test;

namespace {

struct ConvClassifier {
  ddpmc::Compiled comp;
  ddpm::Module mod;
};

ConvClassifier conv_classifier() {
  ddpmc::Compiled comp = ddpmc::compile_spec_file(source_path("tests/specs/classifier_conv.ddpm"));
  const std::string so = ddpmc::build_compiled(comp, test_build_options()).so_path;
  return {std::move(comp), ddpm::Module(so)};
}

// Parameters from the trainer's initialisation, with the zero-initialised group
// norm affine made nonzero so that every gradient is exercised.
std::vector<float> test_params(const ddpm_module& m) {
  std::vector<float> p((size_t)m.param_floats, 0.0f);
  ddpm::init_params(m, 7, p.data());
  for (int i = 0; i < m.n_params; ++i)
    if (m.params[i].init_bound == 0.0f)
      for (int64_t e = 0; e < m.params[i].numel; ++e) p[m.params[i].offset + e] = 0.1f * (float)((e % 5) - 2);
  return p;
}

std::vector<double> doubles(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// n points of 3 classes around the corners of a triangle (class i % 3).
void write_blobs(const fs::path& x_path, const fs::path& y_path, int64_t n) {
  std::vector<float> x(n * 2), y(n);
  for (int64_t i = 0; i < n; ++i) {
    const int c = (int)(i % 3);
    x[2 * i] = 2.0f * (float)std::cos(2.0944 * c) + 0.4f * (float)ddpm::philox_normal(9, 0, 1, 2 * i);
    x[2 * i + 1] = 2.0f * (float)std::sin(2.0944 * c) + 0.4f * (float)ddpm::philox_normal(9, 0, 1, 2 * i + 1);
    y[i] = (float)c;
  }
  ddpm::write_npy(x_path.string(), x.data(), {n, 2});
  ddpm::write_npy(y_path.string(), y.data(), {n});
}

// A quiet run of the 2-D classifier on blobs written into `dir`.
ddpm::TrainConfig blob_run(const fs::path& dir, const std::string& name, int64_t steps) {
  fs::create_directories(dir);
  write_blobs(dir / "x.npy", dir / "y.npy", 600);
  ddpm::TrainConfig c = run_config("tests/specs/classifier2d.ddpm", (dir / "x.npy").string(), dir / name, steps, 60, 4);
  c.labels = (dir / "y.npy").string();
  c.log_every = 20;
  return c;
}

std::vector<double> logged_losses(const fs::path& run) {
  std::vector<double> out;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

}  // namespace

TEST_CASE("supervised: classify_eval of a conv classifier matches the interpreter at batch 5 (logits and features)") {
  ConvClassifier cc = conv_classifier();
  const ddpm_module& m = cc.mod.get();
  REQUIRE(m.abi_version == DDPM_ABI_VERSION);  // 6 added supervised modules
  CHECK(ddpm::is_supervised(m));
  CHECK(m.n_samplers == 0);
  CHECK(m.T == 0);
  CHECK(m.beta == nullptr);
  CHECK((m.eps_eval == nullptr));
  CHECK(m.label_classes == 4);
  CHECK(m.logits_numel == 4);
  CHECK(m.features_numel == 16);
  REQUIRE((m.classify_eval != nullptr));
  const int B = 5;
  const std::vector<float> params = test_params(m), x = uniform_floats(B * 36, -1.0f, 1.0f, 3);
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m, 3 + m.n_samplers, B);
  std::vector<float> logits(B * 4), features(B * 16), logits2(B * 4);
  REQUIRE(m.classify_eval(arena.data(), B, params.data(), x.data(), logits.data(), features.data()) == 0);
  ddpmc::InterpEnv env;
  env.B = B;
  env.params = doubles(params);
  env.inputs["x"] = doubles(x);
  const auto ref = ddpmc::interpret(cc.comp.classify, cc.comp.model, env);
  REQUIRE(ref.size() == 2);
  CHECK(rel_error(logits.data(), ref[0].data(), logits.size()) <= 1e-4);
  CHECK(rel_error(features.data(), ref[1].data(), features.size()) <= 1e-4);
  // Without a features buffer the logits are the same, bit for bit.
  REQUIRE(m.classify_eval(arena.data(), B, params.data(), x.data(), logits2.data(), nullptr) == 0);
  CHECK(logits2 == logits);
}

TEST_CASE("supervised: the training step of a conv classifier matches the interpreter and the cross-entropy of its logits") {
  ConvClassifier cc = conv_classifier();
  const ddpm_module& m = cc.mod.get();
  const int B = 5;
  const std::vector<float> params = test_params(m), x = uniform_floats(B * 36, -1.0f, 1.0f, 5);
  const std::vector<float> labels = {0, 1, 2, 3, 1};
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m, 0, B);
  std::vector<float> grads((size_t)m.param_floats, 0.0f);
  float loss = 0;
  CHECK(m.train_step(arena.data(), B, params.data(), x.data(), 1, 1, grads.data(), &loss) == 3);  // it needs labels
  REQUIRE(m.train_step_labels(arena.data(), B, params.data(), x.data(), labels.data(), 1, 1, grads.data(), &loss) == 0);
  ddpmc::InterpEnv env;
  env.B = B;
  env.params = doubles(params);
  env.inputs["data"] = doubles(x);
  env.inputs["label"] = doubles(labels);
  const auto ref = ddpmc::interpret(cc.comp.train, cc.comp.model, env);
  CHECK(std::abs(loss - ref[0][0]) <= 1e-4 * (1 + std::abs(ref[0][0])));
  for (size_t i = 0; i < cc.comp.model.params.size(); ++i) {
    const auto& p = cc.comp.model.params[i];
    INFO("gradient of " << p.name);
    CHECK(rel_error(grads.data() + p.offset, ref[1 + i].data(), p.type.numel()) <= 1e-4);
  }
  // The loss is -mean log softmax(logits)[y], computed here from classify_eval's logits.
  ddpm::AlignedBuffer carena = ddpm::alloc_arena(m, 3, B);
  std::vector<float> logits(B * 4);
  REQUIRE(m.classify_eval(carena.data(), B, params.data(), x.data(), logits.data(), nullptr) == 0);
  double ce = 0;
  for (int b = 0; b < B; ++b) {
    double mx = logits[b * 4], s = 0;
    for (int k = 1; k < 4; ++k) mx = std::max(mx, (double)logits[b * 4 + k]);
    for (int k = 0; k < 4; ++k) s += std::exp(logits[b * 4 + k] - mx);
    ce -= logits[b * 4 + (int)labels[b]] - mx - std::log(s);
  }
  CHECK(std::abs(loss - ce / B) <= 1e-4 * (1 + std::abs(ce / B)));
  float eval_loss = 0;
  ddpm::AlignedBuffer larena = ddpm::alloc_arena(m, 1 + m.n_samplers, B);
  REQUIRE(m.loss_eval_labels(larena.data(), B, params.data(), x.data(), labels.data(), 1, 1, &eval_loss) == 0);
  CHECK(eval_loss == loss);
}

TEST_CASE("supervised: training lowers the loss and its weights.safetensors classifies the data through load_weights") {
  const fs::path dir = process_dir("test-supervised", "train");
  ddpm::TrainConfig c = blob_run(dir, "run", 300);
  REQUIRE(ddpm::train(c) == 0);
  const fs::path run = c.out;
  const std::vector<double> losses = logged_losses(run);
  REQUIRE(losses.size() == 15);
  CAPTURE(losses.front());
  CAPTURE(losses.back());
  CHECK(losses.back() < 0.3 * losses.front());
  // The shipped weights: only EMA tensors, with the spec's hash, sources and step.
  const ddpm::SafeTensors w = ddpm::read_safetensors((run / "weights.safetensors").string());
  CHECK(w.metadata.at("format") == ddpm::kWeightsFormat);
  CHECK(w.metadata.at("step") == "300");
  CHECK(w.metadata.count("spec_hash") == 1);
  CHECK(w.metadata.at("spec_sources") == c.spec_sources);
  for (const auto& [name, t] : w.tensors) CHECK(name.rfind("ema/", 0) == 0);
  ddpm::Module mod((run / "module.so").string());
  const ddpm_module& m = mod.get();
  CHECK(w.tensors.size() == (size_t)m.n_params);
  const std::vector<float> params = ddpm::load_weights((run / "weights.safetensors").string(), mod);
  // The same as the checkpoint's EMA weights.
  const ddpm::SafeTensors ck = ddpm::read_safetensors((run / "checkpoint.safetensors").string());
  for (const auto& [name, t] : w.tensors) CHECK(ck.tensors.at(name).second == t.second);
  // Accuracy on the training points, through classify_eval.
  const std::vector<float> x = ddpm::read_npy((dir / "x.npy").string()).data;
  const std::vector<float> labels = ddpm::read_npy((dir / "y.npy").string()).data;
  const int N = (int)labels.size();
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m, 3 + m.n_samplers, N);
  std::vector<float> logits((size_t)N * 3), features((size_t)N * 32);
  REQUIRE(m.classify_eval(arena.data(), N, params.data(), x.data(), logits.data(), features.data()) == 0);
  int right = 0;
  for (int i = 0; i < N; ++i) {
    int best = 0;
    for (int k = 1; k < 3; ++k) best = logits[i * 3 + k] > logits[i * 3 + best] ? k : best;
    right += best == (int)labels[i];
  }
  CAPTURE(right);
  CHECK(right >= 0.95 * N);
  // A damaged file is a one-line error naming it and the tensor.
  std::vector<ddpm::TensorView> views;
  for (const auto& [name, t] : w.tensors) views.push_back({name, name == "ema/classify/linear.0/w" ? std::vector<int64_t>{4, 16} : t.first, t.second.data()});
  std::vector<float> big(64, 0.0f);
  for (auto& v : views)
    if (v.name == "ema/classify/linear.0/w") v.data = big.data();
  ddpm::write_safetensors((dir / "bad.safetensors").string(), views, w.metadata);
  const std::string msg = user_error_of([&] { ddpm::load_weights((dir / "bad.safetensors").string(), mod); });
  CAPTURE(msg);
  CHECK(msg.find("tensor 'ema/classify/linear.0/w' has shape [4, 16], the model needs [2, 32]") != std::string::npos);
}

TEST_CASE("supervised: a resumed run is bit-exact, and 1 and 2 threads train the same weights") {
  const fs::path dir = process_dir("test-supervised", "resume");
  ddpm::TrainConfig whole = blob_run(dir, "whole", 40);
  REQUIRE(ddpm::train(whole) == 0);
  ddpm::TrainConfig part = blob_run(dir, "part", 40);
  part.stop_at = 15;
  REQUIRE(ddpm::train(part) == 0);
  part.stop_at = 0;
  part.resume = true;
  REQUIRE(ddpm::train(part) == 0);
  ddpm::TrainConfig one = blob_run(dir, "one", 40);
  one.threads = 1;
  REQUIRE(ddpm::train(one) == 0);
  const auto a = ddpm::read_safetensors((fs::path(whole.out) / "checkpoint.safetensors").string()).tensors;
  const auto b = ddpm::read_safetensors((fs::path(part.out) / "checkpoint.safetensors").string()).tensors;
  const auto c = ddpm::read_safetensors((fs::path(one.out) / "checkpoint.safetensors").string()).tensors;
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO(name);
    CHECK(b.at(name).second == t.second);
    CHECK(c.at(name).second == t.second);
  }
  CHECK(file_bytes(fs::path(whole.out) / "weights.safetensors") == file_bytes(fs::path(one.out) / "weights.safetensors"));
}

TEST_CASE("supervised: previews and sampling and the bound are one-line errors on a classifier and ddpmc check describes it") {
  const fs::path dir = process_dir("test-supervised", "errors");
  ddpm::TrainConfig c = blob_run(dir, "run", 5);
  c.sample_every = 5;
  std::string msg = user_error_of([&] { ddpm::train(c); });
  CAPTURE(msg);
  CHECK(msg.find("--sample-every draws diffusion samples, but") != std::string::npos);
  CHECK(msg.find("is a supervised model") != std::string::npos);
  c.sample_every = 0;
  REQUIRE(ddpm::train(c) == 0);
  msg = user_error_of([&] { ddpm::sample_to_vector(draw_config(c.out, "ddpm", 10, 4)); });
  CHECK(msg.find("ddpm-sample draws diffusion samples, but " + c.out + " is a supervised model") != std::string::npos);
  std::string out;
  CHECK(run_shell(tool_path("ddpm-eval") + " '" + c.out + "' --bound", out) != 0);
  CAPTURE(out);
  CHECK(out.find("--bound (--bpd) is the variational bound of a diffusion model, but") != std::string::npos);
  CHECK(run_shell(tool_path("ddpm-sample") + " '" + c.out + "' -n 4", out) != 0);
  CHECK(out.find("is a supervised model") != std::string::npos);
  const std::string text = ddpmc::check_spec_file(source_path("models/fmnist_classifier.ddpm"), 128).text;
  CAPTURE(text);
  CHECK(text.find("10 classes; supervised (no diffusion): 10 logits, 128 features") != std::string::npos);
  CHECK(text.find("T = 0") == std::string::npos);
  CHECK(text.find("classify        arena") != std::string::npos);
}
