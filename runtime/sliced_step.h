// The loss and gradient of one training step over the global batch, computed as
// S fixed slices spread over the ranks of a data-parallel run (slices.h, dist.h).
//
// Data flow on rank r: for each slice s it owns, rows [s*B/S, (s+1)*B/S) of the
// step's global batch (DataSource::fill with the global row index, and their labels
// when the model has one) → module train_step on those B/S rows with the RNG counter step + s * 2^32 (so every
// slice draws its own t and noise; slice 0 of a one-slice run is exactly the
// module call of an unsliced step) → the slice-tree nodes inside r's slices. Then
// every rank sends rank j the j-th chunk of its node sums (MPI_Alltoallv), rank j
// adds the rest of the tree for its chunk, and the chunks are gathered on every
// rank (MPI_Allgatherv): a reduce-scatter and an all-gather, 2(N-1)/N gradient
// sizes per rank and step when every rank owns one tree node. The gradient and
// the loss are the tree sums times 1/S (the module's loss is a mean over its rows).
//
// So the gradient of a step depends on (params, seed, step, B, S) and never on the
// number of ranks or threads; with S = 1 and one process it is the unsliced step.
#pragma once
#include <cstdint>
#include <vector>

#include "module.h"
#include "slices.h"

namespace ddpm {

class DataSource;

class SlicedStep {
 public:
  // B rows in S slices (S divides B, S >= number of ranks); allocates every buffer.
  SlicedStep(const Module& mod, const DataSource& data, int B, int S);

  // Writes the step's gradient into grads[P] and its loss into *loss, identical on every rank.
  void run(const float* params, uint64_t seed, uint64_t step, float* grads, float* loss);

  // The loss of each slice at the last run (all S, on every rank), and the rank that computed slice s.
  const std::vector<float>& slice_losses() const { return all_losses_; }
  int owner(int slice) const;

 private:
  void compute_node(SliceNode node, const float* params, uint64_t seed, uint64_t step, float* out);

  const Module& mod_;
  const DataSource& data_;
  int B_, S_, rows_;
  int64_t P_;
  int rank_, n_;
  std::vector<std::vector<SliceNode>> covers_;  // per rank
  std::vector<int64_t> chunk_;                 // n + 1 chunk bounds of [0, P)
  bool labelled_ = false;  // the model declares a label (ABI 4): train_step_labels
  AlignedFloats x0_, labels_, nodes_, send_, recv_, mine_;
  AlignedBuffer arena_;
  std::vector<float> my_losses_, all_losses_;
  std::vector<std::vector<float>> scratch_;
};

}  // namespace ddpm
