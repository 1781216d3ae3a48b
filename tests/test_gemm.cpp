// Tests for common/prelude/gemm.h, the GEMM engine generated modules call.
//
// Every result is checked against a naive double-precision reference on random data: many shapes
// (1, odd, K = 0, the MLP and small im2col shapes), all four transpose combinations, accumulate on
// and off, and leading dimensions larger than the rows. Also checked: the epilogue runs once per
// tile and the tiles cover C exactly once, memory outside C (the ld padding) is untouched, the
// scratch size is respected (also the size for every batch up to B, which a module's arena takes),
// every microkernel of the width is exercised, the narrow paths (gemm_narrow.h) are taken where
// they should be, and results are bitwise identical at 1 and 2 threads.
//
// Dimension legend: C[M,N] = op(A)[M,K] * op(B)[K,N]; A stored [M,K] or [K,M] (ta), B [K,N] or [N,K] (tb).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

#include <tbb/global_control.h>

#include "common/prelude/gemm.h"

namespace {

struct Case {
  int M, N, K;
  bool ta, tb, acc;
  int pad;  // extra elements per row in lda, ldb, ldc
};

struct Buffers {
  std::vector<float> A, B, C0;
  int lda, ldb, ldc;
};

Buffers make_buffers(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Buffers b;
  int arows = c.ta ? c.K : c.M, acols = c.ta ? c.M : c.K;
  int brows = c.tb ? c.N : c.K, bcols = c.tb ? c.K : c.N;
  b.lda = acols + c.pad;
  b.ldb = bcols + c.pad;
  b.ldc = c.N + c.pad;
  b.A.resize(static_cast<size_t>(std::max(arows, 1)) * b.lda);
  b.B.resize(static_cast<size_t>(std::max(brows, 1)) * b.ldb);
  b.C0.resize(static_cast<size_t>(c.M) * b.ldc);
  for (auto& x : b.A) x = u(rng);
  for (auto& x : b.B) x = u(rng);
  for (auto& x : b.C0) x = u(rng);
  return b;
}

// Runs ddpm::gemm on a copy of C0 with a guard-filled scratch area; checks the scratch bound.
std::vector<float> run_gemm(const Case& c, const Buffers& b) {
  size_t sf = ddpm::gemm_scratch_floats(c.M, c.N, c.K);
  auto scratch = ddpm::aligned_alloc_floats(sf + 64);
  for (size_t i = 0; i < sf + 64; ++i) scratch[i] = 12345.f;
  std::vector<float> C = b.C0;
  ddpm::gemm(c.M, c.N, c.K, b.A.data(), b.lda, c.ta, b.B.data(), b.ldb, c.tb, C.data(), b.ldc, c.acc,
             scratch.get());
  for (size_t i = sf; i < sf + 64; ++i) REQUIRE(scratch[i] == 12345.f);
  return C;
}

void check_case(const Case& c, uint32_t seed) {
  CAPTURE(c.M);
  CAPTURE(c.N);
  CAPTURE(c.K);
  CAPTURE(c.ta);
  CAPTURE(c.tb);
  CAPTURE(c.acc);
  CAPTURE(c.pad);
  Buffers b = make_buffers(c, seed);
  std::vector<float> C = run_gemm(c, b);
  for (int i = 0; i < c.M; ++i) {
    for (int j = 0; j < b.ldc; ++j) {
      size_t at = static_cast<size_t>(i) * b.ldc + j;
      if (j >= c.N) {
        REQUIRE(C[at] == b.C0[at]);
        continue;
      }
      double ref = c.acc ? b.C0[at] : 0.0;
      double mag = c.acc ? std::abs(b.C0[at]) : 0.0;
      for (int k = 0; k < c.K; ++k) {
        double a = c.ta ? b.A[static_cast<size_t>(k) * b.lda + i] : b.A[static_cast<size_t>(i) * b.lda + k];
        double bb = c.tb ? b.B[static_cast<size_t>(j) * b.ldb + k] : b.B[static_cast<size_t>(k) * b.ldb + j];
        ref += a * bb;
        mag += std::abs(a * bb);
      }
      double tol = 1.2e-7 * (c.K + 2) * mag + 1e-30;  // worst-case fp32 summation bound
      if (std::abs(C[at] - ref) > tol) {
        CAPTURE(i);
        CAPTURE(j);
        CAPTURE(ref);
        CAPTURE(C[at]);
        REQUIRE(std::abs(C[at] - ref) <= tol);
      }
    }
  }
}

void check_all_combos(int M, int N, int K, uint32_t seed) {
  for (int t = 0; t < 4; ++t)
    for (int acc = 0; acc < 2; ++acc)
      for (int pad : {0, 3})
        check_case({M, N, K, bool(t & 1), bool(t & 2), bool(acc), pad}, seed++);
}

}  // namespace

