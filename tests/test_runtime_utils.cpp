// Tests for the runtime's self-contained building blocks: 2-D data sets, .npy,
// safetensors, PNG writers, sliced Wasserstein, AdamW/EMA and the IDX reader.
// Files go to a fresh per-process directory under the system temp directory.
#include <doctest/doctest.h>
#include <spng.h>
#include <tbb/global_control.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/diag.h"
#include "runtime/data2d.h"
#include "runtime/idx.h"
#include "runtime/npy.h"
#include "runtime/optim.h"
#include "common/prelude/philox.h"
#include "runtime/png.h"
#include "runtime/safetensors.h"
#include "runtime/swd.h"
#include "test_shell.h"

namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

// A fresh, empty directory for this test case's files.
std::string scratch(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("ddpm_rt_" + std::to_string(::getpid())) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), (std::streamsize)bytes.size());
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

using ddpm_test::user_error_of;

struct Stats {
  double mean[2], std[2];
};

Stats stats_2d(const std::vector<float>& p) {
  const size_t n = p.size() / 2;
  Stats s{};
  for (int a = 0; a < 2; ++a) {
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; ++i) sum += p[2 * i + a];
    s.mean[a] = sum / n;
    for (size_t i = 0; i < n; ++i) sq += (p[2 * i + a] - s.mean[a]) * (p[2 * i + a] - s.mean[a]);
    s.std[a] = std::sqrt(sq / n);
  }
  return s;
}

std::vector<float> draw(const std::string& name, int64_t n, uint64_t seed, uint64_t step) {
  std::vector<float> p((size_t)(2 * n));
  ddpm::sample_2d(name, n, seed, step, p.data());
  return p;
}

}  // namespace

// ---------------------------------------------------------------- data2d

TEST_CASE("runtime: moons is standardised and split between the two half circles") {
  const int64_t n = 100000;
  auto p = draw("moons", n, 7, 3);
  Stats s = stats_2d(p);
  for (int a = 0; a < 2; ++a) {
    CHECK(std::fabs(s.mean[a]) < 0.02);
    CHECK(std::fabs(s.std[a] - 1.0) < 0.02);
  }
  // Even points are on the outer circle (cos u, sin u), odd on the inner one.
  int64_t outer_ok = 0, inner_ok = 0;
  for (int64_t i = 0; i < n; ++i) {
    double x = p[2 * i] * 0.868 + 0.501, y = p[2 * i + 1] * 0.497 + 0.250;
    if (i % 2 == 0) outer_ok += std::fabs(std::hypot(x, y) - 1.0) < 0.25 && y > -0.25;
    else inner_ok += std::fabs(std::hypot(x - 1.0, y - 0.5) - 1.0) < 0.25 && y < 0.75;
  }
  CHECK(outer_ok == n / 2);
  CHECK(inner_ok == n / 2);
}

TEST_CASE("runtime: swissroll, 8gaussians and checkerboard have their documented shapes") {
  const int64_t n = 100000;
  SUBCASE("swissroll") {
    auto p = draw("swissroll", n, 1, 0);
    double mean_r = 0;
    for (int64_t i = 0; i < n; ++i) mean_r += std::hypot(p[2 * i], p[2 * i + 1]);
    mean_r /= n;
    // u ~ U(1.5 pi, 4.5 pi) so the radius u/5 averages 3 pi / 5; N(0,1)/5 noise adds ~0.01.
    CHECK(std::fabs(mean_r - 3 * kPi / 5) < 0.03);
    Stats s = stats_2d(p);
    CHECK(s.std[0] > 1.0);
    CHECK(s.std[0] < 2.0);
  }
  SUBCASE("8gaussians") {
    auto p = draw("8gaussians", n, 1, 0);
    std::vector<int64_t> per(8, 0);
    double mean_r = 0;
    int64_t far = 0;
    for (int64_t i = 0; i < n; ++i) {
      double x = p[2 * i], y = p[2 * i + 1];
      mean_r += std::hypot(x, y);
      int k = ((int)std::lround(std::atan2(y, x) / (kPi / 4)) + 8) % 8;
      far += std::hypot(x - 2 * std::cos(k * kPi / 4), y - 2 * std::sin(k * kPi / 4)) > 0.15;  // 7 sigma
      ++per[k];
    }
    CHECK(far == 0);
    CHECK(std::fabs(mean_r / n - 2.0) < 0.002);
    for (int k = 0; k < 8; ++k) CHECK(std::fabs(per[k] / (double)n - 0.125) < 0.006);
  }
  SUBCASE("checkerboard") {
    auto p = draw("checkerboard", n, 1, 0);
    std::map<std::pair<int, int>, int64_t> per;
    int64_t outside = 0, odd = 0;
    for (int64_t i = 0; i < n; ++i) {
      double x = p[2 * i] / 2, y = p[2 * i + 1] / 2;
      outside += !(x > -2 && x < 2 && y > -2 && y < 2);
      int x0 = (int)std::floor(x), y0 = (int)std::floor(y);
      odd += (x0 + y0) % 2 != 0;  // filled squares have an even corner sum
      ++per[{x0, y0}];
    }
    CHECK(outside == 0);
    CHECK(odd == 0);
    CHECK(per.size() == 8);
    for (auto& [sq, c] : per) CHECK(std::fabs(c / (double)n - 0.125) < 0.006);
    Stats s = stats_2d(p);
    CHECK(std::fabs(s.mean[0]) < 0.03);
    CHECK(std::fabs(s.mean[1]) < 0.03);
  }
}

