// IDX files (the MNIST / Fashion-MNIST format): image data for the image models.
//
// The trainer loads a training set once with read_idx_images (+ labels where a
// spec conditions on them) and converts pixels to [-1, 1] itself. Files may be
// plain or gzip-compressed (*.gz); both are read through zlib.
// Debian's dataset-fashion-mnist package installs them under kFashionMnistDir.
//
// Layout: pixels is [n, rows, cols] uint8, row-major, 0 = background.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct IdxImages {
  int64_t n;
  int rows, cols;
  std::vector<uint8_t> pixels;  // [n, rows, cols]
};

// Magic 2051 (0x00000803), then big-endian uint32 n, rows, cols, then the pixels.
IdxImages read_idx_images(const std::string& path);

// Magic 2049 (0x00000801), then big-endian uint32 n, then n labels.
std::vector<uint8_t> read_idx_labels(const std::string& path);

}  // namespace ddpm
