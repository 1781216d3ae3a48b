// Winograd F(4x4, 3x3) filter gradient where winograd4.h runs the forward pass: the ddpm::wino4
// filter-gradient API over the shared driver (winograd_driver_wgrad.h, the adjoint of that pass),
// 4x fewer multiplies than conv.h's direct filter gradient. Dimension legend:
// winograd_driver_wgrad.h's with M = 4, N = 6 (36 GEMMs per sample).
#pragma once
#include "winograd4.h"
#include "winograd_driver_wgrad.h"

namespace ddpm::wino4 {

inline int64_t wgrad_slice_floats(const Shape& d) { return winograd::wgrad_slice_floats<F4x4>(d); }
inline int64_t wgrad_partial_offset(const Shape& d) { return winograd::wgrad_partial_offset<F4x4>(d); }

template <class Fill>
inline void wgrad_range(const Shape& d, const float* dy, int64_t b0, int64_t b1, float* scratch, Fill&& fill) {
  winograd::wgrad_range<F4x4>(d, dy, b0, b1, scratch, std::forward<Fill>(fill));
}
inline void sum_and_transform(const Shape& d, const float* parts, int64_t n, int64_t stride, float* dw, int c0 = 0,
                              int c1 = -1) {
  winograd::sum_and_transform<F4x4>(d, parts, n, stride, dw, c0, c1);
}

}  // namespace ddpm::wino4
