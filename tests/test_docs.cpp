// Documentation tests: the examples in compiler/README.md must compile.
//
// Every fenced block tagged ```ddpm in the language reference is a complete spec;
// each one is run through check_spec_text() under the label "README.md:<line>"
// (<line> is the block's first spec line), so an error message points into the
// README. Blocks tagged anything else (```text for fragments and output) are
// skipped. The moons model, the reference's first example, must also check with
// its documented parameter count.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/diag.h"
#include "compiler/driver.h"

namespace fs = std::filesystem;

namespace {

const fs::path kReadme = fs::path(DDPM_SOURCE_DIR) / "compiler" / "README.md";
const fs::path kMoons = fs::path(DDPM_SOURCE_DIR) / "models" / "moons.ddpm";

struct Block {
  int line = 0;  // 1-based line of the block's first spec line (after the fence)
  std::string text;
};

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Fenced blocks in a Markdown text whose info string is exactly `lang`. A fence is
// a line (after indentation) starting with ```; the block ends at the next line
// that is just ``` (after trimming).
std::vector<Block> fenced_blocks(const std::string& markdown, const std::string& lang) {
  std::vector<Block> out;
  std::istringstream in(markdown);
  std::string line;
  int line_no = 0;
  bool inside = false, wanted = false;
  Block cur;
  while (std::getline(in, line)) {
    ++line_no;
    std::string t = trim(line);
    if (!inside) {
      if (t.rfind("```", 0) == 0) {
        inside = true;
        wanted = trim(t.substr(3)) == lang;
        cur = Block{line_no + 1, ""};
      }
    } else if (t == "```") {
      inside = false;
      if (wanted) out.push_back(cur);
    } else if (wanted) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      cur.text += line + "\n";
    }
  }
  REQUIRE_MESSAGE(!inside, "unclosed code fence in " << kReadme.string());
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot read " << p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("docs: every ```ddpm block in compiler/README.md is a spec that compiles") {
  std::vector<Block> blocks = fenced_blocks(read_file(kReadme), "ddpm");
  REQUIRE_MESSAGE(blocks.size() >= 3, "the language reference should have at least 3 complete ```ddpm examples");
  for (const Block& b : blocks) {
    std::string label = "README.md:" + std::to_string(b.line);
    SUBCASE(label.c_str()) {
      try {
        ddpmc::CheckReport r = ddpmc::check_spec_text(label, b.text);
        CHECK(r.n_params > 0);
      } catch (const ddpmc::UserError& e) {
        FAIL("example at " << label << " does not compile:\n" << e.what());
      } catch (const ddpmc::InternalError& e) {
        FAIL("internal error on the example at " << label << ":\n" << e.what());
      }
    }
  }
}

TEST_CASE("docs: the first ```ddpm example is models/moons.ddpm") {
  std::vector<Block> blocks = fenced_blocks(read_file(kReadme), "ddpm");
  REQUIRE(!blocks.empty());
  CHECK_MESSAGE(blocks[0].text == read_file(kMoons),
                "the README's first example should be a verbatim copy of models/moons.ddpm");
}

TEST_CASE("docs: models/moons.ddpm checks with 41,858 parameters") {
  ddpmc::CheckReport r = ddpmc::check_spec_file(kMoons.string());
  CHECK(r.n_params == 41858);
  CHECK(r.text.find("41,858") != std::string::npos);
}

TEST_CASE("docs: fenced block extraction") {
  std::string md =
      "intro\n"
      "```ddpm\n"
      "data x0: [2]\n"
      "```\n"
      "```text\n"
      "skipped\n"
      "```\n"
      "  ```ddpm\n"
      "  indented\n"
      "  ```\n";
  std::vector<Block> blocks = fenced_blocks(md, "ddpm");
  REQUIRE(blocks.size() == 2);
  CHECK(blocks[0].line == 3);
  CHECK(blocks[0].text == "data x0: [2]\n");
  CHECK(blocks[1].line == 9);
  CHECK(blocks[1].text == "  indented\n");
}
