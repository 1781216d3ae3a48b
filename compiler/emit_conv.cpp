// Convolution kernel emitters (see emitter.h): each convolution node becomes one kernel on the
// path compiler/conv_plan.cpp chose for it: Winograd F(4x4,3x3) (common/prelude/winograd4.h,
// winograd4_wgrad.h) or F(2x2,3x3) (winograd.h, winograd_wgrad.h), the register-blocked direct
// kernels (conv.h), the few-output-channel kernels (conv_narrow.h), or im2col + GEMM.
#include <algorithm>

#include <fmt/format.h>

#include "conv_plan.h"
#include "emitter.h"
#include "ops.h"
#include "common/prelude/conv_narrow.h"
#include "common/prelude/winograd.h"
#include "common/prelude/winograd4.h"
#include "common/prelude/winograd4_wgrad.h"
#include "common/prelude/winograd_wgrad.h"

namespace ddpmc {

namespace {
// Parts a Winograd filter transform is split into (by input channel), fixed by the shape.
int filter_parts(const ddpm::conv::Shape& cs) { return cs.C >= 16 ? 4 : 1; }
}  // namespace

// The fill of a convolution whose input x is computed by its prologue (a forward group norm
// and the elementwise ops after it; passes/prologue.cpp). Per (sample, group): the statistics,
// as the Norm kernel computes them, when the group's first row is filled; per channel: the
// whole plane into this slice's plane buffer, with the same vector/scalar split as the Norm
// kernel (so the values are bitwise those of the unfused kernels); per row: a copy from it.
// `decl` receives the declarations that go inside the slice's lambda.
std::string Emitter::conv_prologue(const Kernel& kern, const ddpm::conv::Shape& cs, std::string& decl) {
  const Node& cn = g.nodes[kern.nodes[0]];
  const Node& xn = g.nodes[cn.in[0]];
  if (xn.op == Op::Upsample2x) {
    // Row h of the upsampled plane is row h / 2 of the source, each element twice.
    const int64_t Hs = cs.H / 2, Ws = cs.W / 2;
    decl.clear();
    return fmt::format(
        "[&](int64_t b, int ch, int h, float* dst) {{\n"
        "        const float* src = {} + b * {} + ((int64_t)ch * {} + h / 2) * {};\n"
        "        for (int w = 0; w < {}; ++w) dst[w] = src[w / 2];\n"
        "      }}",
        ptr(xn.in[0]), int64_t(cs.C) * Hs * Ws, Hs, Ws, cs.W);
  }
  NodeId gn = -1;
  for (NodeId id : kern.prologue)
    if (g.nodes[id].op == Op::GroupNorm) gn = id;
  DDPM_CHECK(gn >= 0, "a convolution prologue without a group norm");
  const Node& an = g.nodes[gn];
  const int64_t C = cs.C, HW = int64_t(cs.H) * cs.W, N = C * HW, G = an.i0, cpg = C / G, row = N / G;
  const std::string X = ptr(an.in[0]);
  Kernel pk{KernelKind::Norm, kern.prologue, {}, g.nodes[cn.in[0]].type};
  BodyOpts o;
  o.chan_hw = HW;
  o.x_norm = X;
  o.stores = false;
  o.ret = fmt::format("return v{};", cn.in[0]);
  o.name = "pro";
  decl = fmt::format("    float* plane = e.scratch + {} + c * {};  // one channel of x, computed by the prologue\n",
                     conv_scratch(g, cn), conv_plane_floats(g, kern) / kConvChunks);
  decl += "    float mean = 0.0f, rstd = 0.0f;  // the statistics of the group being filled\n";
  decl += "    " + indent(body(pk, pk.nodes, std::to_string(N), nullptr, o), 2);
  return fmt::format(
      "[&](int64_t b, int ch, int h, float* dst) {{\n"
      "        if (h == 0) {{\n"
      "          if (ch % {cpg} == 0) {{\n"
      "            const float* xr = {X} + b * {N} + (ch / {cpg}) * {row};\n"
      "            mean = row_sum(xr, {row}) / {row}.0f;\n"
      "            rstd = 1.0f / std::sqrt(row_sqdev(xr, {row}, mean) / {row}.0f + {eps});\n"
      "          }}\n"
      "          for_cols(ch * {HW}, (ch + 1) * {HW}, [&](auto tag, int64_t j) {{ st(plane + (j - ch * {HW}), pro(tag, b, j, nullptr)); }});\n"
      "        }}\n"
      "        std::memcpy(dst, plane + h * {W}, {Wb});\n"
      "      }}",
      fmt::arg("cpg", cpg), fmt::arg("X", X), fmt::arg("N", N), fmt::arg("row", row), fmt::arg("eps", flt(an.value)),
      fmt::arg("HW", HW), fmt::arg("W", cs.W), fmt::arg("Wb", cs.W * 4));
}

// A convolution on a path that copies each sample into its own scratch through a fill callback:
// Blocked (conv.h), Winograd (winograd.h), Winograd4 (winograd4.h), WinogradByWidth (either, by
// the module's width: ddpm::wino_by_width in winograd4.h) or Narrow (conv_narrow.h).
// The batch is cut into kConvChunks fixed slices that run in parallel, each with its own
// scratch; the filter is packed once before them, and filter-gradient slices are added in slice
// order after them. A prologue (passes/prologue.cpp) computes the input inside the fill.
void Emitter::conv_blocked(size_t k, const Kernel& kern) {
  const Node& cn = g.nodes[kern.nodes[0]];
  const ConvDims d = conv_dims(g, cn);
  const bool fused = cn.op == Op::Conv2d && kern.nodes.size() > 1;
  const ConvPath path = conv_path(cn, d);
  const bool pro = !kern.prologue.empty();
  const bool by_width = path == ConvPath::WinogradByWidth;
  const bool wino = path == ConvPath::Winograd, wino4 = path == ConvPath::Winograd4, narrow = path == ConvPath::Narrow;
  const std::string ns = by_width ? "ddpm::wino_by_width"
                         : wino4  ? "ddpm::wino4"
                         : wino   ? "ddpm::wino"
                         : narrow ? "ddpm::narrow"
                                  : "ddpm::conv";
  const std::string what_pro = !pro ? "" : g.nodes[cn.in[0]].op == Op::Upsample2x ? "upsampling" : "group-norm";
  const std::string how = by_width ? "Winograd F(4x4,3x3) or F(2x2,3x3) by the width"
                          : wino4  ? "Winograd F(4x4,3x3)"
                          : wino   ? "Winograd F(2x2,3x3)"
                          : narrow ? "direct, output pixels in lanes"
                                   : "direct, register-blocked";
  Kernel shown = kern;  // the header lists the prologue's ops and spec lines too
  shown.nodes.insert(shown.nodes.begin(), kern.prologue.begin(), kern.prologue.end());
  header(k, shown, cn.op == Op::Conv2d ? fmt::format("conv2d ({}){}{},", how, pro ? " with fused " + what_pro + " prologue" : "",
                                                     fused ? (pro ? " and epilogue" : " with fused epilogue") : "")
                  : cn.op == Op::Conv2dBackData ? fmt::format("conv2d data gradient ({}: dy with the flipped filter),", how)
                                                : fmt::format("conv2d filter gradient ({}, summed over the batch in slice order),", how));
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  out += fmt::format("  // x [B,{},{},{}], w [{},{},{},{}], y [B,{},{},{}], stride {}, padding {}\n", d.C, d.H, d.W, d.O,
                     d.C, d.K, d.K, d.O, d.Ho, d.Wo, d.s, d.p);
  const bool dgrad = cn.op == Op::Conv2dBackData;
  const ddpm::conv::Shape cs = dgrad ? dgrad_shape(d) : conv_shape(d);
  out += fmt::format("  const ddpm::conv::Shape d{{{}, {}, {}, {}, {}, {}, {}, {}, {}}};\n", cs.C, cs.H, cs.W, cs.O, cs.K, cs.s,
                     cs.p, cs.Ho, cs.Wo);
  const int64_t chunk = conv_chunk_floats(g, cn);
  // The input of the convolution as computed: x (forward, filter gradient) or dy (data gradient).
  // (With a prologue, x is computed while it is copied and has no storage.)
  const int64_t is = (int64_t)cs.C * cs.H * cs.W;
  std::string prologue;
  const std::string fill =
      pro ? conv_prologue(kern, cs, prologue)
          : fmt::format("[&](int64_t b, int ch, int h, float* dst) {{ std::memcpy(dst, {} + b * {} + ((int64_t)ch * {} + h) * {}, {}); }}",
                        ptr(cn.in[0]), is, cs.H, cs.W, cs.W * 4);
  if (cn.op != Op::Conv2dBackFilter) {
    out += fmt::format("  float* wp = e.scratch + {} * {};\n", kConvChunks, chunk);
    if (wino || wino4 || by_width)  // split by input channel: each part writes its own channels of wp
      out += fmt::format("  parallel_chunks({0}, [&](int64_t q) {{ {1}::pack_filter(d, {2}, {3}, wp, q * d.C / {0}, (q + 1) * d.C / {0}); }});\n",
                         filter_parts(cs), ns, ptr(cn.in[1]), dgrad ? "true" : "false");
    else
      out += fmt::format("  {}::pack_filter(d, {}, {}, wp);\n", ns, ptr(cn.in[1]), dgrad ? "true" : "false");
  }
  out += fmt::format("  const int64_t nchunk = std::min<int64_t>(e.B, {});\n", kConvChunks);
  out += "  parallel_chunks(nchunk, [&](int64_t c) {\n";
  out += "    const int64_t b0 = c * e.B / nchunk, b1 = (c + 1) * e.B / nchunk;\n";
  out += fmt::format("    float* xp = e.scratch + c * {};\n", chunk);
  out += prologue;
  if (cn.op == Op::Conv2dBackFilter && (wino || wino4 || narrow)) {
    out += fmt::format("    {}::wgrad_range(d, {}, b0, b1, xp,\n      {});\n  }});\n", ns, ptr(cn.in[1]), fill);
    const int64_t part_off = wino4    ? ddpm::wino4::wgrad_partial_offset(cs)
                             : narrow ? ddpm::narrow::wgrad_partial_offset(cs)
                                      : ddpm::wino::wgrad_partial_offset(cs);
    if (narrow)
      out += fmt::format("  {}::sum_and_transform(d, e.scratch + {}, nchunk, {}, {});\n", ns, part_off, chunk, ptr(kern.nodes[0]));
    else  // split by input channel, as pack_filter
      out += fmt::format("  parallel_chunks({0}, [&](int64_t q) {{ {1}::sum_and_transform(d, e.scratch + {2}, nchunk, {3}, {4}, "
                         "q * d.C / {0}, (q + 1) * d.C / {0}); }});\n",
                         filter_parts(cs), ns, part_off, chunk, ptr(kern.nodes[0]));
    out += "}\n\n";
    return;
  }
  if (cn.op == Op::Conv2dBackFilter) {
    const int64_t xpf = ddpm::conv::padded_floats(cs), dyf = ddpm::conv::dyt_floats(cs);
    out += fmt::format("    ddpm::conv::grad_range(d, {}, b0, b1, xp, xp + {}, xp + {},\n      {});\n  }});\n",
                       ptr(cn.in[1]), xpf, xpf + dyf, fill);
    out += fmt::format("  parallel_chunks(4, [&](int64_t q) {{ ddpm::conv::sum_grad_partials(d, e.scratch + {}, nchunk, {}, {}, "
                       "q * d.ckk() / 4, (q + 1) * d.ckk() / 4); }});\n",
                       xpf + dyf, chunk, ptr(kern.nodes[0]));
    out += "}\n\n";
    return;
  }
  std::string epi = "[](int64_t) {}";
  if (fused) {
    std::vector<NodeId> rest(kern.nodes.begin() + 1, kern.nodes.end());
    out += fmt::format("    const int64_t cols = {};\n", d.O * d.hw());
    BodyOpts o;
    o.chan_hw = d.hw();  // vectors never straddle two output channels
    out += "    " + indent(body(kern, rest, "cols", nullptr, o), 2);
    epi = fmt::format("[&](int64_t b) {{\n        for (int64_t i = 0; i < {0}; ++i)\n          for_cols(i * {1}, (i + 1) * {1}, "
                      "[&](auto tag, int64_t j) {{ body(tag, b, j, nullptr); }});\n      }}",
                      d.O, d.hw());
  }
  out += fmt::format("    {}::forward_range(d, wp, {}, b0, b1, xp,\n      {},\n      {});\n", ns, ptr(kern.nodes[0]), fill,
                     epi);
  out += "  });\n}\n\n";
}

void Emitter::conv(size_t k, const Kernel& kern) {
  const Node& cn = g.nodes[kern.nodes[0]];
  const ConvDims d = conv_dims(g, cn);
  const ConvPath path = conv_path(cn, d);
  if (path == ConvPath::Blocked || path == ConvPath::Winograd || path == ConvPath::Winograd4 ||
      path == ConvPath::WinogradByWidth || path == ConvPath::Narrow)
    return conv_blocked(k, kern);
  const bool direct = path == ConvPath::Gemm1x1;
  std::string what = cn.op == Op::Conv2d ? (direct ? "conv2d 1x1 (GEMM)" : "conv2d (im2col + GEMM)")
                     : cn.op == Op::Conv2dBackData
                         ? (direct ? "conv2d data gradient 1x1 (GEMM)"
                            : path == ConvPath::Flipped ? "conv2d data gradient (im2col of dy + GEMM with the flipped filter)"
                                                        : "conv2d data gradient (GEMM + col2im)")
                         : (direct ? "conv2d filter gradient 1x1 (GEMM, summed over the batch)"
                                   : "conv2d filter gradient (im2col + GEMM, summed over the batch)");
  if (cn.op == Op::Conv2d && kern.nodes.size() > 1) what += " with fused epilogue";
  header(k, kern, what + ",");
  out += fmt::format("static void {}_k{}(const Env& e) {{\n", prefix, k);
  out += fmt::format("  // x [B,{},{},{}], w [{},{},{},{}], y [B,{},{},{}], stride {}, padding {}\n", d.C, d.H, d.W, d.O,
                     d.C, d.K, d.K, d.O, d.Ho, d.Wo, d.s, d.p);
  const int64_t xs = d.C * d.H * d.W, ys = d.O * d.Ho * d.Wo, chunk = conv_chunk_floats(g, cn);
  const GemmDims gm = conv_gemm(cn, d);
  if (path == ConvPath::Flipped) {
    // wt[c, (o, ki, kj)] = w[o, c, K-1-ki, K-1-kj], after every slice's scratch.
    out += fmt::format("  float* wt = e.scratch + {} * {};\n", kConvChunks, chunk);
    out += fmt::format("  flip_filter({}, {}, {}, {}, wt);\n", ptr(cn.in[1]), d.O, d.C, d.K);
  }
  // The batch is cut into kConvChunks fixed slices (never by thread count); each
  // runs its samples in order with its own scratch, and the slices run in parallel.
  out += fmt::format("  const int64_t nchunk = std::min<int64_t>(e.B, {});\n", kConvChunks);
  out += "  parallel_chunks(nchunk, [&](int64_t c) {\n";
  const int64_t colf = conv_col_floats(cn, d);
  if (colf > 0)
    out += fmt::format("    float* col = e.scratch + c * {};  // [{}, {}]\n    float* gs = col + {};\n", chunk,
                       path == ConvPath::Flipped ? d.O * d.K * d.K : d.ckk(), path == ConvPath::Flipped ? d.H * d.W : d.hw(),
                       colf);
  else
    out += fmt::format("    float* gs = e.scratch + c * {};\n", chunk);
  out += "    const int64_t b0 = c * e.B / nchunk, b1 = (c + 1) * e.B / nchunk;\n";
  std::string im2col = fmt::format("im2col({{x}} + b * {}, {}, {}, {}, {}, {}, {}, {}, {}, col);", xs, d.C, d.H, d.W,
                                   d.K, d.s, d.p, d.Ho, d.Wo);
  // The GEMM operand [C*K*K, Ho*Wo] of sample b: the im2col buffer, or x itself.
  auto operand = [&](const std::string& x) { return direct ? fmt::format("{} + b * {}", x, xs) : std::string("col"); };
  if (cn.op == Op::Conv2d) {
    std::string x = ptr(cn.in[0]), w = ptr(cn.in[1]), y = ptr(kern.nodes[0]);
    std::vector<NodeId> epi(kern.nodes.begin() + 1, kern.nodes.end());
    if (!epi.empty()) {
      out += fmt::format("    const int64_t cols = {};\n", ys);
      BodyOpts o;
      o.chan_hw = d.hw();  // tiles are rows of one output channel
      out += "    " + indent(body(kern, epi, "cols", nullptr, o), 2);
    }
    out += "    for (int64_t b = b0; b < b1; ++b) {\n";
    if (!direct) out += "      " + fmt::format(fmt::runtime(im2col), fmt::arg("x", x)) + "\n";
    std::string call = fmt::format("{}, {}, {}, {}, {}, false, {}, {}, false, {} + b * {}, {}, gs", gm.M, gm.N,
                                   gm.K, w, gm.K, operand(x), gm.N, y, ys, gm.N);
    if (epi.empty()) {
      out += "      gemm_plain(" + call + ");\n";
    } else {
      out += "      gemm_epilogue(" + call + ", [&](int i0, int i1, int j0, int j1) {\n";
      out += fmt::format("        for (int64_t i = i0; i < i1; ++i)\n          for_cols(i * {0} + j0, i * {0} + j1, "
                         "[&](auto tag, int64_t j) {{ body(tag, b, j, nullptr); }});\n", d.hw());
      out += "      });\n";
    }
    out += "    }\n  });\n";
  } else if (cn.op == Op::Conv2dBackData) {
    std::string gy = ptr(cn.in[0]), w = ptr(cn.in[1]), dx = ptr(kern.nodes[0]);
    out += "    for (int64_t b = b0; b < b1; ++b) {\n";
    if (path == ConvPath::Flipped) {
      out += fmt::format("      im2col({} + b * {}, {}, {}, {}, {}, 1, {}, {}, {}, col);\n", gy, ys, d.O, d.Ho, d.Wo, d.K,
                         d.K - 1 - d.p, d.H, d.W);
      out += fmt::format("      gemm_plain({}, {}, {}, wt, {}, false, col, {}, false, {} + b * {}, {}, gs);\n", gm.M, gm.N,
                         gm.K, gm.K, gm.N, dx, xs, gm.N);
    } else if (direct) {
      out += fmt::format("      gemm_plain({}, {}, {}, {}, {}, true, {} + b * {}, {}, false, {} + b * {}, {}, gs);\n", gm.M,
                         gm.N, gm.K, w, gm.M, gy, ys, gm.N, dx, xs, gm.N);
    } else {
      out += fmt::format("      gemm_plain({}, {}, {}, {}, {}, true, {} + b * {}, {}, false, col, {}, gs);\n", gm.M,
                         gm.N, gm.K, w, gm.M, gy, ys, gm.N, gm.N);
      out += fmt::format("      col2im(col, {}, {}, {}, {}, {}, {}, {}, {}, {} + b * {});\n", d.C, d.H, d.W, d.K, d.s,
                         d.p, d.Ho, d.Wo, dx, xs);
    }
    out += "    }\n  });\n";
  } else {
    // Each slice sums its samples into its own partial dW; the partials are then
    // added in slice order.
    std::string x = ptr(cn.in[0]), gy = ptr(cn.in[1]), dw = ptr(kern.nodes[0]);
    const int64_t wf = ddpm::simd::align_floats(d.O * d.ckk());
    out += fmt::format("    float* part = e.scratch + {} * {} + c * {};\n", kConvChunks, chunk, wf);
    out += "    for (int64_t b = b0; b < b1; ++b) {\n";
    if (!direct) out += "      " + fmt::format(fmt::runtime(im2col), fmt::arg("x", x)) + "\n";
    out += fmt::format("      gemm_plain({}, {}, {}, {} + b * {}, {}, false, {}, {}, true, part, {}, gs, b > b0);\n",
                       gm.M, gm.N, gm.K, gy, ys, gm.K, operand(x), gm.K, gm.N);
    out += "    }\n  });\n";
    out += fmt::format("  sum_partials(e.scratch + {} * {}, nchunk, {}, {}, {});\n", kConvChunks, chunk, wf,
                       d.O * d.ckk(), dw);
  }
  out += "}\n\n";
}

}  // namespace ddpmc
