// Sample-quality statistics on feature vectors: the math behind `ddpm-eval --quality`
// (tools/eval_quality.h) and what the trainer's periodic evaluation can call.
//
//   feature_stats      mean and covariance of an evaluator's features (for FID)
//   frechet_distance   the Fréchet distance between two Gaussians (FID when the features
//                      are an image classifier's penultimate layer)
//   precision_recall   k-nearest-neighbour manifold precision and recall
//                      (Kynkäänniemi et al. 2019)
//   class_report       predicted-class histogram and accuracy against intended classes
// The 2-D toy sets use the sliced Wasserstein distance of runtime/swd.h instead.
//
// Dimension legend:
//   N, Nr, Nf  samples (rows): any set, the real set, the generated (fake) set
//   F          features per sample
//   K          classes (logits per sample)
// Matrices are row-major float [rows, F]; statistics are double.
//
// Determinism: every function that takes `threads` runs in a oneTBB arena of that many
// threads over fixed partitions, and every sum runs in a fixed order, so results are
// bitwise identical for any thread count.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// Gaussian statistics of N feature vectors of F values.
struct FeatureStats {
  int64_t n = 0;             // samples the statistics were computed from
  int64_t dim = 0;           // F
  std::vector<double> mean;  // [F]
  std::vector<double> cov;   // [F, F], row-major, symmetric, unbiased (divides by N - 1; by 1 when N = 1)
};

// The mean and covariance of x [N, F] (N >= 1, F >= 1; else an internal error). The
// covariance is computed from the centred rows in double, each entry summed over the
// rows in order.
FeatureStats feature_stats(const float* x, int64_t n, int64_t F, int threads = 1);

// The Fréchet distance between N(mu1, S1) and N(mu2, S2):
//   |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^{1/2} S2 S1^{1/2})^{1/2}
// with Eigen's SelfAdjointEigenSolver for both square roots; eigenvalues below zero
// (rounding in a singular covariance) count as zero, and a result below zero (identical
// statistics, in rounding) as zero. Throws a UserError when the dimensions differ.
double frechet_distance(const FeatureStats& a, const FeatureStats& b);

// The squared distance from each row of x [N, F] to its k-th nearest other row
// (k >= 1, N > k; else a UserError): the radii of the k-NN manifold of the set.
std::vector<double> knn_radii2(const float* x, int64_t n, int64_t F, int k, int threads = 1);

struct PrecisionRecall {
  double precision = 0;  // fraction of fake rows inside some real row's k-NN ball
  double recall = 0;     // fraction of real rows inside some fake row's k-NN ball
  int k = 3;
  int64_t n_real = 0, n_fake = 0;
};

// Improved precision and recall (Kynkäänniemi et al. 2019) of fake [Nf, F] against
// real [Nr, F]: a point is inside a ball when its squared distance to the centre is at
// most the centre's knn_radii2 (inclusive). Exact brute force over blocks of rows.
PrecisionRecall precision_recall(const float* real, int64_t n_real, const float* fake, int64_t n_fake, int64_t F,
                                 int k = 3, int threads = 1);

// What a classifier predicts for N samples: predicted[c] counts the samples whose
// argmax(logits) is c (the first maximum on ties). With intended classes (non-empty,
// [N], each 0..K-1), also per-class and overall accuracy of the prediction.
struct ClassReport {
  int64_t n = 0;
  int K = 0;
  std::vector<int64_t> predicted;  // [K]
  std::vector<int64_t> correct;    // [K] by intended class (empty without intended classes)
  std::vector<int64_t> total;      // [K] samples per intended class
  int64_t correct_all = 0;
  double accuracy() const { return n > 0 ? (double)correct_all / (double)n : 0.0; }
};
ClassReport class_report(const float* logits, int64_t n, int K, const std::vector<int32_t>& intended = {});

// argmax of each row of logits [N, K] (first maximum on ties).
std::vector<int32_t> argmax_rows(const float* logits, int64_t n, int K);

}  // namespace ddpm
