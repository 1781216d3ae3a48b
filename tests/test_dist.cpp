// Data-parallel training and sampling under OpenMPI (runtime/dist.h,
// runtime/sliced_step.h): the slice tree on its own, then the real ddpm-train and
// ddpm-sample binaries under `mpirun --allow-run-as-root --oversubscribe`.
//
// Covered: the slice tree gives one sum for every rank count; moons (200 steps)
// and the U-Net (3 steps, batch 8) give bitwise-identical checkpoints with
// 1 process x 2 threads, 2 x 1 and 4 x 1; resume across a change of rank count;
// a rank killed mid-run stops the job with a message naming it and the step,
// a non-zero exit and an intact checkpoint; a NaN on one rank stops every rank;
// ranks that disagree on flags refuse to start; `mpirun -np 2 ddpm-sample`
// writes the same files as one process.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "compiler/build.h"
#include "runtime/npy.h"
#include "test_runs.h"
#include "runtime/safetensors.h"
#include "runtime/slices.h"
#include "test_support.h"

namespace fs = std::filesystem;
using ddpm_test::moons_module;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-dist" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string tool(const char* name) { return std::string(DDPM_BINARY_DIR) + "/tools/" + name; }

// mpirun with np ranks (np = 0: no mpirun at all). Leak checking is off in the
// ranks: OpenMPI keeps its allocations until exit.
std::string launcher(int np) {
  if (np == 0) return "";
  return fmt::format("env ASAN_OPTIONS=detect_leaks=0 {} --allow-run-as-root --oversubscribe -np {} ", DDPM_MPIEXEC, np);
}

struct Run {
  int status = -1;  // exit status, or 128 + signal
  std::string err;
};

// Runs a shell command with stderr captured into `log`.
Run run(const std::string& cmd, const fs::path& log) {
  const std::string full = fmt::format("timeout 600 {} > {}.out 2> {}", cmd, log.string(), log.string());
  int rc = std::system(full.c_str());
  Run r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.err = ss.str();
  return r;
}

std::string train_cmd(int np, const std::string& model, const fs::path& out, const std::string& flags) {
  return fmt::format("{}{} {} --out {} --quiet {}", launcher(np), tool("ddpm-train"), model, out.string(), flags);
}

ddpm::SafeTensors checkpoint(const fs::path& dir) { return ddpm::read_safetensors((dir / "checkpoint.safetensors").string()); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("dist: the slice tree adds the same nodes whatever the number of ranks") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  const int64_t n = 37;
  for (int S = 1; S <= 9; ++S) {
    std::vector<std::vector<float>> leaves(S, std::vector<float>(n));
    for (auto& l : leaves)
      for (auto& x : l) x = u(rng) * std::pow(10.0f, (float)(rng() % 8));  // mixed magnitudes: order matters
    auto leaf = [&](ddpm::SliceNode nd, float* out) {
      if (!nd.leaf()) return false;
      std::copy(leaves[nd.lo].begin(), leaves[nd.lo].end(), out);
      return true;
    };
    std::vector<std::vector<float>> scratch;
    std::vector<float> whole(n);
    ddpm::tree_sum({0, S}, leaf, whole.data(), n, scratch);
    for (int N = 1; N <= S; ++N) {
      // Each rank adds its cover; then the root is added from the covers' values.
      std::vector<std::pair<ddpm::SliceNode, std::vector<float>>> parts;
      int next = 0;
      for (int r = 0; r < N; ++r) {
        ddpm::SliceRange sr = ddpm::rank_slices(S, r, N);
        CHECK(sr.first == next);
        next = sr.last;
        CHECK(sr.last > sr.first);
        for (ddpm::SliceNode nd : ddpm::tree_cover(S, sr.first, sr.last)) {
          std::vector<float> v(n);
          ddpm::tree_sum(nd, leaf, v.data(), n, scratch);
          parts.push_back({nd, v});
        }
      }
      CHECK(next == S);
      auto given = [&](ddpm::SliceNode nd, float* out) {
        for (auto& [node, v] : parts)
          if (node == nd) {
            std::copy(v.begin(), v.end(), out);
            return true;
          }
        return false;
      };
      std::vector<float> combined(n);
      ddpm::tree_sum({0, S}, given, combined.data(), n, scratch);
      CHECK_MESSAGE(std::memcmp(combined.data(), whole.data(), n * sizeof(float)) == 0, "S = ", S, ", N = ", N);
    }
  }
  // The tree is not a left fold: (a + b) + (c + d) differs from ((a + b) + c) + d here.
  std::vector<std::vector<float>> scratch;
  const float v[4] = {1e8f, 1.0f, -1e8f, 1.0f};
  auto four = [&](ddpm::SliceNode nd, float* out) {
    if (!nd.leaf()) return false;
    *out = v[nd.lo];
    return true;
  };
  float t = 0;
  ddpm::tree_sum({0, 4}, four, &t, 1, scratch);
  CHECK(t == (v[0] + v[1]) + (v[2] + v[3]));
  CHECK(t != ((v[0] + v[1]) + v[2]) + v[3]);
}

