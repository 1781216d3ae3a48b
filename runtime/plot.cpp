// Cairo plots (see plot.h): a small axis helper (ranges, ticks, labels) and the
// two plots built on it.
#include "plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include <fmt/format.h>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "png.h"

namespace ddpm {

namespace {

struct Surface {
  cairo_surface_t* s;
  cairo_t* cr;
  Surface(int w, int h) : s(cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h)), cr(cairo_create(s)) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
  }
  ~Surface() {
    cairo_destroy(cr);
    cairo_surface_destroy(s);
  }
  Surface(const Surface&) = delete;
  Surface& operator=(const Surface&) = delete;

  void save(const std::string& path) {
    cairo_surface_flush(s);
    std::string png;
    auto append = [](void* closure, const unsigned char* data, unsigned int len) {
      static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), len);
      return CAIRO_STATUS_SUCCESS;
    };
    cairo_status_t st = cairo_surface_write_to_png_stream(s, append, &png);
    if (st != CAIRO_STATUS_SUCCESS) DDPM_ICE(fmt::format("cairo could not encode {}: {}", path, cairo_status_to_string(st)));
    ddpmc::write_file_atomic(path, png, "PNG image");
  }
};

// One axis: a data range mapped onto a pixel range, linear or log10.
struct Axis {
  double lo, hi;  // data
  double p0, p1;  // pixels (p0 is where lo goes)
  bool log = false;
  double to_px(double v) const {
    double a = log ? std::log10(v) : v, l = log ? std::log10(lo) : lo, h = log ? std::log10(hi) : hi;
    return p0 + (a - l) / (h - l) * (p1 - p0);
  }
  std::vector<double> ticks(int max_ticks) const {
    return log ? log_ticks(lo, hi, max_ticks) : nice_ticks(lo, hi, max_ticks);
  }
};

// Pads a range that is empty or a point, so the axis has a length.
void widen(double& lo, double& hi, bool log) {
  if (hi > lo) return;
  if (log) {
    lo /= 2;
    hi *= 2;
  } else {
    double d = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
}

void text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - e.width * ax - e.x_bearing, y - e.height * ay - e.y_bearing);
  cairo_show_text(cr, s.c_str());
}

// Frame, grid lines at the ticks, ticks, tick labels and the axis names.
void draw_axes(cairo_t* cr, const PlotArea& a, const Axis& x, const Axis& y, const std::string& xname,
               const std::string& yname) {
  cairo_set_line_width(cr, 1);
  for (double t : x.ticks(8)) {
    const double px = std::round(x.to_px(t)) + 0.5;
    cairo_set_source_rgb(cr, 0.93, 0.93, 0.93);
    cairo_move_to(cr, px, a.y0);
    cairo_line_to(cr, px, a.y1);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, px, a.y1);
    cairo_line_to(cr, px, a.y1 + 5);
    cairo_stroke(cr);
    text(cr, tick_label(t), px, a.y1 + 8, 0.5, 0);
  }
  for (double t : y.ticks(6)) {
    const double py = std::round(y.to_px(t)) + 0.5;
    cairo_set_source_rgb(cr, 0.93, 0.93, 0.93);
    cairo_move_to(cr, a.x0, py);
    cairo_line_to(cr, a.x1, py);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, a.x0 - 5, py);
    cairo_line_to(cr, a.x0, py);
    cairo_stroke(cr);
    text(cr, tick_label(t), a.x0 - 8, py, 1, 0.5);
  }
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, a.x0 + 0.5, a.y0 + 0.5, a.x1 - a.x0 - 1, a.y1 - a.y0 - 1);
  cairo_stroke(cr);
  text(cr, xname, (a.x0 + a.x1) / 2, a.y1 + 26, 0.5, 0);
  cairo_save(cr);
  // Rotated a quarter turn, the text's top edge faces the canvas's left edge.
  cairo_translate(cr, 4, (a.y0 + a.y1) / 2);
  cairo_rotate(cr, -M_PI / 2);
  text(cr, yname, 0, 0, 0.5, 0);
  cairo_restore(cr);
}

