// Convolution planning (see conv_plan.h): each convolution node's sizes, the path it runs on,
// and the scratch that path needs. codegen.cpp emits exactly the calls planned here.
#include "conv_plan.h"

#include <algorithm>

#include "ops.h"
#include "common/prelude/conv_narrow.h"
#include "common/prelude/gemm.h"
#include "common/prelude/winograd.h"
#include "common/prelude/winograd4.h"
#include "common/prelude/winograd4_wgrad.h"
#include "common/prelude/winograd_wgrad.h"

namespace ddpmc {

ConvDims conv_dims(const Graph& g, const Node& n) {
  const ConvRoles r = conv_roles(n.op);
  auto type = [&](int role) -> const Type& { return role < 0 ? n.type : g.nodes[n.in[role]].type; };
  const Type &x = type(r.x), &w = type(r.w), &y = type(r.y);
  return {x.dims[0], x.dims[1], x.dims[2], w.dims[0], w.dims[2], y.dims[1], y.dims[2], n.i0, n.i1};
}

ddpm::conv::Shape conv_shape(const ConvDims& d) {
  return {(int)d.C, (int)d.H, (int)d.W, (int)d.O, (int)d.K, (int)d.s, (int)d.p, (int)d.Ho, (int)d.Wo};
}
// The shape of a stride-1 data gradient as a forward convolution of dy [O,Ho,Wo] into dx [C,H,W].
ddpm::conv::Shape dgrad_shape(const ConvDims& d) {
  return {(int)d.O, (int)d.Ho, (int)d.Wo, (int)d.C, (int)d.K, 1, (int)(d.K - 1 - d.p), (int)d.H, (int)d.W};
}

ConvPath wino4_fwd_path(const ddpm::conv::Shape& s) {
  const bool tiles28 = s.Ho >= 28 && s.Ho % 4 == 0 && s.Wo % 4 == 0;
  return !tiles28 && ddpm::wino::worthwhile(s) ? ConvPath::WinogradByWidth : ConvPath::Winograd4;
}

ConvPath conv_path(const Node& n, const ConvDims& d) {
  const bool same = 2 * d.p == d.K - 1;
  if (n.op != Op::Conv2dBackData && ddpm::narrow::applies(conv_shape(d))) return ConvPath::Narrow;
  if (n.op == Op::Conv2d && ddpm::wino4::worthwhile(conv_shape(d))) return wino4_fwd_path(conv_shape(d));
  if (n.op == Op::Conv2dBackFilter && ddpm::wino4::worthwhile_wgrad(conv_shape(d))) return ConvPath::Winograd4;
  if (n.op == Op::Conv2dBackData && d.s == 1 && same && ddpm::wino4::worthwhile(dgrad_shape(d)))
    return wino4_fwd_path(dgrad_shape(d));
  if (n.op != Op::Conv2dBackData && ddpm::wino::worthwhile(conv_shape(d))) return ConvPath::Winograd;
  if (n.op == Op::Conv2dBackData && d.s == 1 && same && ddpm::wino::worthwhile(dgrad_shape(d))) return ConvPath::Winograd;
  if (ddpm::conv::supported(conv_shape(d)) && same) {
    if (n.op == Op::Conv2dBackData ? d.s == 1 && d.C >= 16 : d.O >= 16) return ConvPath::Blocked;
  }
  if (d.K == 1 && d.s == 1 && d.p == 0) return ConvPath::Gemm1x1;
  if (n.op == Op::Conv2dBackData && d.s == 1 && d.p <= d.K - 1) return ConvPath::Flipped;
  return ConvPath::Im2col;
}

// Floats of one slice's im2col buffer.
int64_t conv_col_floats(const Node& n, const ConvDims& d) {
  switch (conv_path(n, d)) {
    case ConvPath::Winograd:
    case ConvPath::Winograd4:
    case ConvPath::WinogradByWidth:
    case ConvPath::Narrow:
    case ConvPath::Blocked:
    case ConvPath::Gemm1x1: return 0;
    case ConvPath::Flipped: return ddpm::simd::align_floats(d.O * d.K * d.K * d.H * d.W);
    default: return d.col_floats();
  }
}

GemmDims conv_gemm(const Node& n, const ConvDims& d) {
  if (n.op == Op::Conv2d) return {d.O, d.hw(), d.ckk()};
  if (n.op == Op::Conv2dBackFilter) return {d.O, d.ckk(), d.hw()};
  if (conv_path(n, d) == ConvPath::Flipped) return {d.C, d.H * d.W, d.O * d.K * d.K};
  return {d.ckk(), d.hw(), d.O};
}

// Scratch of one slice of a convolution kernel. Blocked: the padded sample (and, for the
// filter gradient, the transposed dy and the slice's partial gradient). GEMM paths: one
// sample's im2col buffer plus GEMM packing.
int64_t conv_chunk_floats(const Graph& g, const Node& n) {
  const ConvDims d = conv_dims(g, n);
  if (conv_path(n, d) == ConvPath::Narrow)
    return n.op == Op::Conv2dBackFilter ? ddpm::narrow::wgrad_slice_floats(conv_shape(d))
                                        : ddpm::narrow::slice_floats(conv_shape(d));
  const ddpm::conv::Shape fs = n.op == Op::Conv2dBackData ? dgrad_shape(d) : conv_shape(d);
  if (conv_path(n, d) == ConvPath::WinogradByWidth)
    return std::max(ddpm::wino4::slice_floats(fs), ddpm::wino::slice_floats(fs));
  if (conv_path(n, d) == ConvPath::Winograd4) {
    if (n.op == Op::Conv2dBackFilter) return ddpm::wino4::wgrad_slice_floats(conv_shape(d));
    return ddpm::wino4::slice_floats(n.op == Op::Conv2dBackData ? dgrad_shape(d) : conv_shape(d));
  }
  if (conv_path(n, d) == ConvPath::Winograd) {
    if (n.op == Op::Conv2dBackFilter) return ddpm::wino::wgrad_slice_floats(conv_shape(d));
    return ddpm::wino::slice_floats(n.op == Op::Conv2dBackData ? dgrad_shape(d) : conv_shape(d));
  }
  if (conv_path(n, d) == ConvPath::Blocked) {
    if (n.op == Op::Conv2dBackData) return ddpm::conv::padded_floats(dgrad_shape(d));
    const ddpm::conv::Shape cs = conv_shape(d);
    if (n.op == Op::Conv2d) return ddpm::conv::padded_floats(cs);
    return ddpm::conv::padded_floats(cs) + ddpm::conv::dyt_floats(cs) + ddpm::conv::grad_t_floats(cs);
  }
  const GemmDims m = conv_gemm(n, d);
  const size_t gs = ddpm::gemm_scratch_floats((int)m.M, (int)m.N, (int)m.K);
  return conv_col_floats(n, d) + (int64_t)ddpm::simd::align_floats(gs);
}

// Scratch of a whole convolution kernel: every slice's, plus the packed filter (Blocked
// forward and data gradient), per-slice partial filter gradients (GEMM filter gradient),
// or the flipped filter (Flipped).
int64_t conv_scratch(const Graph& g, const Node& n) {
  const ConvDims d = conv_dims(g, n);
  const ConvPath path = conv_path(n, d);
  int64_t s = kConvChunks * conv_chunk_floats(g, n);
  if ((path == ConvPath::Winograd || path == ConvPath::Winograd4 || path == ConvPath::Narrow) &&
      n.op == Op::Conv2dBackFilter)
    return s;
  if (path == ConvPath::Narrow) return s + ddpm::narrow::filter_floats(conv_shape(d));
  if (path == ConvPath::WinogradByWidth) {
    const ddpm::conv::Shape fs = n.op == Op::Conv2dBackData ? dgrad_shape(d) : conv_shape(d);
    return s + std::max(ddpm::wino4::filter_floats(fs), ddpm::wino::filter_floats(fs));
  }
  if (path == ConvPath::Winograd4)
    return s + ddpm::wino4::filter_floats(n.op == Op::Conv2dBackData ? dgrad_shape(d) : conv_shape(d));
  if (path == ConvPath::Winograd)
    return s + ddpm::wino::filter_floats(n.op == Op::Conv2dBackData ? dgrad_shape(d) : conv_shape(d));
  if (path == ConvPath::Blocked) {
    if (n.op == Op::Conv2d) s += ddpm::conv::packed_filter_floats(conv_shape(d));
    if (n.op == Op::Conv2dBackData) s += ddpm::conv::packed_filter_floats(dgrad_shape(d));
    return s;
  }
  if (n.op == Op::Conv2dBackFilter) s += kConvChunks * (ddpm::simd::align_floats(d.O * d.ckk()));
  if (n.op == Op::Conv2dBackData && path == ConvPath::Flipped) s += ddpm::simd::align_floats(d.O * d.ckk());
  return s;
}

int64_t conv_plane_floats(const Graph& g, const Kernel& k) {
  if (k.prologue.empty() || g.nodes[k.prologue.back()].op == Op::Upsample2x) return 0;
  const ConvDims d = conv_dims(g, g.nodes[k.nodes[0]]);
  return kConvChunks * (ddpm::simd::align_floats(d.H * d.W));
}

int64_t conv_kernel_scratch(const Graph& g, const Kernel& k) {
  return conv_scratch(g, g.nodes[k.nodes[0]]) + conv_plane_floats(g, k);
}

}  // namespace ddpmc
