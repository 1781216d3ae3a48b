// Tests that a run directory is data, not code (README "Threat model"), and that
// no damaged module reaches dlopen (common/checksum.h):
// - ddpm-sample, ddpm-eval and ddpm-train --resume on a run whose module.so was
//   replaced by a library with a constructor never run it: they rebuild the module
//   from the checkpoint's own source and give the untouched run's results bit for
//   bit; the same without any module.so; --trust-module refuses a module whose
//   checksum is not the checkpoint's;
// - a cached module with zeroed bytes or flipped bits is rebuilt, never loaded;
// - the cache is private: created 0700, and a group-writable cache directory or a
//   module owned by another user is refused with a one-line error.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "build.h"
#include "common/diag.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "test_runs.h"
#include "test_support.h"
#include "test_shell.h"

namespace fs = std::filesystem;
using ddpm_test::file_bytes;
using ddpm_test::run_shell;
using ddpm_test::tool_path;

namespace {




// A directory of this test process (ctest runs the cases in parallel), removed at exit.
fs::path work_dir(const std::string& name) {
  fs::path p = ddpm_test::process_dir("test-run-trust", name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// A library whose constructor writes `marker`: what a crafted module.so would do.
void write_evil_module(const fs::path& so, const fs::path& marker) {
  const fs::path src = so.parent_path() / "evil.cpp";
  std::ofstream(src) << "#include <cstdio>\n__attribute__((constructor)) static void planted() {\n"
                     << "  if (FILE* f = std::fopen(\"" << marker.string() << "\", \"w\")) std::fclose(f);\n}\n";
  std::string out;
  REQUIRE(run_shell(fmt::format("g++ -shared -fPIC '{}' -o '{}'", src.string(), so.string()), out) == 0);
  fs::remove(src);
}

// The tensors of a run's checkpoint (the metadata holds the elapsed time).
auto weights(const fs::path& run_dir) {
  return ddpm::read_safetensors((run_dir / "checkpoint.safetensors").string()).tensors;
}

struct Runs {
  fs::path dir, data, clean, spec;
  std::string cache;
};

// A tiny image model trained to step 20 of 40 (so --resume has work), into `clean`.
Runs make_clean_run(const std::string& name) {
  Runs r;
  r.dir = work_dir(name);
  r.data = r.dir / "img.npy";
  r.clean = r.dir / "clean";
  r.spec = fs::path(DDPM_SOURCE_DIR) / "tests/specs/tiny_image.ddpm";
  r.cache = std::string(DDPM_TEST_CACHE);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> x(64 * 4);
  for (float& v : x) v = u(rng);
  ddpm::write_npy(r.data.string(), x.data(), {64, 1, 2, 2});
  std::string out;
  REQUIRE(run_shell(fmt::format("{} {} --data {} --steps 40 --stop-at 20 --batch 16 --threads 2 -q --out {} --cache-dir {}",
                          tool_path("ddpm-train"), r.spec.string(), r.data.string(), r.clean.string(), r.cache),
              out) == 0);
  return r;
}

// The sources with a comment added to the main file: valid, but another model.
std::string edited(const std::string& sources) {
  nlohmann::json j = nlohmann::json::parse(sources);
  j["files"][j["main"].get<std::string>()] = j["files"][j["main"].get<std::string>()].get<std::string>() + "# edited\n";
  return j.dump();
}

// Samples, evaluates and resumes `run_dir`; returns what each produced.
struct Results {
  std::string samples, eval;
};
Results use_run(const Runs& r, const fs::path& run_dir, const std::string& resume_model) {
  Results res;
  std::string out;
  const fs::path s = r.dir / (run_dir.filename().string() + "-samples.npy");
  REQUIRE(run_shell(fmt::format("{} {} -n 16 -q --no-png --out {} --cache-dir {}", tool_path("ddpm-sample"), run_dir.string(),
                          s.string(), r.cache),
              out) == 0);
  res.samples = file_bytes(s);
  INFO(out);
  REQUIRE(run_shell(fmt::format("{} {} --bpd -n 8 --steps 5 --batch 4 -q --data {} --cache-dir {}", tool_path("ddpm-eval"),
                          run_dir.string(), r.data.string(), r.cache),
              out) == 0);
  const size_t at = out.find("/dim ");  // bits/dim or nats/dim: the bound's line
  REQUIRE(at != std::string::npos);
  const size_t line = out.rfind('\n', at);
  res.eval = out.substr(line == std::string::npos ? 0 : line + 1);
  REQUIRE(run_shell(fmt::format("{} {} --out {} --resume -q --threads 2 --cache-dir {}", tool_path("ddpm-train"), resume_model,
                          run_dir.string(), r.cache),
              out) == 0);
  return res;
}

}  // namespace

TEST_CASE("trust: a planted module.so is never run: sample, eval and resume rebuild from the checkpoint's source") {
  const Runs r = make_clean_run("planted");
  const fs::path planted = r.dir / "planted", marker = r.dir / "MARKER";
  fs::copy(r.clean, planted, fs::copy_options::recursive);
  write_evil_module(planted / "module.so", marker);

  const Results want = use_run(r, r.clean, r.spec.string());
  const Results got = use_run(r, planted, "");  // --resume with no spec: from the checkpoint's source
  CHECK_FALSE(fs::exists(marker));
  CHECK(got.samples == want.samples);
  CHECK(got.eval == want.eval);
  CHECK(weights(planted) == weights(r.clean));
  // The resume wrote a clean module.so back into the run.
  CHECK(file_bytes(planted / "module.so") == file_bytes(r.clean / "module.so"));

  // --trust-module on a planted module: refused by its checksum, still never run.
  write_evil_module(planted / "module.so", marker);
  std::string out;
  CHECK(run_shell(fmt::format("{} {} -n 4 -q --no-png --out {}/x.npy --trust-module", tool_path("ddpm-sample"),
                        planted.string(), r.dir.string()),
            out) == 1);
  CHECK(out.find("damaged or replaced") != std::string::npos);
  CHECK_FALSE(fs::exists(marker));
}

TEST_CASE("trust: a run directory with no module.so at all samples, evaluates and resumes") {
  const Runs r = make_clean_run("nomodule");
  const fs::path bare = r.dir / "bare";
  fs::copy(r.clean, bare, fs::copy_options::recursive);
  fs::remove(bare / "module.so");
  const Results want = use_run(r, r.clean, r.spec.string());
  const Results got = use_run(r, bare, r.spec.string());
  CHECK(got.samples == want.samples);
  CHECK(got.eval == want.eval);
  CHECK(weights(bare) == weights(r.clean));
}

TEST_CASE("trust: a damaged cached module is rebuilt, never loaded, whether bytes are zeroed or bits flipped") {
  const fs::path dir = work_dir("damaged");
  ddpmc::BuildOptions opt;
  opt.cache_dir = (dir / "cache").string();
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/tests/specs/tiny_image.ddpm";
  const ddpmc::BuiltModule first = ddpmc::build_module(spec, opt);
  CHECK_FALSE(first.cache_hit);
  CHECK(ddpmc::build_module(spec, opt).cache_hit);
  const std::string good = file_bytes(first.so_path);
  auto damage = [&](auto&& edit) {
    std::string b = good;
    edit(b);
    std::ofstream(first.so_path, std::ios::binary | std::ios::trunc) << b;
    const ddpmc::BuiltModule again = ddpmc::build_module(spec, opt);
    CHECK_FALSE(again.cache_hit);  // rebuilt...
    CHECK(file_bytes(again.so_path) == good);  // ...to the same bytes
  };
  damage([](std::string& b) { std::fill(b.begin() + 4096, b.begin() + 8192, '\0'); });
  damage([](std::string& b) {
    for (size_t at : {b.size() / 3, b.size() / 2, b.size() - 100}) b[at] ^= 0x10;
  });
}

TEST_CASE("trust: the cache is created 0700 and a cache or module others can write is refused") {
  const fs::path dir = work_dir("private");
  const std::string spec = std::string(DDPM_SOURCE_DIR) + "/tests/specs/tiny_image.ddpm";
  std::string out;
  // A fresh cache is the user's alone.
  const fs::path fresh = dir / "fresh";
  REQUIRE(run_shell(fmt::format("DDPM_CACHE_DIR={} {} compile {} -o {}/m.so", fresh.string(), tool_path("ddpmc"), spec,
                          dir.string()),
              out) == 0);
  struct stat st;
  REQUIRE(::stat(fresh.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  // Group-writable: refused, one line naming the directory, exit 1.
  fs::permissions(fresh, fs::perms::group_write, fs::perm_options::add);
  CHECK(run_shell(fmt::format("DDPM_CACHE_DIR={} {} compile {} -o {}/m.so", fresh.string(), tool_path("ddpmc"), spec,
                        dir.string()),
            out) == 1);
  CHECK(out.find("refusing the module cache '" + fresh.string() + "': it is group-writable") != std::string::npos);
  CHECK(out.find("chmod 700") != std::string::npos);
  fs::permissions(fresh, fs::perms::group_write, fs::perm_options::remove);

  // A module in it that another user owns (or, without root, that others can write).
  fs::path so;
  for (auto& e : fs::directory_iterator(fresh))
    if (e.path().extension() == ".so") so = e.path();
  REQUIRE(!so.empty());
  if (::geteuid() == 0) {
    REQUIRE(::chown(so.c_str(), 12345, 12345) == 0);
  } else {
    MESSAGE("not root: testing a world-writable module instead of one another uid owns");
    fs::permissions(so, fs::perms::others_write, fs::perm_options::add);
  }
  CHECK(run_shell(fmt::format("DDPM_CACHE_DIR={} {} compile {} -o {}/m.so", fresh.string(), tool_path("ddpmc"), spec,
                        dir.string()),
            out) == 1);
  CHECK(out.find("refusing the cached module " + so.string()) != std::string::npos);
}

TEST_CASE("trust: the source a checkpoint carries is hostile input: every bad one is a one-line error") {
  const Runs r = make_clean_run("hostile");
  const ddpm::SafeTensors ck = ddpm::read_safetensors((r.clean / "checkpoint.safetensors").string());
  const std::string real = ck.metadata.at("spec_sources");
  struct Case {
    std::string sources, expect;
  } cases[] = {
      {"not json", "its spec source is malformed (not a JSON object)"},
      {R"({"main":"m.ddpm","files":{"other.ddpm":"x"}})", "the main file 'm.ddpm' is not among the files"},
      {R"({"main":"m.ddpm","files":{"m.ddpm":7}})", "file 'm.ddpm' is not text"},
      {R"({"main":"m.ddpm","files":{"m.ddpm":"import \"lib/x\"\n"}})", "'lib/x.ddpm' is not among the spec's sources"},
      {R"({"main":"m.ddpm","files":{"m.ddpm":"data x0: [2\n"}})", "<checkpoint>/m.ddpm:"},
      {R"({"main":"m.ddpm","files":{"m.ddpm":"import \"m\"\n"}})", "import cycle"},
      {edited(real), "compiles to spec hash"},  // the text edited: another model
  };
  int k = 0;
  for (const Case& c : cases) {
    CAPTURE(c.sources);
    const fs::path run_dir = r.dir / fmt::format("hostile{}", k++);
    fs::copy(r.clean, run_dir, fs::copy_options::recursive);
    std::vector<ddpm::TensorView> views;
    for (const auto& [name, t] : ck.tensors) views.push_back({name, t.first, t.second.data()});
    auto meta = ck.metadata;
    meta["spec_sources"] = c.sources;
    ddpm::write_safetensors((run_dir / "checkpoint.safetensors").string(), views, meta);
    std::string out;
    CHECK(run_shell(fmt::format("{} {} -n 4 -q --no-png --out {}/x.npy", tool_path("ddpm-sample"), run_dir.string(),
                          r.dir.string()),
              out) == 1);
    CHECK(out.find(c.expect) != std::string::npos);
    CHECK(out.find("internal error") == std::string::npos);
  }
}
