// The processes of a data-parallel run: the only runtime file that talks to MPI.
//
// A tool started by `mpirun` (OpenMPI sets OMPI_COMM_WORLD_SIZE) holds one
// DistSession for its lifetime: it calls MPI_Init, and MPI_Finalize at the end.
// Without mpirun nothing touches MPI and dist() is a world of one process, so the
// tools behave as before. The trainer and the sampler ask dist() for their rank
// and call the few collectives below; every one of them is a no-op (or a copy)
// in a world of one.
//
// The library never ends the process itself: DistSession::abort is for the tools,
// which call it when a rank fails on its own (so the others do not wait forever).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

class Dist {
 public:
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool distributed() const { return size_ > 1; }

  // Every rank passes its value of `what`; a rank whose value differs from rank
  // 0's makes every rank throw ddpmc::UserError naming that rank and both values.
  void require_same(const std::string& what, const std::string& value) const;

  // Element-wise OR of one int over the ranks.
  int any(int flags) const;
  // Rank `root`'s bytes to every rank (data has the same size everywhere).
  void broadcast(void* data, int64_t bytes, int root = 0) const;
  // Rank r contributes counts[r] floats; every rank receives all of them, in rank order.
  void allgather(const float* mine, float* all, const std::vector<int>& counts) const;
  // Rank r sends send_counts[j] floats (at send_displs[j]) to rank j; receives
  // recv_counts[r] from each rank r at recv_displs[r].
  void alltoall(const float* send, const std::vector<int>& send_counts, const std::vector<int>& send_displs,
                float* recv, const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) const;
  // Rank 0 receives every rank's counts[r] floats, in rank order (others' `all` is unused).
  void gather(const float* mine, float* all, const std::vector<int64_t>& counts) const;

  // Called by DistSession and by the training loop: which step a rank is on, for
  // the message printed when another rank dies (see DistSession).
  void set_step(int64_t step, int64_t last_checkpoint) const;

  // A checkpoint write and the watchdog's report exclude each other, so the step
  // the report names is the checkpoint on disk. begin_checkpoint() returns false
  // once a rank has been reported lost (then nothing is written); after a true,
  // the writer calls end_checkpoint(step) when the file is complete.
  bool begin_checkpoint() const;
  void end_checkpoint(int64_t step) const;
  // Whether the watchdog has reported a lost rank (lock-free: signal handlers may ask).
  bool rank_lost() const;

 private:
  friend class DistSession;
  int rank_ = 0, size_ = 1;
};

// The world of this process (one rank unless a DistSession started MPI).
const Dist& dist();

class DistSession {
 public:
  // Starts MPI when the process was launched by mpirun; otherwise does nothing.
  // `tool` names the program in messages.
  DistSession(int* argc, char*** argv, const char* tool);
  ~DistSession();
  DistSession(const DistSession&) = delete;
  DistSession& operator=(const DistSession&) = delete;

  // Stops every rank of the job with exit status `code` (MPI_Abort); returns only
  // in a world of one.
  void abort(int code) const;
};

}  // namespace ddpm
