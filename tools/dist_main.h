// The tool side of a data-parallel run (runtime/dist.h), shared by ddpm-train and
// ddpm-sample: the tool's work runs inside a DistSession (MPI only under
// mpirun), errors are printed with the rank that saw them, and a rank that fails
// on its own (an input error, an internal error) stops the whole job with its exit
// code instead of leaving the other ranks waiting.
//
// Every rank reads the same command line, so a bad one is reported by rank 0 alone
// (quiet_other_ranks), which exits with status 2 before MPI starts while the other
// ranks exit with 0 (had they exited 2 first, mpirun could kill rank 0 before its
// message was out): the only other output is mpirun's own note that a process exited
// non-zero (which `mpirun -q` leaves out). So the tools parse and check their flags first, then
// start the DistSession. An input error found during the work is often seen by
// every rank at once (a missing file): the other ranks wait a moment before
// reporting theirs, so that rank 0's report and MPI_Abort come first and the error
// is printed once.
#pragma once
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "runtime/dist.h"
#include "tool_main.h"

namespace ddpm_tools {

// The number of processes mpirun started (1 without mpirun), known before MPI starts.
inline int launched_ranks() {
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  return n && std::atoi(n) > 1 ? std::atoi(n) : 1;
}

// Call before parsing the command line: ranks other than 0 print nothing about it.
inline void quiet_other_ranks() {
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  g_quiet_rank = r && std::atoi(r) != 0;
}

// Runs `work` as guarded() does; under mpirun a thrown error aborts every rank.
template <class F>
int run_distributed(const ddpm::DistSession& session, const char* tool, F&& work) {
  const ddpm::Dist& d = ddpm::dist();
  const std::string who = d.distributed() ? fmt::format("{} (rank {} of {})", tool, d.rank(), d.size()) : tool;
  std::string report;  // an input error, printed below when it is this rank's turn
  const int rc = guarded(who.c_str(), [&]() -> int {
    try {
      return work();
    } catch (const ddpmc::UserError& e) {
      report = error_text(who.c_str(), e.what());
      return 1;
    }
  });
  if (rc == 1 && !report.empty()) {
    if (d.distributed() && d.rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    fmt::print(stderr, "{}", report);
  }
  if (rc == 1 || rc == 70) session.abort(rc);
  return rc;
}

}  // namespace ddpm_tools
