// PNG outputs: scatter plots of 2-D samples and grids of image samples.
//
// ddpm-sample (and the trainer's periodic previews) turn a [N, 2] sample array
// into a scatter plot, or an [N, C, H, W] image batch in [-1, 1] into a grid.
// Encoding is libspng; files are written atomically (common/atomic_file.h).
#pragma once
#include <cstdint>
#include <string>

namespace ddpm {

// rgb is [h, w, 3] row-major, 8 bits per channel, top row first.
void write_png_rgb(const std::string& path, int w, int h, const uint8_t* rgb);

// Scatter plot of xy [n, 2] on a size_px x size_px canvas covering
// [-lim, lim]^2, y pointing up. lim = 0 picks a symmetric limit from the data
// (the 99.5th percentile of max(|x|, |y|), plus 10% margin). White background,
// light grey axes through the origin, dark-blue dots whose opacity accumulates
// with the number of points covering a pixel. Non-finite and out-of-range
// points are skipped.
void write_scatter_png(const std::string& path, const float* xy, int64_t n, int size_px = 512,
                       float lim = 0);

// Grid of n images [n, c, h, w] with values in [-1, 1] (clamped), c = 1 (grey)
// or 3 (RGB). cols = 0 means ceil(sqrt(n)); rows = ceil(n / cols). Each image is
// magnified `scale` times (nearest neighbour); `pad` grey pixels separate and
// surround the tiles.
void write_image_grid_png(const std::string& path, const float* images, int64_t n, int c, int h,
                          int w, int cols = 0, int pad = 2, int scale = 2);

}  // namespace ddpm
