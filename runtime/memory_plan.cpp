// Memory checks before training and sampling allocate (see memory_plan.h).
#include "memory_plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/input_limits.h"

namespace ddpm {

namespace {

// Bytes of the module's arena for `entry` at batch B, as a double (no overflow).
double arena(const ddpm_module& m, int entry, int64_t B) {
  const int64_t one = m.arena_bytes(entry, 1), two = m.arena_bytes(entry, 2);
  if (one < 0 || two < 0) return 0;  // alloc_arena reports a module that cannot say
  return (double)one + (double)(two - one) * (double)(B - 1);
}

// The largest count whose memory, fixed + per * count, fits in the limit.
int64_t largest_fitting(double fixed, double per) {
  const double room = (double)ddpmc::memory_limit_bytes() - fixed;
  if (room <= 0 || per <= 0) return 0;
  return (int64_t)std::min(room / per, 2147483647.0);
}

}  // namespace

void check_train_memory(const ddpm_module& m, int batch, int slices) {
  const double params = 5.0 * 4.0 * (double)m.param_floats;
  ddpmc::check_memory(params,
                      fmt::format("the model's {} parameter floats (weights, gradients, EMA and two Adam moments)",
                                  m.param_floats),
                      "make the model smaller: fewer or narrower layers");
  const int S = std::max(1, slices);
  const int64_t rows = ((int64_t)batch + S - 1) / S;
  const double per_row = arena(m, 0, 2) - arena(m, 0, 1) + 4.0 * (double)(m.data_numel + 1);
  const double fixed = params + arena(m, 0, 1) - (arena(m, 0, 2) - arena(m, 0, 1));
  const int64_t fit = largest_fitting(fixed, per_row) * S;
  ddpmc::check_memory(fixed + per_row * (double)rows,
                      fmt::format("training with --batch {}{} ({} rows per module call)", batch,
                                  S > 1 ? fmt::format(" in {} slices", S) : "", rows),
                      fit > 0 ? fmt::format("use --batch {} or less (or more --slices)", fit)
                              : std::string("the model's parameters alone fill the memory; make it smaller"));
}

void check_sample_memory(const ddpm_module& m, int idx, int64_t n, int batch, int64_t kept) {
  const int64_t B = std::max<int64_t>(1, std::min<int64_t>(batch, n));
  const int entry = 1 + idx;
  const int64_t state = m.abi_version >= 4 ? m.sampler_info[idx].state_floats : 0;
  const double params = 4.0 * (double)m.param_floats;
  const double per_call_row = arena(m, entry, 2) - arena(m, entry, 1) + 4.0 * (double)(2 * m.data_numel + 2 * state);
  const double calls = arena(m, entry, 1) - (arena(m, entry, 2) - arena(m, entry, 1)) + per_call_row * (double)B;
  const double per_kept = 4.0 * (double)m.data_numel * 2;  // the samples, and the copy written out
  const int64_t fit = largest_fitting(params + calls, per_kept) / std::max<int64_t>(1, kept / std::max<int64_t>(1, n));
  ddpmc::check_memory(params + calls + per_kept * (double)kept,
                      fmt::format("sampling {} samples of {} floats{}", kept, m.data_numel,
                                  batch > 1 ? fmt::format(" at --batch {}", B) : ""),
                      fit > 0 ? fmt::format("use -n {} or less, and run ddpm-sample again for more", fit)
                              : std::string("lower --batch"));
}

}  // namespace ddpm