TEST_CASE("runtime: 2-D batches are a pure function of (seed, step)") {
  for (const std::string& name : ddpm::dataset_2d_names()) {
    CAPTURE(name);
    auto a = draw(name, 257, 42, 10), b = draw(name, 257, 42, 10);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    CHECK(draw(name, 257, 42, 11) != a);
    CHECK(draw(name, 257, 43, 10) != a);
    // Point i depends only on i: a smaller batch is a prefix of a larger one.
    auto prefix = draw(name, 100, 42, 10);
    CHECK(std::equal(prefix.begin(), prefix.end(), a.begin()));
  }
  CHECK(ddpm::dataset_2d_names() == std::vector<std::string>{"moons", "swissroll", "8gaussians", "checkerboard"});
}

TEST_CASE("runtime: an unknown 2-D data set names the valid ones") {
  float out[2];
  std::string msg = user_error_of([&] { ddpm::sample_2d("spirals", 1, 0, 0, out); });
  CHECK(msg.find("'spirals'") != std::string::npos);
  CHECK(msg.find("moons, swissroll, 8gaussians, checkerboard") != std::string::npos);
}

// ---------------------------------------------------------------- npy

namespace {

// A version 1.0 .npy file with the given header dict and payload.
std::string make_npy(const std::string& dict, const std::string& payload) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += (char)(h.size() & 0xff);
  out += (char)(h.size() >> 8);
  return out + h + payload;
}

}  // namespace

TEST_CASE("runtime: npy round trip") {
  std::string dir = scratch("npy_rt");
  for (std::vector<int64_t> shape : {std::vector<int64_t>{3, 4}, {5}, {2, 1, 3, 2}, {0, 2}}) {
    int64_t count = 1;
    for (auto d : shape) count *= d;
    std::vector<float> data((size_t)count);
    for (int64_t i = 0; i < count; ++i) data[i] = 0.25f * (float)i - 1.5f;
    std::string path = dir + "/a.npy";
    ddpm::write_npy(path, data.data(), shape);
    CHECK_FALSE(fs::exists(path + ".tmp"));
    std::string bytes = read_bytes(path);
    REQUIRE(bytes.size() > 10);
    CHECK(bytes.compare(0, 8, std::string("\x93NUMPY\x01\x00", 8)) == 0);
    size_t hlen = (unsigned char)bytes[8] | (unsigned char)bytes[9] << 8;
    CHECK((10 + hlen) % 64 == 0);
    CHECK(bytes[10 + hlen - 1] == '\n');
    CHECK(bytes.size() == 10 + hlen + 4 * (size_t)count);
    ddpm::NpyArray back = ddpm::read_npy(path);
    CHECK(back.shape == shape);
    CHECK(back.data == data);
  }
  // A 1-D shape is written as a Python 1-tuple.
  float one[3] = {1, 2, 3};
  ddpm::write_npy(dir + "/b.npy", one, {3});
  CHECK(read_bytes(dir + "/b.npy").find("'shape': (3,), }") != std::string::npos);
}

