// safetensors checkpoints: parameters, EMA, optimizer moments and run metadata.
//
// The trainer saves its state with write_safetensors (atomically, so a crash
// mid-write keeps the previous checkpoint) and resumes with read_safetensors;
// ddpm-sample reads the EMA weights from the same file. Step, RNG seed and spec
// hash travel in the string-to-string "__metadata__" map.
//
// File layout (the standard format, https://github.com/huggingface/safetensors):
//   [8 bytes]  N, little-endian uint64
//   [N bytes]  JSON {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
//                    ..., "__metadata__": {"key": "value", ...}}, space-padded so
//              that 8 + N is a multiple of 8
//   [rest]     raw little-endian data; tensor bytes [b, e) relative to the data start
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ddpm {

struct TensorView {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // prod(shape) floats, C order
};

// Writes the tensors (F32, in the given order) and metadata atomically: temp file
// in the same directory, fsync, rename over `path`, fsync the directory.
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata);

struct SafeTensors {
  std::map<std::string, std::string> metadata;
  // name -> (shape, prod(shape) floats)
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors;
};

// Reads and fully validates a checkpoint (header length, JSON, dtype F32 only,
// offsets in range, consistent with the shape, non-overlapping). Any problem
// throws a one-line UserError naming the file.
SafeTensors read_safetensors(const std::string& path);

// Only the metadata, with the same checks on the header; the tensors are not read.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// The largest header (tensor table and metadata, which holds the spec's sources)
// a checkpoint may have: the safetensors reference implementation's 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Throws a one-line UserError naming the file, the tensor and the first value's
// index when tensor `name` of checkpoint `path` holds a NaN or an infinity (weights
// that can only give NaN samples or a NaN loss). `hint` says what to do instead.
void require_finite(const std::string& path, const std::string& name, const std::vector<float>& values,
                    const std::string& hint);

}  // namespace ddpm
