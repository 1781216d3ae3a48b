// PNG writers (see png.h): an RGB canvas is composed in memory, encoded to a
// buffer with libspng, then written through AtomicFile.
#include "png.h"

#include <spng.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "npy.h"

namespace ddpm {

void write_png_rgb(const std::string& path, int w, int h, const uint8_t* rgb) {
  DDPM_CHECK(w > 0 && h > 0, "empty PNG image");
  std::unique_ptr<spng_ctx, void (*)(spng_ctx*)> ctx(spng_ctx_new(SPNG_CTX_ENCODER), spng_ctx_free);
  DDPM_CHECK(ctx != nullptr, "spng_ctx_new failed");
  auto check = [&](int err, const char* what) {
    if (err)
      ddpmc::user_error_noloc("cannot encode PNG '" + path + "': " + what + ": " + spng_strerror(err),
                              "check the image size (" + std::to_string(w) + "x" + std::to_string(h) + ")");
  };
  check(spng_set_option(ctx.get(), SPNG_ENCODE_TO_BUFFER, 1), "spng_set_option");
  spng_ihdr ihdr{};
  ihdr.width = (uint32_t)w;
  ihdr.height = (uint32_t)h;
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  check(spng_set_ihdr(ctx.get(), &ihdr), "spng_set_ihdr");
  check(spng_encode_image(ctx.get(), rgb, (size_t)w * h * 3, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
        "spng_encode_image");
  size_t len = 0;
  int err = 0;
  std::unique_ptr<void, void (*)(void*)> buf(spng_get_png_buffer(ctx.get(), &len, &err), std::free);
  check(err, "spng_get_png_buffer");
  ddpmc::AtomicFile f(path, "PNG image");
  f.write(buf.get(), len);
  f.commit();
}

void write_scatter_png(const std::string& path, const float* xy, int64_t n, int size_px, float lim) {
  DDPM_CHECK(size_px >= 16 && size_px <= 8192, "scatter size out of range");
  const int S = size_px;

  if (!(lim > 0)) {
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
    lim = q > 0 ? 1.1f * q : 1.0f;
  }

  // Accumulate dot coverage: each point stamps a disc of radius `rad` pixels.
  std::vector<uint32_t> count((size_t)S * S, 0);
  const int rad = std::max(1, S / 256);
  const double scale = S / (2.0 * lim);
  for (int64_t i = 0; i < n; ++i) {
    double x = xy[2 * i], y = xy[2 * i + 1];
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    double fx = (x + lim) * scale, fy = (lim - y) * scale;
    if (fx < 0 || fy < 0 || fx >= S || fy >= S) continue;
    int cx = (int)fx, cy = (int)fy;
    for (int dy = -rad; dy <= rad; ++dy)
      for (int dx = -rad; dx <= rad; ++dx) {
        int px = cx + dx, py = cy + dy;
        if (dx * dx + dy * dy > rad * rad + rad || px < 0 || py < 0 || px >= S || py >= S) continue;
        ++count[(size_t)py * S + px];
      }
  }

  std::vector<uint8_t> rgb((size_t)S * S * 3, 255);
  // Axes through the origin, light grey.
  const int ox = (int)std::floor(lim * scale), oy = (int)std::floor(lim * scale);
  for (int t = 0; t < S; ++t) {
    for (int ch = 0; ch < 3; ++ch) {
      if (ox >= 0 && ox < S) rgb[((size_t)t * S + ox) * 3 + ch] = 205;
      if (oy >= 0 && oy < S) rgb[((size_t)oy * S + t) * 3 + ch] = 205;
    }
  }
  // Each covering point adds opacity 0.3 of dark blue: alpha = 1 - 0.7^count.
  const double ink[3] = {18, 38, 120};
  for (size_t p = 0; p < count.size(); ++p) {
    if (!count[p]) continue;
    double a = 1.0 - std::pow(0.7, (double)count[p]);
    for (int ch = 0; ch < 3; ++ch) {
      double bg = rgb[p * 3 + ch];
      rgb[p * 3 + ch] = (uint8_t)std::lround(bg * (1 - a) + ink[ch] * a);
    }
  }
  write_png_rgb(path, S, S, rgb.data());
}

void write_image_grid_png(const std::string& path, const float* images, int64_t n, int c, int h,
                          int w, int cols, int pad, int scale) {
  if (c != 1 && c != 3)
    ddpmc::user_error_noloc("cannot write image grid '" + path + "': images have " + std::to_string(c) +
                                " channels",
                            "only 1 (grey) or 3 (RGB) channels can be written as PNG; use --out x.npy");
  DDPM_CHECK(n >= 1 && h >= 1 && w >= 1 && pad >= 0 && scale >= 1, "bad image grid geometry");
  if (cols <= 0) cols = (int)std::ceil(std::sqrt((double)n));
  cols = (int)std::min<int64_t>(cols, n);
  const int64_t rows = (n + cols - 1) / cols;
  const int64_t th = (int64_t)h * scale, tw = (int64_t)w * scale;
  const int64_t W = cols * (tw + pad) + pad, H = rows * (th + pad) + pad;
  if (W > 65535 || H > 65535)
    ddpmc::user_error_noloc("cannot write image grid '" + path + "': it would be " + std::to_string(W) +
                                "x" + std::to_string(H) + " pixels",
                            "write fewer samples to the PNG or pass a larger column count");

  std::vector<uint8_t> rgb((size_t)W * H * 3, 128);
  const int64_t plane = (int64_t)h * w;
  for (int64_t k = 0; k < n; ++k) {
    const float* img = images + k * c * plane;
    const int64_t x0 = pad + (k % cols) * (tw + pad), y0 = pad + (k / cols) * (th + pad);
    for (int64_t y = 0; y < th; ++y)
      for (int64_t x = 0; x < tw; ++x) {
        const int64_t src = (y / scale) * w + (x / scale);
        uint8_t* dst = &rgb[((size_t)(y0 + y) * W + (x0 + x)) * 3];
        for (int ch = 0; ch < 3; ++ch) {
          float v = img[(c == 3 ? ch : 0) * plane + src];
          v = std::isfinite(v) ? std::clamp(v, -1.0f, 1.0f) : 0.0f;
          dst[ch] = (uint8_t)std::lround((v + 1.0f) * 127.5f);
        }
      }
  }
  write_png_rgb(path, (int)W, (int)H, rgb.data());
}

}  // namespace ddpm
