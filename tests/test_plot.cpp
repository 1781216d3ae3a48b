// Tests of the Cairo plots (runtime/plot.h): the scatter plot of 2-D samples and
// the training curves, read back with Cairo's PNG decoder.
#include <doctest/doctest.h>

#include <cairo.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/prelude/philox.h"
#include "runtime/plot.h"

namespace fs = std::filesystem;

namespace {

struct Image {
  int w = 0, h = 0;
  std::vector<uint32_t> px;  // 0xRRGGBB
  int r(int x, int y) const { return (px[(size_t)y * w + x] >> 16) & 255; }
  int g(int x, int y) const { return (px[(size_t)y * w + x] >> 8) & 255; }
  int b(int x, int y) const { return px[(size_t)y * w + x] & 255; }
  // Pixels darker than 100 in red inside [x0, x1) x [y0, y1).
  int dark(int x0, int y0, int x1, int y1) const {
    int n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) n += r(x, y) < 100;
    return n;
  }
};

Image load(const std::string& path) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  REQUIRE(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS);
  Image im;
  im.w = cairo_image_surface_get_width(s);
  im.h = cairo_image_surface_get_height(s);
  const int stride = cairo_image_surface_get_stride(s);
  const unsigned char* data = cairo_image_surface_get_data(s);
  for (int y = 0; y < im.h; ++y)
    for (int x = 0; x < im.w; ++x) im.px.push_back(reinterpret_cast<const uint32_t*>(data + y * stride)[x] & 0xFFFFFF);
  cairo_surface_destroy(s);
  return im;
}

std::string scratch(const std::string& name) {
  fs::path p = fs::path(DDPM_BINARY_DIR) / "test-plot" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace

TEST_CASE("plot: nice ticks are round numbers covering the range") {
  CHECK(ddpm::nice_ticks(0, 1000, 8) == std::vector<double>{0, 200, 400, 600, 800, 1000});
  std::vector<double> t = ddpm::nice_ticks(-2, 2, 8);
  REQUIRE(t.size() == 9);
  CHECK(t.front() == -2);
  CHECK(t[4] == 0);
  CHECK(t.back() == 2);
  CHECK(ddpm::nice_ticks(0.013, 0.0171, 5).size() >= 3);
  CHECK(ddpm::nice_ticks(1, 1, 5).empty());
}

TEST_CASE("plot: the scatter plot puts dots where the points are, y up, with labelled axes") {
  const std::string dir = scratch("scatter");
  // 2000 points in a tight cluster at (1, 1) and one lone point at (-1, -1).
  std::vector<float> xy;
  for (int i = 0; i < 2000; ++i) {
    xy.push_back(1.0f + 0.01f * (float)ddpm::philox_normal(0, 0, 1, 2 * i));
    xy.push_back(1.0f + 0.01f * (float)ddpm::philox_normal(0, 0, 1, 2 * i + 1));
  }
  xy.push_back(-1.0f);
  xy.push_back(-1.0f);
  ddpm::write_scatter_png(dir + "/s.png", xy.data(), (int64_t)xy.size() / 2, 512, 2.0f);
  Image im = load(dir + "/s.png");
  REQUIRE(im.w == 512);
  REQUIRE(im.h == 512);
  const ddpm::PlotArea a = ddpm::scatter_area(512);
  auto px = [&](double x) { return (int)std::lround(a.x0 + (x + 2) / 4 * (a.x1 - a.x0)); };
  auto py = [&](double y) { return (int)std::lround(a.y1 - (y + 2) / 4 * (a.y1 - a.y0)); };
  // The cluster is dark blue; the lone point lighter but inked.
  CHECK(im.r(px(1), py(1)) < 60);
  CHECK(im.b(px(1), py(1)) > im.r(px(1), py(1)));
  CHECK(im.r(px(-1), py(-1)) < 230);
  CHECK(im.r(px(-1), py(-1)) > im.r(px(1), py(1)));
  // The mirrored position (1, -1) has no dot: y points up.
  CHECK(im.r(px(1) + 3, py(-1) + 3) > 200);
  // Tick labels in the margins: text left of the frame and below it.
  CHECK(im.dark(0, (int)a.y0, (int)a.x0 - 6, (int)a.y1) > 30);
  CHECK(im.dark((int)a.x0, (int)a.y1 + 6, (int)a.x1, 512) > 30);
  // The frame.
  CHECK(im.r((int)a.x0, (int)(a.y0 + a.y1) / 2) < 100);

  // Automatic limits keep the data on the canvas.
  ddpm::write_scatter_png(dir + "/auto.png", xy.data(), (int64_t)xy.size() / 2, 256);
  Image au = load(dir + "/auto.png");
  CHECK(au.w == 256);
  const ddpm::PlotArea b = ddpm::scatter_area(256);
  CHECK(au.dark((int)b.x0 + 2, (int)b.y0 + 2, (int)b.x1 - 2, (int)b.y1 - 2) > 20);
}

TEST_CASE("plot: the training plot draws the loss and the learning rate in two labelled panels") {
  const std::string dir = scratch("training");
  std::vector<double> steps, loss, lr;
  for (int i = 1; i <= 100; ++i) {
    steps.push_back(100.0 * i);
    loss.push_back(1.0 * std::exp(-i / 30.0) + 0.02);
    lr.push_back(1e-3 * 0.5 * (1 + std::cos(M_PI * i / 100.0)));
  }
  ddpm::write_training_plot_png(dir + "/loss.png", steps, loss, lr);
  Image im = load(dir + "/loss.png");
  REQUIRE(im.w == 800);
  REQUIRE(im.h == 600);
  // The loss curve (dark blue) in the top half, the rate (orange) in the bottom one.
  int blue_top = 0, orange_bottom = 0, orange_top = 0;
  for (int y = 0; y < 600; ++y)
    for (int x = 80; x < 780; ++x) {
      const bool blue = im.b(x, y) > 90 && im.r(x, y) < 60;
      const bool orange = im.r(x, y) > 150 && im.b(x, y) < 80;
      blue_top += blue && y < 300;
      orange_bottom += orange && y > 300;
      orange_top += orange && y < 300;
    }
  CHECK(blue_top > 300);
  CHECK(orange_bottom > 300);
  CHECK(orange_top == 0);
  // Labels left of both panels and under them.
  CHECK(im.dark(0, 30, 70, 260) > 30);
  CHECK(im.dark(0, 330, 70, 560) > 30);
  CHECK(im.dark(80, 560, 780, 600) > 30);

  // Non-positive losses fall back to a linear axis; a single point still draws.
  ddpm::write_training_plot_png(dir + "/neg.png", {5}, {-1.0}, {1e-4});
  CHECK(load(dir + "/neg.png").w == 800);
}
