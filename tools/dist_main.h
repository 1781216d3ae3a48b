// The tool side of a data-parallel run (runtime/dist.h), shared by ddpm-train and
// ddpm-sample: the tool's work runs inside a DistSession (MPI only under
// mpirun), errors are printed with the rank that saw them, and a rank that fails
// on its own (an input error, an internal error) stops the whole job with its exit
// code instead of leaving the other ranks waiting.
#pragma once
#include <fmt/format.h>

#include "runtime/dist.h"
#include "tool_main.h"

namespace ddpm_tools {

// Runs `work` as guarded() does; under mpirun a thrown error aborts every rank.
template <class F>
int run_distributed(const ddpm::DistSession& session, const char* tool, F&& work) {
  const ddpm::Dist& d = ddpm::dist();
  const std::string who = d.distributed() ? fmt::format("{} (rank {} of {})", tool, d.rank(), d.size()) : tool;
  const int rc = guarded(who.c_str(), [&] {
    try {
      return work();
    } catch (const ddpmc::UserError& e) {
      if (!d.distributed()) throw;
      throw ddpmc::UserError(fmt::format("rank {}: {}", d.rank(), e.what()));
    }
  });
  if (rc == 1 || rc == 70) session.abort(rc);
  return rc;
}

}  // namespace ddpm_tools
