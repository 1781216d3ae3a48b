// Output checks against a run's own files (see run_files.h).
#include "run_files.h"

#include <filesystem>

#include <fmt/format.h>

namespace ddpmc {

namespace fs = std::filesystem;

const std::vector<std::string>& run_file_names() {
  static const std::vector<std::string> names = {"checkpoint.safetensors", "module.so", "config.json",
                                                 "train.lock", "metrics.jsonl", "loss.png", "quality.png"};
  return names;
}

namespace {

// The path with its directory resolved (symlinks, "..") even when the file itself
// does not exist yet.
fs::path resolved(const std::string& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return ec ? fs::absolute(p).lexically_normal() : r;
}

bool is_run_dir(const fs::path& dir, const fs::path& run) {
  std::error_code ec;
  if (!run.empty() && dir == run) return true;
  return fs::exists(dir / "checkpoint.safetensors", ec);
}

}  // namespace

std::string output_problem(const std::vector<Output>& outputs, const std::string& run_dir,
                           const std::vector<Output>& inputs) {
  const fs::path run = run_dir.empty() ? fs::path() : resolved(run_dir);
  std::vector<std::pair<std::string, fs::path>> seen;
  for (const auto& [flag, path] : outputs) {
    if (path.empty()) continue;
    const fs::path p = resolved(path);
    std::error_code ec;
    if (fs::is_directory(p, ec))
      return fmt::format("{} {} is a directory; name a file in it", flag, path);
    for (const std::string& name : run_file_names())
      if (p.filename() == name && is_run_dir(p.parent_path(), run))
        return fmt::format("{} {} would overwrite the run's own {}; write it elsewhere", flag, path, name);
    for (const auto& [role, in] : inputs)
      if (!in.empty() && resolved(in) == p)
        return fmt::format("{} {} would overwrite the {} it reads; write it elsewhere", flag, path, role);
    for (const auto& [other_flag, other] : seen)
      if (other == p) return fmt::format("{} and {} both name {}; give them different files", other_flag, flag, path);
    seen.push_back({flag, p});
  }
  return "";
}

}  // namespace ddpmc