void draw_series(cairo_t* cr, const PlotArea& a, const Axis& x, const Axis& y, const std::vector<double>& xs,
                 const std::vector<double>& ys, double r, double g, double b) {
  cairo_save(cr);
  cairo_rectangle(cr, a.x0, a.y0, a.x1 - a.x0, a.y1 - a.y0);
  cairo_clip(cr);
  cairo_set_source_rgb(cr, r, g, b);
  cairo_set_line_width(cr, 1.5);
  bool pen = false;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!std::isfinite(ys[i]) || (y.log && ys[i] <= 0)) {
      pen = false;
      continue;
    }
    if (pen)
      cairo_line_to(cr, x.to_px(xs[i]), y.to_px(ys[i]));
    else
      cairo_move_to(cr, x.to_px(xs[i]), y.to_px(ys[i]));
    pen = true;
  }
  if (xs.size() == 1) cairo_arc(cr, x.to_px(xs[0]), y.to_px(ys[0]), 2, 0, 2 * M_PI);
  cairo_stroke(cr);
  cairo_restore(cr);
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  std::vector<double> t;
  if (!(hi > lo) || max_ticks < 1) return t;
  const double raw = (hi - lo) / max_ticks;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  double step = p;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= raw) {
      step = m * p;
      break;
    }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

std::vector<double> log_ticks(double lo, double hi, int max_ticks) {
  if (!(lo > 0 && hi > lo) || max_ticks < 1) return {};
  auto multiples = [&](std::initializer_list<double> ms) {
    std::vector<double> t;
    for (int k = (int)std::floor(std::log10(lo)); k <= (int)std::ceil(std::log10(hi)); ++k)
      for (double m : ms)
        if (double v = m * std::pow(10.0, k); v >= lo * (1 - 1e-12) && v <= hi * (1 + 1e-12)) t.push_back(v);
    return t;
  };
  std::vector<double> t = multiples({1.0, 2.0, 5.0});
  if ((int)t.size() > max_ticks + 2) {
    // Many decades: every power of ten, or every k-th.
    t.clear();
    const int step = std::max(1, (int)std::ceil((std::log10(hi) - std::log10(lo)) / max_ticks));
    for (int k = (int)std::ceil(std::log10(lo)); k <= (int)std::floor(std::log10(hi)); k += step)
      t.push_back(std::pow(10.0, k));
    return t;
  }
  if (t.size() >= 3) return t;
  // Within a decade or so: 1 to 9 times the powers of ten, else plain round numbers.
  t = multiples({1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0});
  if (t.size() >= 3 && (int)t.size() <= max_ticks + 2) return t;
  return nice_ticks(lo, hi, max_ticks);
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-4) return fmt::format("{:.0e}", v);
  return fmt::format("{:g}", std::round(v * 1e6) / 1e6);
}

std::vector<double> smooth(const std::vector<double>& v) {
  const double span = std::max(1.0, (double)v.size() / 25.0);
  const double alpha = 2.0 / (span + 1.0);
  std::vector<double> out(v.size());
  double m = NAN;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) m = std::isfinite(m) ? m + alpha * (v[i] - m) : v[i];
    out[i] = m;
  }
  return out;
}

PlotArea scatter_area(int size_px, bool title) {
  return {64.0, title ? 36.0 : 16.0, size_px - 24.0, size_px - 48.0};
}

