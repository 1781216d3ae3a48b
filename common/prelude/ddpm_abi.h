/* The versioned C ABI (version 8; version 2 added eps_eval, version 3 sampler_step's row0,
 * version 4 sampler arguments and state, the declared prediction of eps_eval's net,
 * and class labels, version 5 the range of class indices, which sampler arguments
 * are class indices, and eps_eval_labels for a class-conditional noise predictor,
 * version 6 supervised modules (a spec without a diffusion block) and classify_eval,
 * version 7 continuous time: real t in [t_min, t_max], its sampling grid and sampler_step_time,
 * and a learned reverse variance: eps_eval_var, version 8 the probability-flow ODE: ode_eval
 * and its vector-Jacobian product ode_vjp)
 * between a compiled ddpmc module (a .so) and the runtime.
 *
 * A module exports one symbol, `ddpm_module_v1`, returning a pointer to a static
 * ddpm_module. The module is stateless: the runtime owns every buffer (parameters,
 * gradients, data, and one 64-byte-aligned arena per entry point, sized by
 * arena_bytes for the batch it will use) and passes them in.
 *
 * Layout legend:
 *   B       batch size (the only symbolic axis)
 *   D       per-sample data elements (data_numel; 2 for 2-D points, 784 for 28x28)
 *   P       total parameter floats (param_floats), every parameter 16-float aligned
 * Parameters, gradients, EMA and optimizer moments all share the flat [P] layout
 * given by params[i].offset; padding floats are zero and stay zero.
 *
 * Randomness: every random number is Philox4x32-10 keyed by (seed, step, stream,
 * element), so results do not depend on the thread count or evaluation order.
 */
#ifndef DDPM_ABI_H
#define DDPM_ABI_H
#include <stdint.h>

#define DDPM_ABI_VERSION 8
/* The oldest module version the runtime still loads (version 2: sampler_step
 * without row0, see ddpm_sampler_step_v2). */
#define DDPM_ABI_MIN_VERSION 2

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ddpm_param_info {
  const char* name;   /* stable, from the call path: "eps_theta/linear.0/w" */
  int rank;
  int dims[4];
  int64_t offset;     /* in floats, into the flat [P] parameter array */
  int64_t numel;
  float init_bound;   /* initialised U(-init_bound, init_bound); 0 means zeros */
} ddpm_param_info;

/* Version 4: what a sampler declares besides (x, t, s). */
typedef struct ddpm_sampler_info {
  const char* name;
  int n_args;                     /* sampling-time arguments, in declaration order */
  const char* const* arg_names;
  const float* arg_defaults;
  int64_t state_floats;           /* per-sample floats of carried state (0: none) */
} ddpm_sampler_info;

/* sampler_step4 flags */
#define DDPM_STEP_FIRST 1 /* the first step of the sequence */
#define DDPM_STEP_LAST 2  /* the last step (s = 0) */

/* Version 7: how the sampling times of a continuous-time module are spaced (see
 * continuous below). */
#define DDPM_GRID_UNIFORM 0
#define DDPM_GRID_QUADRATIC 1
#define DDPM_GRID_KARRAS 2

/* What eps_eval's net predicts (declared in the spec: `-> [..] predicts v`). */
#define DDPM_PREDICTS_EPS 0
#define DDPM_PREDICTS_X0 1
#define DDPM_PREDICTS_V 2

