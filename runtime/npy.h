// NumPy .npy arrays: the sample output format and one of the data inputs.
//
// ddpm-sample writes its samples with write_npy (float32, [N, D] for 2-D points,
// [N, C, H, W] in [-1, 1] for images); the trainer reads user data sets with
// read_npy. Files are written atomically (common/atomic_file.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// Writes a float32 little-endian C-order array, format version 1.0.
// data holds prod(shape) floats.
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // prod(shape) floats, C order
};

// Reads '<f4', '<f8' (converted to float) or '|u1' (converted to float, values
// 0..255 unchanged) C-order arrays. Anything else throws a one-line UserError
// naming the file and the problem.
NpyArray read_npy(const std::string& path);

}  // namespace ddpm
