// The likelihood by the probability-flow ODE (see ode_nll.h): Dormand-Prince 5(4)
// over the state (x, delta) of a batch, with Hutchinson's or the exact divergence.
#include "ode_nll.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/diag.h"
#include "philox.h"

namespace ddpm {

namespace {

// Dormand and Prince (1980), the tableau scipy's RK45 uses; the seventh stage is the
// derivative at the new point (first same as last).
constexpr double kC[7] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1, 1};
constexpr double kA[7][6] = {
    {0, 0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656, 0},
    {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
// The fifth-order weights are kA[6]; the error is h * sum(kE[i] k_i) (fifth minus fourth order).
constexpr double kE[7] = {-71.0 / 57600, 0, 71.0 / 16695, -71.0 / 1920, 17253.0 / 339200, -22.0 / 525, 1.0 / 40};

// The right-hand side: d/dt of (x [B*D], delta [B]) = (f, div f).
class Rhs {
 public:
  Rhs(int B, int64_t D, const OdeVjpFn& vjp, const OdeNllOptions& opt, OdeNllBatch& out)
      : B_(B), D_(D), vjp_(vjp), opt_(opt), out_(out), x_((size_t)B * D), u_((size_t)B * D), f_((size_t)B * D),
        v_((size_t)B * D) {
    if (opt.trace == OdeTrace::Hutchinson)
      for (int64_t i = 0; i < (int64_t)B * D; ++i)
        probe_.push_back(philox_uniform(opt.seed, 0, kOdeProbeStream, (uint64_t)(opt.first_index * D + i)) < 0.5 ? -1.0f
                                                                                                                : 1.0f);
  }

  void operator()(double t, const std::vector<double>& y, std::vector<double>& dy) {
    const int64_t n = (int64_t)B_ * D_;
    for (int64_t i = 0; i < n; ++i) x_[i] = (float)y[i];
    ++out_.drift_evals;
    if (opt_.trace == OdeTrace::Hutchinson) {
      vjp_(x_.data(), t, probe_.data(), f_.data(), v_.data());
      ++out_.vjp_calls;
      for (int b = 0; b < B_; ++b) {
        double div = 0;
        for (int64_t j = 0; j < D_; ++j) div += (double)probe_[b * D_ + j] * v_[b * D_ + j];
        dy[n + b] = div;
      }
    } else {
      for (int b = 0; b < B_; ++b) dy[n + b] = 0;
      for (int64_t j = 0; j < D_; ++j) {
        std::fill(u_.begin(), u_.end(), 0.0f);
        for (int b = 0; b < B_; ++b) u_[b * D_ + j] = 1;
        vjp_(x_.data(), t, u_.data(), f_.data(), v_.data());
        ++out_.vjp_calls;
        for (int b = 0; b < B_; ++b) dy[n + b] += v_[b * D_ + j];
      }
    }
    for (int64_t i = 0; i < n; ++i) dy[i] = f_[i];
    for (size_t i = 0; i < dy.size(); ++i)
      if (!std::isfinite(dy[i]))
        ddpmc::user_error_noloc(fmt::format("the ode's drift is not finite at t = {:g} (sample {} of the batch)", t,
                                            (int64_t)i < n ? i / D_ : i - n),
                                "the model may have diverged; evaluate an earlier checkpoint, or raise t_min");
  }

 private:
  int B_;
  int64_t D_;
  const OdeVjpFn& vjp_;
  const OdeNllOptions& opt_;
  OdeNllBatch& out_;
  std::vector<float> x_, u_, f_, v_, probe_;
};

double rms(const std::vector<double>& v) {
  double s = 0;
  for (double a : v) s += a * a;
  return std::sqrt(s / (double)v.size());
}

}  // namespace

OdeNllBatch ode_nll(const float* x, int B, int64_t D, const OdeVjpFn& vjp, const OdeNllOptions& opt) {
  DDPM_CHECK(B >= 1 && D >= 1 && opt.t1 > opt.t0 && opt.rtol > 0 && opt.atol > 0, "ode_nll: bad arguments");
  OdeNllBatch out;
  const int64_t n = (int64_t)B * D, N = n + B;
  Rhs rhs(B, D, vjp, opt, out);
  std::vector<double> y((size_t)N, 0.0), ynew((size_t)N), tmp((size_t)N), err((size_t)N), scale((size_t)N);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i];
  std::vector<std::vector<double>> k(7, std::vector<double>((size_t)N));
  double t = opt.t0;
  rhs(t, y, k[0]);

  // The first step (Hairer, Norsett and Wanner, as scipy's select_initial_step).
  double h;
  {
    for (int64_t i = 0; i < N; ++i) scale[i] = opt.atol + std::abs(y[i]) * opt.rtol;
    for (int64_t i = 0; i < N; ++i) tmp[i] = y[i] / scale[i], err[i] = k[0][i] / scale[i];
    const double d0 = rms(tmp), d1 = rms(err);
    const double h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
    for (int64_t i = 0; i < N; ++i) tmp[i] = y[i] + h0 * k[0][i];
    rhs(t + h0, tmp, k[1]);
    for (int64_t i = 0; i < N; ++i) err[i] = (k[1][i] - k[0][i]) / scale[i];
    const double d2 = rms(err) / h0;
    const double h1 = d1 <= 1e-15 && d2 <= 1e-15 ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / std::max(d1, d2), 0.2);
    h = std::min({100 * h0, h1, opt.t1 - opt.t0});
  }

