// The one-line progress report of long loops in the tools (ddpm-sample's sampling, ddpm-eval's
// bound and ODE likelihood): on a terminal the line is rewritten in place every 0.25 s; into a
// file or pipe a new line is written every 5 s; with --quiet nothing. The caller formats the text.
#pragma once
#include <unistd.h>

#include <cstdio>
#include <string_view>

#include <fmt/format.h>

#include "common/stopwatch.h"

namespace ddpmc {

class ProgressLine {
 public:
  explicit ProgressLine(bool quiet) : quiet_(quiet), tty_(!quiet && isatty(fileno(stderr))) {}
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Whether a line is due now (the caller formats one only then).
  bool due() const { return !quiet_ && seconds_since(last_) >= (tty_ ? 0.25 : 5.0); }
  // Seconds since the line was made.
  double elapsed() const { return seconds_since(t0_); }
  void print(std::string_view text) {
    fmt::print(stderr, "{}{}{}", tty_ ? "\r" : "", text, tty_ ? "   " : "\n");
    last_ = Clock::now();
    printed_ = true;
  }
  // Ends a line left open on the terminal.
  void finish() {
    if (tty_ && printed_) fmt::print(stderr, "\n");
    printed_ = false;
  }

 private:
  bool quiet_, tty_, printed_ = false;
  Clock::time_point t0_ = Clock::now(), last_ = t0_;
};

}  // namespace ddpmc