TEST_CASE("dist: moons, 200 steps: 1 process x 2 threads, 2 x 1 and 4 x 1 give the same bits, and resume across rank counts") {
  const std::string so = moons_module();
  const fs::path d = fresh_dir("moons");
  const std::string flags = "--data moons --steps 200 --batch 64 --slices 4 --seed 3 --ckpt-every 100";
  Run r1 = run(train_cmd(0, so, d / "1x2", flags + " --threads 2"), d / "1x2.log");
  REQUIRE_MESSAGE(r1.status == 0, r1.err);
  Run r2 = run(train_cmd(2, so, d / "2x1", flags + " --threads 1"), d / "2x1.log");
  REQUIRE_MESSAGE(r2.status == 0, r2.err);
  Run r4 = run(train_cmd(4, so, d / "4x1", flags + " --threads 1"), d / "4x1.log");
  REQUIRE_MESSAGE(r4.status == 0, r4.err);
  ddpm_test::require_same_checkpoint(d / "1x2", d / "2x1");
  ddpm_test::require_same_checkpoint(d / "1x2", d / "4x1");
  CHECK(checkpoint(d / "4x1").metadata.at("slices") == "4");
  // Only rank 0 wrote metrics: one line per 100 steps (the default --log-every), not one per rank.
  std::string metrics = read_file(d / "4x1" / "metrics.jsonl");
  CHECK(std::count(metrics.begin(), metrics.end(), '\n') == 2);

  // The slices change the arithmetic (so the test above compares something): 1 slice differs.
  Run r0 = run(train_cmd(0, so, d / "1slice", "--data moons --steps 200 --batch 64 --slices 1 --seed 3 --threads 2"),
               d / "1slice.log");
  REQUIRE_MESSAGE(r0.status == 0, r0.err);
  const ddpm::SafeTensors one = checkpoint(d / "1slice"), four = checkpoint(d / "1x2");
  const std::string w = one.tensors.begin()->first;
  CHECK(one.tensors.at(w).second != four.tensors.at(w).second);

  // 100 steps on 2 ranks, then 4 ranks to 200, then (another run) 1 process to 200:
  // the slice count comes from the checkpoint, and the bits match the straight run.
  const std::string half = "--data moons --steps 100 --batch 64 --slices 4 --seed 3 --threads 1";
  REQUIRE(run(train_cmd(2, so, d / "resume4", half), d / "resume4a.log").status == 0);
  fs::copy(d / "resume4", d / "resume1", fs::copy_options::recursive);
  Run ra = run(train_cmd(4, so, d / "resume4", "--data moons --steps 200 --batch 64 --seed 3 --threads 1 --resume"),
               d / "resume4b.log");
  REQUIRE_MESSAGE(ra.status == 0, ra.err);
  ddpm_test::require_same_checkpoint(d / "1x2", d / "resume4");
  Run rb = run(train_cmd(0, so, d / "resume1", "--data moons --steps 200 --batch 64 --seed 3 --threads 2 --resume"),
               d / "resume1b.log");
  REQUIRE_MESSAGE(rb.status == 0, rb.err);
  ddpm_test::require_same_checkpoint(d / "1x2", d / "resume1");

  // More ranks than slices is refused with a hint.
  Run too_many = run(train_cmd(4, so, d / "toomany", "--data moons --steps 5 --batch 64 --slices 2 --threads 1"),
                     d / "toomany.log");
  CHECK(too_many.status != 0);
  CHECK(too_many.err.find("4 ranks but the batch is cut into 2 slices") != std::string::npos);
}

