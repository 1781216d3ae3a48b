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

std::vector<uint8_t> image_grid_rgb(const std::string& path, const float* images, int64_t n, int c, int h, int w,
                                    int cols, int pad, int scale, int64_t& W, int64_t& H) {
  if (c != 1 && c != 3)
    ddpmc::user_error_noloc("cannot write image grid '" + path + "': images have " + std::to_string(c) +
                                " channels",
                            "only 1 (grey) or 3 (RGB) channels can be written as PNG; use --out x.npy");
  DDPM_CHECK(n >= 1 && h >= 1 && w >= 1 && pad >= 0 && scale >= 1, "bad image grid geometry");
  if (cols <= 0) cols = (int)std::ceil(std::sqrt((double)n));
  cols = (int)std::min<int64_t>(cols, n);
  const int64_t rows = (n + cols - 1) / cols;
  const int64_t th = (int64_t)h * scale, tw = (int64_t)w * scale;
  W = cols * (tw + pad) + pad;
  H = rows * (th + pad) + pad;
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
  return rgb;
}

void write_image_grid_png(const std::string& path, const float* images, int64_t n, int c, int h,
                          int w, int cols, int pad, int scale) {
  int64_t W = 0, H = 0;
  std::vector<uint8_t> rgb = image_grid_rgb(path, images, n, c, h, w, cols, pad, scale, W, H);
  write_png_rgb(path, (int)W, (int)H, rgb.data());
}

}  // namespace ddpm
