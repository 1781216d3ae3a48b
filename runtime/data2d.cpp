// Built-in 2-D toy data sets (see data2d.h for the determinism contract).
//
// Random numbers: point i of a batch draws from Philox with element ids
// 8*i + k, k = 0..7 (each draw uses its own element id), on a stream id fixed
// per data set (1001..1004). Conventions:
//   moons:        point i is on the outer half circle when i is even, the inner
//                 one when i is odd (alternating, so any batch size is balanced);
//                 u ~ U(0, pi); outer (cos u, sin u), inner (1 - cos u, 0.5 - sin u);
//                 plus N(0, 0.05^2) per coordinate, then standardised per axis with
//                 mean (0.501, 0.250) and std (0.868, 0.497).
//   swissroll:    u ~ U(1.5 pi, 4.5 pi); (u cos u, u sin u) + N(0, 1), all divided by 5.
//   8gaussians:   centre 2 (cos k pi/4, sin k pi/4), k uniform in 0..7, + N(0, 0.02^2).
//   checkerboard: the square with lower-left corner (x0, y0), x0, y0 in {-2,-1,0,1},
//                 is filled when x0 + y0 is even (so [0,1]^2 and [-1,0]^2 are filled);
//                 a uniform filled square, a uniform point in it, then times 2.
#include "data2d.h"

#include <cmath>

#include "common/diag.h"
#include "philox.h"

namespace ddpm {
namespace {

constexpr double kPi = 3.14159265358979323846;

constexpr uint32_t kStreamMoons = 1001;
constexpr uint32_t kStreamSwissroll = 1002;
constexpr uint32_t kStream8Gaussians = 1003;
constexpr uint32_t kStreamCheckerboard = 1004;

// Draws for point i: element ids 8*i + k.
struct PointRng {
  uint64_t seed, step;
  uint32_t stream;
  int64_t i;
  double uniform(int k) const { return philox_uniform(seed, step, stream, (uint64_t)i * 8 + k); }
  double normal(int k) const { return philox_normal(seed, step, stream, (uint64_t)i * 8 + k); }
};

void moons(const PointRng& r, float* p) {
  double u = kPi * r.uniform(0);
  double x, y;
  if (r.i % 2 == 0) {
    x = std::cos(u);
    y = std::sin(u);
  } else {
    x = 1.0 - std::cos(u);
    y = 0.5 - std::sin(u);
  }
  x += 0.05 * r.normal(1);
  y += 0.05 * r.normal(2);
  p[0] = (float)((x - 0.501) / 0.868);
  p[1] = (float)((y - 0.250) / 0.497);
}

void swissroll(const PointRng& r, float* p) {
  double u = 1.5 * kPi + 3.0 * kPi * r.uniform(0);
  p[0] = (float)((u * std::cos(u) + r.normal(1)) / 5.0);
  p[1] = (float)((u * std::sin(u) + r.normal(2)) / 5.0);
}

void eight_gaussians(const PointRng& r, float* p) {
  int k = (int)(r.uniform(0) * 8);
  if (k > 7) k = 7;
  double a = k * kPi / 4;
  p[0] = (float)(2.0 * std::cos(a) + 0.02 * r.normal(1));
  p[1] = (float)(2.0 * std::sin(a) + 0.02 * r.normal(2));
}

void checkerboard(const PointRng& r, float* p) {
  // The 8 filled squares: lower-left corners with x0 + y0 even.
  static constexpr int kFilled[8][2] = {{-2, -2}, {-2, 0}, {-1, -1}, {-1, 1},
                                        {0, -2},  {0, 0},  {1, -1},  {1, 1}};
  int k = (int)(r.uniform(0) * 8);
  if (k > 7) k = 7;
  p[0] = (float)(2.0 * (kFilled[k][0] + r.uniform(1)));
  p[1] = (float)(2.0 * (kFilled[k][1] + r.uniform(2)));
}

struct Dataset {
  const char* name;
  uint32_t stream;
  void (*fn)(const PointRng&, float*);
};

constexpr Dataset kDatasets[] = {
    {"moons", kStreamMoons, moons},
    {"swissroll", kStreamSwissroll, swissroll},
    {"8gaussians", kStream8Gaussians, eight_gaussians},
    {"checkerboard", kStreamCheckerboard, checkerboard},
};

}  // namespace

const std::vector<std::string>& dataset_2d_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& d : kDatasets) v.emplace_back(d.name);
    return v;
  }();
  return names;
}

void sample_2d(const std::string& name, int64_t n, uint64_t seed, uint64_t step, float* out, int64_t i0) {
  for (const auto& d : kDatasets) {
    if (name != d.name) continue;
    for (int64_t i = 0; i < n; ++i) d.fn(PointRng{seed, step, d.stream, i0 + i}, out + 2 * i);
    return;
  }
  std::string valid;
  for (const auto& s : dataset_2d_names()) valid += (valid.empty() ? "" : ", ") + s;
  ddpmc::user_error_noloc("unknown 2-D data set '" + name + "'",
                          "use one of: " + valid);
}

}  // namespace ddpm
