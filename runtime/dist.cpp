// MPI for data-parallel runs (see dist.h). Collectives run on MPI_COMM_WORLD,
// which every rank enters in the same order (the training loop is the same
// program on every rank). Counts above 2^31 floats are not supported.
//
// A watchdog thread on each rank (distributed runs only) polls, every 50 ms,
// whether the ranks on its own host are still alive (kill(pid, 0)). When one is
// gone, the lowest surviving rank of that host prints one line naming it and the
// step, before mpirun stops the job; ranks on other hosts are named by mpirun.
#include "dist.h"

// The C API only: OpenMPI's mpi.h would otherwise pull in its deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/diag.h"

namespace ddpm {

namespace {

Dist g_world;
std::atomic<int64_t> g_step{-1}, g_ckpt{-1};
std::mutex g_ckpt_mu;  // held while a checkpoint is written, and while the report reads g_ckpt
std::atomic<bool> g_lost{false};  // a rank was reported lost (set under g_ckpt_mu)
static_assert(std::atomic<bool>::is_always_lock_free, "rank_lost() is called from signal handlers");

void check(int rc, const char* what, int line) {
  if (rc != MPI_SUCCESS) ddpmc::internal_error(__FILE__, line, fmt::format("{} failed (MPI error {})", what, rc));
}
#define DDPM_MPI(call) check((call), #call, __LINE__)

struct Peer {
  int pid = 0;
  char host[64] = {};
};

struct Watchdog {
  std::vector<Peer> peers;
  int rank = 0;
  std::string tool;
  std::atomic<bool> stop{false};
  std::thread th;

