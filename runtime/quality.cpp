// Sample-quality statistics (see quality.h). Partitions are fixed by the sizes alone
// (blocks of kCovRows output rows, kQueryRows query rows) and each value is summed in
// one fixed order inside its block, so the thread count changes only who computes a
// block, never its bits. Eigen does the one piece of real linear algebra: the
// symmetric eigen-decompositions of the Fréchet distance.
#include "quality.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Dense>
#include <fmt/format.h>

#include "common/diag.h"

namespace ddpm {
namespace {

constexpr int64_t kCovRows = 16;    // covariance rows per task
constexpr int64_t kQueryRows = 32;  // k-NN query rows per task
constexpr int64_t kRefRows = 256;   // reference rows per cache block

// Runs body(i0, i1) over [0, n) cut into blocks of `block`, on `threads` threads.
template <class Body>
void for_blocks(int64_t n, int64_t block, int threads, const Body& body) {
  const int64_t nb = (n + block - 1) / block;
  auto run = [&] {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, nb, 1), [&](const tbb::blocked_range<int64_t>& r) {
      for (int64_t b = r.begin(); b < r.end(); ++b) body(b * block, std::min(n, (b + 1) * block));
    }, tbb::simple_partitioner());
  };
  if (threads <= 1) {
    for (int64_t b = 0; b < nb; ++b) body(b * block, std::min(n, (b + 1) * block));
    return;
  }
  tbb::task_arena arena(threads);
  arena.execute(run);
}

// Squared Euclidean distance of two rows of F floats, in double, with four partial
// sums combined in a fixed order (the same bits wherever it runs).
inline double dist2(const float* a, const float* b, int64_t F) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t j = 0;
  for (; j + 4 <= F; j += 4) {
    const double d0 = (double)a[j] - b[j], d1 = (double)a[j + 1] - b[j + 1];
    const double d2 = (double)a[j + 2] - b[j + 2], d3 = (double)a[j + 3] - b[j + 3];
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; j < F; ++j) {
    const double d = (double)a[j] - b[j];
    s0 += d * d;
  }
  return (s0 + s1) + (s2 + s3);
}

// The k smallest values seen, kept sorted ascending (k is small: 3).
struct KSmallest {
  std::vector<double> v;
  explicit KSmallest(int k) : v((size_t)k, std::numeric_limits<double>::infinity()) {}
  void push(double d) {
    if (!(d < v.back())) return;
    size_t i = v.size() - 1;
    while (i > 0 && v[i - 1] > d) {
      v[i] = v[i - 1];
      --i;
    }
    v[i] = d;
  }
};

// For each query row: is it inside some centre's ball (dist2 <= r2[centre])?
int64_t count_covered(const float* q, int64_t nq, const float* c, int64_t nc, const std::vector<double>& r2,
                      int64_t F, int threads) {
  std::vector<char> in((size_t)nq, 0);
  for_blocks(nq, kQueryRows, threads, [&](int64_t i0, int64_t i1) {
    for (int64_t c0 = 0; c0 < nc; c0 += kRefRows) {
      const int64_t c1 = std::min(nc, c0 + kRefRows);
      for (int64_t i = i0; i < i1; ++i) {
        if (in[(size_t)i]) continue;
        for (int64_t j = c0; j < c1; ++j)
          if (dist2(q + i * F, c + j * F, F) <= r2[(size_t)j]) {
            in[(size_t)i] = 1;
            break;
          }
      }
    }
  });
  int64_t n = 0;
  for (char b : in) n += b;
  return n;
}

}  // namespace

FeatureStats feature_stats(const float* x, int64_t n, int64_t F, int threads) {
  DDPM_CHECK(n >= 1 && F >= 1, fmt::format("feature_stats of [{}, {}]", n, F));
  FeatureStats s;
  s.n = n;
  s.dim = F;
  s.mean.assign((size_t)F, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < F; ++j) s.mean[(size_t)j] += x[i * F + j];
  for (double& m : s.mean) m /= (double)n;
  // Centred rows in double, then the lower triangle of the covariance by blocks of
  // output rows, each entry summed over the samples in order; mirrored at the end.
  std::vector<double> xc((size_t)(n * F));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < F; ++j) xc[(size_t)(i * F + j)] = (double)x[i * F + j] - s.mean[(size_t)j];
  s.cov.assign((size_t)(F * F), 0.0);
  const double denom = n > 1 ? (double)(n - 1) : 1.0;
  for_blocks(F, kCovRows, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t i = 0; i < n; ++i) {
      const double* row = xc.data() + i * F;
      for (int64_t a = r0; a < r1; ++a) {
        const double va = row[a];
        double* out = s.cov.data() + a * F;
        for (int64_t b = 0; b <= a; ++b) out[b] += va * row[b];
      }
    }
    for (int64_t a = r0; a < r1; ++a)
      for (int64_t b = 0; b <= a; ++b) s.cov[(size_t)(a * F + b)] /= denom;
  });
  for (int64_t a = 0; a < F; ++a)
    for (int64_t b = a + 1; b < F; ++b) s.cov[(size_t)(a * F + b)] = s.cov[(size_t)(b * F + a)];
  return s;
}

