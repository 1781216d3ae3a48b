// Tests of the training and sampling loops (runtime/train.h, runtime/sample.h,
// runtime/module.h) against the real compiler: models/moons.ddpm is built through
// ddpmc::build_module into a cache under the build directory, then trained and
// sampled end to end.
//
// Covered: bit-exact resume (params, EMA and Adam moments), NaN handling that keeps
// the last good checkpoint, clear errors for corrupt or foreign checkpoints and bad
// data, thread-count independence, and sample quality (sliced Wasserstein distance
// to fresh moons points, against an untrained model).
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/file_lock.h"
#include "compiler/build.h"
#include "common/diag.h"
#include "runtime/data2d.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "common/prelude/philox.h"
#include "runtime/safetensors.h"
#include "runtime/sample.h"
#include "runtime/swd.h"
#include "runtime/train.h"
#include "tools/spec_module.h"

namespace fs = std::filesystem;

namespace {

std::string moons_spec() { return std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm"; }
std::string cache_dir() { return std::string(DDPM_TEST_CACHE); }

// The compiled moons module (built once per test process, through the cache).
const std::string& moons_so() {
  static const std::string so = [] {
    ddpmc::BuildOptions opt;
    opt.cache_dir = cache_dir();
    return ddpmc::build_module(moons_spec(), opt).so_path;
  }();
  return so;
}

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-train" / name;
  fs::remove_all(p);
  fs::create_directories(p.parent_path());
  return p;
}

ddpm::TrainConfig base_config(const fs::path& out, int64_t steps) {
  ddpm::TrainConfig c;
  c.model = moons_so();
  c.data = "moons";
  c.steps = steps;
  c.batch = 64;
  c.threads = 2;
  c.out = out.string();
  c.seed = 7;
  c.log_every = 50;
  c.ckpt_every = 1000;
  c.quiet = true;
  return c;
}

std::string ckpt_path(const fs::path& dir) { return (dir / "checkpoint.safetensors").string(); }

// Every tensor of a and b has the same name, shape and bits.
void require_same_tensors(const ddpm::SafeTensors& a, const ddpm::SafeTensors& b) {
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    REQUIRE_MESSAGE(it != b.tensors.end(), name);
    REQUIRE(it->second.first == t.first);
    REQUIRE(it->second.second.size() == t.second.size());
    CHECK_MESSAGE(std::memcmp(it->second.second.data(), t.second.data(), t.second.size() * sizeof(float)) == 0,
                  "tensor differs: ", name);
  }
}

int count_lines(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

// Runs f, requires a UserError, and returns its text.
template <class F>
std::string user_error_text(F&& f) {
  try {
    f();
  } catch (const ddpmc::UserError& e) {
    return e.what();
  }
  FAIL("expected a ddpmc::UserError");
  return "";
}

}  // namespace

TEST_CASE("train: sampling step sequences") {
  std::vector<int> all = ddpm::sampling_steps(1000, 0);
  REQUIRE(all.size() == 1001);
  for (int i = 0; i <= 1000; ++i) CHECK(all[i] == i);
  std::vector<int> k50 = ddpm::sampling_steps(1000, 50);
  REQUIRE(k50.size() == 51);
  CHECK(k50[0] == 0);
  CHECK(k50[1] == 20);
  CHECK(k50[50] == 1000);
  std::vector<int> k3 = ddpm::sampling_steps(10, 3);  // round(10/3, 20/3, 30/3) = 3, 7, 10
  CHECK(k3 == std::vector<int>{0, 3, 7, 10});
  CHECK_THROWS_AS(ddpm::sampling_steps(1000, 1001), ddpmc::UserError);
}

