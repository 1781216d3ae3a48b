// The sample-quality math of runtime/quality.h on constructed data: feature
// statistics against hand sums, the Fréchet distance against its closed form for
// diagonal and rotated covariances (and its symmetry), k-NN precision and recall on
// sets whose answer is known, the class report, and bitwise independence of the
// thread count.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "philox.h"
#include "runtime/quality.h"
#include "test_shell.h"

namespace {

// x [n, F] ~ N(mu, diag(var)) from Philox keyed by (seed, element).
std::vector<float> gaussian_rows(int64_t n, const std::vector<double>& mu, const std::vector<double>& var,
                                 uint64_t seed) {
  const int64_t F = (int64_t)mu.size();
  std::vector<float> x((size_t)(n * F));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < F; ++j)
      x[(size_t)(i * F + j)] = (float)(mu[(size_t)j] + std::sqrt(var[(size_t)j]) *
                                                           ddpm::philox_normal(seed, 0, 7, (uint64_t)(i * F + j)));
  return x;
}

ddpm::FeatureStats stats_of(std::vector<double> mean, std::vector<double> cov) {
  ddpm::FeatureStats s;
  s.n = 100;
  s.dim = (int64_t)mean.size();
  s.mean = std::move(mean);
  s.cov = std::move(cov);
  return s;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace

TEST_CASE("quality: feature statistics are the sample mean and the unbiased covariance") {
  // Rows (1, 2), (3, 6), (5, 4): mean (3, 4); centred (-2,-2), (0,2), (2,0).
  const std::vector<float> x = {1, 2, 3, 6, 5, 4};
  const ddpm::FeatureStats s = ddpm::feature_stats(x.data(), 3, 2);
  CHECK(s.n == 3);
  CHECK(s.dim == 2);
  CHECK(s.mean[0] == doctest::Approx(3));
  CHECK(s.mean[1] == doctest::Approx(4));
  CHECK(s.cov[0] == doctest::Approx(4));  // (4 + 0 + 4) / 2
  CHECK(s.cov[1] == doctest::Approx(2));  // (4 + 0 + 0) / 2
  CHECK(s.cov[2] == doctest::Approx(2));
  CHECK(s.cov[3] == doctest::Approx(4));  // (4 + 4 + 0) / 2
}

TEST_CASE("quality: the Frechet distance of identical statistics is zero") {
  const std::vector<float> x = gaussian_rows(500, {0, 1, -2, 0.5, 3}, {1, 2, 0.5, 4, 1}, 11);
  const ddpm::FeatureStats s = ddpm::feature_stats(x.data(), 500, 5);
  CHECK(ddpm::frechet_distance(s, s) < 1e-9);
}

TEST_CASE("quality: the Frechet distance matches the closed form for diagonal covariances") {
  // sum (sqrt(a) - sqrt(b))^2 + |mu1 - mu2|^2.
  const std::vector<double> a = {1, 4, 9, 0.25}, b = {4, 1, 1, 0.25};
  const std::vector<double> m1 = {0, 1, 2, 3}, m2 = {1, 1, 0, 3};
  auto diag = [](const std::vector<double>& v) {
    std::vector<double> c(v.size() * v.size(), 0.0);
    for (size_t i = 0; i < v.size(); ++i) c[i * v.size() + i] = v[i];
    return c;
  };
  const ddpm::FeatureStats s1 = stats_of(m1, diag(a)), s2 = stats_of(m2, diag(b));
  double want = 0;
  for (size_t i = 0; i < a.size(); ++i)
    want += std::pow(std::sqrt(a[i]) - std::sqrt(b[i]), 2) + std::pow(m1[i] - m2[i], 2);
  // (1-2)^2 + (2-1)^2 + (3-1)^2 + 0 = 6, plus the means' 1 + 0 + 4 + 0 = 5.
  CHECK(want == doctest::Approx(11));
  CHECK(ddpm::frechet_distance(s1, s2) == doctest::Approx(want).epsilon(1e-10));
  CHECK(ddpm::frechet_distance(s2, s1) == doctest::Approx(want).epsilon(1e-10));
}

TEST_CASE("quality: the Frechet distance of non-commuting covariances matches the 2x2 closed form and is symmetric") {
  // For 2x2 SPD A, B: tr sqrt(A^1/2 B A^1/2) = sqrt(tr(AB) + 2 sqrt(det(AB))).
  const std::vector<double> A = {2, 0.5, 0.5, 1}, B = {1, -0.3, -0.3, 3};
  const double trAB = A[0] * B[0] + A[1] * B[2] + A[2] * B[1] + A[3] * B[3];
  const double detAB = (A[0] * A[3] - A[1] * A[2]) * (B[0] * B[3] - B[1] * B[2]);
  const double want = (A[0] + A[3]) + (B[0] + B[3]) - 2 * std::sqrt(trAB + 2 * std::sqrt(detAB)) + 0.5 * 0.5;
  const ddpm::FeatureStats s1 = stats_of({0, 0}, A), s2 = stats_of({0.5, 0}, B);
  const double d12 = ddpm::frechet_distance(s1, s2), d21 = ddpm::frechet_distance(s2, s1);
  CHECK(d12 == doctest::Approx(want).epsilon(1e-10));
  CHECK(d21 == doctest::Approx(d12).epsilon(1e-12));
}

TEST_CASE("quality: a singular covariance gives a finite Frechet distance, and mismatched dimensions an error") {
  const ddpm::FeatureStats s1 = stats_of({0, 0}, {1, 1, 1, 1}), s2 = stats_of({0, 0}, {1, 0, 0, 0});
  const double d = ddpm::frechet_distance(s1, s2);
  CHECK(std::isfinite(d));
  CHECK(d >= 0);
  const ddpm::FeatureStats s3 = stats_of({0}, {1});
  CHECK(ddpm_test::user_error_of([&] { ddpm::frechet_distance(s1, s3); }).find("dimensions") != std::string::npos);
}

TEST_CASE("quality: the Frechet distance of two samples approaches the population value") {
  const std::vector<double> va = {1, 2, 0.5}, vb = {2, 2, 1};
  const std::vector<float> x = gaussian_rows(20000, {0, 0, 0}, va, 1), y = gaussian_rows(20000, {1, 0, 0}, vb, 2);
  const ddpm::FeatureStats sx = ddpm::feature_stats(x.data(), 20000, 3), sy = ddpm::feature_stats(y.data(), 20000, 3);
  double want = 1;
  for (size_t i = 0; i < va.size(); ++i) want += std::pow(std::sqrt(va[i]) - std::sqrt(vb[i]), 2);
  CHECK(ddpm::frechet_distance(sx, sy) == doctest::Approx(want).epsilon(0.05));
}

TEST_CASE("quality: precision and recall of identical sets are 1 and of far disjoint sets 0") {
  const std::vector<float> x = gaussian_rows(200, {0, 0, 0, 0}, {1, 1, 1, 1}, 3);
  ddpm::PrecisionRecall pr = ddpm::precision_recall(x.data(), 200, x.data(), 200, 4);
  CHECK(pr.precision == 1.0);
  CHECK(pr.recall == 1.0);
  CHECK(pr.k == 3);
  const std::vector<float> far = gaussian_rows(150, {100, 0, 0, 0}, {1, 1, 1, 1}, 4);
  pr = ddpm::precision_recall(x.data(), 200, far.data(), 150, 4);
  CHECK(pr.precision == 0.0);
  CHECK(pr.recall == 0.0);
  CHECK(pr.n_real == 200);
  CHECK(pr.n_fake == 150);
}

TEST_CASE("quality: precision and recall of a known partial overlap") {
  // Real: 20 points on a line at 0, 1, ..., 19 (3rd-NN radius 2 inside, 3 at the ends).
  // Fake: 10 points at 0.5, 1.5, ..., 4.5 (inside the real manifold) and 10 at 1000 + i.
  std::vector<float> real, fake;
  for (int i = 0; i < 20; ++i) real.push_back((float)i);
  for (int i = 0; i < 10; ++i) fake.push_back(0.5f + (float)i * 0.5f);
  for (int i = 0; i < 10; ++i) fake.push_back(1000.0f + (float)i);
  const std::vector<double> r = ddpm::knn_radii2(real.data(), 20, 1, 3);
  CHECK(r[0] == 9.0);   // 0 -> 3
  CHECK(r[1] == 4.0);   // 1 -> 3 (0, 2 at 1; 3 at 2)
  CHECK(r[10] == 4.0);  // 10 -> {9, 11}, {8, 12}: 3rd is at distance 2
  const ddpm::PrecisionRecall pr = ddpm::precision_recall(real.data(), 20, fake.data(), 20, 1);
  CHECK(pr.precision == 0.5);
  // Fake near points 0.5..5 have 3rd-NN radius 1..1.5 (0.5 at the ends of the cluster);
  // the far fake points 1000..1009 have radius 3 (ends) or 2: no real point is that close.
  // Real points covered by the near cluster's balls: 0 .. 6 at most; count them exactly.
  const std::vector<double> rf = ddpm::knn_radii2(fake.data(), 20, 1, 3);
  int covered = 0;
  for (int i = 0; i < 20; ++i) {
    bool in = false;
    for (int j = 0; j < 20; ++j) in = in || std::pow((double)real[i] - fake[j], 2) <= rf[j];
    covered += in;
  }
  CHECK(covered > 0);
  CHECK(covered < 20);
  CHECK(pr.recall == doctest::Approx(covered / 20.0));
}

TEST_CASE("quality: too few samples for the k-NN radii is a user error") {
  const std::vector<float> x = {0, 1, 2};
  CHECK(ddpm_test::user_error_of([&] { ddpm::knn_radii2(x.data(), 3, 1, 3); }).find("more than k = 3") !=
        std::string::npos);
}

TEST_CASE("quality: class report counts predictions and accuracy per intended class") {
  // 4 samples, 3 classes; predictions 2, 0, 2, 1 (sample 3 ties 1 and 2: the first wins).
  const std::vector<float> logits = {0, 1, 5, 3, 0, 0, -1, -2, 0, 0, 4, 4};
  const ddpm::ClassReport plain = ddpm::class_report(logits.data(), 4, 3);
  CHECK(plain.predicted == std::vector<int64_t>{1, 1, 2});
  CHECK(plain.correct.empty());
  const ddpm::ClassReport r = ddpm::class_report(logits.data(), 4, 3, {2, 0, 1, 1});
  CHECK(r.correct == std::vector<int64_t>{1, 1, 1});
  CHECK(r.total == std::vector<int64_t>{1, 2, 1});
  CHECK(r.correct_all == 3);
  CHECK(r.accuracy() == doctest::Approx(0.75));
}

TEST_CASE("quality: statistics and precision/recall are bitwise the same on 1 and 2 threads") {
  const int64_t n = 700, F = 37;  // sizes that leave partial blocks
  std::vector<double> mu((size_t)F), var((size_t)F);
  for (int64_t j = 0; j < F; ++j) {
    mu[(size_t)j] = 0.1 * (double)j;
    var[(size_t)j] = 1 + 0.05 * (double)j;
  }
  const std::vector<float> x = gaussian_rows(n, mu, var, 5), y = gaussian_rows(n - 123, mu, var, 6);
  const ddpm::FeatureStats s1 = ddpm::feature_stats(x.data(), n, F, 1), s2 = ddpm::feature_stats(x.data(), n, F, 2);
  CHECK(same_bits(s1.mean, s2.mean));
  CHECK(same_bits(s1.cov, s2.cov));
  CHECK(same_bits(ddpm::knn_radii2(x.data(), n, F, 3, 1), ddpm::knn_radii2(x.data(), n, F, 3, 2)));
  const ddpm::PrecisionRecall a = ddpm::precision_recall(x.data(), n, y.data(), n - 123, F, 3, 1);
  const ddpm::PrecisionRecall b = ddpm::precision_recall(x.data(), n, y.data(), n - 123, F, 3, 2);
  CHECK(a.precision == b.precision);
  CHECK(a.recall == b.recall);
  CHECK(a.precision > 0.5);  // the same distribution
  CHECK(a.recall > 0.5);
  const ddpm::FeatureStats t = ddpm::feature_stats(y.data(), n - 123, F, 2);
  const double d1 = ddpm::frechet_distance(s1, t), d2 = ddpm::frechet_distance(s2, t);
  CHECK(std::memcmp(&d1, &d2, sizeof d1) == 0);
}
