// PNG outputs: grids of image samples (scatter plots and curves are in plot.h).
//
// ddpm-sample (and the trainer's periodic previews) turn an [N, C, H, W] image batch in [-1, 1] into a grid.
// Encoding is libspng; files are written atomically (common/atomic_file.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// rgb is [h, w, 3] row-major, 8 bits per channel, top row first.
void write_png_rgb(const std::string& path, int w, int h, const uint8_t* rgb);

// Grid of n images [n, c, h, w] with values in [-1, 1] (clamped), c = 1 (grey)
// or 3 (RGB). cols = 0 means ceil(sqrt(n)); rows = ceil(n / cols). Each image is
// magnified `scale` times (nearest neighbour); `pad` grey pixels separate and
// surround the tiles.
void write_image_grid_png(const std::string& path, const float* images, int64_t n, int c, int h,
                          int w, int cols = 0, int pad = 2, int scale = 2);

// The pixels of that grid: rgb [H, W, 3], with its size in W and H. `path` names
// the file in errors (too many channels, a grid too large for a PNG).
std::vector<uint8_t> image_grid_rgb(const std::string& path, const float* images, int64_t n, int c, int h, int w,
                                    int cols, int pad, int scale, int64_t& W, int64_t& H);

}  // namespace ddpm