TEST_CASE("dist: the U-Net, 3 steps at batch 8: 1 process x 2 threads, 2 x 1 and 4 x 1 give the same bits") {
  ddpmc::BuildOptions o = ddpm_test::test_build_options();
  const std::string so = ddpmc::build_module(ddpm_test::source_path("models/fashion_unet.ddpm"), o).so_path;
  const fs::path d = fresh_dir("unet");
  const std::string flags = "--data fashion-mnist --steps 3 --batch 8 --slices 4 --seed 11";
  for (auto [np, name, threads] : {std::tuple{0, "1x2", 2}, std::tuple{2, "2x1", 1}, std::tuple{4, "4x1", 1}}) {
    Run r = run(train_cmd(np, so, d / name, flags + fmt::format(" --threads {}", threads)),
                d / (std::string(name) + ".log"));
    REQUIRE_MESSAGE(r.status == 0, r.err);
  }
  ddpm_test::require_same_checkpoint(d / "1x2", d / "2x1");
  ddpm_test::require_same_checkpoint(d / "1x2", d / "4x1");
}

TEST_CASE("dist: a rank killed mid-run stops the job with a message naming it, and the checkpoint survives") {
  const std::string so = moons_module();
  const fs::path d = fresh_dir("kill"), out = d / "run";
  const std::string cmd =
      train_cmd(2, so, out, "--data moons --steps 100000000 --batch 64 --threads 1 --ckpt-every 50 --log-every 50");
  std::thread killer([&] {
    // Once a checkpoint exists, SIGKILL rank 1 (found by its environment).
    for (int i = 0; i < 6000 && !fs::exists(out / "checkpoint.safetensors"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string env = read_file(e.path() / "environ"), cmdline = read_file(e.path() / "cmdline");
      if (cmdline.find("ddpm-train") == std::string::npos || cmdline.find(out.string()) == std::string::npos) continue;
      if (env.find(std::string("OMPI_COMM_WORLD_RANK=1") + '\0') == std::string::npos) continue;
      kill(std::stoi(e.path().filename().string()), SIGKILL);
    }
  });
  Run r = run(cmd, d / "kill.log");
  killer.join();
  CHECK(r.status != 0);
  INFO(r.err);
  CHECK(r.err.find("ddpm-train: error: rank 1 (pid") != std::string::npos);
  CHECK(r.err.find("exited or crashed during step") != std::string::npos);
  CHECK(r.err.find("the last good checkpoint (step") != std::string::npos);
  ddpm::SafeTensors ck = checkpoint(out);
  const int64_t step = std::stoll(ck.metadata.at("step"));
  CHECK(step >= 50);
  CHECK(step % 50 == 0);
  for (const auto& [name, t] : ck.tensors)
    for (float v : t.second) REQUIRE(std::isfinite(v));
  // The checkpoint named in the message is the one on disk.
  CHECK(r.err.find(fmt::format("the last good checkpoint (step {}) is kept", step)) != std::string::npos);
}

TEST_CASE("dist: a NaN on one rank stops every rank with status 3, and ranks that disagree refuse to start") {
  const std::string so = moons_module();
  const fs::path d = fresh_dir("faults");
  // Every odd row of the data is 3e38, which overflows the loss (NaN data is refused
  // at load), so both slices of the first step draw some (each misses them all with
  // p = 2^-32): the message names the first, slice 0 on rank 0.
  const int64_t N = 64;
  std::vector<float> rows(N * 2, 0.5f);
  const std::string npy = (d / "half_nan.npy").string();
  for (int64_t i = 0; i < N; ++i) rows[2 * i] = i % 2 ? 3e38f : 0.25f;
  ddpm::write_npy(npy, rows.data(), {N, 2});
  Run r = run(train_cmd(2, so, d / "nan", fmt::format("--data {} --steps 20 --batch 64 --slices 2 --threads 1", npy)),
              d / "nan.log");
  CHECK(r.status == 3);
  CHECK_MESSAGE(r.err.find("ddpm-train: error: loss is ") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find(" at step 1 (slice 0 on rank 0)") != std::string::npos, r.err);
  CHECK_MESSAGE(r.err.find("no checkpoint had been written yet") != std::string::npos, r.err);
  CHECK_FALSE(fs::exists(d / "nan" / "checkpoint.safetensors"));

  // Two ranks with different learning rates (MPMD: one command line per rank).
  const std::string base = fmt::format("{} {} --out {} --quiet --data moons --steps 5 --batch 64 --threads 1",
                                       tool("ddpm-train"), so, (d / "disagree").string());
  Run dis = run(fmt::format("{}{} --lr 0.001 : -np 1 {} --lr 0.002", launcher(1), base, base), d / "disagree.log");
  CHECK(dis.status != 0);
  CHECK_MESSAGE(dis.err.find("the ranks disagree on the training flags") != std::string::npos, dis.err);
  CHECK_MESSAGE(dis.err.find("lr=0.002") != std::string::npos, dis.err);
  CHECK_FALSE(fs::exists(d / "disagree" / "checkpoint.safetensors"));
}

TEST_CASE("dist: mpirun -np 2 ddpm-sample writes the same .npy and PNG as one process") {
  // Trained from the spec, so every rank rebuilds the module from the checkpoint's source.
  const std::string cache = std::string(DDPM_TEST_CACHE);
  const fs::path d = fresh_dir("sample");
  REQUIRE(run(train_cmd(0, std::string(DDPM_SOURCE_DIR) + "/models/moons.ddpm --cache-dir " + cache, d / "run",
                        "--data moons --steps 30 --batch 64 --threads 2"),
              d / "train.log")
              .status == 0);
  for (const char* sampler : {"ddpm", "ddim"}) {
    auto cmd = [&](int np, const std::string& name) {
      return fmt::format("{}{} {} --sampler {} --steps 20 -n 37 --batch 8 --threads 1 --seed 5 --quiet --out {} --png {} "
                         "--cache-dir {}",
                         launcher(np), tool("ddpm-sample"), (d / "run").string(), sampler,
                         (d / (name + ".npy")).string(), (d / (name + ".png")).string(), cache);
    };
    const std::string one = std::string("one_") + sampler, two = std::string("two_") + sampler;
    Run a = run(cmd(0, one), d / (one + ".log"));
    REQUIRE_MESSAGE(a.status == 0, a.err);
    Run b = run(cmd(2, two), d / (two + ".log"));
    REQUIRE_MESSAGE(b.status == 0, b.err);
    const std::string na = read_file(d / (one + ".npy")), nb = read_file(d / (two + ".npy"));
    CHECK(na.size() > 37 * 2 * sizeof(float));
    CHECK_MESSAGE(na == nb, sampler);
    CHECK(read_file(d / (one + ".png")) == read_file(d / (two + ".png")));
  }
}

TEST_CASE("dist: Ctrl-C to mpirun stops every rank after the same step with a checkpoint, and --resume continues") {
  const std::string so = moons_module();
  const fs::path d = fresh_dir("interrupt"), out = d / "run";
  const std::string flags = "--data moons --batch 64 --slices 2 --threads 1 --ckpt-every 20 --log-every 20";
  // mpirun runs in the background of a shell that sends it SIGINT once a checkpoint exists.
  const std::string cmd = fmt::format(
      "sh -c '{} --steps 100000000 & pid=$!; i=0; while [ ! -f {} ] && [ $i -lt 6000 ]; do sleep 0.02; i=$((i+1)); "
      "done; sleep 0.3; kill -INT $pid; wait $pid'",
      train_cmd(2, so, out, flags), (out / "checkpoint.safetensors").string());
  Run r = run(cmd, d / "interrupt.log");
  INFO(r.err);
  CHECK(r.status != 0);
  CHECK(r.err.find("continue with --resume") != std::string::npos);
  const int64_t stopped = std::stoll(checkpoint(out).metadata.at("step"));
  CHECK(stopped >= 20);
  // The last metrics line is the stop step: rank 0 logged it, and wrote the checkpoint there.
  const std::string metrics = read_file(out / "metrics.jsonl");
  CHECK(metrics.find(fmt::format("{{\"step\": {},", stopped)) != std::string::npos);
  Run again = run(train_cmd(2, so, out, flags + fmt::format(" --steps {} --resume", stopped + 5)), d / "resume.log");
  REQUIRE_MESSAGE(again.status == 0, again.err);
  CHECK(checkpoint(out).metadata.at("step") == std::to_string(stopped + 5));
}