TEST_CASE("runtime: npy reads <f8 and |u1 as float") {
  std::string dir = scratch("npy_types");
  double d[3] = {0.5, -2.25, 1e3};
  write_bytes(dir + "/d.npy", make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                                       std::string((const char*)d, sizeof d)));
  auto a = ddpm::read_npy(dir + "/d.npy");
  CHECK(a.shape == std::vector<int64_t>{3});
  CHECK(a.data == std::vector<float>{0.5f, -2.25f, 1000.0f});
  write_bytes(dir + "/u.npy", make_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }",
                                       std::string("\x00\x7f\x80\xff", 4)));
  auto b = ddpm::read_npy(dir + "/u.npy");
  CHECK(b.shape == std::vector<int64_t>{2, 2});
  CHECK(b.data == std::vector<float>{0, 127, 128, 255});
}

TEST_CASE("runtime: malformed npy files give one clear error naming the file") {
  std::string dir = scratch("npy_bad");
  std::string f4(8, '\0');
  struct Case {
    const char* file;
    std::string bytes;
    const char* expect;
  } cases[] = {
      {"magic.npy", "PK\x03\x04 not numpy at all", "bad magic"},
      {"fortran.npy", make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4), "Fortran order"},
      {"big.npy", make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4), "big-endian"},
      {"complex.npy", make_npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", f4), "dtype '<c8'"},
      {"short.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4), "truncated"},
      {"header.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4).substr(0, 40),
       "truncated"},
      {"shape.npy", make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (a, b), }", f4), "shape"},
  };
  for (auto& c : cases) {
    CAPTURE(c.file);
    std::string path = dir + "/" + c.file;
    write_bytes(path, c.bytes);
    std::string msg = user_error_of([&] { ddpm::read_npy(path); });
    CHECK(msg.find("'" + path + "'") != std::string::npos);
    CHECK(msg.find(c.expect) != std::string::npos);
  }
  CHECK(user_error_of([&] { ddpm::read_npy(dir + "/missing.npy"); }).find("cannot be opened") != std::string::npos);
  float x = 1;
  std::string msg = user_error_of([&] { ddpm::write_npy(dir + "/no/such/dir/x.npy", &x, {1}); });
  CHECK(msg.find("no/such/dir/x.npy") != std::string::npos);
}

// ---------------------------------------------------------------- safetensors

TEST_CASE("runtime: safetensors round trip") {
  std::string dir = scratch("st_rt");
  std::vector<float> w(6), b(3), scalar{7.5f};
  std::iota(w.begin(), w.end(), -2.0f);
  std::iota(b.begin(), b.end(), 10.0f);
  std::map<std::string, std::string> meta{{"step", "1200"}, {"spec_hash", "ab\"cd\\ef"}};
  std::string path = dir + "/checkpoint.safetensors";
  ddpm::write_safetensors(path,
                          {{"params", {2, 3}, w.data()}, {"ema", {3}, b.data()}, {"lr", {}, scalar.data()},
                           {"empty", {0, 4}, nullptr}},
                          meta);
  CHECK_FALSE(fs::exists(path + ".tmp"));
  std::string bytes = read_bytes(path);
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  CHECK(bytes.size() == 8 + n + 4 * (6 + 3 + 1));
  CHECK(bytes.substr(8, n).find("\"dtype\":\"F32\"") != std::string::npos);

  ddpm::SafeTensors st = ddpm::read_safetensors(path);
  CHECK(st.metadata == meta);
  REQUIRE(st.tensors.size() == 4);
  CHECK(st.tensors["params"].first == std::vector<int64_t>{2, 3});
  CHECK(st.tensors["params"].second == w);
  CHECK(st.tensors["ema"].second == b);
  CHECK(st.tensors["lr"].first.empty());
  CHECK(st.tensors["lr"].second == scalar);
  CHECK(st.tensors["empty"].first == std::vector<int64_t>{0, 4});
  CHECK(st.tensors["empty"].second.empty());

  // Overwriting replaces the file in one step.
  ddpm::write_safetensors(path, {{"params", {1}, scalar.data()}}, {});
  st = ddpm::read_safetensors(path);
  CHECK(st.tensors.size() == 1);
  CHECK(st.metadata.empty());
}

namespace {

std::string make_st(const std::string& json, const std::string& data) {
  std::string h = json;
  uint64_t n = h.size();
  return std::string((const char*)&n, 8) + h + data;
}

}  // namespace

