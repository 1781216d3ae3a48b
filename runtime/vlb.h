// The variational bound of Ho et al. (2020), in bits (8-bit data) or nats (continuous data) per dimension.
//
// Data flow: ddpm-eval loads a run (module.so + checkpoint) and a test set, and
// hands batches of images x0 [B, D] in [-1, 1] plus a callback that runs the
// module's eps_eval to vlb_bpd() here. For every image vlb_bpd() returns
//   L = L_T + Σ_{t=2..T} L_{t-1} + L_0
//   L_T     = KL(q(x_T | x_0) || N(0, I))                         closed form
//   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_θ(x_{t-1} | x_t)),    x_t ~ q(x_t | x_0)
//   L_0     = -log p_θ(x_0 | x_1), x_1 ~ q(x_1 | x_0): a discretized Gaussian over 256
//             bins for 8-bit data (a probability), or for continuous data (2-D points,
//             any real-valued array) the Gaussian density N(x_0; μ_θ, σ_1²) itself
// each summed over the D dimensions and divided by D · ln 2 (bits/dim) or by D
// (nats/dim; the bound with a continuous decoder is a density, comparable only to
// other continuous bounds, not to the bits/dim of 8-bit data). This file is pure
// math in double precision; it knows nothing about modules, files or flags.
//
// Conventions follow the reference code of Ho et al. (diffusion_utils_2.py,
// model_var_type = "fixedlarge", the setting they report bounds for):
//  - schedule tables have T + 1 entries, index 0 is clean data (ᾱ_0 = 1);
//  - the posterior log variance is "clipped": at t = 1, where β̃_1 = 0, it uses β̃_2;
//  - p_θ(x_{t-1} | x_t) = N(μ_θ, σ_t²) with μ_θ = (x_t − β_t/√(1−ᾱ_t) ε_θ)/√α_t and
//    σ_t² = β_t for t ≥ 2, σ_1² = β̃_2 (the reference's choice for a better decoder);
//  - μ_θ uses ε_θ as is (the reference's optional clipping of the predicted x_0 to
//    [-1, 1] is not applied, so the bound is for the sampler the spec runs);
//  - the decoder uses the exact normal CDF (erfc) where the reference uses a tanh
//    approximation; the edge bins extend to ±∞ and probabilities are clamped at
//    1e-12 exactly as in the reference.
//
// Randomness: x_t for image i (global index), element d, step t is
//   √ᾱ_t x0 + √(1−ᾱ_t) z,  z = philox_normal(seed, t, kVlbNoiseStream, i · D + d),
// so the estimate does not depend on the batch size or thread count (as long as
// the callback's ε does not).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace ddpm {

inline constexpr uint32_t kVlbNoiseStream = 5000;

// KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) for one element, in nats.
double normal_kl(double mean1, double logvar1, double mean2, double logvar2);

// Standard normal CDF Φ(x), exact (via erfc) in double precision.
double standard_normal_cdf(double x);

// log P(x) for data x in [-1, 1] quantised to 256 levels (bin width 2/255) under
// N(mean, e^(2 log_scale)): log(Φ(x+1/255) − Φ(x−1/255)) in the standardised
// units, with the bottom bin (x < −0.999) extended to −∞ (log Φ(upper)) and the
// top bin (x > 0.999) to +∞ (log(1 − Φ(lower))). Each probability is clamped
// below at 1e-12 before the log, so the result is ≥ log(1e-12) ≈ −27.6.
double discretized_gaussian_log_likelihood(double x, double mean, double log_scale);

// log N(x; mean, e^log_var), the continuous decoder's density, in nats.
double gaussian_log_density(double x, double mean, double log_var);

// The diffusion schedule in double precision; beta, alpha, abar have T + 1
// entries, index 0 = clean data (beta[0] = 0, alpha[0] = abar[0] = 1).
struct VlbSchedule {
  int T = 0;
  std::vector<double> beta, alpha, abar;
};

// From the module's float tables (T + 1 entries each). Throws ddpmc::UserError if
// T < 2 or a table value is outside its valid range (0 < β_t < 1, ᾱ decreasing).
VlbSchedule schedule_from_tables(int T, const float* beta, const float* alpha, const float* abar);