double frechet_distance(const FeatureStats& a, const FeatureStats& b) {
  if (a.dim != b.dim)
    ddpmc::user_error_noloc(fmt::format("cannot compare feature statistics of {} and {} dimensions", a.dim, b.dim),
                            "compute both with the same evaluator");
  const int64_t F = a.dim;
  DDPM_CHECK((int64_t)a.mean.size() == F && (int64_t)a.cov.size() == F * F && (int64_t)b.mean.size() == F &&
                 (int64_t)b.cov.size() == F * F,
             "malformed FeatureStats");
  using Mat = Eigen::MatrixXd;
  using Vec = Eigen::VectorXd;
  const Eigen::Map<const Mat> S1(a.cov.data(), F, F), S2(b.cov.data(), F, F);
  const Eigen::Map<const Vec> m1(a.mean.data(), F), m2(b.mean.data(), F);
  // S1^{1/2} = V diag(sqrt(max(l, 0))) V^T.
  Eigen::SelfAdjointEigenSolver<Mat> e1(S1);
  DDPM_CHECK(e1.info() == Eigen::Success, "eigen-decomposition of a covariance did not converge");
  const Vec l1 = e1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const Mat R = e1.eigenvectors() * l1.asDiagonal() * e1.eigenvectors().transpose();
  Mat M = R * S2 * R;
  M = 0.5 * (M + M.transpose());  // symmetric in exact arithmetic
  Eigen::SelfAdjointEigenSolver<Mat> e2(M, Eigen::EigenvaluesOnly);
  DDPM_CHECK(e2.info() == Eigen::Success, "eigen-decomposition of S1^1/2 S2 S1^1/2 did not converge");
  const double tr_sqrt = e2.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
  const double d = (m1 - m2).squaredNorm() + S1.trace() + S2.trace() - 2.0 * tr_sqrt;
  return std::max(0.0, d);
}

std::vector<double> knn_radii2(const float* x, int64_t n, int64_t F, int k, int threads) {
  if (k < 1 || n <= k)
    ddpmc::user_error_noloc(fmt::format("k-nearest-neighbour radii need more than k = {} samples (got {})", k, n),
                            "evaluate more samples (-n)");
  std::vector<double> r2((size_t)n);
  for_blocks(n, kQueryRows, threads, [&](int64_t i0, int64_t i1) {
    std::vector<KSmallest> best((size_t)(i1 - i0), KSmallest(k));
    for (int64_t c0 = 0; c0 < n; c0 += kRefRows) {
      const int64_t c1 = std::min(n, c0 + kRefRows);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = c0; j < c1; ++j)
          if (j != i) best[(size_t)(i - i0)].push(dist2(x + i * F, x + j * F, F));
    }
    for (int64_t i = i0; i < i1; ++i) r2[(size_t)i] = best[(size_t)(i - i0)].v.back();
  });
  return r2;
}

PrecisionRecall precision_recall(const float* real, int64_t n_real, const float* fake, int64_t n_fake, int64_t F,
                                 int k, int threads) {
  const std::vector<double> rr = knn_radii2(real, n_real, F, k, threads);
  const std::vector<double> rf = knn_radii2(fake, n_fake, F, k, threads);
  PrecisionRecall pr;
  pr.k = k;
  pr.n_real = n_real;
  pr.n_fake = n_fake;
  pr.precision = (double)count_covered(fake, n_fake, real, n_real, rr, F, threads) / (double)n_fake;
  pr.recall = (double)count_covered(real, n_real, fake, n_fake, rf, F, threads) / (double)n_real;
  return pr;
}

std::vector<int32_t> argmax_rows(const float* logits, int64_t n, int K) {
  std::vector<int32_t> out((size_t)n);
  for (int64_t i = 0; i < n; ++i) {
    const float* l = logits + i * K;
    int best = 0;
    for (int c = 1; c < K; ++c)
      if (l[c] > l[best]) best = c;
    out[(size_t)i] = best;
  }
  return out;
}

ClassReport class_report(const float* logits, int64_t n, int K, const std::vector<int32_t>& intended) {
  DDPM_CHECK(K >= 1, "class_report needs K >= 1");
  DDPM_CHECK(intended.empty() || (int64_t)intended.size() == n, "one intended class per sample");
  ClassReport r;
  r.n = n;
  r.K = K;
  r.predicted.assign((size_t)K, 0);
  const std::vector<int32_t> pred = argmax_rows(logits, n, K);
  for (int32_t p : pred) ++r.predicted[(size_t)p];
  if (intended.empty()) return r;
  r.correct.assign((size_t)K, 0);
  r.total.assign((size_t)K, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = intended[(size_t)i];
    DDPM_CHECK(c >= 0 && c < K, fmt::format("intended class {} outside 0..{}", c, K - 1));
    ++r.total[(size_t)c];
    if (pred[(size_t)i] == c) {
      ++r.correct[(size_t)c];
      ++r.correct_all;
    }
  }
  return r;
}

}  // namespace ddpm
