// Module builder (see build.h): compile the spec, emit C++, build a .so with the
// system C++ compiler, cache it by content hash. Cache writes are atomic and durable
// (common/atomic_file.h: temp file, fsync, rename). A cached module is used only
// if it loads with the right ABI and spec hash (a broken one is rebuilt once, with
// a note); concurrent builds of one module take a lock, so one builds and the others
// wait. The cache layout, key and size bound are described in cache.h.
#include "build.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "codegen.h"
#include "cache.h"
#include "common/atomic_file.h"
#include "common/checksum.h"
#include "common/file_lock.h"
#include "common/stopwatch.h"
#include "diag.h"
#include "pipeline.h"

namespace fs = std::filesystem;

namespace ddpmc {
namespace {

// The target CPU flags (cache.h: target_cpu_flags) follow these.
const char* kCxxFlags = "-std=c++20 -O2 -fPIC -shared -fvisibility=hidden -fno-math-errno";
constexpr size_t kSplitKernels = 200;  // kernels over all entry points
const char* kRuntimeHeaders[] = {"align.h", "winograd_gemm.h", "ddpm_prelude.h", "ddpm_prelude_channels.h", "ddpm_prelude_rows.h", "ddpm_abi.h", "conv.h", "conv_narrow.h", "gemm.h", "gemm_narrow.h",
                                 "philox.h", "simd_shim.h", "winograd.h", "winograd4.h",
                                 "winograd4_wgrad.h", "winograd_driver.h", "winograd_driver_wgrad.h", "winograd_wgrad.h"};

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Two independent 64-bit FNV-1a streams: a 128-bit content key (not cryptographic).
std::string content_hash(const std::string& s) {
  uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
  for (unsigned char c : s) {
    h1 = (h1 ^ c) * 0x100000001b3ull;
    h2 = (h2 ^ (c + 0x5bu)) * 0x100000001b3ull;
  }
  return fmt::format("{:016x}{:016x}", h1, h2);
}

// The prelude every module includes first (xsimd, oneTBB, the GEMM engine),
// precompiled once per toolchain into DIR/pch-<hash>/ddpm_prelude.h.gch. GCC looks
// for NAME.gch in each include directory before NAME itself, so modules compiled
// with -I that directory first use it; if it is missing or does not match the
// flags, GCC reads the header as usual. Returns the directory (it may be empty).
fs::path precompiled_prelude(const fs::path& dir, const std::string& toolchain, const std::string& cxx_flags,
                             bool verbose) {
  const fs::path pdir = dir / ("pch-" + content_hash(toolchain));
  const fs::path gch = pdir / "ddpm_prelude.h.gch";
  std::error_code ec;
  if (fs::exists(gch, ec)) return pdir;
  fs::create_directories(pdir, ec);
  const fs::path tmp = pdir / fmt::format("ddpm_prelude.h.gch.tmp{}", getpid());
  // Only the compile flags: -shared is for the link.
  std::string flags = cxx_flags;
  if (auto at = flags.find(" -shared"); at != std::string::npos) flags.erase(at, 8);
  std::string cmd = fmt::format("'{}' {} -x c++-header '{}' -o '{}' > /dev/null 2>&1", DDPMC_CXX, flags,
                                (fs::path(prelude_dir()) / "ddpm_prelude.h").string(), tmp.string());
  if (verbose) fmt::print(stderr, "{}\n", cmd);
  if (std::system(cmd.c_str()) == 0) {
    fs::rename(tmp, gch, ec);
    // Headers for other toolchains (about 100 MB each) are stale now; a build
    // that still names one falls back to the plain header if it is gone.
    std::vector<fs::path> stale;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("pch-", 0) == 0 && entry.path() != pdir) stale.push_back(entry.path());
    }
    for (const auto& p : stale) fs::remove_all(p, ec);
  }
  fs::remove(tmp, ec);  // a failed precompile only costs the speed-up
  return pdir;
}

}  // namespace