float scatter_limit(const float* xy, int64_t n) {
  std::vector<float> r;
  r.reserve((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    float x = xy[2 * i], y = xy[2 * i + 1];
    if (std::isfinite(x) && std::isfinite(y)) r.push_back(std::max(std::fabs(x), std::fabs(y)));
  }
  float q = 0;
  if (!r.empty()) {
    size_t k = std::min(r.size() - 1, (size_t)(0.995 * (double)r.size()));
    std::nth_element(r.begin(), r.begin() + (std::ptrdiff_t)k, r.end());
    q = r[k];
  }
  if (!(q > 0)) return 1.0f;
  const double want = 1.1 * q, p = std::pow(10.0, std::floor(std::log10(want)));
  for (double m : {1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
    if (m * p >= want * (1 - 1e-9)) return (float)(m * p);
  return (float)(10 * p);
}

void write_scatter_png(const std::string& path, const float* xy, int64_t n, int size_px, float lim,
                       const std::string& title) {
  DDPM_CHECK(size_px >= 128 && size_px <= 8192, "scatter size out of range");
  if (!(lim > 0)) lim = scatter_limit(xy, n);
  Surface s(size_px, size_px);
  const PlotArea a = scatter_area(size_px, !title.empty());
  const Axis x{-lim, lim, a.x0, a.x1}, y{-lim, lim, a.y1, a.y0};
  draw_axes(s.cr, a, x, y, "x[0]", "x[1]");
  cairo_t* cr = s.cr;
  if (!title.empty()) {
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 14);
    text(cr, title, (a.x0 + a.x1) / 2, 10, 0.5, 0);
    cairo_set_font_size(cr, 12);
  }
  cairo_save(cr);
  cairo_rectangle(cr, a.x0 + 1, a.y0 + 1, a.x1 - a.x0 - 2, a.y1 - a.y0 - 2);
  cairo_clip(cr);
  // Lines through the origin.
  cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
  cairo_move_to(cr, std::round(x.to_px(0)) + 0.5, a.y0);
  cairo_line_to(cr, std::round(x.to_px(0)) + 0.5, a.y1);
  cairo_move_to(cr, a.x0, std::round(y.to_px(0)) + 0.5);
  cairo_line_to(cr, a.x1, std::round(y.to_px(0)) + 0.5);
  cairo_stroke(cr);
  const double rad = std::max(1.5, size_px / 300.0);
  cairo_set_source_rgba(cr, 18 / 255.0, 38 / 255.0, 120 / 255.0, 0.3);
  for (int64_t i = 0; i < n; ++i) {
    double px = xy[2 * i], py = xy[2 * i + 1];
    if (!std::isfinite(px) || !std::isfinite(py) || std::fabs(px) > lim || std::fabs(py) > lim) continue;
    cairo_new_sub_path(cr);
    cairo_arc(cr, x.to_px(px), y.to_px(py), rad, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  cairo_restore(cr);
  s.save(path);
}

GridMargins grid_margins(const std::string& title, const std::vector<std::string>& row_labels) {
  size_t longest = 0;
  for (const std::string& l : row_labels) longest = std::max(longest, l.size());
  // About 7 pixels per character of the 12-pixel sans-serif font, and 8 pixels either side.
  return {row_labels.empty() ? 0 : (int)(16 + 7 * longest), title.empty() ? 0 : 28};
}

void write_labelled_grid_png(const std::string& path, const float* images, int64_t n, int c, int h, int w, int cols,
                             const std::string& title, const std::vector<std::string>& row_labels) {
  const int pad = 2, scale = 2;
  int64_t W = 0, H = 0;
  const std::vector<uint8_t> rgb = image_grid_rgb(path, images, n, c, h, w, cols, pad, scale, W, H);
  const GridMargins m = grid_margins(title, row_labels);
  const int64_t width = std::max<int64_t>(W + m.left, title.empty() ? 0 : 8 * (int64_t)title.size());
  if (width > 32767 || H + m.top > 32767)  // Cairo's largest image surface
    ddpmc::user_error_noloc(
        fmt::format("cannot write image grid '{}': it would be {}x{} pixels", path, width, H + m.top),
        "write fewer samples to the PNG");
  Surface s((int)width, (int)(H + m.top));
  cairo_surface_flush(s.s);
  unsigned char* data = cairo_image_surface_get_data(s.s);
  const int stride = cairo_image_surface_get_stride(s.s);
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      const uint8_t* p = &rgb[((size_t)y * W + x) * 3];
      reinterpret_cast<uint32_t*>(data + (y + m.top) * stride)[x + m.left] =
          (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    }
  cairo_surface_mark_dirty(s.s);
  cairo_set_source_rgb(s.cr, 0, 0, 0);
  const int64_t rows = (n + cols - 1) / cols, th = (int64_t)h * scale;
  for (size_t r = 0; r < row_labels.size() && (int64_t)r < rows; ++r)
    text(s.cr, row_labels[r], m.left - 8, (double)m.top + pad + (double)r * (th + pad) + th / 2.0, 1, 0.5);
  if (!title.empty()) {
    cairo_set_font_size(s.cr, 14);
    text(s.cr, title, width / 2.0, 8, 0.5, 0);
  }
  s.save(path);
}

void write_training_plot_png(const std::string& path, const std::vector<double>& steps,
                             const std::vector<double>& loss, const std::vector<double>& lr, int width, int height) {
  DDPM_CHECK(!steps.empty() && steps.size() == loss.size() && steps.size() == lr.size(), "bad training curves");
  DDPM_CHECK(width >= 200 && height >= 200 && width <= 8192 && height <= 8192, "plot size out of range");
  Surface s(width, height);
  double x_lo = steps.front(), x_hi = steps.back();
  widen(x_lo, x_hi, false);
  const double mid = height / 2.0;
  const PlotArea top{80, 32, width - 36.0, mid - 44}, bottom{80, mid + 32, width - 36.0, height - 48.0};

  auto range = [](const std::vector<double>& v, bool log, double& lo, double& hi) {
    lo = INFINITY;
    hi = -INFINITY;
    for (double e : v)
      if (std::isfinite(e) && (!log || e > 0)) lo = std::min(lo, e), hi = std::max(hi, e);
    if (!(lo <= hi)) lo = log ? 0.1 : 0, hi = 1;
    widen(lo, hi, log);
  };
  bool log = std::all_of(loss.begin(), loss.end(), [](double v) { return !std::isfinite(v) || v > 0; });
  double l_lo, l_hi, r_lo, r_hi;
  range(loss, log, l_lo, l_hi);
  range(lr, false, r_lo, r_hi);
  r_lo = std::min(r_lo, 0.0);
  const Axis x1{x_lo, x_hi, top.x0, top.x1}, y1{l_lo, l_hi, top.y1, top.y0, log};
  const Axis x2{x_lo, x_hi, bottom.x0, bottom.x1}, y2{r_lo, r_hi * 1.05, bottom.y1, bottom.y0};
  draw_axes(s.cr, top, x1, y1, "step", log ? "loss (log scale)" : "loss");
  draw_series(s.cr, top, x1, y1, steps, loss, 0.68, 0.76, 0.92);
  draw_series(s.cr, top, x1, y1, steps, smooth(loss), 0.07, 0.15, 0.47);
  draw_axes(s.cr, bottom, x2, y2, "step", "learning rate");
  draw_series(s.cr, bottom, x2, y2, steps, lr, 0.75, 0.3, 0.05);
  cairo_set_source_rgb(s.cr, 0, 0, 0);
  cairo_set_font_size(s.cr, 14);
  text(s.cr, fmt::format("training loss (last {:.4g} at step {:g}; light: as logged, dark: smoothed)", loss.back(),
                         steps.back()),
       width / 2.0, 10, 0.5, 0);
  text(s.cr, "learning rate", width / 2.0, mid + 10, 0.5, 0);
  s.save(path);
}

void write_quality_plot_png(const std::string& path, const std::string& metric, const std::vector<double>& steps,
                            const std::vector<double>& seconds, const std::vector<double>& values, double floor,
                            int width, int height) {
  DDPM_CHECK(!steps.empty() && steps.size() == values.size() && steps.size() == seconds.size(),
             "bad quality curves");
  DDPM_CHECK(width >= 200 && height >= 200 && width <= 8192 && height <= 8192, "plot size out of range");
  Surface s(width, height);
  const double mid = height / 2.0;
  const PlotArea top{80, 32, width - 36.0, mid - 44}, bottom{80, mid + 32, width - 36.0, height - 48.0};
  const bool log = std::all_of(values.begin(), values.end(), [](double v) { return !std::isfinite(v) || v > 0; }) &&
                   !(std::isfinite(floor) && floor <= 0);
  double y_lo = INFINITY, y_hi = -INFINITY;
  for (double v : values)
    if (std::isfinite(v) && (!log || v > 0)) y_lo = std::min(y_lo, v), y_hi = std::max(y_hi, v);
  if (std::isfinite(floor)) y_lo = std::min(y_lo, floor), y_hi = std::max(y_hi, floor);
  if (!(y_lo <= y_hi)) y_lo = log ? 0.1 : 0, y_hi = 1;
  widen(y_lo, y_hi, log);
  // A margin of 6% of the range, so no point or floor sits on the frame.
  if (log) {
    const double f = std::pow(y_hi / y_lo, 0.06);
    y_lo /= f, y_hi *= f;
  } else {
    const double d = (y_hi - y_lo) * 0.06;
    y_lo -= d, y_hi += d;
  }
  double t_max = 0;
  for (double t : seconds)
    if (std::isfinite(t)) t_max = std::max(t_max, t);
  const double unit = t_max > 2 * 3600 ? 3600 : t_max > 1200 ? 60 : 1;
  const char* unit_name = unit == 3600 ? "h" : unit == 60 ? "min" : "s";
  const std::string yname = log ? metric + " (log scale)" : metric;
  auto panel = [&](const PlotArea& a, std::vector<double> xs, const std::string& xname) {
    // In order of x (a resumed run may repeat the steps after its last checkpoint).
    std::vector<size_t> order(xs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return xs[i] < xs[j]; });
    std::vector<double> x, y;
    for (size_t i : order)
      if (std::isfinite(xs[i])) x.push_back(xs[i]), y.push_back(values[i]);
    double x_lo = x.empty() ? 0 : x.front(), x_hi = x.empty() ? 1 : x.back();
    widen(x_lo, x_hi, false);
    const double pad = (x_hi - x_lo) * 0.03;
    x_lo -= pad, x_hi += pad;
    const Axis ax{x_lo, x_hi, a.x0, a.x1}, ay{y_lo, y_hi, a.y1, a.y0, log};
    draw_axes(s.cr, a, ax, ay, xname, yname);
    if (std::isfinite(floor)) {
      const double dash = 4;
      cairo_save(s.cr);
      cairo_set_dash(s.cr, &dash, 1, 0);
      draw_series(s.cr, a, ax, ay, {x_lo, x_hi}, {floor, floor}, 0.55, 0.55, 0.55);
      cairo_restore(s.cr);
    }
    if (x.empty()) return;
    draw_series(s.cr, a, ax, ay, x, y, 0.07, 0.15, 0.47);
    cairo_save(s.cr);
    cairo_set_source_rgb(s.cr, 0.07, 0.15, 0.47);
    for (size_t i = 0; i < x.size(); ++i)
      if (std::isfinite(y[i]) && (!log || y[i] > 0)) {
        cairo_new_sub_path(s.cr);
        cairo_arc(s.cr, ax.to_px(x[i]), ay.to_px(y[i]), 2.5, 0, 2 * M_PI);
      }
    cairo_fill(s.cr);
    cairo_restore(s.cr);
  };
  std::vector<double> t(seconds.size());
  for (size_t i = 0; i < t.size(); ++i) t[i] = seconds[i] / unit;
  panel(top, steps, "step");
  panel(bottom, t, fmt::format("training time ({}; evaluations excluded)", unit_name));
  cairo_set_source_rgb(s.cr, 0, 0, 0);
  cairo_set_font_size(s.cr, 14);
  const std::string floor_text = std::isfinite(floor) ? fmt::format("; dashed: floor {:.4g}", floor) : "";
  text(s.cr, fmt::format("sample quality: {} (last {:.4g} at step {:g}; lower is better{})", metric, values.back(),
                         steps.back(), floor_text),
       width / 2.0, 10, 0.5, 0);
  text(s.cr, fmt::format("{} against training time", metric), width / 2.0, mid + 10, 0.5, 0);
  s.save(path);
}

}  // namespace ddpm
