// Plots drawn with Cairo, with axes, ticks and labels: the scatter plot of 2-D
// samples (ddpm-sample --png, the trainer's previews) and the training curves
// (loss and learning rate against the step, loss.png in a run directory) and the
// quality curves (quality.png, runtime/eval_every.h). PNGs
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

// Ticks of a log10 axis over [lo, hi] (0 < lo < hi), at least two at any range:
// 1, 2 and 5 times the powers of ten when that gives 3 to max_ticks + 2 of them,
// else every power of ten (or every k-th) over wide ranges, else 1 to 9 times
// the powers of ten, else, over a narrow range (0.23 to 0.30), nice_ticks.
std::vector<double> log_ticks(double lo, double hi, int max_ticks);

// The text of a tick: the value rounded to 6 decimals in the shortest form (0.25,
// 1000), or as 1e-05 outside 1e-4..1e5.
std::string tick_label(double v);

// The smoothed loss drawn over the raw one: an exponential moving average with a
// span of about n / 25 points (1: no smoothing); non-finite values are skipped.
std::vector<double> smooth(const std::vector<double>& v);

// The data area of a size_px x size_px scatter plot (the rest holds the ticks,
// their labels, the axis names and, with `title`, a title above).
PlotArea scatter_area(int size_px, bool title = false);

// The half-width of a scatter plot that shows xy [n, 2]: the 99.5th percentile
// of max(|x|, |y|) plus 10%, rounded up to 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a
// power of ten (1 when there is no finite point).
float scatter_limit(const float* xy, int64_t n);

// Scatter plot of xy [n, 2] covering [-lim, lim]^2, y up, on a white
// size_px x size_px canvas: a frame with ticks and labels on both axes, light
// grey lines through the origin, and dark-blue dots (30% opaque, so dense regions
// are darker); `title` (if any) above. lim = 0 picks scatter_limit. Non-finite and
// out-of-range points are skipped.
void write_scatter_png(const std::string& path, const float* xy, int64_t n, int size_px = 512, float lim = 0,
                       const std::string& title = "");

// Where write_labelled_grid_png puts the grid of png.h's image_grid_rgb: `left`
// pixels for the row labels (none without labels), `top` for the title (a small
// margin without one).
struct GridMargins {
  int left, top;
};
GridMargins grid_margins(const std::string& title, const std::vector<std::string>& row_labels);

// An image grid (png.h: n images [n, c, h, w] in [-1, 1], `cols` per row, 2 pixels
// of padding, magnified twice) on a white canvas with `title` above it and
// row_labels[r] left of row r, vertically centred on it.
void write_labelled_grid_png(const std::string& path, const float* images, int64_t n, int c, int h, int w, int cols,
                             const std::string& title, const std::vector<std::string>& row_labels);

// Two panels over a shared step axis: the loss (log scale when every value is
// positive; the raw values light, smooth() of them dark) above, the learning
// rate below, each with ticks, labels and a title.
void write_training_plot_png(const std::string& path, const std::vector<double>& steps,
                             const std::vector<double>& loss, const std::vector<double>& lr, int width = 800,
                             int height = 600);

// Two panels of a quality metric (`metric`, e.g. "swd" or "fid"): against the
// step above, against the training time (seconds; shown in minutes or hours when
// long) below; log scale when every value is positive; `floor`, when finite, as a
// dashed grey line in both. Points are drawn in order of their x; non-finite ones
// are skipped.
void write_quality_plot_png(const std::string& path, const std::string& metric, const std::vector<double>& steps,
                            const std::vector<double>& seconds, const std::vector<double>& values, double floor,
                            int width = 800, int height = 600);

}  // namespace ddpm