std::string prelude_dir() {
  if (const char* d = std::getenv("DDPMC_PRELUDE_DIR"); d && *d) return d;
  // An installed ddpmc (PREFIX/bin/ddpmc) uses PREFIX/include/ddpmc.
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = (exe.parent_path() / DDPMC_PRELUDE_FROM_BIN).lexically_normal();
    if (fs::exists(installed / "ddpm_prelude.h", ec)) return installed.string();
  }
  return DDPMC_RUNTIME_INCLUDE_DIR;
}

BuiltModule build_module(const std::string& spec_path, const BuildOptions& opt) {
  std::string dump;
  Compiled c = compile_spec_file(spec_path, opt.dump_after, opt.dump_after.empty() ? nullptr : &dump);
  if (!dump.empty()) fmt::print(stderr, "{}", dump);
  return build_compiled(c, opt);
}

BuiltModule build_module_sources(const SpecSources& sources, const BuildOptions& opt) {
  return build_compiled(compile_spec_sources(sources), opt);
}

std::string spec_hash(const Compiled& c) {
  // The spec hash names the model (its sources by name and the compiler version):
  // it is what checkpoints are checked against. Hand-made graphs (tests) are hashed
  // by their IR dump.
  std::string key = c.model.sources_text.empty() ? print_graph(c.train) : c.model.sources_text;
  key += std::string("\n") + DDPMC_VERSION;
  return content_hash(key);
}

