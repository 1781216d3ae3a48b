// "The training step allocates nothing": this binary replaces the global
// operator new/delete with versions that count calls while a counter is armed,
// then runs the U-Net and moons training and sampler steps (after a warm-up
// call, at 2 threads) with the counter armed. Generated modules and the runtime
// helpers they call use C++ allocation if they allocate at all, so a count of
// zero means every buffer came from the planned arena or the caller. A second
// check reads the generated C++ itself for heap allocation calls. And an arena sized for batch B
// serves every smaller batch: nothing is written past it at any b <= B.
#include <doctest/doctest.h>
#include <tbb/global_control.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>

#include "codegen.h"
#include "module.h"
#include "pipeline.h"
#include "test_support.h"

namespace {
std::atomic<bool> g_armed{false};
std::atomic<long> g_allocs{0};

void* counted(std::size_t n, std::size_t align) {
  if (g_armed.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align)
                                              : std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted(n, 0); }
void* operator new[](std::size_t n) { return counted(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return counted(n, (std::size_t)a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted(n, (std::size_t)a); }
// The nothrow forms too (std::stable_sort's temporary buffer uses them): a replaced
// delete must never free what the library's own new allocated (ASan reports the mismatch).
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted(n, 0); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted(n, 0); } catch (...) { return nullptr; }
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace ddpm_test;

namespace {

// Allocations made by f() while armed.
template <class F> long count_allocs(F&& f) {
  g_allocs = 0;
  g_armed = true;
  f();
  g_armed = false;
  return g_allocs.load();
}

void check_module(const char* spec, int B) {
  ddpm::Module mod{ddpmc::build_module(source_path(spec), test_build_options()).so_path};
  std::vector<float> params(mod->param_floats, 0.01f), grads(mod->param_floats);
  auto x = uniform_floats((int64_t)B * mod->data_numel, -1, 1, 5);
  std::vector<float> out(x.size());
  ddpm::AlignedBuffer ta(mod->arena_bytes(0, B)), sa(mod->arena_bytes(1, B));
  float loss = 0;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
  auto step = [&](uint64_t s) {
    REQUIRE(mod->train_step(ta.data(), B, params.data(), x.data(), 7, s, grads.data(), &loss) == 0);
    REQUIRE(mod->sampler_step(0, sa.data(), B, params.data(), x.data(), 500, 499, 7, s, out.data(), 0) == 0);
  };
  step(1);  // warm-up: starts the thread pool
  // Calls to operator new during a step would show up here.
  const long n = count_allocs([&] { step(2); });
  INFO(spec << " at batch " << B);
  CHECK(n == 0);
  // Heap allocation spelled out in the generated code.
  const std::string cpp = ddpmc::emit_module(ddpmc::compile_spec_file(source_path(spec)), "test");
  for (const char* word : {"malloc(", "calloc(", " new ", "std::vector", "std::string", "make_unique", "make_shared"})
    CHECK_MESSAGE(cpp.find(word) == std::string::npos, "generated code contains " << word);
}

}  // namespace

TEST_CASE("alloc: the counter sees an allocation") {
  // So that a zero below means something.
  const long n = count_allocs([] {
    auto* p = new std::vector<int>(1000);
    delete p;
  });
  CHECK(n >= 2);
}

TEST_CASE("alloc: moons training and sampler steps allocate nothing") { check_module("models/moons.ddpm", 256); }

TEST_CASE("alloc: U-Net training and sampler steps allocate nothing") { check_module("models/fashion_unet.ddpm", 4); }

TEST_CASE("alloc: training and sampler steps with self-attention allocate nothing") {
  check_module("tests/specs/attention.ddpm", 4);
}

TEST_CASE("alloc: the probability-flow ODE's vjp entry allocates nothing") {
  ddpm::Module mod{ddpmc::build_module(source_path("models/moons_vp.ddpm"), test_build_options()).so_path};
  REQUIRE(ddpm::has_ode(mod.get()));
  const int B = 256;
  std::vector<float> params(mod->param_floats, 0.01f);
  auto x = uniform_floats((int64_t)B * mod->data_numel, -1, 1, 5);
  auto u = uniform_floats((int64_t)B * mod->data_numel, -1, 1, 6);
  std::vector<float> f(x.size()), v(x.size());
  ddpm::AlignedBuffer arena(mod->arena_bytes(5 + mod->n_samplers, B));
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
  auto call = [&] { REQUIRE(mod->ode_vjp(arena.data(), B, params.data(), x.data(), 0.5f, u.data(), f.data(), v.data()) == 0); };
  call();  // warm-up: starts the thread pool
  CHECK(count_allocs(call) == 0);
}

namespace {

// An arena sized for batch B serves every call of b <= B samples (a sampler's last chunk of a
// run of -n samples, an evaluation's remainder): arena_bytes never shrinks as b grows, and the
// training step, the first sampler and eps (learned variance: frac to the arena's room) write
// nothing past the arena at any b. The arena pointer is 4 bytes past a 64-byte boundary, so the
// module's own alignment leaves 4 bytes of slack, and a guard follows.
void check_smaller_batches(const char* spec, int B) {
  ddpm::Module mod{ddpmc::build_module(source_path(spec), test_build_options()).so_path};
  const ddpm_module& m = mod.get();
  const int eps_entry = 2 + m.n_samplers;
  for (int entry : {0, 1, eps_entry})
    for (int b = 2; b <= B; ++b) {
      CAPTURE(entry);
      CAPTURE(b);
      CHECK(m.arena_bytes(entry, b - 1) <= m.arena_bytes(entry, b));
    }
  std::vector<float> params(m.param_floats, 0.01f), grads(m.param_floats);
  const auto x = uniform_floats((int64_t)B * m.data_numel, -1, 1, 5);
  std::vector<float> out(x.size()), frac(x.size());
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 2);
  constexpr std::size_t kGuard = 4096;
  static constexpr unsigned char kMark = 0xA5;
  auto guarded = [&](int entry, const char* what, auto&& call) {
    const std::size_t n = m.arena_bytes(entry, B);
    ddpm::AlignedBuffer buf(n + kGuard);
    auto* base = reinterpret_cast<unsigned char*>(buf.data());
    std::memset(base + n, kMark, kGuard);
    for (int b = 1; b <= B; ++b) {
      INFO(std::string(spec) << ", " << std::string(what) << " at batch " << b << " in an arena for " << B);
      REQUIRE(call(base + 4, b) == 0);
      const std::size_t bad = std::count_if(base + n, base + n + kGuard, [](unsigned char c) { return c != kMark; });
      REQUIRE(bad == 0);
    }
  };
  float loss = 0;
  guarded(0, "train_step", [&](void* a, int b) {
    return m.train_step(a, b, params.data(), x.data(), 7, 1, grads.data(), &loss);
  });
  guarded(1, "sampler_step", [&](void* a, int b) {
    return m.sampler_step(0, a, b, params.data(), x.data(), 5, 4, 7, 1, out.data(), 0);
  });
  if (m.eps_eval)
    guarded(eps_entry, "eps_eval", [&](void* a, int b) { return m.eps_eval(a, b, params.data(), x.data(), 5, out.data()); });
}

}  // namespace

TEST_CASE("alloc: an arena for batch B serves every smaller batch: images (784-wide output layer)") {
  check_smaller_batches("tests/specs/tiny_fashion.ddpm", 16);
}

TEST_CASE("alloc: an arena for batch B serves every smaller batch: moons, learned variance's frac") {
  check_smaller_batches("models/moons.ddpm", 40);
  check_smaller_batches("models/moons_learned_var.ddpm", 24);
}
