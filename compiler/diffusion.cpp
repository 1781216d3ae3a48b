// Noise schedules (Ho et al. 2020; Nichol & Dhariwal 2021 for cosine).
// Index 0 of every table is the clean data: beta[0] = 0, abar[0] = 1.
#include "diffusion.h"

#include <cmath>

#include <fmt/format.h>

namespace ddpmc {

const std::vector<ScheduleSpec>& schedule_specs() {
  static const std::vector<ScheduleSpec> s = {
      {"linear", {{"beta_min", 1e-4}, {"beta_max", 0.02}}},
      {"quadratic", {{"beta_min", 1e-4}, {"beta_max", 0.02}}},
      {"cosine", {{"s", 0.008}, {"max_beta", 0.999}}},
      {"sigmoid", {{"beta_min", 1e-4}, {"beta_max", 0.02}, {"start", -6.0}, {"end", 6.0}}},
  };
  return s;
}

Diffusion make_diffusion(const std::string& name, int T, const std::vector<ScheduleArg>& args, const Loc& where) {
  const ScheduleSpec* spec = nullptr;
  std::string names;
  for (auto& s : schedule_specs()) {
    if (name == s.name) spec = &s;
    names += fmt::format("{}{}", names.empty() ? "" : ", ", s.name);
  }
  if (!spec) user_error(where, fmt::format("unknown schedule '{}'", name), fmt::format("use one of: {}", names));
  std::vector<double> v;
  std::vector<Loc> locs;
  for (auto& p : spec->params) {
    v.push_back(p.second);
    locs.push_back(where);
  }
  for (auto& a : args) {
    size_t i = 0;
    while (i < spec->params.size() && a.name != spec->params[i].first) ++i;
    if (i == spec->params.size()) {
      std::string ok;
      for (auto& p : spec->params) ok += fmt::format("{}{}", ok.empty() ? "" : ", ", p.first);
      user_error(a.loc, fmt::format("bad schedule argument: '{}' has no argument '{}'", name, a.name),
                 fmt::format("'{}' takes: {}", name, ok));
    }
    v[i] = a.value;
    locs[i] = a.loc;
  }
  auto check = [&](size_t i, bool ok, const char* need) {
    if (!ok)
      user_error(locs[i], fmt::format("bad schedule argument: {} = {} but it must be {}", spec->params[i].first, v[i], need),
                 name == "cosine" ? "typical values are s = 0.008, max_beta = 0.999 (Nichol & Dhariwal 2021)"
                                  : "typical values are beta_min = 1e-4, beta_max = 0.02 (Ho et al. 2020)");
  };
  Diffusion d;
  d.T = T;
  d.schedule = name;
  d.beta.assign(T + 1, 0.0);
  if (name == "cosine") {
    check(0, v[0] > 0 && v[0] < 1, "in (0, 1)");
    check(1, v[1] > 0 && v[1] < 1, "in (0, 1)");
    auto f = [&](double t) {
      double c = std::cos((t / T + v[0]) / (1 + v[0]) * M_PI / 2);
      return c * c;
    };
    for (int t = 1; t <= T; ++t) d.beta[t] = std::min(1 - f(t) / f(t - 1), v[1]);
  } else {
    check(0, v[0] > 0 && v[0] < 1, "in (0, 1)");
    check(1, v[1] > 0 && v[1] < 1, "in (0, 1)");
    check(1, v[1] >= v[0], fmt::format("at least beta_min = {}", v[0]).c_str());
    for (int t = 1; t <= T; ++t) {
      double u = T > 1 ? double(t - 1) / (T - 1) : 0.0;
      double w = name == "linear" ? u : name == "quadratic" ? u * u : 0;
      if (name == "sigmoid") {
        double z = v[2] + (v[3] - v[2]) * u;
        w = 1 / (1 + std::exp(-z));
      }
      d.beta[t] = v[0] + (v[1] - v[0]) * w;
    }
  }
  d.alpha.resize(T + 1);
  d.abar.resize(T + 1);
  d.abar_prev.resize(T + 1);
  d.beta_tilde.resize(T + 1);
  d.alpha[0] = 1;
  d.abar[0] = 1;
  d.abar_prev[0] = 1;
  d.beta_tilde[0] = 0;
  for (int t = 1; t <= T; ++t) {
    d.alpha[t] = 1 - d.beta[t];
    d.abar[t] = d.abar[t - 1] * d.alpha[t];
    d.abar_prev[t] = d.abar[t - 1];
    d.beta_tilde[t] = d.beta[t] * (1 - d.abar[t - 1]) / (1 - d.abar[t]);
  }
  return d;
}

}  // namespace ddpmc
