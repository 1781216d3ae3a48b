// AdamW, EMA and gradient-norm clipping (see optim.h). The scalar constants
// (bias corrections, step size) are computed once per call in double; the
// per-element work is float, one xsimd batch at a time with a scalar tail. The AdamW
// loop, the one hot loop the tools keep, runs at the CPU's width: runtime/isa/ compiles
// it per instruction set and the widest the CPU runs is picked once (run-time dispatch;
// the rest of the tools stay at the portable baseline).
#include "optim.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#include <xsimd/xsimd.hpp>

#include "isa/optim_args.h"

namespace ddpm {
namespace optim_base {
void update_range(const OptimArgs&, float*, const float*, float*, float*, float*, int64_t, int64_t);
}
#if DDPM_OPTIM_X86_VARIANTS
namespace optim_v3 {
void update_range(const OptimArgs&, float*, const float*, float*, float*, float*, int64_t, int64_t);
}
namespace optim_v4 {
void update_range(const OptimArgs&, float*, const float*, float*, float*, float*, int64_t, int64_t);
}
#endif

namespace {

using batch = xsimd::batch<float>;
constexpr int64_t kChunk = 16384;  // floats per parallel task; a multiple of any batch size
static_assert(kChunk % batch::size == 0);
// Below this many parameters the chunks run in order on the calling thread: a pass over them
// takes a few microseconds, less than waking a second thread (the moons MLP's 41,858 stay on
// one thread, the U-Net's 691,681 go parallel). Same chunks either way, so the same results.
constexpr int64_t kMinParallel = 1 << 18;

// Calls body(begin, end) for each fixed chunk of [0, P), in parallel for large P.
template <class Body>
void for_chunks(int64_t P, Body body) {
  const int64_t nchunks = (P + kChunk - 1) / kChunk;
  if (nchunks <= 1 || P < kMinParallel) {
    for (int64_t c = 0; c < nchunks; ++c) body(c * kChunk, std::min(P, (c + 1) * kChunk));
    return;
  }
  tbb::parallel_for(
      tbb::blocked_range<int64_t>(0, nchunks, 1),
      [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t c = r.begin(); c < r.end(); ++c) body(c * kChunk, std::min(P, (c + 1) * kChunk));
      },
      tbb::static_partitioner{});
}

// The element loop's variants, widest first; x86-64 builds compile the v4 and v3 ones too
// (runtime/CMakeLists.txt). The first the CPU runs serves every call.
struct Variant {
  const char* isa;
  OptimUpdateFn fn;
  bool (*runs)();
};
const std::vector<Variant>& variants() {
  static const std::vector<Variant> v = [] {
    std::vector<Variant> all;
#if DDPM_OPTIM_X86_VARIANTS
    __builtin_cpu_init();
    all.push_back({"x86-64-v4", optim_v4::update_range, [] {
                     return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
                   }});
    all.push_back({"x86-64-v3", optim_v3::update_range, [] {
                     return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                            __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c");
                   }});
#endif
    all.push_back({"baseline", optim_base::update_range, [] { return true; }});
    std::vector<Variant> runnable;
    for (const auto& x : all)
      if (x.runs()) runnable.push_back(x);
    return runnable;
  }();
  return v;
}

OptimUpdateFn variant_fn(const char* isa) {
  for (const auto& x : variants())
    if (std::strcmp(x.isa, isa) == 0) return x.fn;
  throw std::invalid_argument(std::string("optimizer: no variant for instruction set ") + isa + " on this CPU");
}

// The AdamW step (and with ema the EMA update from the new parameters) over [0, P), with the
// gradients scaled by grad_scale when it is below 1: the one loop behind adamw_step and
// optimizer_step, run chunk by chunk with the element loop fn.
void update(OptimUpdateFn fn, bool ema, float* params, const float* grads, float* m, float* v, float* ema_p,
            int64_t P, int64_t step, const AdamWConfig& cfg, float grad_scale, float ema_decay) {
  const double bc1 = 1.0 - std::pow((double)cfg.beta1, (double)step);
  const double bc2 = 1.0 - std::pow((double)cfg.beta2, (double)step);
  OptimArgs a;
  a.b1 = cfg.beta1, a.b2 = cfg.beta2, a.omb1 = 1.0f - a.b1, a.omb2 = 1.0f - a.b2;
  a.decay = (float)(1.0 - (double)cfg.lr * cfg.weight_decay);
  a.step_size = (float)(cfg.lr / bc1);
  a.inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
  a.eps = cfg.eps, a.ed = ema_decay, a.omed = 1.0f - ema_decay, a.sc = grad_scale;
  a.scale = grad_scale < 1.0f;  // clip_grad_norm scales only then
  a.ema = ema;
  for_chunks(P, [&](int64_t begin, int64_t end) { fn(a, params, grads, m, v, ema_p, begin, end); });
}

}  // namespace

