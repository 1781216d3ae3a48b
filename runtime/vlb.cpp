// The variational bound in bits/dim: per-element Gaussian KLs, the discretized
// decoder, and the loop over t that calls ε_θ once per step for a whole batch.
// See vlb.h for the terms, the conventions (Ho et al.'s reference code) and the
// randomness contract.
#include "vlb.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include "common/diag.h"
#include "philox.h"

namespace ddpm {

namespace {

// The Philox step that keys the offset of the strided sum (t keys are 1..T).
constexpr uint64_t kOffsetStep = 0xFFFFFFFDull;

// 1 − Φ(x), accurate in the upper tail.
double standard_normal_sf(double x) { return 0.5 * std::erfc(x / std::sqrt(2.0)); }

}  // namespace

double normal_kl(double mean1, double logvar1, double mean2, double logvar2) {
  const double d = mean1 - mean2;
  return 0.5 * (-1.0 + logvar2 - logvar1 + std::exp(logvar1 - logvar2) + d * d * std::exp(-logvar2));
}

double standard_normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

double discretized_gaussian_log_likelihood(double x, double mean, double log_scale) {
  constexpr double kHalfBin = 1.0 / 255.0, kFloor = 1e-12;
  const double inv_std = std::exp(-log_scale);
  const double plus_in = inv_std * (x - mean + kHalfBin);
  const double min_in = inv_std * (x - mean - kHalfBin);
  if (x < -0.999) return std::log(std::max(standard_normal_cdf(plus_in), kFloor));
  if (x > 0.999) return std::log(std::max(standard_normal_sf(min_in), kFloor));
  // Φ(plus) − Φ(min), taken from the side of the tail it lies in to keep digits.
  const double delta = min_in > 0 ? standard_normal_sf(min_in) - standard_normal_sf(plus_in)
                                  : standard_normal_cdf(plus_in) - standard_normal_cdf(min_in);
  return std::log(std::max(delta, kFloor));
}

double gaussian_log_density(double x, double mean, double log_var) {
  const double d = x - mean;
  return -0.5 * (std::log(2.0 * M_PI) + log_var + d * d * std::exp(-log_var));
}

VlbSchedule schedule_from_tables(int T, const float* beta, const float* alpha, const float* abar) {
  if (T < 2)
    ddpmc::user_error_noloc(fmt::format("the model has T = {} diffusion steps; the bound needs T >= 2", T),
                            "train a model with steps >= 2 in its diffusion block");
  VlbSchedule s;
  s.T = T;
  s.beta.assign(beta, beta + T + 1);
  s.alpha.assign(alpha, alpha + T + 1);
  s.abar.assign(abar, abar + T + 1);
  for (int t = 1; t <= T; ++t) {
    const bool ok = s.beta[t] > 0 && s.beta[t] < 1 && s.alpha[t] > 0 && s.alpha[t] < 1 && s.abar[t] >= 0 &&
                    s.abar[t] < 1 && s.abar[t] <= s.abar[t - 1];
    if (!ok)
      ddpmc::user_error_noloc(
          fmt::format("the model's schedule tables are invalid at t = {} (beta {}, alpha {}, abar {})", t,
                      s.beta[t], s.alpha[t], s.abar[t]),
          "the bound needs 0 < beta_t < 1 and a decreasing abar below 1; check the spec's diffusion block");
  }
  return s;
}

Posterior q_posterior(const VlbSchedule& s, int t) {
  auto at = [&](int k) {
    const double one_m = 1.0 - s.abar[k];
    return Posterior{std::sqrt(s.abar[k - 1]) * s.beta[k] / one_m,
                     std::sqrt(s.alpha[k]) * (1.0 - s.abar[k - 1]) / one_m,
                     s.beta[k] * (1.0 - s.abar[k - 1]) / one_m, 0.0};
  };
  Posterior p = at(t);
  p.log_var_clipped = std::log(t == 1 ? at(2).var : p.var);
  return p;
}

ModelStep p_step(const VlbSchedule& s, int t) {
  const double sqrt_alpha = std::sqrt(s.alpha[t]);
  return ModelStep{1.0 / sqrt_alpha, s.beta[t] / (std::sqrt(1.0 - s.abar[t]) * sqrt_alpha),
                   t == 1 ? std::log(q_posterior(s, 2).var) : std::log(s.beta[t])};
}

double prior_kl(const VlbSchedule& s, double x0) {
  const double abar = s.abar[s.T];
  return normal_kl(std::sqrt(abar) * x0, std::log(1.0 - abar), 0.0, 0.0);
}

TermSteps vlb_term_steps(int T, int steps, uint64_t seed, uint64_t key) {
  TermSteps r;
  const int n = T - 1;  // the terms t = 2..T
  if (steps <= 0 || steps >= n) {
    for (int t = T; t >= 2; --t) r.t.push_back(t);
    return r;
  }
  const int o = std::min(n - 1, (int)(philox_uniform(seed, kOffsetStep, kVlbNoiseStream, key) * n));
  for (int j = 0; j < steps; ++j) r.t.push_back(2 + (int)((o + (int64_t)j * n / steps) % n));
  std::sort(r.t.begin(), r.t.end(), std::greater<int>());
  r.weight = (double)n / steps;
  r.exact = false;
  return r;
}

VlbBatch vlb_bpd(const float* x0, int B, int64_t D, const VlbSchedule& s, const EpsFn& eps,
                 const VlbOptions& opt) {
  DDPM_CHECK(B >= 1 && D >= 1, fmt::format("batch {} x {}", B, D));
  const TermSteps ts = vlb_term_steps(s.T, opt.steps, opt.seed, (uint64_t)opt.first_index);
  std::vector<int> order = ts.t;
  order.push_back(1);

  VlbBatch r;
  r.total.assign(B, 0.0);
  r.prior.assign(B, 0.0);
  r.terms.assign(B, 0.0);
  r.decoder.assign(B, 0.0);
  std::vector<float> xt((size_t)(B * D)), e((size_t)(B * D)), frac(opt.eps_var ? (size_t)(B * D) : 0);
  const tbb::blocked_range<int> images(0, B, 1);

  tbb::parallel_for(images, [&](const tbb::blocked_range<int>& rg) {
    for (int i = rg.begin(); i < rg.end(); ++i) {
      double sum = 0;
      for (int64_t d = 0; d < D; ++d) sum += prior_kl(s, x0[i * D + d]);
      r.prior[i] = sum;
    }
  });

  for (size_t k = 0; k < order.size(); ++k) {
    const int t = order[k];
    const double a = std::sqrt(s.abar[t]), b = std::sqrt(1.0 - s.abar[t]);
    tbb::parallel_for(images, [&](const tbb::blocked_range<int>& rg) {
      for (int i = rg.begin(); i < rg.end(); ++i) {
        const uint64_t base = (uint64_t)((opt.first_index + i) * D);
        for (int64_t d = 0; d < D; ++d)
          xt[i * D + d] = (float)(a * x0[i * D + d] + b * philox_normal(opt.seed, (uint64_t)t, kVlbNoiseStream,
                                                                         base + (uint64_t)d));
      }
    });
    if (opt.eps_var)
      opt.eps_var(xt.data(), t, e.data(), frac.data());
    else
      eps(xt.data(), t, e.data());
    const Posterior q = q_posterior(s, t);
    const ModelStep p = p_step(s, t);
    const double log_beta = std::log(s.beta[t]);
    tbb::parallel_for(images, [&](const tbb::blocked_range<int>& rg) {
      for (int i = rg.begin(); i < rg.end(); ++i) {
        double sum = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double x = x0[i * D + d], y = xt[i * D + d];
          const double mean = p.coef_xt * y - p.coef_eps * e[i * D + d];
          const double f = opt.eps_var ? frac[i * D + d] : 0.0;
          const double log_var = opt.eps_var ? f * log_beta + (1 - f) * q.log_var_clipped : p.log_var;
          if (t == 1)
            sum -= opt.decoder == Decoder::Gaussian ? gaussian_log_density(x, mean, log_var)
                                                    : discretized_gaussian_log_likelihood(x, mean, 0.5 * log_var);
          else
            sum += normal_kl(q.coef_x0 * x + q.coef_xt * y, q.log_var_clipped, mean, log_var);
        }
        if (t == 1)
          r.decoder[i] = sum;
        else
          r.terms[i] += ts.weight * sum;
      }
    });
    if (opt.on_step) opt.on_step((int)k + 1, (int)order.size(), t);
  }

  const double to_bpd = 1.0 / ((double)D * (opt.decoder == Decoder::Gaussian ? 1.0 : std::log(2.0)));
  for (int i = 0; i < B; ++i) {
    r.prior[i] *= to_bpd;
    r.terms[i] *= to_bpd;
    r.decoder[i] *= to_bpd;
    r.total[i] = r.prior[i] + r.terms[i] + r.decoder[i];
  }
  return r;
}

}  // namespace ddpm
