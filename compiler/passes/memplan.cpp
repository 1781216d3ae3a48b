// Memory planning (pass: memplan): one arena for every intermediate value.
//
// Values stored by kernels (Kernel::outputs) that are graph outputs go straight
// to the caller's buffers (gradients, the loss, the sampler's x_out and next
// state); inputs and
// parameters are read from the caller's buffers. Every other stored value gets an
// arena offset, by first-fit over liveness intervals [defining kernel, last use]:
// two values share memory only if their intervals do not overlap.
//
// Layout legend (floats):
//   [0, per_sample * B)                          batched values; a value's offset
//                                                is per_sample_offset * B
//   [per_sample * B, + fixed)                    unbatched values
//   [.., + scratch(B))                           per-kernel scratch (GEMM packing,
//                                                reduction partials), sized by codegen
// Every size is rounded up to 16 floats, so every offset is 64-byte aligned.
#include <algorithm>

#include <fmt/format.h>

#include "ops.h"
#include "passes.h"
#include "common/prelude/align.h"

namespace ddpmc {
namespace {

struct Interval {
  int64_t off, size;
  int begin, end;
};

int64_t place(std::vector<Interval>& placed, int64_t size, int begin, int end) {
  std::vector<std::pair<int64_t, int64_t>> busy;
  for (auto& p : placed)
    if (!(p.end < begin || end < p.begin)) busy.push_back({p.off, p.off + p.size});
  std::sort(busy.begin(), busy.end());
  int64_t off = 0;
  for (auto& [b, e] : busy) {
    if (off + size <= b) break;
    off = std::max(off, e);
  }
  placed.push_back({off, size, begin, end});
  return off;
}

}  // namespace

Graph memplan(const Graph& in, const Model& m) {
  Graph g = in;
  const int n = (int)g.nodes.size();
  g.slots.assign(n, Slot{});
  std::vector<int> def(n, -1), last(n, -1);
  for (size_t k = 0; k < g.kernels.size(); ++k) {
    for (const auto* ids : {&g.kernels[k].prologue, &g.kernels[k].nodes})
      for (NodeId id : *ids) {
        def[id] = (int)k;
        for (NodeId x : g.nodes[id].in) last[x] = std::max(last[x], (int)k);
      }
  }
  for (int i = 0; i < n; ++i) {
    const Node& node = g.nodes[i];
    if (node.op == Op::Input) {
      auto it = std::find(g.input_names.begin(), g.input_names.end(), node.name);
      g.slots[i] = Slot{Slot::Where::Input, 0, 0, (int)(it - g.input_names.begin())};
    } else if (node.op == Op::Param) {
      g.slots[i] = Slot{Slot::Where::Param, 0, m.params[node.index].offset, node.index};
    }
  }
  const SamplerInfo* info = nullptr;
  for (size_t i = 0; i < m.samplers.size() && i < m.sampler_info.size(); ++i)
    if (g.name == "sampler_" + m.samplers[i].first) info = &m.sampler_info[i];
  for (size_t k = 0; k < g.outputs.size(); ++k) {
    NodeId o = g.outputs[k];
    const std::string& name = g.output_names[k];
    if (name.rfind("state/", 0) == 0) {
      // The caller's next-state buffer, at the variable's offset (see SamplerInfo).
      DDPM_CHECK(info, "state output outside a sampler");
      int64_t off = -1;
      for (const StateVar& v : info->state)
        if ("state/" + v.name == name) off = v.offset;
      DDPM_CHECK(off >= 0, "state output without a declaration");
      g.slots[o] = Slot{Slot::Where::Output, off, 0, (int)k};
    } else if (name == "loss") {
      g.slots[o] = Slot{Slot::Where::Loss};
    } else if (name.rfind("grad/", 0) == 0) {
      int p = (int)k - 1;
      DDPM_CHECK(m.params[p].name == name.substr(5), "gradient outputs out of parameter order");
      g.slots[o] = Slot{Slot::Where::Grad, 0, m.params[p].offset, p};
    } else {
      g.slots[o] = Slot{Slot::Where::Output, 0, 0, (int)k};
    }
  }
  std::vector<Interval> batched, fixed;
  int64_t per_sample = 0, fixed_total = 0;
  for (auto& k : g.kernels) {
    for (NodeId id : k.outputs) {
      if (g.slots[id].where != Slot::Where::None) continue;
      const Type& t = g.nodes[id].type;
      int64_t size = ddpm::simd::align_floats(t.numel());
      int end = std::max(last[id], def[id]);
      if (t.batched) {
        int64_t off = place(batched, size, def[id], end);
        g.slots[id] = Slot{Slot::Where::Arena, off, 0};
        per_sample = std::max(per_sample, off + size);
      } else {
        int64_t off = place(fixed, size, def[id], end);
        g.slots[id] = Slot{Slot::Where::Arena, 0, off};
        fixed_total = std::max(fixed_total, off + size);
      }
    }
  }
  g.arena_per_sample = per_sample;
  g.arena_fixed = fixed_total;
  return g;
}

}  // namespace ddpmc
