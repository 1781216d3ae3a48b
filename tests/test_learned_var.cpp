// Learned reverse variance (models/moons_learned_var.ddpm, Nichol & Dhariwal 2021):
// the hybrid loss (slice of a two-part output, stop_gradient on the mean, the bound's
// KL and decoder terms) and the three samplers against the interpreter at strided
// steps, the noise predictor's eps and frac (ABI 7 eps_eval_var, which ddpm-eval's
// bound uses), and training that brings the 50-step samples near the data.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "march_env.h"
#include "test_interp_checks.h"
#include "test_runs.h"

using namespace ddpm_test;

namespace {

struct LearnedVar {
  ddpmc::Compiled c = ddpmc::compile_spec_file(source_path("models/moons_learned_var.ddpm"));
  ddpm::Module mod{ddpmc::build_module(source_path("models/moons_learned_var.ddpm"), test_build_options()).so_path};
  std::vector<float> params = random_params(mod.get(), 300);
};

}  // namespace

TEST_CASE("learned variance: the hybrid loss and every gradient match the interpreter") {
  LearnedVar f;
  const int B = 37;
  auto x = uniform_floats(B * 2, -2, 2, 7);
  check_train_step(f.c, f.mod, f.params, B, x, 11, 5);
  // The last layer's variance half gets gradient only from the bound's term, its eps
  // half only from L_simple: both are nonzero.
  ddpm::AlignedBuffer arena(f.mod->arena_bytes(0, B));
  std::vector<float> grads(f.mod->param_floats, 0.0f);
  float loss = 0;
  REQUIRE(f.mod->train_step(arena.data(), B, f.params.data(), x.data(), 11, 5, grads.data(), &loss) == 0);
  const auto& last = f.c.model.params[6];  // eps_theta/linear.3/w [128, 4]
  REQUIRE(last.type.dims == std::vector<int64_t>{128, 4});
  double g_eps = 0, g_var = 0;
  for (int64_t r = 0; r < 128; ++r) {
    g_eps += std::abs(grads[last.offset + r * 4 + 0]) + std::abs(grads[last.offset + r * 4 + 1]);
    g_var += std::abs(grads[last.offset + r * 4 + 2]) + std::abs(grads[last.offset + r * 4 + 3]);
  }
  CHECK(g_eps > 0);
  CHECK(g_var > 0);
}

TEST_CASE("learned variance: the learned and fixed-variance sampler steps match the interpreter at strides") {
  LearnedVar f;
  const int B = 21;
  auto x = uniform_floats(B * 2, -2, 2, 8);
  for (int si = 0; si < f.mod->n_samplers; ++si)
    for (auto [t, s] : {std::pair{1000, 980}, {500, 480}, {20, 0}}) {
      ddpm::AlignedBuffer arena(f.mod->arena_bytes(1 + si, B));
      std::vector<float> out(B * 2);
      const int flags = s == 0 ? DDPM_STEP_LAST : 0;
      REQUIRE(f.mod->sampler_step4(si, arena.data(), B, f.params.data(), x.data(), t, s, 3, 9, out.data(), 0, nullptr,
                                   nullptr, nullptr, flags) == 0);
      ddpmc::InterpEnv e = sampler_env(f.params, x, B, t, s, 3, 9);
      add_sampler_inputs(e, f.mod.get(), si, false, s == 0);
      INFO("sampler " << std::string(f.mod->sampler_names[si]) << " t=" << t << " s=" << s);
      auto ref = ddpmc::interpret(f.c.samplers[si].second, f.c.model, e);
      for (float v : out) REQUIRE(std::isfinite(v));
      CHECK(rel_error(out.data(), ref[0].data(), out.size()) <= 1e-4);
    }
}

TEST_CASE("learned variance: eps_eval_var gives eps and frac as the interpreter does, and eps_eval the same eps") {
  LearnedVar f;
  const ddpm_module& m = f.mod.get();
  REQUIRE(m.eps_learned_variance == 1);
  REQUIRE(static_cast<bool>(m.eps_eval_var));
  REQUIRE(f.c.model.has_eps);
  REQUIRE(f.c.eps.output_names == std::vector<std::string>{"eps", "frac"});
  const int B = 13;
  auto x = uniform_floats(B * 2, -2, 2, 9);
  for (int t : {1, 400, 1000}) {
    ddpm::AlignedBuffer arena(m.arena_bytes(2 + m.n_samplers, B));
    std::vector<float> eps(B * 2), frac(B * 2), eps2(B * 2);
    REQUIRE(m.eps_eval_var(arena.data(), B, f.params.data(), x.data(), nullptr, t, eps.data(), frac.data()) == 0);
    REQUIRE(m.eps_eval(arena.data(), B, f.params.data(), x.data(), t, eps2.data()) == 0);  // frac to the arena's room
    auto ref = ddpmc::interpret(f.c.eps, f.c.model, eps_env(f.params, x, B, t));
    REQUIRE(ref.size() == 2);
    CAPTURE(t);
    CHECK(rel_error(eps.data(), ref[0].data(), eps.size()) <= 1e-4);
    CHECK(rel_error(frac.data(), ref[1].data(), frac.size()) <= 1e-4);
    CHECK(eps == eps2);
  }
}

TEST_CASE("learned variance: trained on moons, 50-step samples of every sampler approach the data" * doctest::skip(ddpm_test::kNarrowerWidth)) {
  const int n = 2000;
  const MoonsReference ref = moons_reference(n);
  const std::filesystem::path out = process_dir("test-learned-var", "run");
  ddpm::TrainConfig c = run_config("models/moons_learned_var.ddpm", "moons", out, 3000, 256, 5);
  REQUIRE(ddpm::train(c) == 0);
  for (const char* name : {"learned", "fixed_small", "fixed_large"}) {
    const std::vector<float> x = ddpm::sample_to_vector(draw_config(out, name, 50, n));
    const double w = ddpm::sliced_wasserstein_2d(x.data(), n, ref.points.data(), n);
    MESSAGE(std::string(name) << ": sliced Wasserstein " << w << " (N(0, I): " << ref.gauss << ")");
    for (float v : x) REQUIRE(std::isfinite(v));
    CHECK(w < 0.4 * ref.gauss);
  }
}

TEST_CASE("learned variance: the Fashion-MNIST U-Net spec (fashion_learned_var) lowers with eps and v per pixel" * doctest::skip(ddpm_test::kNarrowerWidth)) {
  // The front end and the passes only (the U-Net's C++ build is the other tests' cost): the
  // net's output stacks eps and v on the channel axis, and the three samplers are there.
  const ddpmc::Compiled c = ddpmc::compile_spec_file(source_path("models/fashion_learned_var.ddpm"));
  CHECK(c.model.has_eps);
  int64_t n = 0;
  for (const auto& p : c.model.params) {
    int64_t k = 1;
    for (int64_t d : p.type.dims) k *= d;
    n += k;
  }
  CHECK(n == 691970);  // fashion_unet's 691,681 plus the second output channel's 288 + 1
  REQUIRE(c.samplers.size() == 3);
  CHECK(c.samplers[0].first == "learned");
  CHECK(c.samplers[1].first == "fixed_small");
  CHECK(c.samplers[2].first == "fixed_large");
  CHECK(c.eps.output_names.size() == 2);  // eps and frac (ABI 7 eps_eval_var)
}
