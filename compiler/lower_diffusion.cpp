// Lowering, the diffusion block (see lower_impl.h): discrete time (`steps`,
// `schedule`: the tables of diffusion.cpp) or continuous time (`time = continuous`
// with t_min, t_max, the sampling grid and sample_steps; the spec writes its
// schedule as expressions of t). Settings are compile-time numbers; each one is
// checked here and a bad one is a user error at its position.
#include <set>

#include <fmt/format.h>

#include "diffusion.h"
#include "lower_impl.h"

namespace ddpmc::lowering {

void Lowerer::lower_diffusion(const DiffusionDecl& d) {
  int T = 1000;
  std::string sched = "linear";
  std::vector<ScheduleArg> args;
  Loc sched_loc = d.loc;
  std::set<std::string> seen;
  Frame fr;
  stack_.push_back(&fr);
  // `time = continuous` first: it decides which settings the block takes.
  Diffusion cont;
  const Setting* time_setting = nullptr;
  Loc grid_loc = d.loc;
  for (auto& s : d.settings)
    if (s.key == "time") {
      time_setting = &s;
      const Expr& e = *s.value;
      if (e.kind != ExprKind::Name || (e.name != "continuous" && e.name != "discrete"))
        user_error(e.loc, "time must be `continuous` or `discrete`",
                   "write `time = continuous` for a real t in [t_min, t_max]; discrete (the default) has steps 1..T");
      cont.continuous = e.name == "continuous";
    }
  for (auto& s : d.settings) {
    if (!seen.insert(s.key).second)
      user_error(s.loc, fmt::format("setting '{}' is given twice", s.key), "keep one of the two settings");
    const bool for_continuous = s.key == "t_min" || s.key == "t_max" || s.key == "grid" || s.key == "sample_steps" ||
                                s.key == "prior_std";
    if (cont.continuous && (s.key == "steps" || s.key == "schedule"))
      user_error(s.loc, fmt::format("'{}' is a setting of discrete time, but this diffusion's time is continuous", s.key),
                 "a continuous-time spec writes its schedule as expressions of t (see `time = continuous` in "
                 "compiler/README.md); sampling steps are `sample_steps` or ddpm-sample --steps");
    if (!cont.continuous && for_continuous)
      user_error(s.loc, fmt::format("'{}' is a setting of continuous time", s.key),
                 "add `time = continuous` to the diffusion block, or use steps and schedule for discrete time");
    if (s.key == "time") continue;
    if (s.key == "t_min" || s.key == "t_max") {
      const double v = as_number(eval(*s.value), s.value->loc, s.key.c_str());
      if (!(v >= 0) || !(v <= 1e6))
        user_error(s.value->loc, fmt::format("{} = {} is out of range", s.key, v), "times are numbers in [0, 1e6]");
      (s.key == "t_min" ? cont.t_min : cont.t_max) = v;
    } else if (s.key == "prior_std") {
      const double v = as_number(eval(*s.value), s.value->loc, "prior_std");
      if (!(v > 0) || !(v <= 1e6))
        user_error(s.value->loc, fmt::format("prior_std = {} is out of range", v),
                   "the prior at t_max is N(0, prior_std^2 I): 1 for VP and flow models, sigma_max for EDM");
      cont.prior_std = v;
    } else if (s.key == "sample_steps") {
      const int64_t k = as_int(eval(*s.value), s.value->loc, "sample_steps");
      if (k < 1 || k > 100000)
        user_error(s.value->loc, fmt::format("sample_steps = {} is out of range", k), "use 1..100000, e.g. 50");
      cont.sample_steps = (int)k;
    } else if (s.key == "grid") {
      const Expr& e = *s.value;
      if ((e.kind != ExprKind::Name && e.kind != ExprKind::Call) ||
          (e.name != "uniform" && e.name != "quadratic" && e.name != "karras"))
        user_error(e.loc, "grid must be uniform, quadratic or karras(rho = 7)",
                   "the grid spaces the sampler's times between t_max and t_min");
      cont.grid = e.name;
      grid_loc = e.loc;
      if (e.kind == ExprKind::Call) {
        if (e.name != "karras" || e.args.size() != 1 || !(e.args[0].name.empty() || e.args[0].name == "rho"))
          user_error(e.loc, fmt::format("grid '{}' takes {}", e.name, e.name == "karras" ? "one argument, rho" : "no arguments"),
                     "write e.g. grid = karras(rho = 7) (Karras et al. 2022)");
        cont.rho = as_number(eval(*e.args[0].value), e.args[0].value->loc, "rho");
        if (!(cont.rho >= 1) || !(cont.rho <= 100))
          user_error(e.args[0].value->loc, fmt::format("rho = {} is out of range", cont.rho), "use 1..100; Karras et al. use 7");
      }
    } else if (s.key == "steps") {
      Value v = eval(*s.value);
      int64_t t = as_int(v, s.value->loc, "steps");
      if (t < 2 || t > 100000)
        user_error(s.value->loc,
                   fmt::format("steps = {} is out of range: a diffusion has between 2 and 100000 steps", t),
                   "Ho et al. use steps = 1000");
      T = (int)t;
    } else if (s.key == "schedule") {
      const Expr& e = *s.value;
      if (e.kind == ExprKind::Name) {
        sched = e.name;
      } else if (e.kind == ExprKind::Call) {
        sched = e.name;
        int pos = 0;
        for (auto& a : e.args) {
          std::string name = a.name;
          if (name.empty()) {
            for (auto& sp : schedule_specs())
              if (sp.name == sched && pos < (int)sp.params.size()) name = sp.params[pos].first;
            if (name.empty()) name = fmt::format("#{}", pos + 1);
            ++pos;
          }
          args.push_back({name, as_number(eval(*a.value), a.value->loc, "a schedule argument"), a.loc});
        }
      } else {
        user_error(e.loc, "bad schedule argument: expected a schedule such as linear(beta_min = 1e-4, beta_max = 0.02)",
                   "schedules: linear, quadratic, cosine, sigmoid");
      }
      sched_loc = e.loc;
    } else {
      user_error(s.loc, fmt::format("unknown diffusion setting '{}'", s.key),
                 cont.continuous ? "the settings of continuous time are: time, t_min, t_max, grid, sample_steps, prior_std"
                                 : "the settings are: steps, schedule (or time = continuous)");
    }
  }
  stack_.pop_back();
  if (cont.continuous) {
    if (!(cont.t_max > cont.t_min))
      user_error(time_setting->loc, fmt::format("t_max = {} must be above t_min = {}", cont.t_max, cont.t_min),
                 "the sampler runs from t_max down to t_min, then to 0");
    if (cont.grid == "karras" && cont.t_min <= 0)
      user_error(grid_loc, "the karras grid needs t_min > 0",
                 "Karras et al. use t_min = 0.002 and t_max = 80 (sigma)");
    cont.schedule = "continuous";
    m_.diffusion = std::move(cont);
    return;
  }
  m_.diffusion = make_diffusion(sched, T, args, sched_loc);
}

}  // namespace ddpmc::lowering
