// PNG outputs: grids of image samples (scatter plots and curves are in plot.h).
//
// ddpm-sample (and the trainer's periodic previews) turn an [N, C, H, W] image batch in [-1, 1] into a grid.
// Encoding is libspng; files are written atomically (common/atomic_file.h).
#pragma once
#include <cstdint>
#include <string>

namespace ddpm {

// rgb is [h, w, 3] row-major, 8 bits per channel, top row first.
void write_png_rgb(const std::string& path, int w, int h, const uint8_t* rgb);

// Grid of n images [n, c, h, w] with values in [-1, 1] (clamped), c = 1 (grey)
// or 3 (RGB). cols = 0 means ceil(sqrt(n)); rows = ceil(n / cols). Each image is
// magnified `scale` times (nearest neighbour); `pad` grey pixels separate and
// surround the tiles.
void write_image_grid_png(const std::string& path, const float* images, int64_t n, int c, int h,
                          int w, int cols = 0, int pad = 2, int scale = 2);

}  // namespace ddpm
