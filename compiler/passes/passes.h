// The IR passes. Each is a pure function Graph → Graph in its own file; the order
// they run in is in compiler/pipeline.cpp.
#pragma once
#include "ir.h"
#include "ops.h"

namespace ddpmc {

// Reverse-mode autodiff: the loss graph → one joint forward+backward graph whose
// outputs are "loss" and "grad/<param>" for every parameter, in Model::params order.
Graph autodiff(const Graph& loss, const Model& m);
// The reverse sweep autodiff is made of: appends to b's graph (which starts with
// fwd's nodes) the adjoint of every node of fwd that depends on a node marked in
// `from`, given the adjoint `seed` of node `out`; returns them by node (-1: none).
std::vector<NodeId> reverse_sweep(Builder& b, const Graph& fwd, const std::vector<bool>& from, NodeId out, NodeId seed);

// The ode graph (output "drift") → the same with input "u" and output "vjp" = u^T d drift/dx
// (passes/vjp.cpp).
Graph vjp(const Graph& ode, const Model& m);

// Common-subexpression elimination, constant folding (including folding the
// diffusion arithmetic on schedule tables into single table lookups), algebraic
// identities and dead-code elimination.
Graph simplify(const Graph& g);
// Throws a UserError at the node's spec location if a constant of g is NaN or
// infinite, or a table lookup is at a step its step input can take (simplify runs it).
void check_constants(const Graph& g);

// Gives each group-normalization backward its own copy of the forward values its
// gradient region reads (the normalization and the elementwise chain after it),
// so that they are recomputed inside the backward loop nest instead of stored.
Graph remat(const Graph& g);

// Groups nodes into kernels (Graph::kernels): elementwise chains and their
// reductions into one loop nest each, and elementwise consumers of a matmul into
// its GEMM epilogue. Kernels are listed in execution order.
Graph fuse(const Graph& g);

// Moves a forward group normalization (with its affine map and SiLU) whose only stored value
// feeds one forward convolution into that convolution's kernel (Kernel::prologue): the input
// rows are computed as they are copied, and the normalized map is not stored.
Graph fuse_prologue(const Graph& g);

// Gives every value stored to memory a Slot: the arena by liveness (batched
// values in per-sample units times B, unbatched ones at fixed offsets), or the
// caller's parameter, gradient, input and output buffers.
Graph memplan(const Graph& g, const Model& m);

}  // namespace ddpmc
