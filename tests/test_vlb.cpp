// The variational bound math of runtime/vlb.h: hand-computed KLs and decoder
// likelihoods, posterior coefficients against the product-of-Gaussians forms, the
// prior term, and the whole bound with an oracle ε for a one-point data set
// (where every L_{t-1} reduces to a variance-mismatch KL known in closed form).
#include <doctest/doctest.h>

#include <cmath>
#include <set>
#include <vector>

#include "philox.h"
#include "vlb.h"

namespace {

// The linear schedule of Ho et al. as a module stores it: float tables of T + 1.
struct FloatTables {
  std::vector<float> beta, alpha, abar;
};

FloatTables linear_tables(int T, double beta_min = 1e-4, double beta_max = 0.02) {
  FloatTables f;
  f.beta.assign(T + 1, 0.0f);
  f.alpha.assign(T + 1, 1.0f);
  f.abar.assign(T + 1, 1.0f);
  double abar = 1;
  for (int t = 1; t <= T; ++t) {
    double b = beta_min + (beta_max - beta_min) * (t - 1) / (T - 1);
    abar *= 1 - b;
    f.beta[t] = (float)b;
    f.alpha[t] = (float)(1 - b);
    f.abar[t] = (float)abar;
  }
  return f;
}

ddpm::VlbSchedule linear_schedule(int T) {
  FloatTables f = linear_tables(T);
  return ddpm::schedule_from_tables(T, f.beta.data(), f.alpha.data(), f.abar.data());
}

// The same schedule computed in double, so that α = 1 − β and ᾱ_t = ᾱ_{t−1} α_t hold
// to rounding (the float tables are consistent only to ~1e-7, which is a relative
// error of ~1e-3 in 1 − ᾱ_1 = β_1 = 1e-4).
ddpm::VlbSchedule exact_linear_schedule(int T, double beta_min = 1e-4, double beta_max = 0.02) {
  ddpm::VlbSchedule s;
  s.T = T;
  s.beta.assign(T + 1, 0.0);
  s.alpha.assign(T + 1, 1.0);
  s.abar.assign(T + 1, 1.0);
  for (int t = 1; t <= T; ++t) {
    s.beta[t] = beta_min + (beta_max - beta_min) * (t - 1) / (T - 1);
    s.alpha[t] = 1 - s.beta[t];
    s.abar[t] = s.abar[t - 1] * s.alpha[t];
  }
  return s;
}

// L_{t-1} per element when μ_θ equals the posterior mean: only the variances
// differ, KL(N(·, β̃_t) || N(·, β_t)) = ½(−1 + log β_t − log β̃_t + β̃_t/β_t).
double variance_mismatch_kl(const ddpm::VlbSchedule& s, int t) {
  double bt = s.beta[t] * (1 - s.abar[t - 1]) / (1 - s.abar[t]);
  return 0.5 * (-1 + std::log(s.beta[t]) - std::log(bt) + bt / s.beta[t]);
}

}  // namespace

TEST_CASE("vlb: normal_kl against hand-computed values") {
  CHECK(ddpm::normal_kl(0, 0, 0, 0) == doctest::Approx(0.0));
  // ½(−1 + 0 − 0 + 1 + 1²·1) = 0.5
  CHECK(ddpm::normal_kl(1, 0, 0, 0) == doctest::Approx(0.5));
  // KL(N(0, 1) || N(0, 4)) = ½(−1 + log 4 + 1/4) = ½(−0.75 + 1.3862943611) = 0.3181471806
  CHECK(ddpm::normal_kl(0, 0, 0, std::log(4.0)) == doctest::Approx(0.3181471806).epsilon(1e-9));
  // KL(N(1, 1) || N(0, 4)) adds ½ · 1²/4 = 0.125: 0.4431471806
  CHECK(ddpm::normal_kl(1, 0, 0, std::log(4.0)) == doctest::Approx(0.4431471806).epsilon(1e-9));
  // KL(N(0, 4) || N(0, 1)) = ½(−1 + 0 − log 4 + 4) = ½(3 − 1.3862943611) = 0.8068528194 (not symmetric)
  CHECK(ddpm::normal_kl(0, std::log(4.0), 0, 0) == doctest::Approx(0.8068528194).epsilon(1e-9));
}

