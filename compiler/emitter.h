// The kernel emitter shared by the code generator's files: one Emitter per entry point (train,
// each sampler) writes that graph's kernels as C++ into `out`. emit_kernels.cpp holds the
// elementwise, reduction, GroupNorm, GEMM and layout kernels and the per-entry driver;
// emit_conv.cpp the convolution kernels; codegen.cpp assembles the module around them (tables,
// entry points, the ABI descriptor).
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ir.h"
#include "common/prelude/conv.h"

namespace ddpmc {

// A float literal that round-trips (NAN and INFINITY spelled out).
std::string flt(double v);

// `alignas(64) static const float name[] = {...};` for a constant table.
std::string float_array(const std::string& name, const std::vector<float>& v);

// Iteration space of an elementwise domain: see ddpm_prelude.h.
std::pair<std::string, std::string> rows_cols(const Type& d);

// Per-sample scratch of a kernel that sums per channel into per-sample partials
// (C floats per sum), else 0.
int64_t channel_partials_per_sample(const Graph& g, const Kernel& kern);

// Adds n spaces after every newline but a final one (for a lambda emitted nested).
std::string indent(const std::string& s, int n);

// The GEMM C[M,N] = op(A)[M,K] op(B)[K,N] of a matmul node, with the batch
// factored out: activations [B,...,K] are B * rows rows, so M = B * rows (NN, NT)
// or K = B * rows (TN, which contracts over the batch).
struct MatmulDims {
  int64_t rows, N, K, M;  // NN/NT: M = B * rows, K given; TN: K = B * rows, M given
  bool tn;
  std::string batch_rows(const std::string& B) const;
  std::string m(const std::string& B) const;
  std::string k(const std::string& B) const;
  int64_t m(int64_t B) const { return tn ? M : B * rows; }
  int64_t k(int64_t B) const { return tn ? B * rows : K; }
};
MatmulDims matmul_dims(const Graph& g, const Node& mm);

// Options of an elementwise body.
struct BodyOpts {
  // > 0: the caller never lets a SIMD vector straddle two channels of this many
  // elements, so per-channel operands ([C,1,1], [B,C,1,1]) are read as scalars.
  int64_t chan_hw = 0;
  bool stores = true;                      // store the kernel's outputs
  const std::set<NodeId>* only = nullptr;  // emit only these members
  bool sums = true;                        // emit the sums of the members computed (acc[r] += ...)
  const std::set<NodeId>* stored = nullptr;  // with stores: store only these members (null: every output)
  std::map<NodeId, std::string> reads;     // members read from memory instead (pointer expressions)
  std::string ret;                         // a final statement, e.g. "return v7;"
  std::string x_norm;                      // Norm kernels: the x of the normalization
  std::string name = "body";               // the lambda's name
  // > 0: a [B, flat] domain walked as one flat row (b = 0, j = b * flat + column), so that rows
  // narrower than a vector still fill its lanes; per-row and per-column operands are gathered.
  int64_t flat = 0;
};

struct Emitter {
  const Graph& g;
  const std::string prefix;
  std::string out;
  std::map<std::string, std::string> tables;  // content key → name, shared per module
  std::string* table_defs;
  int* table_counter;

  std::string table_name(const std::vector<float>& data);

  // Pointer expression for a stored value.
  std::string ptr(NodeId id);

  // The spec lines a set of nodes comes from: "file:line" of each node's own
  // position and of the entry-level call that reached it.
  std::string spec_lines(const std::vector<NodeId>& ids);

  std::string op_list(const std::vector<NodeId>& ids);

  void header(size_t k, const Kernel& kern, const std::string& what);

  // A broadcast read (numpy rules) of `base` (type ti) in domain d, lane by lane:
  // the index of domain element q in the input, as in broadcast_index().
  std::string gather(const std::string& base, const Type& ti, const Type& d);

  // Does ti broadcast to domain d varying only along d's first per-sample axis?
  static bool per_channel(const Type& ti, const Type& d);

  // Elementwise body: a generic lambda (tag, b, j, acc) computing the kernel's
  // members for element (b, j). `inside` marks nodes computed in this body.
  std::string body(const Kernel& kern, const std::vector<NodeId>& members, const std::string& cols,
                   std::vector<NodeId>* reduce_nodes, const BodyOpts& o = {});

  // `float* const outs[R] = {...};`: where each of a kernel's sums is stored.
  std::string outs_decl(const std::vector<NodeId>& reds);

  // Norm kernels: the normalized value of element (b, j), from x and the row's statistics.
  static std::string xhat(const std::string& x, const std::string& cols);

  // Can an elementwise kernel over [B, n] with n narrower than a vector run flat (BodyOpts::flat)?
  bool flat_ok(const Kernel& kern);

  // Does an elementwise kernel read a per-channel value (then it loops channel by
  // channel and reads those values as scalars)?
  bool reads_per_channel(const Kernel& kern, const std::vector<NodeId>& members);

  // A group normalization with the elementwise ops fused around it. Per (sample,
  // group) row: the mean and variance of x, then (backward) the sums of dy and
  // dy * xhat, then one sweep computing every member; the per-channel sums go to
  // per-sample partials, added in sample order at the end.
  void norm(size_t k, const Kernel& kern);
  // The backward part of norm() when the gradient has a stored full-size output:
  // see emit_kernels.cpp.
  bool norm_backward_split(const Kernel& kern, NodeId bwd, const std::string& X, int64_t C, int64_t HW, int64_t cpg,
                           int64_t row, const BodyOpts& o, std::vector<NodeId>& reds);

  // A reduction that is not over everything, the batch, or the features (e.g. a
  // conv bias gradient [B,C,H,W] -> [C,1,1]): one output element per task, each
  // summing its inputs in a fixed order.
  void reduce_general(size_t k, const Kernel& kern);

  void elementwise(size_t k, const Kernel& kern);

  // An elementwise kernel over [B,C,...] run channel by channel, so that
  // per-channel operands are scalars; with per-channel sums to [C,1,...] (bias
  // and GroupNorm-affine gradients) into per-sample partials, added in order.
  void by_channel(size_t k, const Kernel& kern);

  void gemm(size_t k, const Kernel& kern);

  // A convolution on a fill-based path (Blocked, Winograd, Winograd4, WinogradByWidth, Narrow; see
  // conv_plan.h).
  // The batch is cut into kConvChunks fixed slices that run in parallel, each with its own
  // scratch; the filter is packed once before them, and filter-gradient slices are added in
  // slice order after them. A prologue computes the input inside the fill.
  void conv_blocked(size_t k, const Kernel& kern);
  // The fill lambda of a convolution with a prologue; `decl` gets the slice-level declarations.
  std::string conv_prologue(const Kernel& kern, const ddpm::conv::Shape& cs, std::string& decl);

  void conv(size_t k, const Kernel& kern);

  void layout(size_t k, const Kernel& kern);

  // One op computed by one prelude call (ops.h, OpClass::Call).
  void call(size_t k, const Kernel& kern);

  void kernels();
};

}  // namespace ddpmc