TEST_CASE("train: module loading errors are one-line user errors") {
  fs::path dir = fresh_dir("module-errors");
  fs::create_directories(dir);
  std::string missing = (dir / "missing.so").string();
  CHECK(user_error_text([&] { ddpm::Module m(missing); }).find(missing) != std::string::npos);
  std::string fake = (dir / "fake.so").string();
  std::ofstream(fake) << "not an ELF file\n";
  CHECK(user_error_text([&] { ddpm::Module m(fake); }).find(fake) != std::string::npos);

  // Real shared libraries: one without the entry symbol, one from a future ABI.
  const std::string wrong_abi = (dir / "abi99.so").string(), no_symbol = (dir / "nosym.so").string();
  {
    std::ofstream(dir / "abi99.cpp") << "#include \"ddpm_abi.h\"\n"
                                        "static ddpm_module m = {99};\n"
                                        "extern \"C\" __attribute__((visibility(\"default\"))) "
                                        "const ddpm_module* ddpm_module_v1() { return &m; }\n";
    std::ofstream(dir / "nosym.cpp") << "extern \"C\" int not_a_module() { return 1; }\n";
    for (const char* stem : {"abi99", "nosym"}) {
      std::string cmd = std::string("'") + DDPMC_CXX + "' -shared -fPIC -I'" + DDPMC_RUNTIME_INCLUDE_DIR + "' '" +
                        (dir / (std::string(stem) + ".cpp")).string() + "' -o '" +
                        (dir / (std::string(stem) + ".so")).string() + "'";
      REQUIRE(std::system(cmd.c_str()) == 0);
    }
  }
  std::string e = user_error_text([&] { ddpm::Module m(wrong_abi); });
  CHECK(e.find("99") != std::string::npos);
  CHECK(e.find("ddpmc compile") != std::string::npos);
  e = user_error_text([&] { ddpm::Module m(no_symbol); });
  CHECK(e.find("not a ddpmc module") != std::string::npos);
  CHECK(e.find(no_symbol) != std::string::npos);

  // The runtime loads compiled modules; building a spec is the tools' job.
  ddpm::TrainConfig spec_cfg = base_config(dir / "spec-run", 10);
  spec_cfg.model = moons_spec();
  e = user_error_text([&] { ddpm::train(spec_cfg); });
  CHECK(e.find("runtime trains compiled modules") != std::string::npos);
  CHECK(e.find("ddpmc compile") != std::string::npos);

  ddpm::Module m(moons_so());
  CHECK(m->abi_version == DDPM_ABI_VERSION);
  CHECK(m.sampler_index("ddpm") >= 0);
  CHECK(m.sampler_index("ddim") >= 0);
  CHECK(m.sampler_index("no-such-sampler") == -1);
  ddpm::AlignedBuffer arena = ddpm::alloc_arena(m.get(), 0, 64);
  CHECK(reinterpret_cast<uintptr_t>(arena.data()) % 64 == 0);
}

TEST_CASE("train: 200 steps straight equal 100 steps + resume to 200, bit for bit") {
  fs::path a = fresh_dir("resume-straight"), b = fresh_dir("resume-split");
  REQUIRE(ddpm::train(base_config(a, 200)) == 0);

  ddpm::TrainConfig c = base_config(b, 100);
  REQUIRE(ddpm::train(c) == 0);
  CHECK(ddpm::read_safetensors(ckpt_path(b)).metadata.at("step") == "100");
  c.steps = 200;
  c.given = {"steps"};  // as if typed: --resume keeps the checkpoint's other settings
  c.resume = true;
  REQUIRE(ddpm::train(c) == 0);

  ddpm::SafeTensors sa = ddpm::read_safetensors(ckpt_path(a)), sb = ddpm::read_safetensors(ckpt_path(b));
  CHECK(sa.metadata.at("step") == "200");
  CHECK(sb.metadata.at("step") == "200");
  CHECK(sa.metadata.at("spec_hash") == sb.metadata.at("spec_hash"));
  CHECK(sa.metadata.at("format") == "ddpmc-checkpoint-1");
  // params, EMA and both Adam moments
  require_same_tensors(sa, sb);
  int n_prefixed = 0;
  for (const char* pre : {"param/", "ema/", "adam_m/", "adam_v/"})
    for (const auto& [name, t] : sa.tensors) n_prefixed += name.rfind(pre, 0) == 0;
  CHECK(n_prefixed == (int)sa.tensors.size());
  // The training must have moved the parameters away from the EMA and the init.
  ddpm::Module m(moons_so());
  std::string first = m->params[0].name;
  CHECK(sa.tensors.at("param/" + first).second != sa.tensors.at("ema/" + first).second);

  // metrics.jsonl is appended on resume: 50, 100 | 150, 200.
  CHECK(count_lines(a / "metrics.jsonl") == 4);
  CHECK(count_lines(b / "metrics.jsonl") == 4);
  CHECK(fs::exists(b / "module.so"));
  CHECK(fs::exists(b / "config.json"));

  // Resuming a finished run is a no-op, and a fresh run never overwrites a checkpoint.
  CHECK(ddpm::train(c) == 0);
  c.resume = false;
  CHECK(user_error_text([&] { ddpm::train(c); }).find("--resume") != std::string::npos);
}