TEST_CASE("runtime: corrupt safetensors files give one clear error naming the file") {
  std::string dir = scratch("st_bad");
  std::string good = dir + "/good.safetensors";
  std::vector<float> w(16, 1.0f);
  ddpm::write_safetensors(good, {{"w", {16}, w.data()}}, {{"step", "3"}});
  std::string bytes = read_bytes(good);
  std::string d8(8, '\0');

  struct Case {
    const char* file;
    std::string bytes;
    const char* expect;
  } cases[] = {
      {"truncated", bytes.substr(0, bytes.size() - 10), "outside the data section"},
      {"tiny", bytes.substr(0, 5), "smaller than the 8-byte header length"},
      {"garbage", std::string("\xde\xad\xbe\xef\x01\x02\x03\x04garbage!", 16), "exceeds the limit of 100000000 bytes"},
      {"long", std::string("\x64\0\0\0\0\0\0\0garbage!", 16), "header length 100 exceeds file size 16"},
      {"badjson", make_st("{\"w\": {\"dtype\": ", d8), "not valid JSON"},
      {"notobject", make_st("[1, 2]", d8), "not a JSON object"},
      {"f16", make_st(R"({"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", d8), "only F32"},
      {"shape", make_st(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8), "shape needs 12"},
      {"negative", make_st(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8), "non-negative"},
      {"range", make_st(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8), "outside"},
      {"overlap",
       make_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
               d8),
       "overlap"},
      {"meta", make_st(R"({"__metadata__":{"step":3}})", ""), "not a string"},
  };
  for (auto& c : cases) {
    CAPTURE(c.file);
    std::string path = dir + "/" + c.file + ".safetensors";
    write_bytes(path, c.bytes);
    std::string msg = user_error_of([&] { ddpm::read_safetensors(path); });
    CHECK(msg.find("checkpoint '" + path + "' is corrupt: ") != std::string::npos);
    CHECK(msg.find(c.expect) != std::string::npos);
    CHECK(msg.find("--resume") != std::string::npos);
  }
  CHECK(user_error_of([&] { ddpm::read_safetensors(dir + "/missing.safetensors"); }).find("cannot open") !=
        std::string::npos);
}

// ---------------------------------------------------------------- png

namespace {

struct Decoded {
  uint32_t w = 0, h = 0;
  std::vector<uint8_t> rgb;
  const uint8_t* at(uint32_t x, uint32_t y) const { return &rgb[((size_t)y * w + x) * 3]; }
};

Decoded decode_png(const std::string& path) {
  std::string bytes = read_bytes(path);
  spng_ctx* ctx = spng_ctx_new(0);
  REQUIRE(spng_set_png_buffer(ctx, bytes.data(), bytes.size()) == 0);
  spng_ihdr ihdr;
  REQUIRE(spng_get_ihdr(ctx, &ihdr) == 0);
  Decoded d;
  d.w = ihdr.width;
  d.h = ihdr.height;
  size_t len = 0;
  REQUIRE(spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &len) == 0);
  d.rgb.resize(len);
  REQUIRE(spng_decode_image(ctx, d.rgb.data(), len, SPNG_FMT_RGB8, 0) == 0);
  spng_ctx_free(ctx);
  return d;
}

}  // namespace

TEST_CASE("runtime: image grid PNG lays out tiles row-major with padding and scaling") {
  std::string dir = scratch("png_grid");
  // 5 grey 4x3 images: image k is constant (k - 2) / 2, i.e. -1, -0.5, 0, 0.5, 1.
  const int n = 5, h = 4, w = 3;
  std::vector<float> grey(n * h * w);
  for (int k = 0; k < n; ++k)
    for (int i = 0; i < h * w; ++i) grey[k * h * w + i] = (k - 2) / 2.0f;
  ddpm::write_image_grid_png(dir + "/g.png", grey.data(), n, 1, h, w);
  Decoded d = decode_png(dir + "/g.png");
  // cols = ceil(sqrt 5) = 3, rows = 2; tiles 6x8 (scale 2), pad 2.
  CHECK(d.w == 3 * (6 + 2) + 2);
  CHECK(d.h == 2 * (8 + 2) + 2);
  auto tile_px = [&](int k) { return d.at(2 + (k % 3) * 8 + 1, 2 + (k / 3) * 10 + 1); };
  CHECK(tile_px(0)[0] == 0);
  CHECK(tile_px(2)[1] == 128);
  CHECK(tile_px(4)[2] == 255);
  CHECK(tile_px(3)[0] == tile_px(3)[2]);

  // RGB: channel planes map to R, G, B; values outside [-1, 1] are clamped.
  std::vector<float> rgb(3 * 2 * 2);
  for (int i = 0; i < 4; ++i) {
    rgb[0 * 4 + i] = 1.0f;
    rgb[1 * 4 + i] = -3.0f;
    rgb[2 * 4 + i] = 0.0f;
  }
  ddpm::write_image_grid_png(dir + "/c.png", rgb.data(), 1, 3, 2, 2, 0, 0, 1);
  Decoded c = decode_png(dir + "/c.png");
  CHECK(c.w == 2);
  CHECK(c.h == 2);
  CHECK(c.at(1, 1)[0] == 255);
  CHECK(c.at(1, 1)[1] == 0);
  CHECK(c.at(1, 1)[2] == 128);

  CHECK(user_error_of([&] { ddpm::write_image_grid_png(dir + "/x.png", rgb.data(), 1, 2, 2, 2); })
            .find("2 channels") != std::string::npos);
}