TEST_CASE("gemm: edge sizes against double reference") {
  const int sizes[] = {1, 2, 3, 7, 13, 14, 15, 16, 17, 31, 33};
  uint32_t seed = 1;
  for (int M : sizes)
    for (int N : sizes)
      for (int K : {0, 1, 5, 17}) check_case({M, N, K, bool(seed & 1), bool(seed & 2), bool(seed & 4), int(seed % 3)}, seed++);
  for (int K : {0, 1, 2, 3}) check_all_combos(9, 10, K, 100 + K);
}

TEST_CASE("gemm: model shapes, all transpose combos, accumulate, padded leading dims") {
  check_all_combos(256, 128, 66, 11);   // MLP first layer
  check_all_combos(256, 128, 128, 12);  // MLP hidden layer
  check_all_combos(256, 2, 128, 13);    // MLP output layer (narrow N)
  check_all_combos(128, 2, 256, 14);    // dW of the output layer (ta, narrow N, K = batch)
  check_all_combos(256, 128, 2, 15);    // dX of the output layer (K = 2)
  check_all_combos(66, 128, 256, 16);   // dW of the first layer
  check_all_combos(300, 40, 700, 17);   // several K blocks, odd sizes
  // Leading dimensions of 1024 floats make gemm pack A instead of reading it in place.
  check_case({40, 50, 300, false, false, false, 1024 - 300}, 18);
  check_case({40, 50, 300, true, true, true, 1024 - 40}, 19);
  check_case({300, 50, 600, false, true, false, 1024 - 600}, 20);
  // B rows 512 floats apart are packed (several L1-aliasing rows), others read in place; a partial
  // last B panel is packed either way.
  check_case({300, 64, 200, false, false, false, 512 - 64}, 21);
  check_case({300, 100, 64, false, false, true, 0}, 22);
}

TEST_CASE("gemm: every microkernel of this width is chosen by a shape tested here") {
  namespace gd = ddpm::gemm_detail;
  // What the tests above multiply: the edge sizes, the model shapes and the large random ones.
  const int dims[][3] = {{1, 1, 1},       {3, 33, 5},     {7, 31, 17},   {13, 17, 5},   {33, 33, 17}, {256, 128, 66},
                         {256, 128, 128}, {256, 2, 128},  {128, 2, 256}, {66, 128, 256}, {300, 40, 700}};
  std::vector<gd::Kernel> seen;
  for (auto& d : dims) seen.push_back(gd::make_plan(d[0], d[1], d[2]).kernel);
  const std::vector<gd::Kernel> all = gd::kL == 16
      ? std::vector{gd::Kernel::k14x2, gd::Kernel::k7x4, gd::Kernel::k6x4, gd::Kernel::k8x3, gd::Kernel::k4x4, gd::Kernel::k2x4}
      : std::vector{gd::Kernel::k6x2, gd::Kernel::k4x3, gd::Kernel::k2x4};
  for (gd::Kernel k : all) {
    CAPTURE(static_cast<int>(k));
    CHECK(std::find(seen.begin(), seen.end(), k) != seen.end());
  }
  // The MLP's layers at 16 lanes: 7x4 pads 256 rows to 259 (14x2: 266), 6x4 keeps 66; 32 columns keep 14x2.
  if (gd::kL == 16) {
    CHECK(gd::make_plan(256, 128, 128).kernel == gd::Kernel::k7x4);
    CHECK(gd::make_plan(66, 128, 256).kernel == gd::Kernel::k6x4);
    CHECK(gd::make_plan(3000, 32, 288).kernel == gd::Kernel::k14x2);
  }
}

TEST_CASE("gemm: the narrow paths, dot products for N <= 4 and scaled rows for K <= 4, against the reference") {
  namespace gd = ddpm::gemm_detail;
  const int L = gd::kL;
  // The MLP's output layer forward and its data gradient take them; a transposed A does not.
  CHECK(gd::narrow_path<gd::kL>(256, 2, 128, false) == gd::Narrow::dot);
  CHECK(gd::narrow_path<gd::kL>(256, 2, 128, true) == gd::Narrow::none);
  CHECK(gd::narrow_path<gd::kL>(256, 128, 2, false) == gd::Narrow::outer);
  CHECK(gd::narrow_path<gd::kL>(128, 2, 256, true) == gd::Narrow::none);
  uint32_t seed = 3000;
  int dots = 0, outers = 0, outers128 = 0;
  for (int N : {1, 2, 3, 4})
    for (int M : {N + 1, 13, 256, 1001})
      for (int K : {L, 2 * L + 3, 128, 300}) {
        dots += gd::narrow_path<gd::kL>(M, N, K, false) == gd::Narrow::dot;
        for (int tb = 0; tb < 2; ++tb) check_case({M, N, K, false, bool(tb), bool(seed & 1), int(seed % 3)}, seed++);
      }
  for (int K : {1, 2, 3, 4})
    for (int N : {L, 3 * L + 5, 128})
      for (int M : {1, 7, 256}) {
        outers += gd::narrow_path<gd::kL>(M, N, K, false) == gd::Narrow::outer;
        outers128 += N == 128 && gd::narrow_path<gd::kL>(M, N, K, true) == gd::Narrow::outer;
        for (int t = 0; t < 4; ++t) check_case({M, N, K, bool(t & 1), bool(t & 2), bool(seed & 1), int(seed % 3)}, seed++);
      }
  CHECK(dots == 64);
  CHECK(outers128 == 12);
  CHECK(outers >= 27);  // N = L <= 8 with M > N is swapped to the engine; at 4 lanes N = K = 4 is a dot product
}

