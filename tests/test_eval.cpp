// ddpm-eval on every kind of shipped model, run as the real build/tools/ddpm-eval
// on small, briefly trained runs: without --bound it says what it can compute;
// 2-D (continuous) data gets the bound in nats/dim with a continuous Gaussian
// decoder, which training lowers and a strided estimate reproduces; a
// class-conditional model gets the bound per class and their average (checked
// against the true negative log-likelihood of its Gaussian clusters), and
// --class one class; the shipped Fashion-MNIST models get bits/dim on the test
// split, per class for fashion_cond; a continuous-time model is pointed at --quality,
// a learned variance is the bound's unless --variance fixed, and --nll ode (the
// likelihood by the probability-flow ODE) agrees between its exact and Hutchinson
// divergence and, for a DDPM's continuous-time limit, is below the bound.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/idx.h"
#include "runtime/npy.h"
#include "philox.h"
#include "test_runs.h"

namespace fs = std::filesystem;

namespace {

struct Result {
  int status = -1;
  std::string out, err;
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result eval(const fs::path& dir, const std::vector<std::string>& args) {
  std::string cmd = fmt::format("'{}/tools/ddpm-eval'", DDPM_BINARY_DIR);
  for (const std::string& a : args) cmd += fmt::format(" '{}'", a);
  cmd += fmt::format(" --threads 2 > '{}' 2> '{}'", (dir / "eval.out").string(), (dir / "eval.err").string());
  const int rc = std::system(cmd.c_str());
  Result r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = read_text(dir / "eval.out");
  r.err = read_text(dir / "eval.err");
  return r;
}

nlohmann::json eval_json(const fs::path& run) {
  std::ifstream in(run / "eval.json");
  return nlohmann::json::parse(in);
}

fs::path trained(const std::string& spec, const std::string& data, const fs::path& run, int64_t steps, int batch,
                 const std::string& labels = "") {
  ddpm::TrainConfig c = ddpm_test::run_config(spec, data, run, steps, batch, 3);
  c.labels = labels;
  REQUIRE(ddpm::train(c) == 0);
  return run;
}

}  // namespace

TEST_CASE("eval: without --bound ddpm-eval says what it can compute for the run") {
  const fs::path dir = ddpm_test::process_dir("test-eval", "describe");
  const fs::path run = trained("models/moons.ddpm", "moons", dir / "run", 50, 64);
  const Result r = eval(dir, {run.string()});
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("ddpm-eval can compute the variational bound") != std::string::npos);
  CHECK(r.out.find("moons (a held-out draw)") != std::string::npos);
  CHECK(r.out.find("in nats/dim with a continuous Gaussian decoder") != std::string::npos);
  CHECK(r.out.find("run it with: ddpm-eval " + run.string() + " --bound") != std::string::npos);
  CHECK(!fs::exists(run / "eval.json"));
}

TEST_CASE("eval: a 2-D model's bound is in nats/dim with a continuous Gaussian decoder") {
  // moons_cosine_v.ddpm predicts v; its comment says ddpm-eval converts it.
  const fs::path dir = ddpm_test::process_dir("test-eval", "moons");
  const fs::path early = trained("models/moons_cosine_v.ddpm", "moons", dir / "early", 5, 64);
  const fs::path run = trained("models/moons_cosine_v.ddpm", "moons", dir / "run", 1500, 128);
  const Result r = eval(dir, {run.string(), "--bound", "-n", "300", "--batch", "30", "-q"});
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.rfind("nats/dim ", 0) == 0);
  CHECK(r.out.find("continuous Gaussian decoder") != std::string::npos);
  const nlohmann::json j = eval_json(run);
  CHECK(j["metric"] == "nats_per_dim");
  CHECK(j["decoder"] == "continuous gaussian");
  CHECK(!j.contains("bpd"));
  const double bound = j["bound"], se = j["bound_stderr"];
  REQUIRE(std::isfinite(bound));
  CHECK(se > 0);
  CHECK(se < 0.3);
  CHECK(bound == doctest::Approx(j["L_T"].get<double>() + j["L_sum"].get<double>() + j["L_0"].get<double>()));
  // Sensible: on the same points and noise, training lowered the bound.
  REQUIRE(eval(dir, {early.string(), "--bound", "-n", "300", "--batch", "30", "-q"}).status == 0);
  const double early_bound = eval_json(early)["bound"];
  MESSAGE("moons bound after 1500 steps ", bound, " ± ", se, " nats/dim; after 5 steps ", early_bound);
  CHECK(bound < early_bound - 0.1);
  CHECK(bound > -1);
  CHECK(bound < 3);
  // A strided estimate of the same bound agrees within its error.
  REQUIRE(eval(dir, {run.string(), "--bound", "-n", "300", "--batch", "30", "--steps", "100", "-q"}).status == 0);
  const nlohmann::json s = eval_json(run);
  const double d = s["bound"].get<double>() - bound;
  CHECK(std::fabs(d) < 4 * std::hypot(s["bound_stderr"].get<double>(), se));
  // Forcing the discretized decoder on data outside [-1, 1] is a one-line error.
  const Result bad = eval(dir, {run.string(), "--bound", "--decoder", "discretized", "-q"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("has values outside [-1, 1]") != std::string::npos);
}