// ---------------------------------------------------------------- swd

TEST_CASE("runtime: sliced Wasserstein-1 is exact on simple cases") {
  auto a = draw("moons", 2000, 1, 0);
  CHECK(ddpm::sliced_wasserstein_2d(a.data(), 2000, a.data(), 2000) == 0.0);
  // Every point twice is the same empirical distribution (na != nb path).
  std::vector<float> twice(a);
  twice.insert(twice.end(), a.begin(), a.end());
  CHECK(ddpm::sliced_wasserstein_2d(a.data(), 2000, twice.data(), 4000) == doctest::Approx(0.0).epsilon(1e-12));

  // Shift by d: every projection u_k moves by d . u_k, so SWD = mean_k |d . u_k|,
  // which tends to |d| * (1/pi) integral_0^pi |cos| = |d| * 2/pi.
  const float dx = 0.3f, dy = -0.4f;
  std::vector<float> shifted(a);
  for (size_t i = 0; i < shifted.size(); i += 2) {
    shifted[i] += dx;
    shifted[i + 1] += dy;
  }
  const int K = 128;
  double expect = 0;
  for (int k = 0; k < K; ++k) expect += std::fabs(dx * std::cos(kPi * k / K) + dy * std::sin(kPi * k / K));
  expect /= K;
  double got = ddpm::sliced_wasserstein_2d(a.data(), 2000, shifted.data(), 2000, K);
  CHECK(got == doctest::Approx(expect).epsilon(1e-5));
  CHECK(got == doctest::Approx(0.5 * 2 / kPi).epsilon(1e-3));

  // One projection (theta = 0): {0, 1} vs {0, 0.5, 1} differ on q in (1/3, 2/3) by 0.5.
  float p2[] = {0, 0, 1, 0}, p3[] = {0, 0, 0.5f, 0, 1, 0};
  CHECK(ddpm::sliced_wasserstein_2d(p2, 2, p3, 3, 1) == doctest::Approx(1.0 / 6).epsilon(1e-12));
  // A seed rotates the directions but stays deterministic.
  double s1 = ddpm::sliced_wasserstein_2d(a.data(), 2000, shifted.data(), 2000, K, 5);
  CHECK(s1 == ddpm::sliced_wasserstein_2d(a.data(), 2000, shifted.data(), 2000, K, 5));
  CHECK(s1 == doctest::Approx(0.5 * 2 / kPi).epsilon(1e-3));
}

TEST_CASE("runtime: sliced Wasserstein separates moons from a Gaussian") {
  const int64_t n = 5000;
  auto m1 = draw("moons", n, 1, 0), m2 = draw("moons", n, 2, 0);
  std::vector<float> g((size_t)(2 * n));
  for (int64_t i = 0; i < 2 * n; ++i) g[i] = (float)ddpm::philox_normal(3, 0, 7, i);
  double same = ddpm::sliced_wasserstein_2d(m1.data(), n, m2.data(), n);
  double diff = ddpm::sliced_wasserstein_2d(m1.data(), n, g.data(), n);
  MESSAGE("moons vs moons " << same << ", moons vs N(0, I) " << diff);
  CHECK(same < 0.05);
  CHECK(diff > 4 * same);
}

// ---------------------------------------------------------------- optim

namespace {

std::vector<float> randn(int64_t P, uint64_t seed, float scale) {
  std::vector<float> v((size_t)P);
  for (int64_t i = 0; i < P; ++i) v[i] = scale * (float)ddpm::philox_normal(seed, 0, 9, i);
  return v;
}

}  // namespace

