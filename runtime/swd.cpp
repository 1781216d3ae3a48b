// Sliced Wasserstein-1 (see swd.h). Per direction: project both sets, sort, and
// integrate |Qa - Qb| exactly over the merged quantile breakpoints i/na and j/nb.
// Directions are processed in parallel; the per-direction distances are summed
// in index order, so the result does not depend on the thread count.
#include "swd.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/diag.h"
#include "philox.h"

namespace ddpm {
namespace {

constexpr uint32_t kStreamSwdOffset = 1100;

// W1 between sorted samples xa[na] and xb[nb]: on the interval between two
// consecutive breakpoints of {i/na} U {j/nb} both quantile functions are constant.
double w1_sorted(const std::vector<double>& xa, const std::vector<double>& xb) {
  // Quantile levels in units of 1 / (na * nb): breakpoint i of a is (i+1) * nb.
  const uint64_t na = xa.size(), nb = xb.size();
  uint64_t i = 0, j = 0, q = 0;
  double sum = 0;
  while (i < na && j < nb) {
    const uint64_t qa = (i + 1) * nb, qb = (j + 1) * na, next = std::min(qa, qb);
    sum += (double)(next - q) * std::fabs(xa[i] - xb[j]);
    q = next;
    if (qa == next) ++i;
    if (qb == next) ++j;
  }
  return sum / ((double)na * (double)nb);
}

}  // namespace

double sliced_wasserstein_2d(const float* a, int64_t na, const float* b, int64_t nb, int n_projections,
                             uint64_t seed) {
  DDPM_CHECK(na > 0 && nb > 0 && n_projections > 0, "empty input to sliced_wasserstein_2d");
  const double phi = seed == 0 ? 0.0 : philox_uniform(seed, 0, kStreamSwdOffset, 0);
  std::vector<double> per(n_projections);
  tbb::parallel_for(tbb::blocked_range<int>(0, n_projections), [&](const tbb::blocked_range<int>& r) {
    std::vector<double> xa((size_t)na), xb((size_t)nb);
    for (int k = r.begin(); k < r.end(); ++k) {
      const double th = 3.14159265358979323846 * (k + phi) / n_projections;
      const double c = std::cos(th), s = std::sin(th);
      for (int64_t i = 0; i < na; ++i) xa[i] = c * a[2 * i] + s * a[2 * i + 1];
      for (int64_t i = 0; i < nb; ++i) xb[i] = c * b[2 * i] + s * b[2 * i + 1];
      std::sort(xa.begin(), xa.end());
      std::sort(xb.begin(), xb.end());
      per[k] = w1_sorted(xa, xb);
    }
  });
  double sum = 0;
  for (double d : per) sum += d;
  return sum / n_projections;
}

}  // namespace ddpm