TEST_CASE("eval: a class-conditional model's bound per class and averaged, and --class") {
  const fs::path dir = ddpm_test::process_dir("test-eval", "cond");
  fs::create_directories(dir);
  // Two Gaussian clusters N((±1.5, 0), 0.3² I), alternating labels (as in test_conditioning.cpp).
  const int64_t n = 2000;
  std::vector<float> x(n * 2), y(n);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = (float)(i % 2);
    x[2 * i] = (i % 2 ? 1.5f : -1.5f) + 0.3f * (float)ddpm::philox_normal(9, 0, 1, 2 * i);
    x[2 * i + 1] = 0.3f * (float)ddpm::philox_normal(9, 0, 1, 2 * i + 1);
  }
  const std::string xs = (dir / "x.npy").string(), ys = (dir / "y.npy").string();
  ddpm::write_npy(xs, x.data(), {n, 2});
  ddpm::write_npy(ys, y.data(), {n});
  const fs::path run = trained("tests/specs/cond2d.ddpm", xs, dir / "run", 1500, 128, ys);

  const Result d = eval(dir, {run.string(), "--data", xs, "--labels", ys});
  INFO(d.out, d.err);
  CHECK(d.status == 0);
  CHECK(d.out.find("per class and averaged over the model's 2 classes") != std::string::npos);

  const Result r = eval(dir, {run.string(), "--bound", "--data", xs, "--labels", ys, "-n", "400", "-q"});
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("class 0: nats/dim ") != std::string::npos);
  CHECK(r.out.find("class 1: nats/dim ") != std::string::npos);
  CHECK(r.out.find("averaged over 2 classes: nats/dim ") != std::string::npos);
  const nlohmann::json j = eval_json(run);
  REQUIRE(j["per_class"].size() == 2);
  double sum = 0;
  // The true −log p(x | y) per dimension of each cluster: ½ log(2πe 0.3²) = 0.2150 nats.
  const double nll = 0.5 * std::log(2 * M_PI * M_E * 0.09);
  for (const auto& c : j["per_class"]) {
    const double b = c["bound"], se = c["stderr"];
    CAPTURE(b);
    CHECK(c["n"] == 200);
    CHECK(std::isfinite(b));
    CHECK(b > nll - 4 * se);
    CHECK(b < nll + 1.0);
    sum += b;
  }
  CHECK(j["bound"].get<double>() == doctest::Approx(sum / 2).epsilon(1e-12));
  const double class1 = j["per_class"][1]["bound"], class1_se = j["per_class"][1]["stderr"];

  // One class: 200 samples of class 1 (the same rows, other noise) agree with its share above.
  const Result one = eval(dir, {run.string(), "--bound", "--data", xs, "--labels", ys, "-n", "200", "--class", "1",
                                "-q"});
  INFO(one.out, one.err);
  REQUIRE(one.status == 0);
  CHECK(one.out.rfind("class 1: nats/dim ", 0) == 0);
  const nlohmann::json k = eval_json(run);
  CHECK(k["class"] == 1);
  CHECK(k["n"] == 200);
  CHECK(std::fabs(k["bound"].get<double>() - class1) < 4 * std::hypot(k["bound_stderr"].get<double>(), class1_se));

  // A class the model does not have, and labels missing: one-line errors.
  const Result out_of_range = eval(dir, {run.string(), "--bound", "--data", xs, "--labels", ys, "--class", "2"});
  CHECK(out_of_range.status == 1);
  CHECK(out_of_range.err.find("--class 2 is out of range: the model has 2 classes") != std::string::npos);
  const Result no_labels = eval(dir, {run.string(), "--bound", "--data", xs});
  CHECK(no_labels.status == 1);
  CHECK(no_labels.err.find("comes without labels") != std::string::npos);
}

