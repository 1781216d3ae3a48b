// The gradient exchange of a data-parallel step, timed alone: the reduce-scatter
// (MPI_Alltoallv of each rank's chunks) plus all-gather (MPI_Allgatherv) that
// runtime/sliced_step.cpp runs, and MPI_Allreduce of the same size for
// comparison, for the moons MLP (41,858 floats) and the fashion U-Net
// (691,681 floats). Run under mpirun; rank 0 prints one line per size with the
// median of 50 repetitions.
//
//   mpirun --allow-run-as-root --oversubscribe -np 2 build/bench/mpi_exchange
// The C API only: OpenMPI's mpi.h would otherwise pull in its deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, n = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  const char* names[2] = {"moons MLP", "fashion U-Net"};
  const long sizes[2] = {41858, 691681};
  for (int k = 0; k < 2; ++k) {
    const long P = sizes[k];
    std::vector<int> cnt(n), dis(n), rc(n), rd(n);
    for (int j = 0; j < n; ++j) {
      long lo = (P * j / n) / 16 * 16, hi = j == n - 1 ? P : (P * (j + 1) / n) / 16 * 16;
      cnt[j] = (int)(hi - lo);
      dis[j] = (int)lo;
    }
    for (int r = 0; r < n; ++r) {
      rc[r] = cnt[rank];
      rd[r] = r * cnt[rank];
    }
    std::vector<float> grad(P, 1.0f), recv((size_t)n * cnt[rank]), out(P);
    std::vector<double> ex, ar;
    for (int rep = 0; rep < 55; ++rep) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      MPI_Alltoallv(grad.data(), cnt.data(), dis.data(), MPI_FLOAT, recv.data(), rc.data(), rd.data(), MPI_FLOAT,
                    MPI_COMM_WORLD);
      for (int r = 1; r < n; ++r)
        for (int i = 0; i < cnt[rank]; ++i) recv[i] += recv[(size_t)r * cnt[rank] + i];
      MPI_Allgatherv(recv.data(), cnt[rank], MPI_FLOAT, out.data(), cnt.data(), dis.data(), MPI_FLOAT,
                     MPI_COMM_WORLD);
      double t1 = MPI_Wtime();
      MPI_Allreduce(grad.data(), out.data(), (int)P, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t2 = MPI_Wtime();
      if (rep >= 5) {
        ex.push_back(t1 - t0);
        ar.push_back(t2 - t1);
      }
    }
    if (rank == 0)
      std::printf("%-14s %8ld floats (%5.2f MB), %d ranks: sliced exchange %8.3f ms, MPI_Allreduce %8.3f ms\n",
                  names[k], P, P * 4 / 1e6, n, median(ex) * 1e3, median(ar) * 1e3);
  }
  MPI_Finalize();
  return 0;
}
