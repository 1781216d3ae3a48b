// Command-line plumbing shared by the tools (ddpmc, ddpm-train, ddpm-sample,
// ddpm-eval): flag parsing, one-line flag errors, and the mapping of errors to exit
// codes: 0 ok, 1 error in the user's input, 2 bad command line, 70 internal error.
#pragma once
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <string>

#include "common/diag.h"

namespace ddpm_tools {

constexpr int kBadFlags = 2;

// A bad flag: one line naming the problem, a hint, and exit code 2.
inline int flag_error(const char* tool, const std::string& msg) {
  fmt::print(stderr, "{}: error: {}\nhint: run `{} --help` for usage\n", tool, msg, tool);
  return kBadFlags;
}

// Parses the command line. Returns -1 to go on, or the exit code to return now
// (0 after --help, 2 for bad flags).
inline int parse(CLI::App& app, int argc, char** argv, const char* tool) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return flag_error(tool, e.what());
  }
  return -1;
}

// Runs the tool's work, turning exceptions into their message and exit code.
template <class F>
int guarded(const char* tool, F&& work) {
  try {
    return work();
  } catch (const ddpmc::UserError& e) {
    std::string msg = e.what();
    fmt::print(stderr, "{}{}", msg, !msg.empty() && msg.back() == '\n' ? "" : "\n");
    return 1;
  } catch (const ddpmc::InternalError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 70;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: internal error: {}\n", tool, e.what());
    return 70;
  }
}

}  // namespace ddpm_tools