TEST_CASE("eval: the shipped Fashion-MNIST models get bits/dim on the test split, per class for fashion_cond") {
  const std::string images = std::string(ddpm::kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz";
  REQUIRE_MESSAGE(fs::exists(images), "Fashion-MNIST is missing; tools/deps.sh installs dataset-fashion-mnist");
  const fs::path dir = ddpm_test::process_dir("test-eval", "fashion");
  for (const char* spec : {"models/fashion_unet.ddpm", "models/fashion_cond.ddpm"}) {
    CAPTURE(spec);
    const bool cond = std::string(spec).find("cond") != std::string::npos;
    const fs::path run = trained(spec, "fashion-mnist", dir / fs::path(spec).stem(), 2, 4);
    const Result d = eval(dir, {run.string()});
    INFO(d.out, d.err);
    CHECK(d.status == 0);
    CHECK(d.out.find("t10k-images-idx3-ubyte") != std::string::npos);
    CHECK(d.out.find("in bits/dim with the discretized 8-bit decoder") != std::string::npos);
    const Result r = eval(dir, {run.string(), "--bound", "-n", "20", "--batch", "10", "--steps", "2", "-q"});
    INFO(r.out, r.err);
    REQUIRE(r.status == 0);
    const nlohmann::json j = eval_json(run);
    CHECK(j["metric"] == "bits_per_dim");
    CHECK(std::isfinite(j["bound"].get<double>()));
    CHECK(j["bound"] == j["bpd"]);
    CHECK(j["bound"].get<double>() > 0);
    if (cond) {
      CHECK(r.out.find("averaged over ") != std::string::npos);
      double sum = 0;
      for (const auto& c : j["per_class"]) sum += c["bound"].get<double>();
      CHECK(j["bound"].get<double>() == doctest::Approx(sum / (double)j["per_class"].size()).epsilon(1e-12));
    }
  }
}

TEST_CASE("eval: a continuous-time model: without --bound it points at --quality, and --bound is a one-line error") {
  const fs::path dir = ddpm_test::process_dir("test-eval", "continuous");
  const fs::path run = trained("models/moons_flow.ddpm", "moons", dir / "run", 50, 64);
  Result r = eval(dir, {run.string()});
  INFO(r.out, r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("a continuous-time model of [2] (t in [0, 1], 50 sampling steps by default)") != std::string::npos);
  CHECK(r.out.find("ddpm-eval " + run.string() + " --quality") != std::string::npos);
  r = eval(dir, {run.string(), "--bound", "-n", "10"});
  CHECK(r.status == 1);
  CHECK(r.err.find("is a continuous-time model: ddpm-eval computes the variational bound of a discrete-time one") !=
        std::string::npos);
  r = eval(dir, {run.string(), "--quality", "-n", "200", "--steps", "5"});
  CHECK(r.status == 0);
  CHECK(r.out.find("sliced Wasserstein distance") != std::string::npos);
}

TEST_CASE("eval: a learned variance is the bound's by default, and --variance fixed or learned chooses") {
  const fs::path dir = ddpm_test::process_dir("test-eval", "learned-var");
  const fs::path run = trained("models/moons_learned_var.ddpm", "moons", dir / "run", 300, 128);
  auto bound = [&](const std::string& variance, const std::string& expect) {
    std::vector<std::string> args = {run.string(), "--bound", "-n", "200", "--batch", "100", "-q"};
    if (!variance.empty()) args.insert(args.end(), {"--variance", variance});
    const Result r = eval(dir, args);
    INFO(r.out, r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("the reverse variance: " + expect) != std::string::npos);
    return (double)eval_json(run)["bound"];
  };
  const double dflt = bound("", "learned"), learned = bound("learned", "learned"), fixed = bound("fixed", "fixed");
  CHECK(std::isfinite(learned));
  CHECK(std::isfinite(fixed));
  CHECK(dflt == learned);
  CHECK(fixed != learned);
  // A model without a learned variance refuses --variance learned.
  const fs::path plain = trained("models/moons.ddpm", "moons", dir / "plain", 20, 64);
  const Result r = eval(dir, {plain.string(), "--bound", "--variance", "learned", "-n", "10"});
  CHECK(r.status == 1);
  CHECK(r.err.find("does not predict its variance") != std::string::npos);
}

TEST_CASE("eval: --nll ode on moons: exact and Hutchinson agree within 2 standard errors, and a spec without an ode is an error") {
  const fs::path dir = ddpm_test::process_dir("test-eval", "nll");
  const fs::path run = trained("models/moons_vp.ddpm", "moons", dir / "run", 3000, 256);
  Result r = eval(dir, {run.string()});
  CHECK(r.out.find("--nll ode") != std::string::npos);
  r = eval(dir, {run.string(), "--nll", "ode", "-n", "400", "--trace", "exact"});
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("ode nats/dim") != std::string::npos);
  const nlohmann::json ex = eval_json(run)["nll_ode"];
  r = eval(dir, {run.string(), "--nll", "ode", "-n", "400", "--trace", "hutchinson"});
  REQUIRE(r.status == 0);
  const nlohmann::json hu = eval_json(run)["nll_ode"];
  CHECK(ex["trace"] == "exact");
  CHECK(hu["trace"] == "hutchinson");
  const double e = ex["nll"], h = hu["nll"], se_e = ex["nll_stderr"], se_h = hu["nll_stderr"];
  INFO("exact " << e << " +- " << se_e << ", hutchinson " << h << " +- " << se_h);
  // The same points: the difference is the Hutchinson probe's noise (its standard
  // error bounds it) plus the solver's tolerance.
  CHECK(std::abs(e - h) <= 2 * std::sqrt(se_e * se_e + se_h * se_h));
  CHECK(std::isfinite(e));
  CHECK(e < 1.5);  // a trained model: N(0, I) alone gives about 1.4 nats/dim on moons
  CHECK((int)ex["net_evaluations"] > (int)hu["net_evaluations"]);
  // A discrete model without an ode, and two evaluations at once, are one-line errors.
  const fs::path drun = trained("models/moons_cosine_v.ddpm", "moons", dir / "drun", 20, 64);
  r = eval(dir, {drun.string(), "--nll", "ode", "-n", "10"});
  CHECK(r.status == 1);
  CHECK(r.err.find("a discrete-time model (T = 1000 steps), declares no `ode`") != std::string::npos);
  r = eval(dir, {run.string(), "--nll", "ode", "--bound"});
  CHECK(r.status == 2);
}

TEST_CASE("eval: a DDPM's likelihood by the ODE of its continuous-time limit is at most its bound") {
  const fs::path dir = ddpm_test::process_dir("test-eval", "nll_ddpm");
  const fs::path run = trained("models/moons.ddpm", "moons", dir / "run", 3000, 256);
  Result r = eval(dir, {run.string()});
  CHECK(r.out.find("continuous-time limit: ddpm-eval " + run.string() + " --nll ode") != std::string::npos);
  r = eval(dir, {run.string(), "--bound", "-n", "300"});
  INFO(r.out, r.err);
  REQUIRE(r.status == 0);
  r = eval(dir, {run.string(), "--nll", "ode", "-n", "300"});
  REQUIRE(r.status == 0);
  const nlohmann::json j = eval_json(run);
  const double bound = j["bound"], nll = j["nll_ode"]["nll"];
  INFO("bound " << bound << " nats/dim, ode " << nll);
  CHECK(j["nll_ode"]["trace"] == "exact");  // auto: D = 2
  CHECK(nll < bound);
  CHECK(nll > 0);  // moons has a density of about e^-1.2 per unit area at best
}