typedef struct ddpm_module {
  int abi_version;               /* == DDPM_ABI_VERSION */
  const char* spec_hash;         /* hex digest of spec sources + compiler version + flags */
  const char* compiler_version;
  const char* spec_path;         /* the spec's file name (not its path) */
  /* diffusion schedule, tables of T+1 entries indexed by step 0..T (index 0: abar = 1) */
  int T;
  const char* schedule;          /* "linear", "quadratic", "cosine", "sigmoid" */
  const float* beta;
  const float* alpha;
  const float* abar;
  /* data: one sample's shape, without the batch axis */
  int data_rank;
  int data_dims[4];
  int64_t data_numel;
  /* parameters */
  int n_params;
  const ddpm_param_info* params;
  int64_t param_floats;
  /* samplers, in spec order */
  int n_samplers;
  const char* const* sampler_names;

  /* Arena bytes needed by an entry point at batch B: entry 0 = train step,
   * entry 1 + i = sampler i, entry 1 + n_samplers = loss_eval,
   * entry 2 + n_samplers = eps_eval, (version 6) entry 3 + n_samplers = classify_eval. */
  int64_t (*arena_bytes)(int entry, int B);

  /* One training step (forward + backward of the loss). Writes (not adds) every
   * gradient into grads[P] and the scalar loss into *loss. x0 is [B, D].
   * Returns 0 on success. */
  int (*train_step)(void* arena, int B, const float* params, const float* x0, uint64_t seed,
                    uint64_t step, float* grads, float* loss);

  /* Forward-only loss (same randomness as train_step for the same seed/step). */
  int (*loss_eval)(void* arena, int B, const float* params, const float* x0, uint64_t seed,
                   uint64_t step, float* loss);

  /* One reverse step of sampler i from step t to step s < t. x_in and x_out are
   * [B, D] and may not alias. step is the RNG counter for this call; row0 is the
   * index of x_in's first sample in the whole set being sampled: random numbers
   * are keyed by the element (row0 + b) * D + j, so a sample's noise does not
   * depend on how the set is cut into batches. */
  int (*sampler_step)(int sampler, void* arena, int B, const float* params, const float* x_in,
                      int t, int s, uint64_t seed, uint64_t step, float* x_out, int64_t row0);

  /* The noise prediction eps_theta(x, t) of the spec's noise-predictor net: the one
   * `net` declared as (x: <data shape>, t: step) -> <data shape>, or (version 5) with a
   * third parameter `y: label` in a spec that declares a label (version 4: its
   * output converted to eps when it declares `predicts x0` or `predicts v`). NULL when the spec
   * has no such net. x and eps are [B, D]; every sample uses step t. Used by
   * ddpm-eval (variational bound). Arena entry: 2 + n_samplers. */
  int (*eps_eval)(void* arena, int B, const float* params, const float* x, int t, float* eps);

  /* ---- version 4 ---- */
  const ddpm_sampler_info* sampler_info; /* n_samplers entries */
  /* sampler_step with the sampler's arguments args[n_args] (NULL: the defaults)
   * and its state: state_in and state_out are [state_floats * B] each (variable k
   * is the block of B * numel floats from offset_k * B), may not alias, and the
   * caller zeroes state_in before the first step and swaps them after each step.
   * flags: DDPM_STEP_FIRST | DDPM_STEP_LAST. sampler_step (above) runs a sampler
   * with its defaults and returns 3 when it has state. */
  int (*sampler_step4)(int sampler, void* arena, int B, const float* params, const float* x_in, int t, int s,
                       uint64_t seed, uint64_t step, float* x_out, int64_t row0, const float* args,
                       const float* state_in, float* state_out, int flags);
  /* What eps_eval's net predicts: DDPM_PREDICTS_EPS, _X0 or _V, as the spec declares
   * it (`-> [..] predicts v`; undeclared means eps). eps_eval always returns eps: the
   * module converts the prediction with the schedule. */
  int eps_predicts;
  /* The spec's class label (`label y: K`): K, or 0 when it declares none. A model
   * with a label trains through the *_labels entries, which take labels[B], each
   * sample's class index 0..K-1 as a float; train_step and loss_eval then return 3. */
  int label_classes;
  int (*train_step_labels)(void* arena, int B, const float* params, const float* x0, const float* labels,
                           uint64_t seed, uint64_t step, float* grads, float* loss);
  int (*loss_eval_labels)(void* arena, int B, const float* params, const float* x0, const float* labels,
                          uint64_t seed, uint64_t step, float* loss);

  /* ---- version 5 ---- */
  /* The class indices the loss trains the net on: 0..label_values-1 (label_classes,
   * or more when it also feeds a "no class" index, as where(drop, K, y) does). */
  int label_values;
  /* n_samplers entries: sampler_arg_is_class[i][k] is 1 when argument k of sampler i
   * is used as a class index (it reaches a `label` parameter or an embed); the
   * runtime accepts only whole numbers 0..label_values-1 for it. */
  const int* const* sampler_arg_is_class;
  /* eps_eval with labels[B] (class indices 0..K-1 as floats), for a model whose
   * noise-predictor net is declared (x: <data shape>, t: step, y: label) -> <data shape>;
   * eps_eval then returns 3. For a net without a label, labels are ignored and it is
   * eps_eval. NULL exactly when eps_eval is. Arena entry: 2 + n_samplers. */
  int (*eps_eval_labels)(void* arena, int B, const float* params, const float* x, const float* labels, int t,
                         float* eps);

  /* ---- version 6 ---- */
  /* 1 for a supervised spec (no diffusion block: a net trained on data and labels);
   * it has no samplers (n_samplers 0), T 0, NULL schedule tables, NULL eps_eval. */
  int supervised;
  /* A supervised spec's net: its output per sample ("logits", logits_numel floats) and,
   * where the net marks a value with features(...), that value (features_numel floats
   * per sample; 0 when none). */
  int64_t logits_numel;
  int64_t features_numel;
  /* Runs the net on x[B, D]: writes logits[B, logits_numel] and, when features_numel > 0
   * and features is not NULL, features[B, features_numel]. Arena entry 3 + n_samplers.
   * NULL when the spec is not supervised. Deterministic and thread-count independent. */
  int (*classify_eval)(void* arena, int B, const float* params, const float* x, float* logits, float* features);

  /* ---- version 7 ---- */
  /* 1 for continuous time (`time = continuous`): t is a real number in [t_min, t_max];
   * T is 0, the schedule is "continuous" and the tables are NULL, there is no eps_eval,
   * sampler_step and sampler_step4 return 1, and the samplers run through
   * sampler_step_time. A sampling run of K steps goes through the times
   * t_K = t_max > ... > t_1 = t_min > t_0 = 0, spaced by `grid` over u = (i-1)/(K-1):
   * uniform t_min + (t_max - t_min) u, quadratic t_min + (t_max - t_min) u^2, karras
   * (t_min^(1/rho) + u (t_max^(1/rho) - t_min^(1/rho)))^rho; with t_min = 0 instead
   * t_i = t_max g(i/K) (the last step starts above 0). K defaults to sample_steps. */
  int continuous;
  float t_min, t_max;
  int grid;
  float grid_rho;
  int sample_steps;
  /* sampler_step4 with real times t > s >= 0 (t <= t_max); the same contract otherwise. */
  int (*sampler_step_time)(int sampler, void* arena, int B, const float* params, const float* x_in, float t, float s,
                           uint64_t seed, uint64_t step, float* x_out, int64_t row0, const float* args,
                           const float* state_in, float* state_out, int flags);
  /* 1 when the noise predictor also predicts its reverse variance (`predicts eps_var`,
   * Nichol & Dhariwal 2021): p(x_{t-1} | x_t) has log variance
   * frac log beta_t + (1 - frac) log beta_tilde_t (beta_tilde_1 taken as beta_tilde_2).
   * eps_eval_var is eps_eval_labels that also writes frac[B, D] (NULL: not written). */
  int eps_learned_variance;
  int (*eps_eval_var)(void* arena, int B, const float* params, const float* x, const float* labels, int t,
                      float* eps, float* frac);

  /* ---- version 8 ---- */
  /* The spec's `ode name(x, t)`: the drift f(x, t) = dx/dt of the probability-flow ODE
   * that carries the data at t_min to the prior N(0, prior_std^2 I) at t_max. ode_name
   * is NULL and the entries are NULL when the spec has none. A discrete-time module
   * (continuous 0) may have an ode too, its schedule's continuous-time limit: then
   * t_min and t_max (version 7's fields) are [1/T, 1] and the net sees real steps t T.
   * ode_eval writes f[B, D] for x[B, D] at the time t (0 <= t <= t_max), shared by the
   * batch; arena entry 4 + n_samplers. ode_vjp also writes vjp[B, D] = u^T df/dx for
   * each sample's u[B, D] (the Jacobian of a sample's drift by its own x; samples do
   * not interact); arena entry 5 + n_samplers. Both return 1 for a bad B or t or a NULL
   * output, are deterministic and do not depend on the thread count. */
  float prior_std;
  const char* ode_name;
  int (*ode_eval)(void* arena, int B, const float* params, const float* x, float t, float* f);
  int (*ode_vjp)(void* arena, int B, const float* params, const float* x, float t, const float* u, float* f,
                 float* vjp);
} ddpm_module;

typedef const ddpm_module* (*ddpm_module_fn)(void);

/* sampler_step of a version-2 module (no row0: elements keyed by b * D + j). */
typedef int (*ddpm_sampler_step_v2)(int sampler, void* arena, int B, const float* params, const float* x_in,
                                    int t, int s, uint64_t seed, uint64_t step, float* x_out);

#ifdef __cplusplus
}
#endif
#endif
