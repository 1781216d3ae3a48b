// ddpmc: the compiler's command line.
//   ddpmc check   SPEC [--batch N]                     parse, type-check, plan; print the report
//   ddpmc compile SPEC -o OUT.so [--emit-cpp F] [--dump-after PASS] [--cache-dir D] [-v]
//   ddpmc cache [--cache-dir D] [--prune [--older-than DAYS] [--max-mb MB]]   list or prune the module cache
//   ddpmc --version
// Exit codes: 0 ok, 1 error in the spec or input, 2 bad command line, 70 internal error.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>

#include "build.h"
#include "cache.h"
#include "cache_command.h"
#include "common/diag.h"
#include "driver.h"
#include "pipeline.h"
#include "common/run_files.h"
#include "spec_module.h"
#include "tool_main.h"

namespace {

// --dump-after names a pass (or all); anything else is a bad command line.
std::string dump_after_problem(const std::string& pass) {
  if (pass.empty() || pass == "all") return "";
  std::string all;
  for (const std::string& p : ddpmc::pass_names()) {
    if (p == pass) return "";
    all += p + ", ";
  }
  return fmt::format("--dump-after: unknown pass '{}'; the passes are {}and all", pass, all);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ddpmc: compile a diffusion-model spec into a fused C++/xsimd/TBB module", "ddpmc"};
  app.require_subcommand(1);
  std::string spec, out_so, emit_cpp, dump_after, cache_dir;
  int batch = 256;
  bool verbose = false;
  auto* check = app.add_subcommand("check", "parse and type-check a spec; print parameters, FLOPs per step and arena bytes");
  check->add_option("spec", spec, "spec file (.ddpm)")->required();
  check->add_option("--batch", batch, "batch size for the FLOP and arena figures")->check(ddpm_tools::whole_in(1, 1 << 20));
  check->add_option("--dump-after", dump_after, "print the IR after a pass (lower, autodiff, vjp, simplify, remat, fuse, prologue, memplan, all)");
  auto* compile = app.add_subcommand("compile", "compile a spec into a shared library");
  compile->add_option("spec", spec, "spec file (.ddpm)")->required();
  compile->add_option("-o,--output", out_so, "where to write the .so")->required();
  compile->add_option("--emit-cpp", emit_cpp, "also write the generated C++ here");
  compile->add_option("--dump-after", dump_after, "print the IR after a pass (lower, autodiff, vjp, simplify, remat, fuse, prologue, memplan, all)");
  compile->add_option("--cache-dir", cache_dir, "module cache (default $DDPM_CACHE_DIR or ~/.cache/ddpmc)");
  compile->add_flag("-v,--verbose", verbose, "print the C++ compiler command");
  ddpm_tools::CacheCommand cache_cmd;
  auto* cache = ddpm_tools::add_cache_command(app, cache_cmd);

  // CLI11 says "A subcommand is required" for a missing or an unknown command; say which.
  const std::string first = argc > 1 ? argv[1] : "";
  if (first != "check" && first != "compile" && first != "cache" && first.rfind("-", 0) != 0)
    return ddpm_tools::flag_error("ddpmc", first.empty() ? "a command is required: check, compile or cache"
                                                         : fmt::format("unknown command '{}'; the commands are check, "
                                                                       "compile and cache", first));
  if (int rc = ddpm_tools::parse(app, argc, argv, "ddpmc", [] { return ddpm_tools::compiling_version_text("ddpmc"); });
      rc >= 0)
    return rc;
  if (std::string p = dump_after_problem(dump_after); !p.empty()) return ddpm_tools::flag_error("ddpmc", p);
  std::error_code ec;
  if (*compile && std::filesystem::is_directory(out_so, ec))
    return ddpm_tools::flag_error("ddpmc", fmt::format("-o {} is a directory; name the .so to write, for example -o {}",
                                                       out_so, (std::filesystem::path(out_so) / "model.so").string()));
  if (*compile)
    if (std::string p = ddpmc::output_problem({{"-o", out_so}, {"--emit-cpp", emit_cpp}}, "", {{"spec", spec}});
        !p.empty())
      return ddpm_tools::flag_error("ddpmc", p);
  if (*cache) return ddpm_tools::guarded("ddpmc", [&] { return ddpm_tools::run_cache_command(cache_cmd); });
  return ddpm_tools::guarded("ddpmc", [&] {
    if (*check) {
      std::string dump;
      if (!dump_after.empty()) {
        ddpmc::compile_spec_file(spec, dump_after, &dump);
        fmt::print("{}", dump);
      }
      fmt::print("{}", ddpmc::check_spec_file(spec, batch).text);
    } else {
      ddpmc::default_cache_cap();  // a bad $DDPM_CACHE_MAX_MB is an error before the build, not after it
      ddpmc::BuildOptions opt;
      opt.output_so = out_so;
      opt.emit_cpp = emit_cpp;
      opt.dump_after = dump_after;
      opt.cache_dir = cache_dir;
      opt.verbose = verbose;
      auto m = ddpmc::build_module(spec, opt);
      if (m.cache_hit)
        fmt::print(stderr, "{}: cached module {} -> {}\n", spec, m.spec_hash, out_so);
      else
        fmt::print(stderr, "{}: compiled in {:.1f} s -> {}\n", spec, m.compile_seconds, out_so);
    }
    return 0;
  });
}