TEST_CASE("gemm: a row of C does not depend on how many rows the call has") {
  // A sampler's last chunk and each MPI rank's share of the samples call a layer's GEMM with
  // fewer rows; every sample must come out bit for bit the same. Shapes: the narrow dot and
  // outer paths, the boundary where N = 8 is swapped above 8 rows, the blocked engine either way.
  struct Shape { int N, K; bool ta, tb; };
  const Shape shapes[] = {{2, 128, false, false}, {2, 128, false, true}, {1, 40, false, false}, {4, 300, false, true},
                          {128, 2, false, true},  {8, 3, false, false},  {8, 128, false, false}, {2, 128, true, false},
                          {128, 128, false, false}, {128, 66, true, true}};
  const int Mfull = 37;
  for (const Shape& sh : shapes) {
    CAPTURE(sh.N);
    CAPTURE(sh.K);
    CAPTURE(sh.ta);
    CAPTURE(sh.tb);
    const Case full{Mfull, sh.N, sh.K, sh.ta, sh.tb, false, 0};
    const Buffers b = make_buffers(full, 77);
    const std::vector<float> C = run_gemm(full, b);
    for (int M : {1, 2, 3, 4, 5, 7, 8, 9, 16, 36}) {
      CAPTURE(M);
      // The first M rows of op(A): a prefix of A's rows, or (ta) of each k row's columns.
      auto scratch = ddpm::aligned_alloc_floats(ddpm::gemm_scratch_floats(M, sh.N, sh.K));
      std::vector<float> Cm(static_cast<size_t>(M) * b.ldc, 0.f);
      ddpm::gemm(M, sh.N, sh.K, b.A.data(), b.lda, sh.ta, b.B.data(), b.ldb, sh.tb, Cm.data(), b.ldc, false, scratch.get());
      CHECK(std::memcmp(Cm.data(), C.data(), Cm.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("gemm: random shapes") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> small(1, 80), big(1, 600);
  for (int it = 0; it < 60; ++it) {
    int M = it % 3 ? small(rng) : big(rng), N = it % 4 ? small(rng) : big(rng), K = it % 5 ? small(rng) : big(rng);
    check_case({M, N, K, bool(rng() & 1), bool(rng() & 1), bool(rng() & 1), int(rng() % 5)}, 1000 + it);
  }
}

TEST_CASE("gemm: scratch sized for batch B serves every smaller batch, at every width") {
  // A module's arena for batch B also runs its sampler's last, smaller chunk. The batch scales M
  // (a linear layer: M = b * rows) or K (its filter gradient: K = b * rows). Shapes from the
  // models: tiny_fashion's 32 -> 784 output layer, whose B panels at b = 4 (the 4x4 kernel's 64
  // columns at 16 lanes) outgrew those at b = 16 and overran the arena.
  struct Shape { int rows, N, other; bool in_k; };
  const Shape shapes[] = {{1, 784, 32, false}, {1, 32, 800, false}, {1, 784, 32, true}, {1, 128, 128, false},
                          {1, 128, 128, true}, {1, 4, 128, false}, {1, 2, 128, false}, {49, 64, 64, false},
                          {16, 8, 40, true}, {1, 32, 784, true}};
  bool smaller_needs_more = false;  // some smaller batch needs more than B itself: the case at issue
  for (const Shape& sh : shapes) {
    for (int B : {16, 40, 333}) {
      CAPTURE(sh.rows);
      CAPTURE(sh.N);
      CAPTURE(sh.other);
      CAPTURE(sh.in_k);
      CAPTURE(B);
      const std::size_t upto = ddpm::gemm_scratch_floats_upto(B, sh.rows, sh.N, sh.other, sh.in_k);
      CHECK(upto >= ddpm::gemm_scratch_floats_upto(B - 1, sh.rows, sh.N, sh.other, sh.in_k));
      auto dims = [&](int b) { return sh.in_k ? std::array{sh.other, b * sh.rows} : std::array{b * sh.rows, sh.other}; };
      if (ddpm::gemm_scratch_floats(dims(B)[0], sh.N, dims(B)[1]) < upto) smaller_needs_more = true;
      if (B != 16) continue;
      // Every smaller call at this build's width, in scratch of that size with a guard after it.
      auto scratch = ddpm::aligned_alloc_floats(upto + 64);
      for (int b = 1; b <= B; ++b) {
        CAPTURE(b);
        const auto [M, K] = dims(b);
        const Case c{M, sh.N, K, false, false, false, 0};
        const Buffers bufs = make_buffers(c, 77 + b);
        for (std::size_t i = 0; i < upto + 64; ++i) scratch[i] = 12345.f;
        std::vector<float> C = bufs.C0;
        ddpm::gemm(M, sh.N, K, bufs.A.data(), bufs.lda, false, bufs.B.data(), bufs.ldb, false, C.data(), bufs.ldc,
                   false, scratch.get());
        for (std::size_t i = upto; i < upto + 64; ++i) REQUIRE(scratch[i] == 12345.f);
        CHECK(C == run_gemm(c, bufs));  // the same bits as with the call's own scratch size
      }
    }
  }
  CHECK(smaller_needs_more);
}

TEST_CASE("gemm: epilogue runs once per tile and tiles cover C exactly") {
  // K = 700 is three K blocks: a tile is final only after the last.
  // {20000, 2, 128} and {20000, 128, 2}: the narrow paths in several row tiles.
  const int shapes[][3] = {{1, 1, 1},     {256, 128, 128}, {256, 2, 128}, {3, 300, 5},      {513, 257, 300},
                           {2000, 32, 288}, {40, 40, 0},   {300, 40, 700}, {20000, 2, 128}, {20000, 128, 2}};
  for (auto& s : shapes) {
    int M = s[0], N = s[1], K = s[2];
    CAPTURE(M);
    CAPTURE(N);
    CAPTURE(K);
    std::vector<float> A(static_cast<size_t>(M) * std::max(K, 1), 0.5f), B(static_cast<size_t>(std::max(K, 1)) * N, 0.25f);
    std::vector<float> C(static_cast<size_t>(M) * N, -1.f);
    auto scratch = ddpm::aligned_alloc_floats(ddpm::gemm_scratch_floats(M, N, K));
    std::vector<int> cover(static_cast<size_t>(M) * N, 0);
    std::mutex mu;
    bool tile_final = true;
    int calls = 0;
    ddpm::gemm(M, N, K, A.data(), K, false, B.data(), N, false, C.data(), N, false, scratch.get(),
               [&](int i0, int i1, int j0, int j1) {
                 std::lock_guard lock(mu);
                 ++calls;
                 REQUIRE(0 <= i0);
                 REQUIRE(i0 < i1);
                 REQUIRE(i1 <= M);
                 REQUIRE(0 <= j0);
                 REQUIRE(j0 < j1);
                 REQUIRE(j1 <= N);
                 for (int i = i0; i < i1; ++i)
                   for (int j = j0; j < j1; ++j) {
                     ++cover[static_cast<size_t>(i) * N + j];
                     if (C[static_cast<size_t>(i) * N + j] != 0.125f * K) tile_final = false;
                     C[static_cast<size_t>(i) * N + j] += 1.f;  // the epilogue may write its tile
                   }
               });
    CHECK(calls >= 1);
    CHECK(tile_final);
    for (int v : cover) REQUIRE(v == 1);
    for (float v : C) REQUIRE(v == 0.125f * K + 1.f);
  }
}

TEST_CASE("gemm: bitwise identical at 1 and 2 threads") {
  const Case cases[] = {{256, 128, 128, false, false, false, 0}, {256, 128, 66, false, true, true, 1},
                        {128, 2, 256, true, false, false, 0},    {513, 257, 700, true, true, true, 2},
                        {3000, 32, 288, false, false, false, 0}, {256, 2, 128, false, false, true, 0},
                        {128, 128, 256, true, false, false, 0},  // the MLP's weight gradient: two tiles
                        {20000, 2, 128, false, false, true, 1},  // the narrow paths in several row tiles
                        {20000, 128, 3, false, true, false, 0}};
  for (const Case& c : cases) {
    CAPTURE(c.M);
    CAPTURE(c.N);
    CAPTURE(c.K);
    Buffers b = make_buffers(c, 99);
    std::vector<float> one, two;
    {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 1);
      one = run_gemm(c, b);
    }
    {
      tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
      two = run_gemm(c, b);
    }
    REQUIRE(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
  }
}
