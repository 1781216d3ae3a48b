// The optimizer's element loop (AdamW, optionally followed by the EMA update), compiled once
// per instruction set: runtime/optim.cpp picks the widest variant the CPU runs at start-up, so
// the tools, built for the portable baseline, still run this hot loop at the CPU's width.
//
// Each runtime/isa/optim_<isa>.cpp defines DDPM_OPTIM_ISA (a namespace name) and includes this
// file; CMake compiles it with that -march and -ffp-contract=off. Every operation is an
// elementwise IEEE multiply, add, divide or square root, never fused, so all variants give the
// same bits (tests/test_runtime_utils.cpp compares them). Only templates over the xsimd
// architecture and this namespace's own functions are instantiated here, so no inline function
// compiled with a wider -march can stand in for a baseline one at link time.
#pragma once
#include <cmath>
#include <cstdint>
#include <xsimd/xsimd.hpp>

#include "optim_args.h"

#ifndef DDPM_OPTIM_ISA
#error "define DDPM_OPTIM_ISA before including optim_kernel.h"
#endif

namespace ddpm::DDPM_OPTIM_ISA {

// [begin, end) of params, m, v (and ema when a.ema), as optim.h's optimizer_step describes.
void update_range(const OptimArgs& a, float* params, const float* grads, float* m, float* v, float* ema,
                  int64_t begin, int64_t end) {
  using batch = xsimd::batch<float>;
  int64_t i = begin;
  const batch vb1(a.b1), vb2(a.b2), vomb1(a.omb1), vomb2(a.omb2), vdecay(a.decay), vstep(a.step_size),
      vinv(a.inv_sqrt_bc2), veps(a.eps), ved(a.ed), vomed(a.omed), vsc(a.sc);
  for (; i + (int64_t)batch::size <= end; i += batch::size) {
    batch g = batch::load_unaligned(grads + i);
    if (a.scale) g = g * vsc;
    batch mi = vb1 * batch::load_unaligned(m + i) + vomb1 * g;
    batch vi = vb2 * batch::load_unaligned(v + i) + vomb2 * (g * g);
    batch p = batch::load_unaligned(params + i) * vdecay;
    p = p - vstep * (mi / (xsimd::sqrt(vi) * vinv + veps));
    mi.store_unaligned(m + i);
    vi.store_unaligned(v + i);
    p.store_unaligned(params + i);
    if (a.ema) (ved * batch::load_unaligned(ema + i) + vomed * p).store_unaligned(ema + i);
  }
  for (; i < end; ++i) {
    const float g = a.scale ? grads[i] * a.sc : grads[i];
    const float mi = a.b1 * m[i] + a.omb1 * g;
    const float vi = a.b2 * v[i] + a.omb2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    const float p = params[i] * a.decay - a.step_size * (mi / (std::sqrt(vi) * a.inv_sqrt_bc2 + a.eps));
    params[i] = p;
    if (a.ema) ema[i] = a.ed * ema[i] + a.omed * p;
  }
}

}  // namespace ddpm::DDPM_OPTIM_ISA