TEST_CASE("runtime: AdamW matches a double-precision reference") {
  const int64_t P = 2 * 16384 + 1000 + 7;  // several chunks and a scalar tail
  ddpm::AdamWConfig cfg;
  cfg.lr = 1e-2f;
  cfg.weight_decay = 0.1f;
  std::vector<float> p = randn(P, 1, 1.0f), m(P, 0.0f), v(P, 0.0f);
  std::vector<double> rp(p.begin(), p.end()), rm(P, 0.0), rv(P, 0.0);
  for (int64_t t = 1; t <= 6; ++t) {
    std::vector<float> g = randn(P, 100 + t, 0.1f);
    for (int64_t i = 0; i < P; i += 97) g[i] = 0;  // exercise the eps regime
    ddpm::adamw_step(p.data(), g.data(), m.data(), v.data(), P, t, cfg);
    const double lr = cfg.lr, b1 = cfg.beta1, b2 = cfg.beta2;
    for (int64_t i = 0; i < P; ++i) {
      rp[i] -= lr * cfg.weight_decay * rp[i];
      rm[i] = b1 * rm[i] + (1 - b1) * g[i];
      rv[i] = b2 * rv[i] + (1 - b2) * (double)g[i] * g[i];
      double mhat = rm[i] / (1 - std::pow(b1, (double)t)), vhat = rv[i] / (1 - std::pow(b2, (double)t));
      rp[i] -= lr * mhat / (std::sqrt(vhat) + cfg.eps);
    }
  }
  double worst = 0;
  for (int64_t i = 0; i < P; ++i) worst = std::max(worst, std::fabs(p[i] - rp[i]) / std::max(1.0, std::fabs(rp[i])));
  MESSAGE("worst relative error " << worst);
  CHECK(worst < 1e-6);
}

TEST_CASE("runtime: AdamW weight decay is decoupled and padding stays zero") {
  const int64_t P = 1000;
  ddpm::AdamWConfig cfg;
  cfg.lr = 0.1f;
  cfg.weight_decay = 0.5f;
  std::vector<float> p(P, 2.0f), g(P, 0.0f), m(P, 0.0f), v(P, 0.0f);
  p[3] = 0.0f;
  for (int t = 1; t <= 3; ++t) ddpm::adamw_step(p.data(), g.data(), m.data(), v.data(), P, t, cfg);
  // Zero gradients: only the decay p *= 1 - lr*wd = 0.95 acts.
  CHECK(p[0] == doctest::Approx(2.0 * 0.95 * 0.95 * 0.95).epsilon(1e-6));
  CHECK(p[P - 1] == p[0]);
  CHECK(p[3] == 0.0f);
  CHECK(m[0] == 0.0f);
  CHECK(v[0] == 0.0f);
  // With a gradient, the first step moves each weight by lr (|mhat / sqrt(vhat)| = 1) plus the decay.
  std::vector<float> q(P, 1.0f), gq(P, -3.0f), mq(P, 0.0f), vq(P, 0.0f);
  ddpm::adamw_step(q.data(), gq.data(), mq.data(), vq.data(), P, 1, cfg);
  CHECK(q[17] == doctest::Approx(0.95 + 0.1).epsilon(1e-6));
}

