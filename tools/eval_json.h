// RUN/eval.json holds what ddpm-eval measured for a run: the bound's keys at the top
// level, "quality" (--quality) and "nll_ode" (--nll ode). Each evaluation replaces
// its own part and keeps the others.
#pragma once
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"

namespace ddpm_tools {

// The keys of eval.json that belong to evaluations other than the bound.
inline const char* const kEvalSections[] = {"quality", "nll_ode"};

// Reads `path` (an object, or {} when it is missing or not one), lets `edit` change it,
// and writes it back atomically.
inline void update_eval_json(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j;
  {
    std::ifstream in(path);
    j = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
  }
  if (!j.is_object()) j = nlohmann::json::object();
  edit(j);
  ddpmc::write_file_atomic(path, j.dump(2) + "\n", "evaluation");
}

inline std::string eval_json_path(const std::string& run_dir) {
  return (std::filesystem::path(run_dir) / "eval.json").string();
}

}  // namespace ddpm_tools
