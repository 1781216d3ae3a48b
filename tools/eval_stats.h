// The statistics ddpm-eval reports from per-sample bounds: means, per-class means
// and their average, each with a cluster-robust standard error. A strided
// estimate's samples share the random step offset of their batch, so its
// clusters are the batches; the full sum's samples are independent (one cluster
// each, where the formula reduces to s / √n).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm_tools {

struct Estimate {
  double mean = 0, se = 0;
  int64_t n = 0;
};

// The mean of v with its standard error, clusters[i] naming sample i's cluster.
// For any weighted mean Σ w_i v_i the error is taken from the linearisation
// SE² = C/(C−1) Σ_g (Σ_{i∈g} w_i (v_i − μ_i))² over the C clusters g (NaN for
// C < 2: one cluster carries no estimate of its own error).
Estimate mean_estimate(const std::vector<double>& v, const std::vector<int64_t>& clusters);

// Per class k = 0..K-1 (labels[i] is sample i's class): the class's mean and
// error (n = 0 for a class without samples).
std::vector<Estimate> class_estimates(const std::vector<double>& v, const std::vector<int32_t>& labels, int K,
                                      const std::vector<int64_t>& clusters);

// The unweighted average of the per-class means over the classes with samples,
// with its error from the same linearisation (each class weighted 1/K').
Estimate class_average(const std::vector<double>& v, const std::vector<int32_t>& labels, int K,
                       const std::vector<int64_t>& clusters);

// "± 0.0123", or "± n/a" without an error estimate.
std::string plus_minus(double se);

}  // namespace ddpm_tools
