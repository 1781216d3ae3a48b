// The shipped evaluator (models/fmnist_classifier.ddpm with its trained weights
// models/fmnist_classifier.safetensors) on real Fashion-MNIST images: its test accuracy,
// the FID sanity order (test set < blurred < noised < pure noise, each against the
// training set's reference statistics), determinism of FID for a fixed seed and any
// thread count, and class accuracy of the test images with their true labels as the
// intended classes, which must equal the evaluator's test accuracy. These are the
// figures of the README's table ("Sample quality").
//
// Dimension legend: N images, D = 784 values per image, F features, K = 10 classes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "runtime/data_source.h"
#include "runtime/quality.h"
#include "test_runs.h"
#include "tools/eval_ref.h"

namespace fs = std::filesystem;

namespace {

constexpr int kSide = 28;
constexpr int64_t kD = kSide * kSide;

std::string cache() { return std::string(DDPM_TEST_CACHE); }

std::string train_file() { return ddpm_tools::train_file_of("fashion-mnist"); }

// Each image blurred by a Gaussian of sigma 1 px (radius 2, separable, edges clamped).
std::vector<float> blurred(const std::vector<float>& x, int64_t n) {
  float k[5];
  float sum = 0;
  for (int i = -2; i <= 2; ++i) sum += k[i + 2] = std::exp(-0.5f * (float)(i * i));
  for (float& v : k) v /= sum;
  std::vector<float> tmp(x.size()), out(x.size());
  auto at = [](int i) { return std::clamp(i, 0, kSide - 1); };
  for (int64_t m = 0; m < n; ++m) {
    const float* a = x.data() + m * kD;
    float* t = tmp.data() + m * kD;
    float* o = out.data() + m * kD;
    for (int r = 0; r < kSide; ++r)
      for (int c = 0; c < kSide; ++c) {
        float s = 0;
        for (int i = -2; i <= 2; ++i) s += k[i + 2] * a[r * kSide + at(c + i)];
        t[r * kSide + c] = s;
      }
    for (int r = 0; r < kSide; ++r)
      for (int c = 0; c < kSide; ++c) {
        float s = 0;
        for (int i = -2; i <= 2; ++i) s += k[i + 2] * t[at(r + i) * kSide + c];
        o[r * kSide + c] = s;
      }
  }
  return out;
}

// x plus N(0, sigma^2) noise, clipped to [-1, 1].
std::vector<float> noised(const std::vector<float>& x, float sigma, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0, sigma);
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = std::clamp(x[i] + g(rng), -1.0f, 1.0f);
  return out;
}

// Images of U(-1, 1) pixels.
std::vector<float> pure_noise(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> out((size_t)(n * kD));
  for (float& v : out) v = u(rng);
  return out;
}

}  // namespace

TEST_CASE("fid sanity: the shipped evaluator is 91% accurate on t10k, and FID orders test, blurred, noised and noise") {
  ddpm_tools::EvaluatorRequest req;
  req.cache_dir = cache();
  const ddpm::Evaluator ev = ddpm_tools::load_evaluator(req);
  REQUIRE(ev.classes() == 10);
  const std::string test_path = ddpm_tools::test_file_of(train_file());
  REQUIRE(!test_path.empty());
  const ddpm_tools::ImageSet test = ddpm_tools::read_image_set(test_path, kD, 0, 10);
  REQUIRE(test.n == 10000);

  double seconds = 0;
  const ddpm::FeatureStats ref = ddpm_tools::reference_stats(ev, train_file(), cache(), 2, &seconds);
  REQUIRE(ref.n == 60000);

  // Accuracy on the whole test set, and the same number as class accuracy with the true
  // labels as the intended classes.
  const ddpm::ImageQuality real = ddpm::image_quality(ev, ref, test.x.data(), test.n, 2);
  const ddpm::ClassReport rep = ddpm::class_report(real.logits.data(), test.n, 10, test.labels);
  int64_t right = 0;
  const std::vector<int32_t> pred = ddpm::argmax_rows(real.logits.data(), test.n, 10);
  for (int64_t i = 0; i < test.n; ++i) right += pred[(size_t)i] == test.labels[(size_t)i];
  MESSAGE("evaluator test accuracy " << 100.0 * (double)right / (double)test.n << "%");
  CHECK(right >= 9100);
  CHECK(rep.correct_all == right);
  CHECK(rep.accuracy() == (double)right / (double)test.n);

  // The sanity order, each by a clear margin, on the same 10,000 images (noise of sigma 0.4 on
  // the [-1, 1] scale: 0.2 of the pixel range).
  const double fid_test = real.fid;
  const double fid_blur = ddpm::fid_of_samples(ev, ref, blurred(test.x, test.n).data(), test.n, 2);
  const double fid_noise = ddpm::fid_of_samples(ev, ref, noised(test.x, 0.4f, 7).data(), test.n, 2);
  // The floor at ddpm-eval --quality's default of 1,000 samples (FID is biased upwards at small N).
  MESSAGE("FID vs train: the first 1000 test images " << ddpm::fid_of_samples(ev, ref, test.x.data(), 1000, 2));
  for (float sigma : {0.1f, 0.2f})  // the README's table: milder noise
    MESSAGE("FID vs train: noised (sigma " << sigma << ") "
                                           << ddpm::fid_of_samples(ev, ref, noised(test.x, sigma, 7).data(), test.n, 2));
  const double fid_pure = ddpm::fid_of_samples(ev, ref, pure_noise(test.n, 7).data(), test.n, 2);
  MESSAGE("FID vs train: test " << fid_test << ", blurred 1 px " << fid_blur << ", noised (sigma 0.4) " << fid_noise
                                << ", pure noise " << fid_pure);
  CHECK(fid_test >= 0);
  CHECK(10 * fid_test < fid_blur);
  CHECK(1.5 * fid_blur < fid_noise);
  CHECK(4 * fid_noise < fid_pure);

  // The same seed gives the same FID to the last digit, with 1 or 2 threads.
  const std::vector<float> again = noised(test.x, 0.4f, 7);
  CHECK(ddpm::fid_of_samples(ev, ref, again.data(), test.n, 1) == fid_noise);
  CHECK(ddpm::fid_of_samples(ev, ref, again.data(), test.n, 2) == fid_noise);
}