void adamw_step(float* params, const float* grads, float* m, float* v, int64_t P, int64_t step,
                const AdamWConfig& cfg) {
  update(variants().front().fn, false, params, grads, m, v, nullptr, P, step, cfg, 1.0f, 0.0f);
}

void optimizer_step(float* params, const float* grads, float* m, float* v, float* ema, int64_t P, int64_t step,
                    const AdamWConfig& cfg, float grad_scale, float ema_decay) {
  update(variants().front().fn, true, params, grads, m, v, ema, P, step, cfg, grad_scale, ema_decay);
}

std::vector<std::string> optimizer_isas() {
  std::vector<std::string> out;
  for (const auto& x : variants()) out.push_back(x.isa);
  return out;
}

void optimizer_step_isa(const std::string& isa, float* params, const float* grads, float* m, float* v, float* ema,
                        int64_t P, int64_t step, const AdamWConfig& cfg, float grad_scale, float ema_decay) {
  update(variant_fn(isa.c_str()), true, params, grads, m, v, ema, P, step, cfg, grad_scale, ema_decay);
}

float clip_coefficient(float norm, float max_norm) {
  if (!(max_norm > 0)) return 1.0f;
  const float coef = (float)((double)max_norm / ((double)norm + 1e-6));
  return coef < 1.0f ? coef : 1.0f;
}

void ema_update(float* ema, const float* params, int64_t P, float decay) {
  const float omd = 1.0f - decay;
  for_chunks(P, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    const batch vd(decay), vomd(omd);
    for (; i + (int64_t)batch::size <= end; i += batch::size)
      (vd * batch::load_unaligned(ema + i) + vomd * batch::load_unaligned(params + i)).store_unaligned(ema + i);
    for (; i < end; ++i) ema[i] = decay * ema[i] + omd * params[i];
  });
}

float grad_global_norm(const float* grads, int64_t P) {
  // Chunks are summed 64 at a time into a stack array (the training loop allocates
  // nothing), then added in chunk order, so the result is independent of threads.
  constexpr int64_t kGroup = 64;
  double total = 0;
  for (int64_t g0 = 0; g0 < P; g0 += kGroup * kChunk) {
    const int64_t len = std::min(P - g0, kGroup * kChunk);
    double partial[kGroup] = {};
    for_chunks(len, [&](int64_t begin, int64_t end) {
      const float* x = grads + g0;
      int64_t i = begin;
      batch acc(0.0f);
      for (; i + (int64_t)batch::size <= end; i += batch::size) {
        batch g = batch::load_unaligned(x + i);
        acc = acc + g * g;
      }
      double s = (double)xsimd::hadd(acc);
      for (; i < end; ++i) s += (double)x[i] * x[i];
      partial[begin / kChunk] = s;
    });
    for (int64_t c = 0; c < (len + kChunk - 1) / kChunk; ++c) total += partial[c];
  }
  return (float)std::sqrt(total);
}

float clip_grad_norm(float* grads, int64_t P, float max_norm) {
  const float norm = grad_global_norm(grads, P);
  const float coef = clip_coefficient(norm, max_norm);
  if (coef < 1.0f) {
    for_chunks(P, [&](int64_t begin, int64_t end) {
      int64_t i = begin;
      const batch vc(coef);
      for (; i + (int64_t)batch::size <= end; i += batch::size)
        (batch::load_unaligned(grads + i) * vc).store_unaligned(grads + i);
      for (; i < end; ++i) grads[i] *= coef;
    });
  }
  return norm;
}

}  // namespace ddpm