TEST_CASE("runtime: EMA, gradient norm and clipping") {
  const int64_t P = 16384 * 3 + 5;
  std::vector<float> ema = randn(P, 1, 1.0f), params = randn(P, 2, 1.0f), ema0 = ema;
  ddpm::ema_update(ema.data(), params.data(), P, 0.99f);
  double worst = 0;
  for (int64_t i = 0; i < P; ++i)
    worst = std::max(worst, std::fabs(ema[i] - (0.99 * ema0[i] + 0.01 * params[i])));
  CHECK(worst < 1e-6);

  std::vector<float> g = randn(P, 3, 0.5f);
  double ref = 0;
  for (float x : g) ref += (double)x * x;
  ref = std::sqrt(ref);
  CHECK(ddpm::grad_global_norm(g.data(), P) == doctest::Approx(ref).epsilon(1e-6));

  std::vector<float> unclipped = g;
  CHECK(ddpm::clip_grad_norm(unclipped.data(), P, (float)ref * 2) == doctest::Approx(ref).epsilon(1e-6));
  CHECK(unclipped == g);
  CHECK(ddpm::clip_grad_norm(g.data(), P, 1.0f) == doctest::Approx(ref).epsilon(1e-6));
  CHECK(ddpm::grad_global_norm(g.data(), P) == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("runtime: optimizer results are bitwise identical on 1 and 2 threads") {
  const int64_t P = 16384 * 7 + 123;
  struct Out {
    std::vector<float> p, m, v, ema, g;
    float norm, clipped;
  };
  auto run = [&](int threads) {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    Out o{randn(P, 1, 1.0f), std::vector<float>(P, 0.0f), std::vector<float>(P, 0.0f), randn(P, 1, 1.0f),
          randn(P, 2, 0.3f), 0, 0};
    ddpm::AdamWConfig cfg;
    cfg.weight_decay = 0.01f;
    for (int t = 1; t <= 3; ++t) {
      o.norm = ddpm::grad_global_norm(o.g.data(), P);
      o.clipped = ddpm::clip_grad_norm(o.g.data(), P, 10.0f);
      ddpm::adamw_step(o.p.data(), o.g.data(), o.m.data(), o.v.data(), P, t, cfg);
      ddpm::ema_update(o.ema.data(), o.p.data(), P, 0.999f);
    }
    return o;
  };
  Out a = run(1), b = run(2);
  auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  CHECK(same(a.p, b.p));
  CHECK(same(a.m, b.m));
  CHECK(same(a.v, b.v));
  CHECK(same(a.ema, b.ema));
  CHECK(same(a.g, b.g));
  CHECK(std::memcmp(&a.norm, &b.norm, sizeof(float)) == 0);
  CHECK(std::memcmp(&a.clipped, &b.clipped, sizeof(float)) == 0);
}

TEST_CASE("runtime: every instruction-set variant of the optimizer gives the same bits") {
  // The tools run the AdamW loop at the CPU's width (runtime/isa/, chosen at run time); the
  // variants must agree bit for bit, with clipping and EMA on, including the scalar tails.
  const std::vector<std::string> isas = ddpm::optimizer_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.back() == "baseline");
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) CHECK(isas.front() != "baseline");
#endif
  CHECK_THROWS_AS(ddpm::optimizer_step_isa("no-such-isa", nullptr, nullptr, nullptr, nullptr, nullptr, 0, 1, {}, 1, 0),
                  std::invalid_argument);
  const int64_t P = 16384 * 2 + 37;  // two chunks and a tail no batch width divides
  struct State {
    std::vector<float> p, m, v, ema;
  };
  auto run = [&](const std::string& isa) {
    State s{randn(P, 1, 1.0f), std::vector<float>(P, 0.0f), std::vector<float>(P, 0.0f), randn(P, 1, 1.0f)};
    ddpm::AdamWConfig cfg;
    cfg.weight_decay = 0.01f;
    for (int t = 1; t <= 4; ++t) {
      const std::vector<float> g = randn(P, 10 + t, 0.3f);
      ddpm::optimizer_step_isa(isa, s.p.data(), g.data(), s.m.data(), s.v.data(), s.ema.data(), P, t, cfg,
                               t % 2 ? 0.5f : 1.0f, 0.99f);
    }
    return s;
  };
  const State ref = run("baseline");
  auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
    return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  for (const auto& isa : isas) {
    CAPTURE(isa);
    const State s = run(isa);
    CHECK(same(s.p, ref.p));
    CHECK(same(s.m, ref.m));
    CHECK(same(s.v, ref.v));
    CHECK(same(s.ema, ref.ema));
  }
  // optimizer_step is the first variant.
  State d{randn(P, 1, 1.0f), std::vector<float>(P, 0.0f), std::vector<float>(P, 0.0f), randn(P, 1, 1.0f)};
  ddpm::AdamWConfig cfg;
  cfg.weight_decay = 0.01f;
  for (int t = 1; t <= 4; ++t) {
    const std::vector<float> g = randn(P, 10 + t, 0.3f);
    ddpm::optimizer_step(d.p.data(), g.data(), d.m.data(), d.v.data(), d.ema.data(), P, t, cfg, t % 2 ? 0.5f : 1.0f,
                         0.99f);
  }
  CHECK(same(d.p, ref.p));
  CHECK(same(d.ema, ref.ema));
}

// ---------------------------------------------------------------- idx

