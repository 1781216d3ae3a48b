// Command-line plumbing shared by the tools (ddpmc, ddpm-train, ddpm-sample,
// ddpm-eval): flag parsing with --version, one-line flag errors, and the mapping of
// errors to exit codes: 0 ok, 1 error in the user's input, 2 bad command line, 70
// internal error. Every message the tools print for an error starts the same way:
// "TOOL: error: ..." (or "FILE:LINE:COL: error: ..." when it points into a spec),
// and an internal error "TOOL: internal error at FILE:LINE: ...".
#pragma once
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <string>

#include "common/diag.h"
#include "version.h"

namespace ddpm_tools {

constexpr int kBadFlags = 2;

// Set by the data-parallel tools on every MPI rank but 0 (tools/dist_main.h): the
// other ranks see the same command line, so only rank 0 reports what is wrong with it.
inline bool g_quiet_rank = false;

// A bad flag: one line naming the problem, a hint, and exit code 2. Under mpirun every
// rank sees the same command line: rank 0 reports it and exits 2, the others leave
// quietly with 0. Were they to exit 2 too, mpirun could abort rank 0 on the first of
// them before its message was out (seen under ASan: the job failed without a word).
inline int flag_error(const char* tool, const std::string& msg) {
  if (g_quiet_rank) return 0;
  fmt::print(stderr, "{}: error: {}\nhint: run `{} --help` for usage\n", tool, msg, tool);
  return kBadFlags;
}

// "1 step", "2 steps".
inline std::string plural(int64_t n, const char* word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

// A validator for a number in [lo, hi] whose message names the range as the user
// would write it ("--older-than: must be a number from 0 to 36500, not '-1'").
inline CLI::Validator number_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != 0 || !std::isfinite(v) || v < lo || v > hi)
          return fmt::format("must be a number from {:g} to {:g}, not '{}'", lo, hi, s);
        return "";
      },
      fmt::format("{:g} to {:g}", lo, hi));
}

// A validator for a whole number in [lo, hi]: no sign games ("-1" for a seed is not
// 2^64 - 1), no fractions.
inline CLI::Validator whole_in(long double lo, long double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        char* end = nullptr;
        const long double v = std::strtold(s.c_str(), &end);
        const bool ok = !s.empty() && *end == 0 && s.find_first_of(".eExXpP") == std::string::npos && v >= lo &&
                        v <= hi;
        return ok ? "" : fmt::format("must be a whole number from {:.0Lf} to {:.0Lf}, not '{}'", lo, hi, s);
      },
      fmt::format("{:.0Lf} to {:.0Lf}", lo, hi));
}

// Parses the command line (after adding --version, whose text `version` returns).
// Returns -1 to go on, or the exit code to return now (0 after --help or --version,
// 2 for bad flags).
inline int parse(CLI::App& app, int argc, char** argv, const char* tool,
                 std::function<std::string()> version = nullptr) {
  app.set_version_flag("--version", [tool, version] { return version ? version() : version_text(tool); },
                       "print the version, the module ABI, the compiler and the CPU features, and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    if (g_quiet_rank) return 0;
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return flag_error(tool, e.what());
  }
  return -1;
}

// The message of an error as the tool prints it: an error without a location gets
// the tool's name in front ("ddpm-sample: error: ..."); one pointing into a spec
// starts with its file:line:col.
inline std::string error_text(const char* tool, std::string msg) {
  if (msg.rfind("error: ", 0) == 0) msg = fmt::format("{}: {}", tool, msg);
  if (!msg.empty() && msg.back() != '\n') msg += '\n';
  return msg;
}

// Runs the tool's work, turning exceptions into their message and exit code.
template <class F>
int guarded(const char* tool, F&& work) {
  try {
    return work();
  } catch (const ddpmc::UserError& e) {
    fmt::print(stderr, "{}", error_text(tool, e.what()));
    return 1;
  } catch (const ddpmc::InternalError& e) {
    std::string msg = e.what();
    if (msg.rfind("ddpmc internal error", 0) == 0) msg = msg.substr(6);
    fmt::print(stderr, "{}: {}\n", tool, msg);
    return 70;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: internal error: {}\n", tool, e.what());
    return 70;
  }
}

}  // namespace ddpm_tools
