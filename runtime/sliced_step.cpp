// One training step as S slices over the ranks (see sliced_step.h).
#include "sliced_step.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/diag.h"
#include "data_source.h"
#include "dist.h"

namespace ddpm {

namespace {
// The module's RNG counter for slice s of a step: slice 0 keeps the step itself.
uint64_t slice_counter(uint64_t step, int s) { return step + ((uint64_t)s << 32); }

void scale(float* g, int64_t n, float k) {
  if (k == 1.0f) return;
  for (int64_t i = 0; i < n; ++i) g[i] *= k;
}
}  // namespace

SlicedStep::SlicedStep(const Module& mod, const DataSource& data, int B, int S)
    : mod_(mod), data_(data), B_(B), S_(S), rows_(B / S), P_(mod->param_floats), rank_(dist().rank()),
      n_(dist().size()) {
  DDPM_CHECK(S >= n_ && B % S == 0, fmt::format("batch {} in {} slices over {} ranks", B, S, n_));
  for (int r = 0; r < n_; ++r) {
    SliceRange sr = rank_slices(S, r, n_);
    covers_.push_back(tree_cover(S, sr.first, sr.last));
  }
  chunk_.resize((size_t)n_ + 1);
  for (int j = 0; j <= n_; ++j) chunk_[j] = j == n_ ? P_ : (P_ * j / n_) / 16 * 16;
  x0_ = AlignedFloats((int64_t)rows_ * mod->data_numel);
  labelled_ = mod->abi_version >= 4 && mod->label_classes > 0;
  labels_ = AlignedFloats(labelled_ ? rows_ : 0);
  arena_ = alloc_arena(mod.get(), 0, rows_);
  const SliceRange me = rank_slices(S, rank_, n_);
  my_losses_.assign((size_t)(me.last - me.first), 0.0f);
  all_losses_.assign((size_t)S, 0.0f);
  if (n_ > 1) {
    const int64_t k = (int64_t)covers_[rank_].size();
    nodes_ = AlignedFloats(k * P_);
    send_ = AlignedFloats(k * P_);
    int64_t recv = 0;
    for (int r = 0; r < n_; ++r) recv += (int64_t)covers_[r].size() * (chunk_[rank_ + 1] - chunk_[rank_]);
    recv_ = AlignedFloats(recv);
    mine_ = AlignedFloats(chunk_[rank_ + 1] - chunk_[rank_]);
  }
}

int SlicedStep::owner(int slice) const {
  for (int r = 0; r < n_; ++r) {
    SliceRange sr = rank_slices(S_, r, n_);
    if (slice >= sr.first && slice < sr.last) return r;
  }
  return -1;
}

void SlicedStep::compute_node(SliceNode node, const float* params, uint64_t seed, uint64_t step, float* out) {
  const ddpm_module& m = mod_.get();
  const int first = rank_slices(S_, rank_, n_).first;
  auto leaf = [&](SliceNode nd, float* dst) {
    if (!nd.leaf()) return false;
    const int s = nd.lo;
    data_.fill(seed, step, rows_, x0_.data(), labelled_ ? labels_.data() : nullptr, (int64_t)s * rows_);
    float* loss = &my_losses_[(size_t)(s - first)];
    int rc = labelled_ ? m.train_step_labels(arena_.data(), rows_, params, x0_.data(), labels_.data(), seed,
                                             slice_counter(step, s), dst, loss)
                       : m.train_step(arena_.data(), rows_, params, x0_.data(), seed, slice_counter(step, s), dst, loss);
    if (rc != 0) DDPM_ICE(fmt::format("module train_step returned {} at step {}, slice {}", rc, step, s));
    return true;
  };
  tree_sum(node, leaf, out, P_, scratch_);
}

void SlicedStep::run(const float* params, uint64_t seed, uint64_t step, float* grads, float* loss) {
  const Dist& d = dist();
  const std::vector<SliceNode>& mine = covers_[rank_];
  const float inv_s = 1.0f / (float)S_;
  if (n_ == 1) {
    compute_node(mine[0], params, seed, step, grads);
    scale(grads, P_, inv_s);
  } else {
    const int64_t k = (int64_t)mine.size();
    for (int64_t i = 0; i < k; ++i) compute_node(mine[(size_t)i], params, seed, step, nodes_.data() + i * P_);
    // Chunk j of every node, for rank j.
    std::vector<int> sc(n_), sd(n_), rc(n_), rd(n_);
    int64_t off = 0;
    for (int j = 0; j < n_; ++j) {
      const int64_t len = chunk_[j + 1] - chunk_[j];
      sd[j] = (int)off;
      sc[j] = (int)(k * len);
      for (int64_t i = 0; i < k; ++i, off += len)
        std::memcpy(send_.data() + off, nodes_.data() + i * P_ + chunk_[j], (size_t)len * sizeof(float));
    }
    const int64_t my_len = chunk_[rank_ + 1] - chunk_[rank_];
    off = 0;
    for (int r = 0; r < n_; ++r) {
      rd[r] = (int)off;
      rc[r] = (int)((int64_t)covers_[r].size() * my_len);
      off += rc[r];
    }
    d.alltoall(send_.data(), sc, sd, recv_.data(), rc, rd);
    auto received = [&](SliceNode nd, float* dst) {
      for (int r = 0; r < n_; ++r)
        for (size_t i = 0; i < covers_[r].size(); ++i)
          if (covers_[r][i] == nd) {
            std::memcpy(dst, recv_.data() + rd[r] + (int64_t)i * my_len, (size_t)my_len * sizeof(float));
            return true;
          }
      return false;
    };
    tree_sum({0, S_}, received, mine_.data(), my_len, scratch_);
    scale(mine_.data(), my_len, inv_s);
    std::vector<int> counts(n_);
    for (int j = 0; j < n_; ++j) counts[j] = (int)(chunk_[j + 1] - chunk_[j]);
    d.allgather(mine_.data(), grads, counts);
  }
  std::vector<int> lc(n_);
  for (int r = 0; r < n_; ++r) {
    SliceRange sr = rank_slices(S_, r, n_);
    lc[r] = sr.last - sr.first;
  }
  d.allgather(my_losses_.data(), all_losses_.data(), lc);
  auto given_loss = [&](SliceNode nd, float* dst) {
    if (!nd.leaf()) return false;
    *dst = all_losses_[(size_t)nd.lo];
    return true;
  };
  float total = 0;
  tree_sum({0, S_}, given_loss, &total, 1, scratch_);
  *loss = total * inv_s;
}

}  // namespace ddpm
