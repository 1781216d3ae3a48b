// Wall-clock intervals for the tools' progress lines, rates and timing fields (ddpm-train's
// steps/s and ETA, ddpm-sample's and ddpm-eval's progress, the compiler's compile_seconds): a
// monotonic clock, so a changed system time never shows as a negative or huge interval.
#pragma once
#include <chrono>

namespace ddpmc {

using Clock = std::chrono::steady_clock;

// Seconds from t0 to now.
inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace ddpmc
