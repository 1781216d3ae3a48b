// Means and cluster-robust standard errors of per-sample bounds (eval_stats.h).
#include "eval_stats.h"

#include <cmath>
#include <map>

#include <fmt/format.h>

namespace ddpm_tools {

namespace {

// SE from per-sample contributions c_i = w_i (v_i − μ_i): C/(C−1) Σ_g (Σ_{i∈g} c_i)².
double cluster_se(const std::vector<double>& contrib, const std::vector<int64_t>& clusters) {
  std::map<int64_t, double> sums;
  for (size_t i = 0; i < contrib.size(); ++i) sums[clusters[i]] += contrib[i];
  const double C = (double)sums.size();
  if (C < 2) return NAN;
  double ss = 0;
  for (const auto& [g, s] : sums) ss += s * s;
  return std::sqrt(ss * C / (C - 1));
}

}  // namespace

Estimate mean_estimate(const std::vector<double>& v, const std::vector<int64_t>& clusters) {
  Estimate e;
  e.n = (int64_t)v.size();
  if (e.n == 0) return e;
  for (double x : v) e.mean += x;
  e.mean /= (double)e.n;
  std::vector<double> c(v.size());
  for (size_t i = 0; i < v.size(); ++i) c[i] = (v[i] - e.mean) / (double)e.n;
  e.se = cluster_se(c, clusters);
  return e;
}

std::vector<Estimate> class_estimates(const std::vector<double>& v, const std::vector<int32_t>& labels, int K,
                                      const std::vector<int64_t>& clusters) {
  std::vector<Estimate> out((size_t)K);
  for (int k = 0; k < K; ++k) {
    std::vector<double> vk;
    std::vector<int64_t> ck;
    for (size_t i = 0; i < v.size(); ++i)
      if (labels[i] == k) vk.push_back(v[i]), ck.push_back(clusters[i]);
    out[(size_t)k] = mean_estimate(vk, ck);
  }
  return out;
}

Estimate class_average(const std::vector<double>& v, const std::vector<int32_t>& labels, int K,
                       const std::vector<int64_t>& clusters) {
  const std::vector<Estimate> per = class_estimates(v, labels, K, clusters);
  Estimate e;
  int present = 0;
  for (const Estimate& c : per)
    if (c.n > 0) e.mean += c.mean, ++present;
  e.n = (int64_t)v.size();
  if (present == 0) return e;
  e.mean /= present;
  std::vector<double> contrib(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const Estimate& c = per[(size_t)labels[i]];
    contrib[i] = (v[i] - c.mean) / ((double)present * (double)c.n);
  }
  e.se = cluster_se(contrib, clusters);
  return e;
}

std::string plus_minus(double se) { return std::isfinite(se) ? fmt::format("± {:.4f}", se) : "± n/a"; }

}  // namespace ddpm_tools