namespace {

std::string be32(uint32_t x) {
  return std::string{(char)(x >> 24), (char)(x >> 16), (char)(x >> 8), (char)x};
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), (unsigned)bytes.size()) == (int)bytes.size());
  REQUIRE(gzclose(f) == Z_OK);
}

}  // namespace

TEST_CASE("runtime: IDX images and labels, gzip or plain") {
  std::string dir = scratch("idx");
  const int n = 3, rows = 4, cols = 5;
  std::string pixels;
  for (int i = 0; i < n * rows * cols; ++i) pixels += (char)(i * 7 % 256);
  std::string images = be32(2051) + be32(n) + be32(rows) + be32(cols) + pixels;
  std::string labels = be32(2049) + be32(n) + std::string("\x09\x00\x04", 3);
  write_gz(dir + "/img.gz", images);
  write_gz(dir + "/lbl.gz", labels);
  write_bytes(dir + "/img", images);

  for (const std::string& path : {dir + "/img.gz", dir + "/img"}) {
    CAPTURE(path);
    ddpm::IdxImages im = ddpm::read_idx_images(path);
    CHECK(im.n == n);
    CHECK(im.rows == rows);
    CHECK(im.cols == cols);
    CHECK(im.pixels == std::vector<uint8_t>(pixels.begin(), pixels.end()));
  }
  CHECK(ddpm::read_idx_labels(dir + "/lbl.gz") == std::vector<uint8_t>{9, 0, 4});

  std::string msg = user_error_of([&] { ddpm::read_idx_images(dir + "/lbl.gz"); });
  CHECK(msg.find("'" + dir + "/lbl.gz'") != std::string::npos);
  CHECK(msg.find("swapped") != std::string::npos);
  write_gz(dir + "/short.gz", images.substr(0, images.size() - 1));
  msg = user_error_of([&] { ddpm::read_idx_images(dir + "/short.gz"); });
  CHECK(msg.find("truncated") != std::string::npos);
  write_gz(dir + "/hdr.gz", be32(2049) + "\x00");
  CHECK(user_error_of([&] { ddpm::read_idx_labels(dir + "/hdr.gz"); }).find("truncated") != std::string::npos);
  CHECK(user_error_of([&] { ddpm::read_idx_labels(dir + "/missing.gz"); }).find("does not exist") !=
        std::string::npos);
  if (!fs::exists(ddpm::kFashionMnistDir)) {
    msg = user_error_of(
        [&] { ddpm::read_idx_images(std::string(ddpm::kFashionMnistDir) + "/train-images-idx3-ubyte.gz"); });
    CHECK(msg.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  }
}

TEST_CASE("runtime: the fused optimizer pass equals clip + AdamW + EMA bit for bit") {
  const int64_t P = 16384 * 2 + 37;  // two full chunks and a tail that is not a multiple of the lanes
  for (float max_norm : {0.0f, 1.0f, 1e6f}) {  // off, clipping, a bound that never clips
    INFO("max_norm " << max_norm);
    std::vector<float> p1 = randn(P, 4, 1.0f), m1(P, 0.0f), v1(P, 0.0f), e1 = randn(P, 5, 1.0f);
    std::vector<float> p2 = p1, m2 = m1, v2 = v1, e2 = e1;
    ddpm::AdamWConfig cfg;
    cfg.weight_decay = 0.01f;
    for (int t = 1; t <= 3; ++t) {
      std::vector<float> g = randn(P, 10 + t, 0.5f), g2 = g;
      if (max_norm > 0) ddpm::clip_grad_norm(g.data(), P, max_norm);
      ddpm::adamw_step(p1.data(), g.data(), m1.data(), v1.data(), P, t, cfg);
      ddpm::ema_update(e1.data(), p1.data(), P, 0.99f);
      const float norm = ddpm::grad_global_norm(g2.data(), P);
      const float coef = ddpm::clip_coefficient(norm, max_norm);
      if (max_norm == 1.0f) CHECK(coef < 1.0f);
      if (max_norm != 1.0f) CHECK(coef == 1.0f);
      ddpm::optimizer_step(p2.data(), g2.data(), m2.data(), v2.data(), e2.data(), P, t, cfg, coef, 0.99f);
    }
    auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
      return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    CHECK(same(p1, p2));
    CHECK(same(m1, m2));
    CHECK(same(v1, v2));
    CHECK(same(e1, e2));
  }
}