BuiltModule build_compiled(const Compiled& c, const BuildOptions& opt) {
  BuiltModule out;
  out.spec_hash = spec_hash(c);
  // The cache is keyed by the generated source itself plus the toolchain (compiler,
  // flags, runtime headers), so any change to the compiler's output rebuilds.
  const std::string cxx_flags = std::string(kCxxFlags) + " " + target_cpu_flags();
  std::string toolchain = std::string(DDPMC_CXX) + " " + cxx_flags + "\n";
  for (const char* h : kRuntimeHeaders) toolchain += read_file(fs::path(prelude_dir()) / h);
  // Large modules (the U-Net: hundreds of kernels) are emitted as two translation
  // units that the C++ compiler builds in parallel, then linked.
  size_t kernels = c.train.kernels.size() + c.loss.kernels.size() + c.eps.kernels.size();
  for (auto& s : c.samplers) kernels += s.second.kernels.size();
  const bool split = kernels >= kSplitKernels && !c.samplers.empty();
  const std::vector<std::string> parts = emit_module_parts(c, out.spec_hash, split);
  std::string all;
  for (auto& p : parts) all += p;
  const std::string cache_key = content_hash(all + toolchain);

  const fs::path dir = opt.cache_dir.empty() ? default_cache_dir() : opt.cache_dir;
  std::error_code ec;
  open_private_cache(dir.string());
  const fs::path so = dir / (cache_key + ".so");
  const fs::path cpp = dir / (cache_key + ".cpp");
  if (!opt.emit_cpp.empty()) write_file_atomic(opt.emit_cpp, split ? emit_module(c, out.spec_hash) : parts[0], "generated C++");

  const std::string key_path = (dir / cache_key).string();
  const fs::path sum = dir / (cache_key + ".sum");
  // The checksum first: a damaged module must never reach dlopen (module_problem loads it).
  auto cached_problem = [&]() -> std::string {
    std::error_code e;
    if (!fs::exists(so, e)) return "missing";
    for (const fs::path& f : {so, sum})
      if (std::string p = fs::exists(f, e) ? private_problem(f.string()) : ""; !p.empty())
        user_error_noloc(fmt::format("refusing the cached module {}: {}; another user could have changed it",
                                     f.string(), p),
                         fmt::format("remove it (`rm '{}'`) and it is rebuilt", f.string()));
    if (std::string p = checksum_problem(so.string(), read_file(sum)); !p.empty()) return "damaged: " + p;
    return module_problem(so.string(), out.spec_hash);
  };
  std::string problem = cached_problem();
  std::optional<FileLock> lock;
  if (!problem.empty()) {
    // One process builds; the others wait for it and then use its module.
    lock = FileLock::try_lock(key_path + ".lock");
    if (!lock) {
      std::string pid = FileLock::holder(key_path + ".lock");
      fmt::print(stderr, "waiting for another build of this module{}\n", pid.empty() ? "" : " (pid " + pid + ")");
      lock = FileLock::lock(key_path + ".lock");
    }
    problem = cached_problem();
  }
  if (problem.empty()) {
    out.cache_hit = true;
    fs::last_write_time(so, fs::file_time_type::clock::now(), ec);  // last use, for pruning
  } else {
    if (fs::exists(so, ec))
      fmt::print(stderr, "note: the cached module {} is broken ({}); rebuilding it\n", so.string(), problem);
    auto t0 = Clock::now();
    write_file_atomic(cpp.string(), parts[0], "generated C++");
    const fs::path pch = precompiled_prelude(dir, toolchain, cxx_flags, opt.verbose);
    fs::path tmp_so = dir / fmt::format("{}.so.tmp{}", cache_key, getpid());
    // This build's own log: an error never shows another build's output.
    fs::path log = dir / fmt::format("{}.{}.log", cache_key, getpid());
    const std::string cxx = fmt::format("'{}' {} -I'{}' -I'{}'", DDPMC_CXX, cxx_flags, pch.string(),
                                        prelude_dir());
    std::string cmd;
    if (!split) {
      cmd = fmt::format("{} '{}' -o '{}' -ltbb > '{}' 2>&1", cxx, cpp.string(), tmp_so.string(), log.string());
    } else {
      const fs::path cpp1 = dir / (cache_key + ".1.cpp");
      write_file_atomic(cpp1.string(), parts[1], "generated C++");
      const std::string o0 = tmp_so.string() + ".0.o", o1 = tmp_so.string() + ".1.o";
      // Both objects at once; link only if both compiled.
      cmd = fmt::format("{{ {0} -c '{1}' -o '{2}' & p=$!; {0} -c '{3}' -o '{4}'; r1=$?; wait $p; r0=$?; "
                        "[ $r0 -eq 0 ] && [ $r1 -eq 0 ] && {0} '{2}' '{4}' -o '{5}' -ltbb; r=$?; rm -f '{2}' '{4}'; "
                        "exit $r; }} > '{6}' 2>&1",
                        cxx, cpp.string(), o0, cpp1.string(), o1, tmp_so.string(), log.string());
    }
    if (opt.verbose) fmt::print(stderr, "{}\n", cmd);
    int rc = std::system(cmd.c_str());
    if (rc != 0) {
      std::string text = read_file(log);
      if (text.size() > 4000) text = text.substr(0, 4000) + "\n...";
      fs::remove(tmp_so, ec);
      DDPM_ICE(fmt::format("the C++ compiler failed on the generated module {} (exit {}); full log in {}:\n{}",
                           cpp.string(), WEXITSTATUS(rc), log.string(), text));
    }
    fs::remove(log, ec);
    fs::permissions(tmp_so, fs::perms::owner_all, fs::perm_options::replace, ec);  // 0700: the user's alone
    const std::string checksum = file_checksum(tmp_so.string());
    durable_rename(tmp_so.string(), so.string(), "module");
    write_file_atomic(sum.string(), checksum, "module checksum");
    for (const fs::path& f : {sum, cpp}) fs::permissions(f, fs::perms::owner_read | fs::perms::owner_write,
                                                          fs::perm_options::replace, ec);
    if (std::string p = cached_problem(); !p.empty())
      DDPM_ICE(fmt::format("the module just built, {}, is unusable: {}", so.string(), p));
    out.compile_seconds = seconds_since(t0);
    prune_cache(dir.string(), default_cache_cap(), std::nullopt, cache_key);
  }
  out.so_path = so.string();
  out.checksum = read_file(sum);
  out.sources = c.model.sources;
  if (!opt.output_so.empty()) {
    fs::path tmp = opt.output_so + fmt::format(".tmp{}", getpid());
    fs::copy_file(so, tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) user_error_noloc(fmt::format("cannot write '{}': {}", opt.output_so, ec.message()), "check the -o path");
    try {
      durable_rename(tmp.string(), opt.output_so, "module");
    } catch (...) {
      fs::remove(tmp, ec);  // never leave the temporary copy behind
      throw;
    }
  }
  return out;
}

}  // namespace ddpmc
