// The fixed cut of a global training batch into S slices, and the fixed binary
// tree that adds their gradients, whatever the number of processes.
//
// The global batch of B rows is cut into S equal slices (S divides B); slice s is
// rows [s*B/S, (s+1)*B/S). Rank r of N owns the contiguous slices
// [floor(r*S/N), floor((r+1)*S/N)). The per-slice gradients are added along one
// binary tree over [0, S): node [lo, hi) is a leaf when hi - lo = 1, else the
// elementwise float sum left + right with mid = lo + (hi - lo) / 2. Any tree
// node has one value whoever computes it, so a rank adds the nodes that lie
// wholly inside its slices (its cover), and the rest of the tree is added after
// the exchange. The result is bitwise the same for every N <= S.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace ddpm {

struct SliceNode {
  int lo = 0, hi = 0;  // slices [lo, hi)
  bool leaf() const { return hi - lo == 1; }
  SliceNode left() const { return {lo, lo + (hi - lo) / 2}; }
  SliceNode right() const { return {lo + (hi - lo) / 2, hi}; }
  bool operator==(const SliceNode&) const = default;
};

// Slices [first, last) of rank r of n (floor(r*S/n) .. floor((r+1)*S/n)).
struct SliceRange {
  int first = 0, last = 0;
};
SliceRange rank_slices(int S, int rank, int n);

// The maximal tree nodes inside [a, b), left to right (the canonical cover).
std::vector<SliceNode> tree_cover(int S, int a, int b);

// Computes the value of `node` into out[n]: a node for which `given` returns true
// has been written into its output by `given` itself; any other node is the sum
// of its children (the left one into out, the right one into a scratch row, then
// out += scratch). `scratch` grows to the tree depth, each row n floats.
using GivenNode = std::function<bool(SliceNode node, float* out)>;
void tree_sum(SliceNode node, const GivenNode& given, float* out, int64_t n,
              std::vector<std::vector<float>>& scratch, int depth = 0);

}  // namespace ddpm
