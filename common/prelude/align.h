// Size rounding shared by the compiler's planning and the prelude's kernels (no SIMD types here, so
// the compiler can include it whatever its own target): every buffer of the arena and of a kernel's
// scratch is a whole number of kAlign-byte lines, so the next one starts aligned.
#pragma once
#include <cstdint>

namespace ddpm::simd {

// n rounded up to a multiple of m.
constexpr std::int64_t round_up(std::int64_t n, std::int64_t m) { return (n + m - 1) / m * m; }
// n floats rounded up to whole 64-byte lines (16 floats), whatever the SIMD width.
constexpr std::int64_t align_floats(std::int64_t n) { return round_up(n, 16); }

}  // namespace ddpm::simd
