// Sliced Wasserstein distance between two 2-D point sets: the sample-quality
// metric for the toy data sets (ddpm-sample and the trainer's periodic eval
// compare generated points against a fresh draw of the data set).
//
// Layout: a is [na, 2], b is [nb, 2], row-major.
#pragma once
#include <cstdint>

namespace ddpm {

// Mean over n_projections directions theta_k = pi (k + phi) / n_projections,
// k = 0..n_projections-1, of the 1-D Wasserstein-1 distance between the
// projected empirical distributions:  W1 = integral_0^1 |Qa(q) - Qb(q)| dq with
// Qa, Qb the empirical quantile functions (exact for any na, nb). phi = 0 for
// seed = 0 and a Philox-derived offset in (0, 1) otherwise, so the result is
// deterministic. Units are those of the points; for a copy shifted by a vector d
// the value tends to |d| * 2/pi.
double sliced_wasserstein_2d(const float* a, int64_t na, const float* b, int64_t nb,
                             int n_projections = 128, uint64_t seed = 0);

}  // namespace ddpm
