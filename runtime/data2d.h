// Built-in 2-D toy data sets: moons, swissroll, 8gaussians, checkerboard.
//
// The trainer asks for one batch per training step. A batch is a pure function of
// (name, n, seed, step): every random number comes from Philox keyed by
// (seed, step, stream, element), with a fixed stream id per data set and element
// ids derived from the point index. So a resumed run sees exactly the same
// batches as an uninterrupted one.
//
// Layout: out is [n, 2] row-major, point i at out[2*i], out[2*i + 1].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// Fills out[n, 2] with points i0 .. i0 + n - 1 of data set `name` for training
// step `step`. Throws ddpmc::UserError listing the valid names if `name` is unknown.
void sample_2d(const std::string& name, int64_t n, uint64_t seed, uint64_t step, float* out, int64_t i0 = 0);

// The valid names, in a stable order: moons, swissroll, 8gaussians, checkerboard.
const std::vector<std::string>& dataset_2d_names();

}  // namespace ddpm
