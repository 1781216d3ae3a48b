// NumPy .npy arrays: the sample output format and one of the data inputs.
//
// ddpm-sample writes its samples with write_npy (float32, [N, D] for 2-D points,
// [N, C, H, W] in [-1, 1] for images); the trainer reads user data sets with
// read_npy. Also home of AtomicFile, the temp-file + fsync + rename writer shared
// by every runtime output that must never be seen half-written (.npy,
// checkpoints, PNGs).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// Writes `path` atomically: bytes go to path + ".tmp"; commit() fsyncs it,
// renames it over `path` and fsyncs the directory. If commit() is never reached
// (an exception), the destructor removes the temp file and `path` is untouched.
// `what` names the file's role in error messages ("checkpoint", "samples").
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);
  void commit();

 private:
  [[noreturn]] void fail(const std::string& action);
  std::string path_, tmp_, what_;
  int fd_ = -1;
  bool committed_ = false;
};

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
