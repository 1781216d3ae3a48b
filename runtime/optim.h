// Optimizer and weight averaging over the flat [P] parameter layout (ddpm_abi.h):
// after each module train_step the trainer takes the gradients' global norm, then
// optimizer_step clips them, applies AdamW to params with moments m and v, and updates
// the EMA copy used for sampling, in one pass.
//
// Every routine is elementwise or a fixed-order reduction over fixed 16384-float
// chunks (xsimd batches + scalar tail, tbb::parallel_for with a static
// partitioner), so results are bitwise identical at any thread count.
//
// Layout: params, grads, m, v, ema are all [P] floats.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// torch.optim.AdamW semantics (amsgrad off, maximize off).
struct AdamWConfig {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};

// One AdamW step, in place on params, m, v. step is 1-based (bias correction):
//   p *= 1 - lr * wd
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
void adamw_step(float* params, const float* grads, float* m, float* v, int64_t P, int64_t step,
                const AdamWConfig& cfg);

// The whole optimizer in one pass over the parameters, as the training loop runs it:
//   g = grads * grad_scale (when grad_scale < 1: gradient clipping), the AdamW step above on
//   params, m, v, then ema = ema_decay * ema + (1 - ema_decay) * params.
// Bitwise identical to clip_grad_norm (with that scale) + adamw_step + ema_update; grads is
// left unscaled.
void optimizer_step(float* params, const float* grads, float* m, float* v, float* ema, int64_t P, int64_t step,
                    const AdamWConfig& cfg, float grad_scale, float ema_decay);

// The instruction sets whose AdamW element loop this build has and this CPU runs, widest first
// ("x86-64-v4", "x86-64-v3", "baseline"); adamw_step and optimizer_step use the first. All give
// the same bits (no fused multiply-adds), so the choice changes the speed only.
std::vector<std::string> optimizer_isas();

// optimizer_step with the element loop of one of optimizer_isas() (for the tests, which compare
// them bit for bit); any other name throws std::invalid_argument.
void optimizer_step_isa(const std::string& isa, float* params, const float* grads, float* m, float* v, float* ema,
                        int64_t P, int64_t step, const AdamWConfig& cfg, float grad_scale, float ema_decay);

// The factor clip_grad_norm applies for a global norm: max_norm / (norm + 1e-6) when that is
// below 1, else 1 (also 1 when max_norm <= 0, clipping off).
float clip_coefficient(float norm, float max_norm);

// ema = decay * ema + (1 - decay) * params.
void ema_update(float* ema, const float* params, int64_t P, float decay);

// sqrt(sum g^2): per-chunk float partial sums, combined in double in chunk order.
float grad_global_norm(const float* grads, int64_t P);

// torch.nn.utils.clip_grad_norm_: if the global norm exceeds max_norm, scales the
// gradients by max_norm / (norm + 1e-6). Returns the norm before clipping.
float clip_grad_norm(float* grads, int64_t P, float max_norm);

}  // namespace ddpm
