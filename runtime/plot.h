// Plots drawn with Cairo, with axes, ticks and labels: the scatter plot of 2-D
// samples (ddpm-sample --png, the trainer's previews) and the training curves
// (loss and learning rate against the step, loss.png in a run directory). PNGs
// are encoded by Cairo into memory and written atomically (common/atomic_file.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// Where the data go on the canvas, in pixels: left, top, right, bottom.
struct PlotArea {
  double x0, y0, x1, y1;
};

// Round tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi], at
// most about `max_ticks` of them.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks);

// The data area of a size_px x size_px scatter plot (the rest holds the ticks,
// their labels and the axis names).
PlotArea scatter_area(int size_px);

// Scatter plot of xy [n, 2] covering [-lim, lim]^2, y up, on a white
// size_px x size_px canvas: a frame with ticks and labels on both axes, light
// grey lines through the origin, and dark-blue dots (30% opaque, so dense regions
// are darker). lim = 0 picks a limit from the data (the 99.5th percentile of
// max(|x|, |y|), plus 10%). Non-finite and out-of-range points are skipped.
void write_scatter_png(const std::string& path, const float* xy, int64_t n, int size_px = 512, float lim = 0);

// Two panels over a shared step axis: the loss (log scale when every value is
// positive) above, the learning rate below, each with ticks, labels and a title.
void write_training_plot_png(const std::string& path, const std::vector<double>& steps,
                             const std::vector<double>& loss, const std::vector<double>& lr, int width = 800,
                             int height = 600);

}  // namespace ddpm
