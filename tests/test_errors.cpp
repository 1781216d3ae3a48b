// Error-message tests: every tests/errors/*.ddpm is a spec that must be rejected.
//
// Each file's first line is `# expect: FILE:LINE:COL: error: MESSAGE`, FILE being a
// basename. The harness runs check_spec_file() on the file and requires a UserError
// (never an InternalError, never success) whose first line, with the path reduced
// to its basename, is exactly the expected text, followed by the source line, a
// caret line and a non-empty hint. Helper files that cases import live in
// tests/errors/inc/ and are not cases themselves. Adding a case means adding a file.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/diag.h"
#include "compiler/driver.h"

namespace fs = std::filesystem;

namespace {

const fs::path kErrorsDir = fs::path(DDPM_SOURCE_DIR) / "tests" / "errors";
const std::string kExpectPrefix = "# expect: ";

std::vector<fs::path> error_cases() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(kErrorsDir))
    if (e.is_regular_file() && e.path().extension() == ".ddpm") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// "some/dir/x.ddpm:3:4: error: msg" → "x.ddpm:3:4: error: msg"
std::string with_basename(const std::string& line) {
  static const std::regex re(R"(^(.*?)(:\d+:\d+: error: .*)$)");
  std::smatch m;
  if (!std::regex_match(line, m, re)) return line;
  return fs::path(m[1].str()).filename().string() + m[2].str();
}

void check_case(const fs::path& path) {
  std::string header = first_line(path);
  REQUIRE_MESSAGE(header.rfind(kExpectPrefix, 0) == 0,
                  "the first line must be '" << kExpectPrefix << "FILE:LINE:COL: error: MESSAGE'");
  std::string expected = header.substr(kExpectPrefix.size());

  std::string message;
  try {
    ddpmc::check_spec_file(path.string());
    FAIL("the spec was accepted, but it should fail with: " << expected);
  } catch (const ddpmc::UserError& e) {
    message = e.what();
  } catch (const ddpmc::InternalError& e) {
    FAIL("internal error instead of a user error: " << e.what());
  } catch (const std::exception& e) {
    FAIL("unexpected exception instead of a user error: " << e.what());
  }

  std::vector<std::string> lines = split_lines(message);
  INFO("full message:\n" << message);
  REQUIRE(lines.size() >= 4);
  CHECK(with_basename(lines[0]) == expected);
  // The source line, then a caret under the column.
  CHECK(lines[1].rfind("  ", 0) == 0);
  CHECK(std::regex_match(lines[2], std::regex(R"(  [ \t]*\^)")));
  // A useful hint.
  auto hint = std::find_if(lines.begin(), lines.end(), [](const std::string& l) { return l.rfind("hint: ", 0) == 0; });
  REQUIRE(hint != lines.end());
  CHECK(hint->size() > std::string("hint: ").size() + 10);
  // House style: messages start in lower case.
  auto pos = lines[0].find(": error: ");
  REQUIRE(pos != std::string::npos);
  char c0 = lines[0][pos + 9];
  CHECK_MESSAGE(!(c0 >= 'A' && c0 <= 'Z'), "error messages start with a lower-case letter");
}

}  // namespace

TEST_CASE("errors: every bad spec in tests/errors is rejected with the expected message") {
  std::vector<fs::path> cases = error_cases();
  REQUIRE_MESSAGE(!cases.empty(), "no *.ddpm cases found in " << kErrorsDir.string());
  for (const fs::path& p : cases) {
    std::string name = p.filename().string();
    SUBCASE(name.c_str()) {
      INFO("case: " << p.string());
      check_case(p);
    }
  }
}

TEST_CASE("errors: a missing main spec file is a user error without a location") {
  std::string missing = (kErrorsDir / "inc" / "does_not_exist.ddpm").string();
  try {
    ddpmc::check_spec_file(missing);
    FAIL("a missing file was accepted");
  } catch (const ddpmc::UserError& e) {
    std::vector<std::string> lines = split_lines(e.what());
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "error: cannot read spec file '" + missing + "': No such file or directory");
    CHECK(lines[1].rfind("hint: ", 0) == 0);
  }
}
