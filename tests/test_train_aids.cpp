// Tests of the training aids of ddpm-train (runtime/train.h, previews.h): the
// cosine learning-rate schedule after the warm-up, sample previews every N steps
// (--sample-every) and the loss plot redrawn at each checkpoint.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/diag.h"
#include "runtime/train.h"
#include "test_support.h"

namespace fs = std::filesystem;
using ddpm_test::moons_module;

namespace {

ddpm::TrainConfig config(const std::string& name, int64_t steps) {
  fs::path out = fs::path(DDPM_BINARY_DIR) / "test-train-aids" / name;
  fs::remove_all(out);
  ddpm::TrainConfig c;
  c.model = moons_module();
  c.data = "moons";
  c.steps = steps;
  c.batch = 32;
  c.threads = 2;
  c.out = out.string();
  c.quiet = true;
  return c;
}

}  // namespace

TEST_CASE("train aids: --lr-schedule cosine decays to 0 after the linear warm-up") {
  ddpm::TrainConfig c;
  c.opt.lr = 1e-3f;
  c.steps = 1100;
  c.warmup = 100;
  CHECK(ddpm::learning_rate(c, 50) == doctest::Approx(5e-4));
  CHECK(ddpm::learning_rate(c, 600) == doctest::Approx(1e-3));  // constant by default
  c.lr_schedule = "cosine";
  CHECK(ddpm::learning_rate(c, 50) == doctest::Approx(5e-4));
  CHECK(ddpm::learning_rate(c, 100) == doctest::Approx(1e-3));
  CHECK(ddpm::learning_rate(c, 600) == doctest::Approx(5e-4));
  CHECK(ddpm::learning_rate(c, 1100) == doctest::Approx(0).epsilon(1e-9));
  CHECK(ddpm::learning_rate(c, 350) > ddpm::learning_rate(c, 850));

  // A run logs the schedule's rate in metrics.jsonl and records it in its checkpoint.
  ddpm::TrainConfig run = config("cosine", 200);
  run.opt.lr = 2e-3f;
  run.warmup = 20;
  run.lr_schedule = "cosine";
  run.log_every = 10;
  REQUIRE(ddpm::train(run) == 0);
  std::ifstream in(fs::path(run.out) / "metrics.jsonl");
  std::vector<double> lrs;
  for (std::string line; std::getline(in, line);) lrs.push_back(nlohmann::json::parse(line)["lr"].get<double>());
  REQUIRE(lrs.size() == 20);
  CHECK(lrs[0] == doctest::Approx(1e-3));   // step 10: half-way through the warm-up
  CHECK(lrs[1] == doctest::Approx(2e-3));   // step 20
  CHECK(lrs[10] == doctest::Approx(1e-3).epsilon(0.01));  // step 110: half-way down
  CHECK(lrs[19] < 1e-6);                    // step 200
  std::ifstream conf(fs::path(run.out) / "config.json");
  CHECK(nlohmann::json::parse(conf)["lr_schedule"] == "cosine");

  run.lr_schedule = "linear";
  try {
    ddpm::train(run);
    FAIL("an unknown schedule was accepted");
  } catch (const ddpmc::UserError& e) {
    CHECK(std::string(e.what()).find("unknown --lr-schedule 'linear'") != std::string::npos);
  }
}

TEST_CASE("train aids: --sample-every writes previews and each checkpoint redraws loss.png") {
  ddpm::TrainConfig c = config("previews", 120);
  c.sample_every = 50;
  c.ckpt_every = 60;
  c.log_every = 10;
  REQUIRE(ddpm::train(c) == 0);
  const fs::path out = c.out;
  CHECK(fs::exists(out / "samples" / "step_0000050.png"));
  CHECK(fs::exists(out / "samples" / "step_0000100.png"));
  CHECK(!fs::exists(out / "samples" / "step_0000120.png"));
  CHECK(fs::file_size(out / "samples" / "step_0000100.png") > 5000);
  REQUIRE(fs::exists(out / "loss.png"));
  const auto first = fs::last_write_time(out / "loss.png");
  const auto size_120 = fs::file_size(out / "loss.png");

  // Resuming to 240 redraws the plot at its checkpoints, with the new points.
  c.resume = true;
  c.steps = 240;
  c.given = {"steps"};
  REQUIRE(ddpm::train(c) == 0);
  CHECK(fs::last_write_time(out / "loss.png") >= first);
  CHECK(fs::file_size(out / "loss.png") != size_120);
  CHECK(fs::exists(out / "samples" / "step_0000200.png"));
}
