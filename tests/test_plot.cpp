// Tests of the Cairo plots (runtime/plot.h): the scatter plot of 2-D samples and
// the training curves, the labelled image grids and the previews' titles and
// axes, read back with Cairo's PNG decoder.
#include <doctest/doctest.h>

#include <cairo.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/prelude/philox.h"
#include "runtime/module.h"
#include "runtime/plot.h"
#include "runtime/previews.h"
#include "runtime/sample.h"
#include "test_support.h"

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

TEST_CASE("plot: a log axis has at least two labelled ticks at any range, a loss from 0.23 to 0.30 included") {
  const std::pair<double, double> ranges[] = {{0.23, 0.30}, {0.013, 0.0171}, {0.5, 0.9}, {2, 3},     {0.02, 1.2},
                                              {1e-5, 10},   {1e-3, 1e3},     {0.98, 1.01}, {40, 41}};
  for (auto [lo, hi] : ranges) {
    std::vector<double> t = ddpm::log_ticks(lo, hi, 6);
    CAPTURE(lo);
    CAPTURE(hi);
    CHECK(t.size() >= 2);
    CHECK(t.size() <= 9);
    for (size_t i = 0; i < t.size(); ++i) {
      CHECK(t[i] >= lo * (1 - 1e-9));
      CHECK(t[i] <= hi * (1 + 1e-9));
      if (i > 0) CHECK(ddpm::tick_label(t[i]) != ddpm::tick_label(t[i - 1]));
    }
  }
  CHECK(ddpm::log_ticks(0.01, 1, 6) == std::vector<double>{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1});
  CHECK(ddpm::tick_label(0.26) == "0.26");
  CHECK(ddpm::tick_label(1e-5) == "1e-05");

  // Drawn: tick labels between the axis name and the frame of the loss panel.
  const std::string dir = scratch("narrow-log");
  std::vector<double> steps, loss, lr;
  for (int i = 1; i <= 50; ++i) {
    steps.push_back(100.0 * i);
    loss.push_back(0.30 - 0.07 * i / 50.0);
    lr.push_back(1e-3);
  }
  ddpm::write_training_plot_png(dir + "/loss.png", steps, loss, lr);
  Image im = load(dir + "/loss.png");
  CHECK(im.dark(24, 36, 76, 250) > 30);
}

TEST_CASE("plot: the loss plot draws the raw loss light and a smoothed loss dark over it") {
  // A constant stays itself; alternating noise is smoothed toward its mean.
  CHECK(ddpm::smooth({2, 2, 2}) == std::vector<double>{2, 2, 2});
  std::vector<double> noisy;
  for (int i = 0; i < 200; ++i) noisy.push_back(i % 2 ? 1.5 : 0.5);
  std::vector<double> s = ddpm::smooth(noisy);
  CHECK(std::fabs(s.back() - 1.0) < 0.1);
  CHECK(std::isnan(ddpm::smooth({NAN, 1.0})[0]));
  CHECK(ddpm::smooth({NAN, 1.0})[1] == 1.0);

  const std::string dir = scratch("raw-smooth");
  std::vector<double> steps, loss, lr;
  for (int i = 1; i <= 200; ++i) {
    steps.push_back(10.0 * i);
    loss.push_back(noisy[(size_t)i - 1]);
    lr.push_back(1e-3);
  }
  ddpm::write_training_plot_png(dir + "/loss.png", steps, loss, lr);
  Image im = load(dir + "/loss.png");
  int light = 0, dark = 0;
  for (int y = 32; y < 256; ++y)
    for (int x = 82; x < 760; ++x) {
      light += im.b(x, y) > 200 && im.r(x, y) > 150 && im.r(x, y) < 200;
      dark += im.b(x, y) > 90 && im.r(x, y) < 60;
    }
  CHECK(light > 300);
  CHECK(dark > 300);
}