TEST_CASE("vlb: discretized Gaussian log-likelihood against hand-computed values") {
  using ddpm::discretized_gaussian_log_likelihood;
  const double h = 1.0 / 255.0;  // half a bin
  // Interior bin (x = 1/255 is level 128), mean on it, σ = 1e-4: the bin holds all the mass, log 1 = 0.
  CHECK(discretized_gaussian_log_likelihood(h, h, std::log(1e-4)) == doctest::Approx(0.0).epsilon(1e-12));
  // Interior bin far from the mean: mass ~1e-88, clamped at 1e-12 → log(1e-12) = −27.6310211159.
  CHECK(discretized_gaussian_log_likelihood(h, 0.9, std::log(0.01)) == doctest::Approx(-27.6310211159));
  // x = −1 with the mean far right (mean 1, σ = 0.1): Φ((−2 + 1/255)/0.1) ≈ 1e-88 → clamped, −27.631.
  CHECK(discretized_gaussian_log_likelihood(-1.0, 1.0, std::log(0.1)) == doctest::Approx(-27.6310211159));
  // x = −1 with the mean far left (mean −3): the bottom bin extends to −∞, so it holds all the mass.
  CHECK(discretized_gaussian_log_likelihood(-1.0, -3.0, std::log(0.1)) == doctest::Approx(0.0).epsilon(1e-12));
  // The same at the top: x = 1, mean 3 → 0; mean −1 → clamped.
  CHECK(discretized_gaussian_log_likelihood(1.0, 3.0, std::log(0.1)) == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(discretized_gaussian_log_likelihood(1.0, -1.0, std::log(0.1)) == doctest::Approx(-27.6310211159));
  // x = 0, mean 0, σ = 1/255: the bin is ±1σ, Φ(1) − Φ(−1) = 0.6826894921, log = −0.3817151463.
  CHECK(discretized_gaussian_log_likelihood(0.0, 0.0, std::log(h)) == doctest::Approx(-0.3817151463).epsilon(1e-9));
  // x = 1/255, mean 0, σ = 1/255: the bin is [0σ, 2σ], Φ(2) − ½ = 0.4772498681, log = −0.7397150929.
  CHECK(discretized_gaussian_log_likelihood(h, 0.0, std::log(h)) == doctest::Approx(-0.7397150929).epsilon(1e-9));
  // x = −1 with mean −1, σ = 1/255: Φ(1) = 0.8413447461, log = −0.1727537790 (not Φ(1) − Φ(−1)).
  CHECK(discretized_gaussian_log_likelihood(-1.0, -1.0, std::log(h)) == doctest::Approx(-0.1727537790).epsilon(1e-9));
  // The 256 bins of any Gaussian sum to probability 1.
  for (double mean : {-1.3, -0.2, 0.55, 1.01}) {
    double total = 0;
    for (int k = 0; k < 256; ++k)
      total += std::exp(discretized_gaussian_log_likelihood(2.0 * k / 255.0 - 1.0, mean, std::log(0.07)));
    CHECK(total == doctest::Approx(1.0).epsilon(1e-9));
  }
}

TEST_CASE("vlb: posterior and model-step coefficients match the closed forms") {
  // A two-step schedule by hand: β = (0.1, 0.2), α = (0.9, 0.8), ᾱ = (0.9, 0.72).
  const float beta[] = {0.0f, 0.1f, 0.2f}, alpha[] = {1.0f, 0.9f, 0.8f}, abar[] = {1.0f, 0.9f, 0.72f};
  ddpm::VlbSchedule s2 = ddpm::schedule_from_tables(2, beta, alpha, abar);
  ddpm::Posterior q = ddpm::q_posterior(s2, 2);
  // coef_x0 = √0.9 · 0.2 / 0.28 = 0.6776309271, coef_xt = √0.8 · 0.1 / 0.28 = 0.3194382825,
  // β̃_2 = 0.2 · 0.1 / 0.28 = 0.0714285714.
  CHECK(q.coef_x0 == doctest::Approx(0.6776309271).epsilon(1e-6));
  CHECK(q.coef_xt == doctest::Approx(0.3194382825).epsilon(1e-6));
  CHECK(q.var == doctest::Approx(0.0714285714).epsilon(1e-6));
  CHECK(q.log_var_clipped == doctest::Approx(std::log(0.0714285714)).epsilon(1e-6));
  // t = 1: x_0 is determined (β̃_1 = 0), the clipped log variance is log β̃_2.
  ddpm::Posterior q1 = ddpm::q_posterior(s2, 1);
  CHECK(q1.coef_x0 == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(q1.coef_xt == doctest::Approx(0.0));
  CHECK(q1.var == doctest::Approx(0.0));
  CHECK(q1.log_var_clipped == doctest::Approx(std::log(0.0714285714)).epsilon(1e-6));
  // Model step: 1/√α_2 = 1.1180339887, β_2/(√(1−ᾱ_2)√α_2) = 0.2/(√0.28 · √0.8) = 0.4225771274.
  ddpm::ModelStep p = ddpm::p_step(s2, 2);
  CHECK(p.coef_xt == doctest::Approx(1.1180339887).epsilon(1e-6));
  CHECK(p.coef_eps == doctest::Approx(0.4225771274).epsilon(1e-6));
  CHECK(p.log_var == doctest::Approx(std::log(0.2)).epsilon(1e-6));
  CHECK(ddpm::p_step(s2, 1).log_var == doctest::Approx(std::log(0.0714285714)).epsilon(1e-6));

  // On the linear schedule: the posterior as a product of Gaussians (precision
  // α_t/β_t + 1/(1−ᾱ_{t−1})), and ε-parameterised means equal to the posterior mean
  // when ε is the true noise of x_t given x_0.
  ddpm::VlbSchedule s = exact_linear_schedule(1000);
  for (int t : {2, 3, 10, 500, 999, 1000}) {
    CAPTURE(t);
    ddpm::Posterior qt = ddpm::q_posterior(s, t);
    double var = 1.0 / (s.alpha[t] / s.beta[t] + 1.0 / (1.0 - s.abar[t - 1]));
    CHECK(qt.var == doctest::Approx(var).epsilon(1e-9));
    CHECK(qt.coef_x0 == doctest::Approx(var * std::sqrt(s.abar[t - 1]) / (1.0 - s.abar[t - 1])).epsilon(1e-9));
    CHECK(qt.coef_xt == doctest::Approx(var * std::sqrt(s.alpha[t]) / s.beta[t]).epsilon(1e-9));
    CHECK(qt.log_var_clipped == doctest::Approx(std::log(var)).epsilon(1e-12));
    ddpm::ModelStep pt = ddpm::p_step(s, t);
    CHECK(pt.log_var == doctest::Approx(std::log(s.beta[t])).epsilon(1e-12));
    const double x0 = 0.37, noise = -1.2;
    const double xt = std::sqrt(s.abar[t]) * x0 + std::sqrt(1 - s.abar[t]) * noise;
    CHECK(pt.coef_xt * xt - pt.coef_eps * noise == doctest::Approx(qt.coef_x0 * x0 + qt.coef_xt * xt).epsilon(1e-9));
  }
}

TEST_CASE("vlb: prior term L_T for the linear schedule") {
  const int T = 1000;
  ddpm::VlbSchedule s = linear_schedule(T);
  // ᾱ_T = ∏(1 − β_t) ≈ 4.04e-5 for β linear from 1e-4 to 0.02.
  double abar = 1;
  for (int t = 1; t <= T; ++t) abar *= 1 - (1e-4 + (0.02 - 1e-4) * (t - 1) / (T - 1));
  CHECK(abar == doctest::Approx(4.04e-5).epsilon(0.01));
  // x0 = 0: KL(N(0, 1 − ᾱ_T) || N(0, 1)) = ½(−1 − log(1 − ᾱ_T) + 1 − ᾱ_T) ≈ ᾱ_T²/4 ≈ 4e-10.
  const double kl0 = 0.5 * (-1 - std::log(1 - abar) + 1 - abar);
  CHECK(ddpm::prior_kl(s, 0.0) == doctest::Approx(kl0).epsilon(1e-3));
  CHECK(ddpm::prior_kl(s, 0.0) == doctest::Approx(abar * abar / 4).epsilon(0.01));
  // x0 = 1 adds ½ ᾱ_T · 1² ≈ 2.0e-5.
  CHECK(ddpm::prior_kl(s, 1.0) == doctest::Approx(kl0 + 0.5 * abar).epsilon(1e-3));
  CHECK(ddpm::prior_kl(s, -1.0) == doctest::Approx(ddpm::prior_kl(s, 1.0)));
}

TEST_CASE("vlb: the bound with an oracle eps for a one-point data set") {
  const int T = 1000, B = 3, D = 8;
  ddpm::VlbSchedule s = linear_schedule(T);
  // Every image is the same grid point c (level 100 of 256).
  const double c = 2.0 * 100 / 255 - 1;
  std::vector<float> x0(B * D, (float)c);
  // For data that is the single point c, the optimal predictor is
  // ε*(x_t, t) = (x_t − √ᾱ_t c)/√(1−ᾱ_t): the posterior mean given x_t is exact.
  ddpm::EpsFn oracle = [&](const float* xt, int t, float* e) {
    for (int k = 0; k < B * D; ++k) e[k] = (float)((xt[k] - std::sqrt(s.abar[t]) * c) / std::sqrt(1 - s.abar[t]));
  };
  ddpm::EpsFn zeros = [&](const float*, int, float* e) { std::fill(e, e + B * D, 0.0f); };
  int calls = 0;
  ddpm::VlbOptions opt;
  opt.on_step = [&](int done, int total, int) {
    ++calls;
    CHECK(done == calls);
    CHECK(total == T);
  };
  ddpm::VlbBatch r = ddpm::vlb_bpd(x0.data(), B, D, s, oracle, opt);
  CHECK(calls == T);
  REQUIRE(r.total.size() == B);

  // Σ_{t≥2} L_{t-1} is only the variance mismatch β̃_t vs β_t, the same for every element.
  double terms = 0;
  for (int t = 2; t <= T; ++t) terms += variance_mismatch_kl(s, t);
  terms /= std::log(2.0);
  // L_0: the decoder is centred on c with σ² = β̃_2, so −log(Φ(h/σ) − Φ(−h/σ)), h = 1/255.
  const double sigma = std::sqrt(s.beta[2] * (1 - s.abar[1]) / (1 - s.abar[2]));
  const double h = 1.0 / 255 / sigma;
  const double decoder = -std::log(ddpm::standard_normal_cdf(h) - ddpm::standard_normal_cdf(-h)) / std::log(2.0);
  const double prior = ddpm::prior_kl(s, c) / std::log(2.0);
  for (int i = 0; i < B; ++i) {
    CAPTURE(i);
    CHECK(std::isfinite(r.total[i]));
    CHECK(r.terms[i] == doctest::Approx(terms).epsilon(1e-5));
    CHECK(r.decoder[i] == doctest::Approx(decoder).epsilon(1e-4));
    CHECK(r.prior[i] == doctest::Approx(prior).epsilon(1e-9));
    CHECK(r.total[i] == doctest::Approx(r.prior[i] + r.terms[i] + r.decoder[i]));
  }
  // The variance-mismatch sum is small (0.486 bits/dim for this schedule, most of
  // it from t ≤ 10 where β̃_t is well below β_t).
  CHECK(terms > 0.4);
  CHECK(terms < 0.5);

  // A predictor that ignores x_t pays for the mean mismatch at every t
  // (about ½ β_t ε² nats per element at large t, ~14 bits/dim in all).
  ddpm::VlbBatch z = ddpm::vlb_bpd(x0.data(), B, D, s, zeros, ddpm::VlbOptions{});
  for (int i = 0; i < B; ++i) {
    CHECK(std::isfinite(z.total[i]));
    CHECK(z.terms[i] > 20 * r.terms[i]);
    CHECK(z.total[i] > 5 * r.total[i]);
  }
}

TEST_CASE("vlb: a learned variance: beta_tilde (frac 0) with the oracle eps leaves no L_t-1, beta_t (frac 1) is the fixed bound") {
  const int T = 1000, B = 3, D = 8;
  ddpm::VlbSchedule s = linear_schedule(T);
  const double c = 2.0 * 100 / 255 - 1;
  std::vector<float> x0(B * D, (float)c);
  auto oracle = [&](const float* xt, int t, float* e) {
    for (int k = 0; k < B * D; ++k) e[k] = (float)((xt[k] - std::sqrt(s.abar[t]) * c) / std::sqrt(1 - s.abar[t]));
  };
  ddpm::VlbBatch fixed = ddpm::vlb_bpd(x0.data(), B, D, s, oracle, ddpm::VlbOptions{});
  auto learned = [&](float frac) {
    ddpm::VlbOptions opt;
    opt.eps_var = [&, frac](const float* xt, int t, float* e, float* f) {
      oracle(xt, t, e);
      std::fill(f, f + B * D, frac);
    };
    return ddpm::vlb_bpd(x0.data(), B, D, s, nullptr, opt);
  };
  const ddpm::VlbBatch small = learned(0.0f), large = learned(1.0f);
  // L_0 with frac 1: the decoder's variance is beta_1 (the fixed bound's is beta_tilde_2).
  const double sigma = std::sqrt(s.beta[1]), h = 1.0 / 255 / sigma;
  const double decoder = -std::log(ddpm::standard_normal_cdf(h) - ddpm::standard_normal_cdf(-h)) / std::log(2.0);
  for (int i = 0; i < B; ++i) {
    CAPTURE(i);
    // q's and p's variances are equal and the oracle's mean is exact up to its float
    // rounding: every KL vanishes (2.7e-5 bits/dim left against 0.49 fixed).
    CHECK(std::abs(small.terms[i]) < 1e-4 * fixed.terms[i]);
    CHECK(small.decoder[i] == doctest::Approx(fixed.decoder[i]).epsilon(1e-9));  // both beta_tilde_2
    CHECK(large.terms[i] == doctest::Approx(fixed.terms[i]).epsilon(1e-9));
    CHECK(large.decoder[i] == doctest::Approx(decoder).epsilon(1e-4));
    CHECK(large.prior[i] == fixed.prior[i]);
  }
}

TEST_CASE("vlb: the estimate is a pure function of (seed, global image index)") {
  const int T = 200, B = 4, D = 5;
  ddpm::VlbSchedule s = linear_schedule(T);
  std::vector<float> x0(B * D);
  for (int k = 0; k < B * D; ++k) x0[k] = (float)(2.0 * ((37 * k) % 256) / 255 - 1);
  // A predictor whose error depends on the noise draw, so the result depends on the seed.
  auto half = [&](int b) {
    return ddpm::EpsFn([&s, b, &x0](const float* xt, int t, float* e) {
      for (int k = 0; k < b * D; ++k) e[k] = (float)(0.5 * (xt[k] - std::sqrt(s.abar[t]) * x0[k]) / std::sqrt(1 - s.abar[t]));
    });
  };
  ddpm::VlbOptions opt;
  opt.seed = 7;
  ddpm::VlbBatch a = ddpm::vlb_bpd(x0.data(), B, D, s, half(B), opt);
  ddpm::VlbBatch b = ddpm::vlb_bpd(x0.data(), B, D, s, half(B), opt);
  CHECK(a.total == b.total);
  CHECK(a.terms == b.terms);
  CHECK(a.decoder == b.decoder);
  opt.seed = 8;
  ddpm::VlbBatch c = ddpm::vlb_bpd(x0.data(), B, D, s, half(B), opt);
  CHECK(c.total != a.total);
  // Image 2 alone, keyed by its global index, gives the same figures as inside the batch.
  opt.seed = 7;
  opt.first_index = 2;
  std::vector<float> one(x0.begin() + 2 * D, x0.begin() + 3 * D);
  auto half_one = ddpm::EpsFn([&](const float* xt, int t, float* e) {
    for (int k = 0; k < D; ++k) e[k] = (float)(0.5 * (xt[k] - std::sqrt(s.abar[t]) * one[k]) / std::sqrt(1 - s.abar[t]));
  });
  ddpm::VlbBatch d = ddpm::vlb_bpd(one.data(), 1, D, s, half_one, opt);
  CHECK(d.total[0] == a.total[2]);
  CHECK(d.terms[0] == a.terms[2]);
}

TEST_CASE("vlb: strided steps are an unbiased estimate of the sum over t") {
  const int T = 1000;
  ddpm::VlbSchedule s = linear_schedule(T);
  ddpm::TermSteps full = ddpm::vlb_term_steps(T, 0, 0);
  CHECK(full.exact);
  CHECK(full.t.size() == (size_t)(T - 1));
  CHECK(full.t.front() == T);
  CHECK(full.t.back() == 2);
  CHECK(ddpm::vlb_term_steps(T, T - 1, 3).exact);

  const int K = 37;  // does not divide T − 1 = 999
  double exact = 0;
  for (int t = 2; t <= T; ++t) exact += variance_mismatch_kl(s, t);
  double mean = 0;
  std::vector<int> hits(T + 1, 0);
  const int seeds = 2000;
  for (int seed = 0; seed < seeds; ++seed) {
    ddpm::TermSteps st = ddpm::vlb_term_steps(T, K, (uint64_t)seed);
    REQUIRE(st.t.size() == (size_t)K);
    CHECK_FALSE(st.exact);
    CHECK(st.weight == doctest::Approx(999.0 / K));
    CHECK(std::set<int>(st.t.begin(), st.t.end()).size() == (size_t)K);
    CHECK(std::is_sorted(st.t.rbegin(), st.t.rend()));
    double est = 0;
    for (int t : st.t) {
      REQUIRE(t >= 2);
      REQUIRE(t <= T);
      est += st.weight * variance_mismatch_kl(s, t);
      ++hits[t];
    }
    mean += est / seeds;
  }
  // Each t is picked with probability K/(T−1): 2000 · 37/999 ≈ 74 times on average.
  int lo = seeds, hi = 0;
  for (int t = 2; t <= T; ++t) lo = std::min(lo, hits[t]), hi = std::max(hi, hits[t]);
  CHECK(lo > 30);
  CHECK(hi < 130);
  CHECK(mean == doctest::Approx(exact).epsilon(0.05));
}

namespace {

// The expected bound per element in nats, for data value x0 under the continuous
// Gaussian decoder, when ε(x_t, t) = c_t x_t: every term's mean difference is
// linear in (x0, z), so E_z of each KL is closed form. Written from the textbook
// formulas of q(x_{t-1} | x_t, x_0) and p_θ, independently of vlb.cpp's helpers.
double expected_gaussian_bound(const ddpm::VlbSchedule& s, double x0, const std::vector<double>& c) {
  auto tilde = [&](int t) { return s.beta[t] * (1 - s.abar[t - 1]) / (1 - s.abar[t]); };
  const int T = s.T;
  const double aT = s.abar[T];
  double L = 0.5 * (-1 - std::log(1 - aT) + (1 - aT) + aT * x0 * x0);  // KL(N(√ᾱ x0, 1−ᾱ) || N(0, 1))
  for (int t = 1; t <= T; ++t) {
    const double sa = std::sqrt(s.abar[t]), sn = std::sqrt(1 - s.abar[t]);
    // μ_θ = k x_t with k = (1 − β_t c_t / √(1−ᾱ_t)) / √α_t.
    const double k = (1 - s.beta[t] * c[t] / sn) / std::sqrt(s.alpha[t]);
    if (t == 1) {
      const double var = tilde(2);
      const double e2 = (1 - k * sa) * (1 - k * sa) * x0 * x0 + k * k * (1 - s.abar[1]);
      L += 0.5 * (std::log(2 * M_PI) + std::log(var) + e2 / var);
    } else {
      const double a0 = std::sqrt(s.abar[t - 1]) * s.beta[t] / (1 - s.abar[t]);
      const double a1 = std::sqrt(s.alpha[t]) * (1 - s.abar[t - 1]) / (1 - s.abar[t]);
      const double A = a0 + (a1 - k) * sa, Bz = (a1 - k) * sn;
      const double v1 = tilde(t), v2 = s.beta[t];
      L += 0.5 * (-1 + std::log(v2 / v1) + v1 / v2 + (A * A * x0 * x0 + Bz * Bz) / v2);
    }
  }
  return L;
}

}  // namespace

TEST_CASE("vlb: the continuous Gaussian decoder's bound matches its closed-form expectation, in nats") {
  // Data N(0, σ²) per element and its optimal linear predictor
  // ε*(x_t, t) = √(1−ᾱ_t) x_t / (ᾱ_t σ² + 1 − ᾱ_t).
  const int T = 100, B = 32, D = 2000;
  const double sigma = 0.5;
  ddpm::VlbSchedule s = exact_linear_schedule(T, 1e-4, 0.2);
  std::vector<double> c(T + 1, 0.0);
  for (int t = 1; t <= T; ++t) c[t] = std::sqrt(1 - s.abar[t]) / (s.abar[t] * sigma * sigma + 1 - s.abar[t]);
  std::vector<float> x0(B * D);
  for (int k = 0; k < B * D; ++k) x0[k] = (float)(sigma * ddpm::philox_normal(11, 0, 7, (uint64_t)k));
  ddpm::EpsFn linear = [&](const float* xt, int t, float* e) {
    for (int k = 0; k < B * D; ++k) e[k] = (float)(c[t] * xt[k]);
  };
  ddpm::VlbOptions opt;
  opt.decoder = ddpm::Decoder::Gaussian;
  ddpm::VlbBatch r = ddpm::vlb_bpd(x0.data(), B, D, s, linear, opt);
  double mc = 0, mc2 = 0, want = 0;
  for (int i = 0; i < B; ++i) {
    double e = 0;
    for (int d = 0; d < D; ++d) e += expected_gaussian_bound(s, x0[i * D + d], c);
    e /= D;
    CAPTURE(i);
    CHECK(std::isfinite(r.total[i]));
    CHECK(r.total[i] == doctest::Approx(r.prior[i] + r.terms[i] + r.decoder[i]));
    mc += r.total[i] - e;
    mc2 += (r.total[i] - e) * (r.total[i] - e);
    want += e;
  }
  mc /= B;
  want /= B;
  const double se = std::sqrt(mc2 / B / B);
  MESSAGE("Monte Carlo minus closed form: ", mc, " (se of the images ", se, "), bound ", want, " nats/dim");
  // The estimate's noise is a few 1e-3 nats here; its mean must match the closed form.
  CHECK(std::fabs(mc) < 5 * se + 1e-3);
  // A bound on the negative log-likelihood: above the true −E log N(x; 0, σ²) per element.
  const double nll = 0.5 * std::log(2 * M_PI * M_E * sigma * sigma);
  CHECK(want > nll);
  CHECK(want < nll + 0.2);
  // In nats, not bits: the discretized decoder's result carries the 1/ln 2.
  ddpm::VlbBatch bits = ddpm::vlb_bpd(x0.data(), B, D, s, linear, ddpm::VlbOptions{});
  CHECK(bits.prior[0] == doctest::Approx(r.prior[0] / std::log(2.0)).epsilon(1e-9));
}
