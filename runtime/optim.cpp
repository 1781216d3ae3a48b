// AdamW, EMA and gradient-norm clipping (see optim.h). The scalar constants
// (bias corrections, step size) are computed once per call in double; the
// per-element work is float, one xsimd batch at a time with a scalar tail.
#include "optim.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <cmath>
#include <vector>
#include <xsimd/xsimd.hpp>

namespace ddpm {
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

// The AdamW step (and with kEma the EMA update from the new parameters) over [0, P), with the
// gradients scaled by grad_scale when it is below 1: the one loop behind adamw_step and
// optimizer_step.
template <bool kEma>
void update(float* params, const float* grads, float* m, float* v, float* ema, int64_t P, int64_t step,
            const AdamWConfig& cfg, float grad_scale, float ema_decay) {
  const double bc1 = 1.0 - std::pow((double)cfg.beta1, (double)step);
  const double bc2 = 1.0 - std::pow((double)cfg.beta2, (double)step);
  const float decay = (float)(1.0 - (double)cfg.lr * cfg.weight_decay);
  const float b1 = cfg.beta1, b2 = cfg.beta2, omb1 = 1.0f - b1, omb2 = 1.0f - b2;
  const float step_size = (float)(cfg.lr / bc1);
  const float inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
  const float eps = cfg.eps, ed = ema_decay, omed = 1.0f - ema_decay, sc = grad_scale;
  const bool scale = grad_scale < 1.0f;  // clip_grad_norm scales only then

  for_chunks(P, [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    const batch vb1(b1), vb2(b2), vomb1(omb1), vomb2(omb2), vdecay(decay), vstep(step_size), vinv(inv_sqrt_bc2),
        veps(eps), ved(ed), vomed(omed), vsc(sc);
    for (; i + (int64_t)batch::size <= end; i += batch::size) {
      batch g = batch::load_unaligned(grads + i);
      if (scale) g = g * vsc;
      batch mi = vb1 * batch::load_unaligned(m + i) + vomb1 * g;
      batch vi = vb2 * batch::load_unaligned(v + i) + vomb2 * (g * g);
      batch p = batch::load_unaligned(params + i) * vdecay;
      p = p - vstep * (mi / (xsimd::sqrt(vi) * vinv + veps));
      mi.store_unaligned(m + i);
      vi.store_unaligned(v + i);
      p.store_unaligned(params + i);
      if constexpr (kEma) (ved * batch::load_unaligned(ema + i) + vomed * p).store_unaligned(ema + i);
    }
    for (; i < end; ++i) {
      const float g = scale ? grads[i] * sc : grads[i];
      const float mi = b1 * m[i] + omb1 * g;
      const float vi = b2 * v[i] + omb2 * (g * g);
      m[i] = mi;
      v[i] = vi;
      const float p = params[i] * decay - step_size * (mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps));
      params[i] = p;
      if constexpr (kEma) ema[i] = ed * ema[i] + omed * p;
    }
  });
}

}  // namespace

void adamw_step(float* params, const float* grads, float* m, float* v, int64_t P, int64_t step,
                const AdamWConfig& cfg) {
  update<false>(params, grads, m, v, nullptr, P, step, cfg, 1.0f, 0.0f);
}

void optimizer_step(float* params, const float* grads, float* m, float* v, float* ema, int64_t P, int64_t step,
                    const AdamWConfig& cfg, float grad_scale, float ema_decay) {
  update<true>(params, grads, m, v, ema, P, step, cfg, grad_scale, ema_decay);
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
