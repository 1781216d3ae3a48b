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
  std::string dtype;        // the file's, e.g. "<f4", "|u1", "<i8"
  bool integer = false;     // an integer dtype (values converted unchanged)
};

// Reads little-endian C-order arrays of float32/float64 ('<f4', '<f8') or of
// integers ('|u1', '<i2', '<i4', '<i8', '<u4', ...), every value converted to
// float unchanged (uint8 0..255 stays 0..255: the data loader scales it). Only a
// regular file is read. Anything else throws a one-line UserError naming the file
// and the problem.
NpyArray read_npy(const std::string& path);

// The same arrays with every value as a double (exact for int32 and smaller, and
// for int64 up to 2^53): for class labels, where a value must be reported as it is.
std::vector<double> read_npy_values(const std::string& path, std::vector<int64_t>& shape);

}  // namespace ddpm