// q(x_{t-1} | x_t, x_0) = N(coef_x0 · x_0 + coef_xt · x_t, var), t in 1..T:
//   coef_x0 = √ᾱ_{t-1} β_t / (1−ᾱ_t),  coef_xt = √α_t (1−ᾱ_{t-1}) / (1−ᾱ_t),
//   var = β̃_t = β_t (1−ᾱ_{t-1}) / (1−ᾱ_t),  log_var_clipped = log β̃_max(t,2).
struct Posterior {
  double coef_x0, coef_xt, var, log_var_clipped;
};
Posterior q_posterior(const VlbSchedule& s, int t);

// p_θ(x_{t-1} | x_t) from ε_θ, t in 1..T: mean = coef_xt · x_t − coef_eps · ε with
// coef_xt = 1/√α_t and coef_eps = β_t / (√(1−ᾱ_t) √α_t); log_var = log β_t for
// t ≥ 2 and log β̃_2 at t = 1 ("fixedlarge", see the top of this file).
struct ModelStep {
  double coef_xt, coef_eps, log_var;
};
ModelStep p_step(const VlbSchedule& s, int t);

// L_T for one element: KL(N(√ᾱ_T x0, 1−ᾱ_T) || N(0, 1)), nats.
double prior_kl(const VlbSchedule& s, double x0);

// The steps t in 2..T whose L_{t-1} terms are evaluated, and the weight each
// term gets. steps K = 0 or K ≥ T − 1: every t, weight 1 (the exact sum). Otherwise
// circular systematic sampling: an offset o uniform in {0..T−2} drawn from
// (seed, key) and t_j = 2 + (o + ⌊j (T−1)/K⌋) mod (T−1), j = 0..K−1, each with
// weight (T−1)/K. Every t is picked for exactly K of the T−1 offsets, so the
// weighted sum is an unbiased estimate of Σ_{t=2..T} L_{t-1} over the offset. The
// offset noise is large when a few small t carry most of the sum (they do for the
// linear schedule), so vlb_bpd draws a fresh offset per batch (key = the batch's
// first global image index) and callers should estimate the error across batches.
// The t are returned in decreasing order.
struct TermSteps {
  std::vector<int> t;
  double weight = 1;
  bool exact = true;
};
TermSteps vlb_term_steps(int T, int steps, uint64_t seed, uint64_t key = 0);

// ε_θ(x_t, t) for the whole batch: x_t and eps_out are [B, D] floats.
using EpsFn = std::function<void(const float* x_t, int t, float* eps_out)>;
// The same with a learned variance (Nichol & Dhariwal 2021): also writes frac_out
// [B, D], and p_θ(x_{t-1} | x_t) has log variance frac log β_t + (1 − frac) log β̃_t
// (β̃ clipped as in q_posterior) instead of the fixed one of p_step.
using EpsVarFn = std::function<void(const float* x_t, int t, float* eps_out, float* frac_out)>;

enum class Decoder { Discretized, Gaussian };

struct VlbOptions {
  // L_0: the discretized 8-bit decoder (results in bits/dim) or the continuous
  // Gaussian one (results in nats/dim).
  Decoder decoder = Decoder::Discretized;
  uint64_t seed = 0;
  int steps = 0;            // K for vlb_term_steps; 0 = the full sum
  int64_t first_index = 0;  // global index of image 0 of the batch (keys the noise and the offset)
  // Called after each ε evaluation with the number done and the total (T or K + 1),
  // for progress lines; may be empty.
  std::function<void(int done, int total, int t)> on_step;
  // Set: the model's learned variance; vlb_bpd calls this instead of its eps argument.
  EpsVarFn eps_var;
};

// Per-image results per dimension (bits for the discretized decoder, nats for the
// Gaussian one), each vector of length B.
struct VlbBatch {
  std::vector<double> total, prior, terms, decoder;  // total = prior + terms + decoder
};

// The bound for a batch x0 [B, D] (values in [-1, 1], ideally on the 256-level
// grid) under the schedule s, calling eps once per evaluated t (T calls for the
// full sum). Per-element work runs in parallel over images (oneTBB); every image's
// sums are taken in a fixed order, so results do not depend on the thread count.
VlbBatch vlb_bpd(const float* x0, int B, int64_t D, const VlbSchedule& s, const EpsFn& eps,
                 const VlbOptions& opt);

}  // namespace ddpm
