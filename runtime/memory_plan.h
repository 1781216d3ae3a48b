// The memory a training run or a sampling call will allocate, checked before any
// of it is: weights, gradients, EMA and Adam moments (5 floats per parameter), the
// module's arena at the batch used (arena_bytes of the entry point), the batch
// buffers and the samples kept for output. A request that cannot fit in
// ddpmc::memory_limit_bytes() is a one-line user error naming the bytes needed,
// the limit, and the largest --batch or -n that fits, instead of a bad_alloc.
#pragma once
#include <cstdint>

#include "ddpm_abi.h"

namespace ddpm {

// Training with global batch `batch` cut into `slices` (this process computes
// ceil(batch / slices) rows per call).
void check_train_memory(const ddpm_module& m, int batch, int slices);

// Sampling n samples in total with sampler `idx`, `batch` per module call;
// `kept` samples are held for the output (n, or K * n for --class all).
void check_sample_memory(const ddpm_module& m, int idx, int64_t n, int batch, int64_t kept);

}  // namespace ddpm
