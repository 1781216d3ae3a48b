// The slice tree of a global batch (see slices.h).
#include "slices.h"

#include "common/diag.h"

namespace ddpm {

SliceRange rank_slices(int S, int rank, int n) {
  DDPM_CHECK(S >= 1 && n >= 1 && rank >= 0 && rank < n, "bad slice partition");
  return {(int)((int64_t)rank * S / n), (int)((int64_t)(rank + 1) * S / n)};
}

namespace {
void cover_rec(SliceNode node, int a, int b, std::vector<SliceNode>& out) {
  if (node.hi <= a || node.lo >= b) return;
  if (a <= node.lo && node.hi <= b) {
    out.push_back(node);
    return;
  }
  cover_rec(node.left(), a, b, out);
  cover_rec(node.right(), a, b, out);
}
}  // namespace

std::vector<SliceNode> tree_cover(int S, int a, int b) {
  std::vector<SliceNode> out;
  if (a < b) cover_rec({0, S}, a, b, out);
  return out;
}

void tree_sum(SliceNode node, const GivenNode& given, float* out, int64_t n,
              std::vector<std::vector<float>>& scratch, int depth) {
  if (given(node, out)) return;
  DDPM_CHECK(!node.leaf(), "a slice leaf was not given");
  tree_sum(node.left(), given, out, n, scratch, depth + 1);
  // One row per level, sized before any recursion so that no row moves under a caller.
  if (scratch.size() < 32) scratch.resize(32);
  std::vector<float>& tmp = scratch[depth];
  if ((int64_t)tmp.size() < n) tmp.resize((size_t)n);
  float* t = tmp.data();
  tree_sum(node.right(), given, t, n, scratch, depth + 1);
  for (int64_t i = 0; i < n; ++i) out[i] += t[i];
}

}  // namespace ddpm