TEST_CASE("plot: a class grid has a label left of each row and a title above") {
  const std::string dir = scratch("class-grid");
  const int rows = 3, per_row = 4, h = 8, w = 8;
  std::vector<float> white((size_t)rows * per_row * h * w, 1.0f);  // white tiles: only text is dark
  const std::vector<std::string> labels = {"class 0", "class 1", "class 2"};
  ddpm::write_labelled_grid_png(dir + "/g.png", white.data(), rows * per_row, 1, h, w, per_row, "4 per class", labels);
  Image im = load(dir + "/g.png");
  const ddpm::GridMargins m = ddpm::grid_margins("4 per class", labels);
  CHECK(m.left >= 60);
  CHECK(m.top > 0);
  CHECK(ddpm::grid_margins("", {}).left == 0);
  const int th = 2 * h, pad = 2;
  REQUIRE(im.w == m.left + per_row * (2 * w + pad) + pad);
  REQUIRE(im.h == m.top + rows * (th + pad) + pad);
  for (int r = 0; r < rows; ++r) {
    const int y0 = m.top + pad + r * (th + pad);
    CAPTURE(r);
    CHECK(im.dark(0, y0, m.left, y0 + th) > 10);  // the row's label
  }
  CHECK(im.dark(0, 0, im.w, m.top) > 10);  // the title
  CHECK(im.dark(m.left + pad, m.top + pad, im.w - pad, im.h - pad) == 0);  // tiles untouched
}

TEST_CASE("plot: scatter limits are round, titled scatter plots have their title, previews keep their axes") {
  std::vector<float> xy = {1.8f, 0.1f, -0.2f, 0.3f};
  CHECK(ddpm::scatter_limit(xy.data(), 2) == doctest::Approx(2.0));
  xy = {0.5f, 0.1f};
  CHECK(ddpm::scatter_limit(xy.data(), 1) == doctest::Approx(0.6));
  CHECK(ddpm::scatter_limit(nullptr, 0) == 1.0f);

  const std::string dir = scratch("titled");
  xy = {0.5f, 0.5f};
  ddpm::write_scatter_png(dir + "/t.png", xy.data(), 1, 256, 1, "step 100, ddim (50 steps)");
  Image im = load(dir + "/t.png");
  const ddpm::PlotArea a = ddpm::scatter_area(256, true);
  CHECK(a.y0 > ddpm::scatter_area(256).y0);
  CHECK(im.dark(0, 0, 256, (int)a.y0 - 2) > 20);

  // Previews of moons: the title names the step and the sampler; the axes of the
  // first preview stay when a later one is narrower.
  ddpm::Module mod(ddpm_test::moons_module());
  std::vector<float> params((size_t)mod->param_floats, 0.0f);
  ddpm::SamplePreviews p(mod, dir + "/run", params.data(), true);
  CHECK(p.title(100) == "step 100, ddim (50 steps)");
  p.write(100, params.data());
  const float first = p.scatter_lim();
  CHECK(first > 0);
  p.write(200, params.data());
  CHECK(p.scatter_lim() == first);
  CHECK(fs::exists(dir + "/run/samples/step_0000200.png"));
}

TEST_CASE("plot: --class all rows are labelled with the Fashion-MNIST names or else the class index") {
  std::vector<std::string> f = ddpm::class_row_labels("fashion-mnist", 10);
  REQUIRE(f.size() == 10);
  CHECK(f[0] == "0 T-shirt/top");
  CHECK(f[9] == "9 Ankle boot");
  CHECK(ddpm::class_row_labels("/usr/share/fashion-mnist/train-images-idx3-ubyte.gz", 10)[7] == "7 Sneaker");
  CHECK(ddpm::class_row_labels("clusters.npy", 3) == std::vector<std::string>{"class 0", "class 1", "class 2"});
  CHECK(ddpm::class_row_labels("fashion-mnist", 12)[11] == "class 11");
}
