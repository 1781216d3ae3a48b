// Convolution planning shared by code generation and the FLOP count: the sizes of a
// convolution node (conv2d and its two gradients, whose operand roles come from ops.h's
// conv_roles), which runtime path runs it, and the scratch each path needs.
//
// Dimension legend: x [C,H,W] input, w [O,C,K,K] filter, y [O,Ho,Wo] output, stride s,
// padding p (per sample; the batch is implicit).
#pragma once
#include <cstdint>

#include "ir.h"
#include "common/prelude/conv.h"

namespace ddpmc {

struct ConvDims {
  int64_t C, H, W, O, K, Ho, Wo, s, p;
  int64_t ckk() const { return C * K * K; }
  int64_t hw() const { return Ho * Wo; }
  int64_t col_floats() const { return ddpm::simd::align_floats(ckk() * hw()); }
};
ConvDims conv_dims(const Graph& g, const Node& n);

// Convolutions split the batch into this many fixed slices that run in parallel.
inline constexpr int64_t kConvChunks = 4;

// How a convolution op runs (see conv() for each path):
//   Winograd4  common/prelude/winograd4.h, winograd4_wgrad.h: F(4x4,3x3) for the forward pass, the
//              data gradient and the filter gradient of the 3x3 stride-1 "same" layers at 28x28
//              and above (4x fewer multiplies; where bench_conv measures it faster than F(2x2,3x3)).
//   WinogradByWidth  forward pass or data gradient where both apply below 28x28 (the channels-last
//              layers at 14x14): the module takes F(4x4,3x3) where ddpm::wino_by_width::kF4x4
//              holds at its width (16 and 4 lanes), else F(2x2,3x3), which bench_conv measures
//              faster there at 8 lanes; the plan reserves the larger of the two scratches.
//   Winograd   common/prelude/winograd.h, winograd_wgrad.h: F(2x2,3x3) for the forward pass, the data
//              gradient and the filter gradient of 3x3 stride-1 "same" layers of at least
//              14x14 and 16 channels (2.25x fewer multiplies; where bench_conv measures it
//              faster than Blocked).
//   Blocked    common/prelude/conv.h: register-blocked direct convolution from a zero-padded copy
//              of each sample (forward, stride-1 data gradient as a forward pass of dy
//              with the flipped filter, filter gradient). Needs K in {1, 3}, stride 1 or
//              2, and at least 16 output channels (they fill the vector lanes).
//   Narrow     common/prelude/conv_narrow.h: forward pass and filter gradient of stride-1 layers
//              with fewer than 16 output channels (K <= 3), output pixels in the vector lanes.
//   Gemm1x1    1x1, stride 1, no padding: the input itself is the GEMM operand.
//   Flipped    data gradient, stride 1: a convolution of dy with the flipped,
//              transposed filter (im2col of dy + GEMM), no col2im.
//   Im2col     the general case (the data gradient then scatters with col2im).
enum class ConvPath { Winograd4, WinogradByWidth, Winograd, Blocked, Narrow, Gemm1x1, Flipped, Im2col };

// The runtime shape of a forward convolution, and of a stride-1 data gradient as a forward
// convolution of dy [O,Ho,Wo] into dx [C,H,W] with the flipped filter.
ddpm::conv::Shape conv_shape(const ConvDims& d);
ddpm::conv::Shape dgrad_shape(const ConvDims& d);
ConvPath conv_path(const Node& n, const ConvDims& d);
// A forward-type Winograd pass (the forward pass, or the stride-1 data gradient as one, of shape s)
// where F(4x4,3x3) is worthwhile: Winograd4, or WinogradByWidth below 28x28 where F(2x2,3x3) is
// worthwhile too and the faster of the two depends on the width (ddpm::wino_by_width chooses).
ConvPath wino4_fwd_path(const ddpm::conv::Shape& s);

// Floats of one slice's im2col buffer (GEMM paths; 0 otherwise).
int64_t conv_col_floats(const Node& n, const ConvDims& d);

// The per-sample GEMM C[M,N] = A[M,K] B[K,N] of a convolution op on a GEMM path;
// conv() emits exactly these sizes, and the scratch is planned from them.
struct GemmDims {
  int64_t M, N, K;
};
GemmDims conv_gemm(const Node& n, const ConvDims& d);

// Scratch of one slice of a convolution kernel, and of the whole kernel.
int64_t conv_chunk_floats(const Graph& g, const Node& n);
int64_t conv_scratch(const Graph& g, const Node& n);
// A convolution kernel's per-slice plane buffers for its prologue (0 without one), placed after
// conv_scratch; and the kernel's whole scratch.
int64_t conv_plane_floats(const Graph& g, const Kernel& k);
int64_t conv_kernel_scratch(const Graph& g, const Kernel& k);

}  // namespace ddpmc
