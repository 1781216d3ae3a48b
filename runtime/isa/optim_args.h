// The per-call constants of the optimizer's element loop (runtime/isa/optim_kernel.h), computed
// once per step by runtime/optim.cpp and shared by every instruction-set variant of the loop.
#pragma once
#include <cstdint>

namespace ddpm {

struct OptimArgs {
  float b1, b2, omb1, omb2;   // beta1, beta2 and 1 - each
  float decay;                // 1 - lr * weight_decay
  float step_size;            // lr / (1 - beta1^step)
  float inv_sqrt_bc2;         // 1 / sqrt(1 - beta2^step)
  float eps;
  float ed, omed;             // EMA decay and 1 - it
  float sc;                   // gradient scale (clipping), applied when scale
  bool scale, ema;
};

using OptimUpdateFn = void (*)(const OptimArgs&, float* params, const float* grads, float* m, float* v, float* ema,
                               int64_t begin, int64_t end);

}  // namespace ddpm
