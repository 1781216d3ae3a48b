// Tests that the spec hash (compiler/build.h) and the generated code are functions
// of the spec's content, never of how its path is spelled: the same spec read as
// models/moons.ddpm, ./models/moons.ddpm, an absolute path or a copy in another
// directory has one hash and one cached module, and a spec with imports keeps its
// hash when its folder is moved, but not when an imported file changes.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "build.h"
#include "pipeline.h"
#include "test_support.h"

namespace fs = std::filesystem;
using ddpm_test::source_path;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-spec-hash" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string hash_of(const std::string& path) { return ddpmc::spec_hash(ddpmc::compile_spec_file(path)); }

// Runs f with the current directory set to dir, then restores it.
template <class F>
auto in_dir(const fs::path& dir, F f) {
  const fs::path old = fs::current_path();
  fs::current_path(dir);
  struct Back {
    fs::path p;
    ~Back() { fs::current_path(p); }
  } back{old};
  return f();
}

}  // namespace

TEST_CASE("spec hash: the same spec under any path spelling or directory has one hash and one module") {
  const fs::path dir = fresh_dir("spellings");
  fs::copy_file(source_path("models/moons.ddpm"), dir / "moons.ddpm");
  const std::string abs = source_path("models/moons.ddpm");
  const std::string h = hash_of(abs);
  CHECK(in_dir(DDPM_SOURCE_DIR, [] { return hash_of("models/moons.ddpm"); }) == h);
  CHECK(in_dir(DDPM_SOURCE_DIR, [] { return hash_of("./models/moons.ddpm"); }) == h);
  CHECK(in_dir(fs::path(DDPM_SOURCE_DIR) / "tests", [] { return hash_of("../models/../models/moons.ddpm"); }) == h);
  CHECK(hash_of((dir / "moons.ddpm").string()) == h);  // an installed copy, say

  // The generated code names the spec by its file name, so a copy elsewhere hits
  // the same cached module without compiling.
  const ddpmc::BuiltModule a = ddpmc::build_module(abs, ddpm_test::test_build_options());
  const ddpmc::BuiltModule b = ddpmc::build_module((dir / "moons.ddpm").string(), ddpm_test::test_build_options());
  CHECK(a.spec_hash == h);
  CHECK(b.spec_hash == h);
  CHECK(b.so_path == a.so_path);
  CHECK(b.cache_hit);

  // Another text is another model.
  std::ifstream in(abs);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write(dir / "edited.ddpm", text + "\n# a comment changes the text\n");
  CHECK(hash_of((dir / "edited.ddpm").string()) != h);
}

TEST_CASE("spec hash: a spec with imports keeps its hash when moved and changes when an import changes") {
  const std::string main_text = "import \"lib/blocks\"\n" +
                                [] {
                                  std::ifstream in(source_path("models/moons.ddpm"));
                                  return std::string((std::istreambuf_iterator<char>(in)),
                                                     std::istreambuf_iterator<char>());
                                }();
  const std::string lib_v1 = "fn twice(x) {\n  return x + x\n}\n";
  const fs::path one = fresh_dir("moved/one"), two = fresh_dir("moved/elsewhere/two");
  for (const fs::path& d : {one, two}) {
    write(d / "main.ddpm", main_text);
    write(d / "lib" / "blocks.ddpm", lib_v1);
  }
  const std::string h1 = hash_of((one / "main.ddpm").string());
  CHECK(hash_of((two / "main.ddpm").string()) == h1);
  CHECK(in_dir(two / "lib", [] { return hash_of("../main.ddpm"); }) == h1);

  write(two / "lib" / "blocks.ddpm", "fn twice(x) {\n  return 2 * x\n}\n");
  CHECK(hash_of((two / "main.ddpm").string()) != h1);
}
