// SpecSources to and from JSON (see spec_sources.h). The text is hostile input when
// it comes from someone else's checkpoint: every field is type-checked and bounded.
#include "spec_sources.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "diag.h"

namespace ddpmc {

std::string SpecSources::to_json() const {
  nlohmann::json j;
  j["main"] = main;
  j["files"] = nlohmann::json::object();
  for (auto& [name, text] : files) j["files"][name] = text;
  return j.dump();
}

SpecSources SpecSources::from_json(const std::string& text, const std::string& what) {
  auto bad = [&](const std::string& why) -> SpecSources {
    user_error_noloc(fmt::format("{}: its spec source is malformed ({})", what, why),
                     "the file is damaged or was not written by ddpm-train");
  };
  if (text.size() > kMaxBytes + (1u << 20)) return bad(fmt::format("{} bytes", text.size()));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("main") || !j["main"].is_string()) return bad("no main file name");
  if (!j.contains("files") || !j["files"].is_object()) return bad("no files");
  SpecSources s;
  s.main = j["main"].get<std::string>();
  size_t bytes = 0;
  for (auto it = j["files"].begin(); it != j["files"].end(); ++it) {
    if (!it.value().is_string()) return bad(fmt::format("file '{}' is not text", it.key()));
    s.files[it.key()] = it.value().get<std::string>();
    bytes += it.key().size() + s.files[it.key()].size();
  }
  if (s.files.size() > kMaxFiles) return bad(fmt::format("{} files, more than {}", s.files.size(), kMaxFiles));
  if (bytes > kMaxBytes) return bad(fmt::format("{} bytes of text, more than {}", bytes, kMaxBytes));
  if (!s.files.count(s.main)) return bad(fmt::format("the main file '{}' is not among the files", s.main));
  return s;
}

}  // namespace ddpmc
