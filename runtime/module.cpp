// Module loading (dlopen + ABI check) and aligned buffers. See module.h for
// where this sits in the data flow.
#include "module.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "common/checksum.h"
#include "common/diag.h"
#include "common/elf_check.h"

namespace ddpm {

namespace fs = std::filesystem;

Module::Module(const std::string& so_path, const std::string& expected_checksum) : so_path_(so_path) {
  std::error_code ec;
  if (!fs::exists(so_path, ec))
    ddpmc::user_error_noloc(fmt::format("module file {} does not exist", so_path),
                            "build one with `ddpmc compile SPEC -o FILE.so`, or pass the .ddpm spec");
  if (fs::is_directory(so_path, ec))
    ddpmc::user_error_noloc(fmt::format("{} is a directory, not a module file", so_path),
                            "pass a .so built by `ddpmc compile`, or a .ddpm spec");
  if (!expected_checksum.empty())
    if (std::string p = ddpmc::checksum_problem(so_path, expected_checksum); !p.empty())
      ddpmc::user_error_noloc(fmt::format("module {} is damaged or replaced: {}", so_path, p),
                              "it was not loaded; rebuild it from its spec (the tools do this from a checkpoint's "
                              "own source unless --trust-module is given)");
  // A truncated file would crash dlopen with SIGBUS.
  if (std::string e = ddpmc::elf_problem(so_path); !e.empty())
    ddpmc::user_error_noloc(fmt::format("cannot load {}: {}", so_path, e),
                            "rebuild it with `ddpmc compile SPEC -o FILE.so` (or train again into this directory)");
  // dlopen searches the library path for names without a slash; we mean the file.
  std::string open_path = so_path.find('/') == std::string::npos ? "./" + so_path : so_path;
  dlerror();
  // RTLD_NODELETE: oneTBB worker threads can still be returning from a module's
  // task bodies when the last handle closes; unmapping the code under them crashes.
  handle_ = dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle_) {
    const char* e = dlerror();
    ddpmc::user_error_noloc(fmt::format("cannot load {}: {}", so_path, e ? e : "unknown dlopen error"),
                            "is it a shared library built by `ddpmc compile` on this machine?");
  }
  dlerror();
  void* sym = dlsym(handle_, "ddpm_module_v1");
  if (!sym) {
    const char* e = dlerror();
    std::string why = e ? e : "symbol not found";
    dlclose(handle_);
    handle_ = nullptr;
    ddpmc::user_error_noloc(
        fmt::format("{} is not a ddpmc module (no ddpm_module_v1 symbol: {})", so_path, why),
        "build modules with `ddpmc compile SPEC -o FILE.so`");
  }
  auto fn = reinterpret_cast<ddpm_module_fn>(sym);
  m_ = fn();
  if (!m_) {
    dlclose(handle_);
    handle_ = nullptr;
    ddpmc::user_error_noloc(fmt::format("{}: ddpm_module_v1() returned no module", so_path),
                            "rebuild it with `ddpmc compile`");
  }
  if (m_->abi_version < DDPM_ABI_MIN_VERSION || m_->abi_version > DDPM_ABI_VERSION) {
    int got = m_->abi_version;
    m_ = nullptr;
    dlclose(handle_);
    handle_ = nullptr;
    ddpmc::user_error_noloc(
        fmt::format("{} was built for module ABI version {}, but this runtime loads versions {} to {}",
                    so_path, got, DDPM_ABI_MIN_VERSION, DDPM_ABI_VERSION),
        "recompile the spec with `ddpmc compile SPEC -o FILE.so` (or pass the .ddpm spec)");
  }
}

Module::~Module() {
  if (handle_) dlclose(handle_);
}

Module::Module(Module&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)), m_(std::exchange(o.m_, nullptr)),
      so_path_(std::move(o.so_path_)) {}

Module& Module::operator=(Module&& o) noexcept {
  if (this != &o) {
    if (handle_) dlclose(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    m_ = std::exchange(o.m_, nullptr);
    so_path_ = std::move(o.so_path_);
  }
  return *this;
}

int Module::sampler_index(const std::string& name) const {
  for (int i = 0; i < m_->n_samplers; ++i)
    if (name == m_->sampler_names[i]) return i;
  return -1;
}

std::string Module::sampler_list() const {
  std::string s;
  for (int i = 0; i < m_->n_samplers; ++i) {
    if (i) s += ", ";
    s += m_->sampler_names[i];
  }
  return s.empty() ? "(none)" : s;
}

std::string Module::data_shape_string() const {
  std::string s = "[";
  for (int i = 0; i < m_->data_rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(m_->data_dims[i]);
  }
  return s + "]";
}

void diffusion_only(const std::string& what, const std::string& model, const std::string& hint) {
  ddpmc::user_error_noloc(fmt::format("{}, but {} is a supervised model (its spec has no diffusion block)", what, model),
                          hint);
}

void AlignedBuffer::Free::operator()(void* p) const { std::free(p); }

AlignedBuffer::AlignedBuffer(size_t bytes) : bytes_(bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  p_.reset(p);
}

AlignedBuffer alloc_arena(const ddpm_module& m, int entry, int B) {
  int64_t bytes = m.arena_bytes(entry, B);
  if (bytes < 0) DDPM_ICE(fmt::format("module reports {} arena bytes for entry {} at batch {}", bytes, entry, B));
  return AlignedBuffer((size_t)bytes);
}

}  // namespace ddpm