  void run() {
    const Peer& me = peers[rank];
    while (!stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      auto alive = [&](int r) { return !(kill(peers[r].pid, 0) != 0 && errno == ESRCH); };
      int dead = -1;
      for (int r = 0; r < (int)peers.size() && dead < 0; ++r)
        if (r != rank && std::strcmp(peers[r].host, me.host) == 0 && !alive(r)) dead = r;
      if (dead < 0 || stop.load()) continue;
      // One report per host: from its lowest live rank.
      for (int r = 0; r < rank; ++r)
        if (std::strcmp(peers[r].host, me.host) == 0 && alive(r)) return;
      int64_t ck;
      {
        std::lock_guard<std::mutex> lock(g_ckpt_mu);
        g_lost = true;
        ck = g_ckpt.load();
      }
      const int64_t step = g_step.load();
      std::string where = step > 0 ? fmt::format(" during step {}", step) : std::string();
      std::string kept = ck >= 0 ? fmt::format("; the last good checkpoint (step {}) is kept", ck)
                         : step > 0 ? std::string("; no checkpoint had been written yet") : std::string();
      fmt::print(stderr, "{}: error: rank {} (pid {}) exited or crashed{}; all ranks stop{}\n", tool, dead,
                 peers[dead].pid, where, kept);
      std::fflush(stderr);
      return;
    }
  }
};

Watchdog* g_watchdog = nullptr;

}  // namespace

const Dist& dist() { return g_world; }

void Dist::set_step(int64_t step, int64_t last_checkpoint) const {
  g_step.store(step);
  g_ckpt.store(last_checkpoint);
}

bool Dist::begin_checkpoint() const {
  g_ckpt_mu.lock();
  if (!g_lost) return true;
  g_ckpt_mu.unlock();
  return false;
}

bool Dist::rank_lost() const { return g_lost.load(); }

void Dist::end_checkpoint(int64_t step) const {
  g_ckpt.store(step);
  g_ckpt_mu.unlock();
}

void Dist::require_same(const std::string& what, const std::string& value) const {
  if (!distributed()) return;
  int len = (int)value.size(), max_len = 0;
  DDPM_MPI(MPI_Allreduce(&len, &max_len, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  std::vector<char> mine((size_t)max_len + 1, 0), all((size_t)(max_len + 1) * size_);
  std::memcpy(mine.data(), value.data(), value.size());
  DDPM_MPI(MPI_Allgather(mine.data(), max_len + 1, MPI_CHAR, all.data(), max_len + 1, MPI_CHAR, MPI_COMM_WORLD));
  const std::string first(all.data());
  for (int r = 1; r < size_; ++r) {
    std::string v(all.data() + (size_t)r * (max_len + 1));
    if (v != first)
      ddpmc::user_error_noloc(fmt::format("the ranks disagree on {}: rank 0 has '{}', rank {} has '{}'", what,
                                          first, r, v),
                              "start every rank with the same spec, module, data and flags");
  }
}

int Dist::any(int flags) const {
  if (!distributed()) return flags;
  int out = 0;
  DDPM_MPI(MPI_Allreduce(&flags, &out, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD));
  return out;
}

void Dist::broadcast(void* data, int64_t bytes, int root) const {
  if (!distributed()) return;
  DDPM_CHECK(bytes <= INT32_MAX, "broadcast too large");
  DDPM_MPI(MPI_Bcast(data, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD));
}

void Dist::allgather(const float* mine, float* all, const std::vector<int>& counts) const {
  std::vector<int> displs(counts.size());
  for (size_t r = 1; r < counts.size(); ++r) displs[r] = displs[r - 1] + counts[r - 1];
  if (!distributed()) {
    std::memcpy(all, mine, (size_t)counts[0] * sizeof(float));
    return;
  }
  DDPM_MPI(MPI_Allgatherv(mine, counts[rank_], MPI_FLOAT, all, counts.data(), displs.data(), MPI_FLOAT,
                          MPI_COMM_WORLD));
}

void Dist::alltoall(const float* send, const std::vector<int>& send_counts, const std::vector<int>& send_displs,
                    float* recv, const std::vector<int>& recv_counts, const std::vector<int>& recv_displs) const {
  if (!distributed()) {
    std::memcpy(recv + recv_displs[0], send + send_displs[0], (size_t)send_counts[0] * sizeof(float));
    return;
  }
  DDPM_MPI(MPI_Alltoallv(send, send_counts.data(), send_displs.data(), MPI_FLOAT, recv, recv_counts.data(),
                         recv_displs.data(), MPI_FLOAT, MPI_COMM_WORLD));
}

void Dist::gather(const float* mine, float* all, const std::vector<int64_t>& counts) const {
  if (!distributed()) {
    std::memcpy(all, mine, (size_t)counts[0] * sizeof(float));
    return;
  }
  std::vector<int> c(counts.size()), displs(counts.size());
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); ++r) {
    DDPM_CHECK(total + counts[r] <= INT32_MAX, "gather too large for one MPI call");
    c[r] = (int)counts[r];
    displs[r] = (int)total;
    total += counts[r];
  }
  DDPM_MPI(MPI_Gatherv(mine, c[rank_], MPI_FLOAT, all, c.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD));
}

DistSession::DistSession(int* argc, char*** argv, const char* tool) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE")) return;
  DDPM_MPI(MPI_Init(argc, argv));
  DDPM_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank_));
  DDPM_MPI(MPI_Comm_size(MPI_COMM_WORLD, &g_world.size_));
  if (g_world.size_ < 2) return;
  Peer me;
  me.pid = (int)getpid();
  gethostname(me.host, sizeof me.host - 1);
  g_watchdog = new Watchdog;
  g_watchdog->peers.resize((size_t)g_world.size_);
  g_watchdog->rank = g_world.rank_;
  g_watchdog->tool = tool;
  DDPM_MPI(MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, g_watchdog->peers.data(), (int)sizeof me, MPI_BYTE,
                         MPI_COMM_WORLD));
  g_watchdog->th = std::thread([] { g_watchdog->run(); });
}

DistSession::~DistSession() {
  int up = 0;
  MPI_Initialized(&up);
  if (!up) return;
  if (g_watchdog) {
    // Every rank is done before any watchdog stops, and every watchdog has
    // stopped before any rank leaves, so a normal end is never reported.
    MPI_Barrier(MPI_COMM_WORLD);
    g_watchdog->stop = true;
    g_watchdog->th.join();
    delete g_watchdog;
    g_watchdog = nullptr;
    MPI_Barrier(MPI_COMM_WORLD);
  }
  MPI_Finalize();
}

void DistSession::abort(int code) const {
  int up = 0;
  MPI_Initialized(&up);
  if (up && g_world.size_ > 1) {
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
  }
}

}  // namespace ddpm