  while (t < opt.t1) {
    if (out.accepted + out.rejected >= opt.max_steps)
      ddpmc::user_error_noloc(fmt::format("the ODE solver took {} steps without reaching t = {:g} (at t = {:g}, step {:.3g})",
                                          opt.max_steps, opt.t1, t, h),
                              "the drift may be stiff or diverge; loosen --rtol/--atol or check the model");
    h = std::min(h, opt.t1 - t);
    for (int s = 1; s < 6; ++s) {
      for (int64_t i = 0; i < N; ++i) {
        double a = 0;
        for (int j = 0; j < s; ++j) a += kA[s][j] * k[j][i];
        tmp[i] = y[i] + h * a;
      }
      rhs(t + kC[s] * h, tmp, k[s]);
    }
    for (int64_t i = 0; i < N; ++i) {
      double a = 0;
      for (int j = 0; j < 6; ++j) a += kA[6][j] * k[j][i];
      ynew[i] = y[i] + h * a;
    }
    rhs(t + h, ynew, k[6]);
    for (int64_t i = 0; i < N; ++i) {
      double e = 0;
      for (int j = 0; j < 7; ++j) e += kE[j] * k[j][i];
      err[i] = h * e / (opt.atol + std::max(std::abs(y[i]), std::abs(ynew[i])) * opt.rtol);
    }
    const double en = rms(err);
    if (en <= 1) {
      t = opt.t1 - t <= h ? opt.t1 : t + h;
      y.swap(ynew);
      k[0].swap(k[6]);
      ++out.accepted;
      if (opt.on_step) opt.on_step(t, out.accepted);
      h *= en == 0 ? 10 : std::min(10.0, 0.9 * std::pow(en, -0.2));
    } else {
      ++out.rejected;
      h *= std::max(0.2, 0.9 * std::pow(en, -0.2));
    }
  }

  const double s2 = opt.prior_std * opt.prior_std;
  for (int b = 0; b < B; ++b) {
    double q = 0;
    for (int64_t j = 0; j < D; ++j) q += y[b * D + j] * y[b * D + j];
    const double prior = 0.5 * (double)D * std::log(2 * M_PI * s2) + 0.5 * q / s2;
    out.prior_nll.push_back(prior);
    out.delta.push_back(y[n + b]);
    out.nll.push_back(prior - y[n + b]);
  }
  return out;
}

}  // namespace ddpm
