// Loading compiled modules, and the aligned buffers the runtime hands to them.
//
// Data flow: the tools build a spec into a .so (tools/spec_module.h, through the
// module cache); Module dlopens it, finds `ddpm_module_v1` and checks the ABI
// version. The trainer and the sampler then own every buffer the module reads or
// writes: parameters, gradients, EMA and Adam moments ([P] floats each), the data
// batch, and one arena per entry point sized by arena_bytes(entry, B). All of
// them are 64-byte aligned and allocated once, before any hot loop.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ddpm_abi.h"

namespace ddpm {

// An open, ABI-checked module. Move-only; dlclose on destruction, but the code
// stays mapped for the life of the process (RTLD_NODELETE), because oneTBB worker
// threads may still be leaving the module's task bodies at that moment. glibc
// reuses a loaded library for the same path name, so a process must not expect to
// see a different module after replacing the file at a path it has loaded.
class Module {
 public:
  // Throws ddpmc::UserError (one line plus a hint) if the file is missing, does
  // not have `expected_checksum` (common/checksum.h; checked before dlopen, unless
  // empty: a .so the user named), is not a ddpmc module, or was built for another
  // ABI version.
  explicit Module(const std::string& so_path, const std::string& expected_checksum = "");
  ~Module();
  Module(Module&& other) noexcept;
  Module& operator=(Module&& other) noexcept;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const ddpm_module* operator->() const { return m_; }
  const ddpm_module& get() const { return *m_; }
  const std::string& so_path() const { return so_path_; }

  // Index of the sampler called `name`, or -1.
  int sampler_index(const std::string& name) const;
  // "ddpm, ddim": the sampler names in spec order, for error messages.
  std::string sampler_list() const;
  // "[2]" or "[1, 28, 28]".
  std::string data_shape_string() const;

 private:
  void* handle_ = nullptr;
  const ddpm_module* m_ = nullptr;
  std::string so_path_;
};

// Whether `m` is a supervised module (ABI version 6: a spec without a diffusion
// block; no samplers, no schedule, classify_eval). Older modules never are.
inline bool is_supervised(const ddpm_module& m) { return m.abi_version >= 6 && m.supervised != 0; }
// A continuous-time module (ABI 7): real times, sampled through sampler_step_time.
inline bool is_continuous(const ddpm_module& m) { return m.abi_version >= 7 && m.continuous != 0; }
// A module with the probability-flow ODE of its spec's `ode` (ABI 8: ode_eval, ode_vjp).
inline bool has_ode(const ddpm_module& m) { return m.abi_version >= 8 && m.ode_vjp != nullptr; }

// The one-line error for a diffusion-only request (`what`, e.g. "--sample-every
// draws diffusion samples") on the supervised model `model`.
[[noreturn]] void diffusion_only(const std::string& what, const std::string& model, const std::string& hint);

// A zero-initialised, 64-byte-aligned block of bytes. Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  void* data() const { return p_.get(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> p_;
  size_t bytes_ = 0;
};

// A zero-initialised, 64-byte-aligned array of floats.
class AlignedFloats {
 public:
  AlignedFloats() = default;
  explicit AlignedFloats(int64_t n) : buf_((size_t)(n > 0 ? n : 0) * sizeof(float)), n_(n) {}
  float* data() const { return static_cast<float*>(buf_.data()); }
  int64_t size() const { return n_; }
  float& operator[](int64_t i) const { return data()[i]; }

 private:
  AlignedBuffer buf_;
  int64_t n_ = 0;
};

// The arena for entry point `entry` (0 = train step, 1 + i = sampler i) at batch B.
// Throws ddpmc::InternalError if the module reports a negative size.
AlignedBuffer alloc_arena(const ddpm_module& m, int entry, int B);

}  // namespace ddpm