TEST_CASE("train: Ctrl-C stops after the current step with a checkpoint, and --resume continues") {
  fs::path d = fresh_dir("interrupt");
  struct sigaction before {};
  sigaction(SIGINT, nullptr, &before);
  ddpm::TrainConfig c = base_config(d, 1000000);
  c.log_every = 1;
  // Once training has logged a few steps, this process gets SIGINT.
  std::thread sender([&] {
    for (int i = 0; i < 6000 && count_lines(d / "metrics.jsonl") < 5; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    kill(getpid(), SIGINT);
  });
  const int rc = ddpm::train(c);
  sender.join();
  CHECK(rc == ddpm::kTrainInterrupted);
  const auto ck = ddpm::read_safetensors(ckpt_path(d));
  const int64_t stopped = std::stoll(ck.metadata.at("step"));
  CHECK(stopped >= 5);
  CHECK(stopped < 1000000);
  CHECK(count_lines(d / "metrics.jsonl") == stopped);  // every finished step was logged and kept
  // The previous handler is back, and the run resumes from the checkpoint.
  struct sigaction now {};
  sigaction(SIGINT, nullptr, &now);
  CHECK((now.sa_handler == before.sa_handler));
  c.steps = stopped + 10;
  c.given = {"steps"};
  c.resume = true;
  CHECK(ddpm::train(c) == 0);
  CHECK(ddpm::read_safetensors(ckpt_path(d)).metadata.at("step") == std::to_string(stopped + 10));
}

TEST_CASE("train: a NaN loss stops training and keeps the last good checkpoint") {
  fs::path dir = fresh_dir("nan");
  fs::create_directories(dir);
  const int N = 64;
  std::vector<float> good(N * 2);
  ddpm::sample_2d("moons", N, 1, 1, good.data());
  std::vector<float> bad = good;
  // NaN data is refused at load, so rows of a finite 3e38 overflow the loss instead;
  // a batch of 64 misses all 16 rows with p = 0.75^64.
  for (int i = 0; i < 16; ++i) bad[2 * i] = 3e38f;
  std::string good_npy = (dir / "good.npy").string(), bad_npy = (dir / "bad.npy").string();
  ddpm::write_npy(good_npy, good.data(), {N, 2});
  ddpm::write_npy(bad_npy, bad.data(), {N, 2});

  fs::path run = dir / "run";
  ddpm::TrainConfig c = base_config(run, 10);
  c.data = good_npy;
  c.ckpt_every = 5;
  REQUIRE(ddpm::train(c) == 0);
  ddpm::SafeTensors before = ddpm::read_safetensors(ckpt_path(run));
  REQUIRE(before.metadata.at("step") == "10");

  c.data = bad_npy;
  c.steps = 30;
  c.given = {"data", "steps"};
  c.resume = true;
  CHECK(ddpm::train(c) == ddpm::kTrainNonFinite);
  ddpm::SafeTensors after = ddpm::read_safetensors(ckpt_path(run));
  CHECK(after.metadata.at("step") == "10");
  require_same_tensors(before, after);
  for (const auto& [name, t] : after.tensors)
    for (float v : t.second) REQUIRE(std::isfinite(v));

  // From scratch on bad data: stops at once, and no checkpoint is written at all.
  fs::path run2 = dir / "run2";
  ddpm::TrainConfig c2 = base_config(run2, 30);
  c2.data = bad_npy;
  c2.ckpt_every = 1;
  CHECK(ddpm::train(c2) == ddpm::kTrainNonFinite);
  CHECK_FALSE(fs::exists(ckpt_path(run2)));
}

TEST_CASE("train: corrupt or foreign checkpoints and bad data are user errors naming the file") {
  fs::path dir = fresh_dir("errors");
  ddpm::TrainConfig c = base_config(dir, 5);
  REQUIRE(ddpm::train(c) == 0);
  const std::string ck = ckpt_path(dir);
  ddpm::SafeTensors good = ddpm::read_safetensors(ck);

  SUBCASE("spec hash mismatch") {
    std::vector<ddpm::TensorView> views;
    for (const auto& [name, t] : good.tensors) views.push_back({name, t.first, t.second.data()});
    auto meta = good.metadata;
    meta["spec_hash"] = "0123456789abcdef";
    ddpm::write_safetensors(ck, views, meta);
    c.steps = 10;
    c.resume = true;
    std::string e = user_error_text([&] { ddpm::train(c); });
    CHECK(e.find("0123456789abcdef") != std::string::npos);
    CHECK(e.find(good.metadata.at("spec_hash")) != std::string::npos);
    ddpm::SampleConfig s;
    s.run_dir = dir.string();
    s.n = 10;
    s.quiet = true;
    CHECK(user_error_text([&] { ddpm::sample(s); }).find(ck) != std::string::npos);
  }
  SUBCASE("truncated file") {
    auto size = fs::file_size(ck);
    fs::resize_file(ck, size / 2);
    c.steps = 10;
    c.resume = true;
    CHECK(user_error_text([&] { ddpm::train(c); }).find(ck) != std::string::npos);
    ddpm::SampleConfig s;
    s.run_dir = dir.string();
    s.n = 10;
    s.quiet = true;
    CHECK(user_error_text([&] { ddpm::sample(s); }).find(ck) != std::string::npos);
  }
  SUBCASE("garbage file") {
    std::ofstream(ck, std::ios::binary | std::ios::trunc) << "this is not a checkpoint";
    c.steps = 10;
    c.resume = true;
    CHECK(user_error_text([&] { ddpm::train(c); }).find(ck) != std::string::npos);
  }
  SUBCASE("a tensor is missing") {
    std::vector<ddpm::TensorView> views;
    for (const auto& [name, t] : good.tensors)
      if (name.rfind("adam_v/", 0) != 0) views.push_back({name, t.first, t.second.data()});
    ddpm::write_safetensors(ck, views, good.metadata);
    c.steps = 10;
    c.resume = true;
    std::string e = user_error_text([&] { ddpm::train(c); });
    CHECK(e.find(ck) != std::string::npos);
    CHECK(e.find("adam_v/") != std::string::npos);
  }
  SUBCASE("unknown data set and mis-shaped .npy") {
    ddpm::TrainConfig d = base_config(fresh_dir("errors-data"), 5);
    d.data = "spirals";
    std::string e = user_error_text([&] { ddpm::train(d); });
    CHECK(e.find("spirals") != std::string::npos);
    CHECK(e.find("swissroll") != std::string::npos);
    fs::create_directories(d.out);
    std::string npy = (fs::path(d.out) / "three.npy").string();
    std::vector<float> x(30, 0.5f);
    ddpm::write_npy(npy, x.data(), {10, 3});
    d.data = npy;
    e = user_error_text([&] { ddpm::train(d); });
    CHECK(e.find(npy) != std::string::npos);
    CHECK(e.find("[10, 3]") != std::string::npos);
  }
}

TEST_CASE("train: 1 and 2 threads give bitwise identical training and sampling") {
  fs::path a = fresh_dir("threads-1"), b = fresh_dir("threads-2");
  ddpm::TrainConfig c = base_config(a, 50);
  c.threads = 1;
  REQUIRE(ddpm::train(c) == 0);
  c = base_config(b, 50);
  c.threads = 2;
  REQUIRE(ddpm::train(c) == 0);
  require_same_tensors(ddpm::read_safetensors(ckpt_path(a)), ddpm::read_safetensors(ckpt_path(b)));

  ddpm::SampleConfig s;
  s.run_dir = a.string();
  s.sampler = "ddpm";
  s.steps = 20;
  s.n = 300;
  s.batch = 128;
  s.quiet = true;
  s.threads = 1;
  std::vector<float> x1 = ddpm::sample_to_vector(s);
  s.threads = 2;
  std::vector<float> x2 = ddpm::sample_to_vector(s);
  REQUIRE(x1.size() == 600);
  CHECK(std::memcmp(x1.data(), x2.data(), x1.size() * sizeof(float)) == 0);

  // DDIM is deterministic given x_T, and x_T is keyed by the global sample index,
  // so the chunking (--batch) changes nothing beyond float rounding in the module.
  s.sampler = "ddim";
  s.batch = 300;
  std::vector<float> d1 = ddpm::sample_to_vector(s);
  s.batch = 37;
  std::vector<float> d2 = ddpm::sample_to_vector(s);
  double maxdiff = 0;
  for (size_t i = 0; i < d1.size(); ++i) maxdiff = std::max(maxdiff, (double)std::fabs(d1[i] - d2[i]));
  CHECK(maxdiff < 1e-4);

  // DDPM adds fresh noise every step; the module keys it by the global sample
  // index (sampler_step's row0), so --batch changes nothing here either.
  s.sampler = "ddpm";
  s.steps = 50;
  s.batch = 300;
  std::vector<float> a1 = ddpm::sample_to_vector(s);
  s.batch = 37;
  std::vector<float> a2 = ddpm::sample_to_vector(s);
  maxdiff = 0;
  for (size_t i = 0; i < a1.size(); ++i) maxdiff = std::max(maxdiff, (double)std::fabs(a1[i] - a2[i]));
  CHECK(maxdiff < 1e-4);
  // ...while different seeds do give different samples.
  s.seed += 1;
  std::vector<float> a3 = ddpm::sample_to_vector(s);
  CHECK(std::memcmp(a2.data(), a3.data(), a2.size() * sizeof(float)) != 0);
}

// Baselines, measured with 2000 points against the same reference draw: two fresh
// moons draws are 0.022 apart (the floor); N(0, I), which matches the data's mean
// and variance, is 0.22 away; an untrained model diverges (SWD in the hundreds).
// A correct model and sampler reach about 0.08 (DDIM) after 2000 steps and 0.04
// after 10000. The bar is half the N(0, I) distance.
TEST_CASE("train: moons samples approach the data (sliced Wasserstein)") {
  const int n = 2000;
  std::vector<float> ref(n * 2), ref2(n * 2), gauss(n * 2);
  ddpm::sample_2d("moons", n, 12345, 0, ref.data());
  ddpm::sample_2d("moons", n, 54321, 0, ref2.data());
  for (int i = 0; i < 2 * n; ++i) gauss[i] = (float)ddpm::philox_normal(99, 0, 7, (uint64_t)i);
  const double w_floor = ddpm::sliced_wasserstein_2d(ref.data(), n, ref2.data(), n);
  const double w_gauss = ddpm::sliced_wasserstein_2d(gauss.data(), n, ref.data(), n);

  fs::path untrained = fresh_dir("quality-untrained"), trained = fresh_dir("quality-trained");
  ddpm::TrainConfig c = base_config(untrained, 1);
  REQUIRE(ddpm::train(c) == 0);
  c = base_config(trained, 3000);
  c.model = moons_spec();  // through the module cache, as ddpm-train does
  c.module_so = ddpm_tools::module_for(moons_spec(), cache_dir()).so;
  c.batch = 256;
  c.log_every = 500;
  REQUIRE(ddpm::train(c) == 0);

  ddpm::SampleConfig s;
  s.n = n;
  s.batch = 1000;
  s.threads = 2;
  s.quiet = true;
  s.run_dir = untrained.string();
  s.use_ema = false;
  s.sampler = "ddim";
  s.steps = 50;
  std::vector<float> x_untrained = ddpm::sample_to_vector(s);
  s.run_dir = trained.string();
  s.use_ema = true;
  s.sampler = "ddpm";
  s.steps = 0;
  s.out_npy = (trained / "ddpm.npy").string();
  s.out_png = (trained / "ddpm.png").string();
  std::vector<float> x_ddpm = ddpm::sample_to_vector(s);
  s.sampler = "ddim";
  s.steps = 50;
  s.out_npy = (trained / "ddim.npy").string();
  s.out_png = (trained / "ddim.png").string();
  std::vector<float> x_ddim = ddpm::sample_to_vector(s);

  const double w_untrained = ddpm::sliced_wasserstein_2d(x_untrained.data(), n, ref.data(), n);
  const double w_ddpm = ddpm::sliced_wasserstein_2d(x_ddpm.data(), n, ref.data(), n);
  const double w_ddim = ddpm::sliced_wasserstein_2d(x_ddim.data(), n, ref.data(), n);
  MESSAGE("SWD to fresh moons: data floor ", w_floor, ", N(0,I) ", w_gauss, ", untrained (ddim 50) ", w_untrained,
          ", trained ddpm(1000) ", w_ddpm, ", ddim(50) ", w_ddim);
  CHECK(w_ddpm < 0.5 * w_untrained);
  CHECK(w_ddim < 0.5 * w_untrained);
  CHECK(w_ddpm < 0.5 * w_gauss);
  CHECK(w_ddim < 0.5 * w_gauss);

  ddpm::NpyArray saved = ddpm::read_npy((trained / "ddpm.npy").string());
  CHECK(saved.shape == std::vector<int64_t>{n, 2});
  CHECK(fs::file_size(trained / "ddpm.png") > 1000);
}
