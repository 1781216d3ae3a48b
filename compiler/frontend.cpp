// Front end: main spec file + imports → Program (see frontend.h).
//
// A depth-first walk over the import graph. Each file is identified by a key (its
// canonical path, or "<stdlib>/name" for embedded files) so a file reached twice is
// parsed once; the stack of files being loaded detects cycles. A module is appended
// to the Program after all of its imports, which yields dependency order.
#include "frontend.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/input_limits.h"
#include "parser.h"

namespace ddpmc {
namespace {

namespace fs = std::filesystem;

const char* kStdlibKeyPrefix = "<stdlib>/";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string file_key(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::path(path), ec);
  if (ec) return fs::path(path).lexically_normal().string();
  return p.string();
}

std::string base_name(const std::string& path) {
  std::string b = fs::path(path).filename().string();
  return b.empty() ? path : b;
}

// The largest spec file read: far above any real spec, far below what would
// exhaust memory.
constexpr uint64_t kMaxSpecBytes = 16u << 20;

// Reads a whole spec file; on failure returns false and sets `why` to the reason.
// Only regular files are read (a directory, a FIFO or /dev/zero is refused before
// reading), and at most kMaxSpecBytes of them.
bool read_file(const std::string& path, std::string& text, std::string& why) {
  why = input_file_problem(path);
  if (!why.empty()) return false;
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec && size > kMaxSpecBytes) {
    why = fmt::format("it is {}, more than the {} a spec file may have", format_bytes((double)size),
                      format_bytes((double)kMaxSpecBytes));
    return false;
  }
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = errno ? std::strerror(errno) : "cannot open it";
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    why = "read error";
    return false;
  }
  text = ss.str();
  return true;
}

class Loader {
 public:
  // `files`, when given, holds the imported files by name (relative to the main
  // file's directory) instead of the disk: a spec carried in a checkpoint.
  Loader(Sources& sources, const std::map<std::string, std::string>* files = nullptr)
      : sources_(sources), files_(files) {}

  Program run(SourceFile* main, const std::string& key) {
    main_dir_ = fs::path(main->path).parent_path();
    main->name = base_name(main->path);
    load(main, key, false);
    return std::move(prog_);
  }

 private:
  struct Frame {
    std::string key;
    std::string shown;  // name used in cycle messages
    Loc import_loc;     // of the import being followed out of this file
  };

  Sources& sources_;
  const std::map<std::string, std::string>* files_;
  fs::path main_dir_;
  Program prog_;
  std::vector<Frame> stack_;
  std::set<std::string> done_;

  void load(const SourceFile* f, const std::string& key, bool embedded) {
    stack_.push_back(Frame{key, embedded ? f->path : base_name(f->path), Loc{}});
    Module m = parse_module(f);
    for (const ImportDecl& imp : m.imports) {
      stack_.back().import_loc = imp.loc;
      follow(imp, f, embedded);
    }
    stack_.pop_back();
    done_.insert(key);
    prog_.modules.push_back(std::move(m));
  }

  void follow(const ImportDecl& imp, const SourceFile* from, bool from_embedded) {
    const auto& lib = embedded_stdlib();
    auto it = lib.find(imp.path);
    if (it != lib.end()) {
      std::string key = kStdlibKeyPrefix + it->first;
      if (done_.count(key)) return;
      check_cycle(key, it->first);
      SourceFile* f = sources_.add(it->first, it->second);
      f->name = it->first;
      load(f, key, true);
      return;
    }
    if (from_embedded)
      DDPM_ICE(fmt::format("the embedded standard library file '{}' imports '{}', which is not embedded", from->path,
                           imp.path));

    std::string written = ends_with(imp.path, ".ddpm") ? imp.path : imp.path + ".ddpm";
    fs::path dir = fs::path(from->path).parent_path();
    std::string path = (dir / fs::path(written)).lexically_normal().string();
    std::string name = fs::path(path).lexically_relative(main_dir_).string();
    if (name.empty()) name = path;
    if (files_) {  // the spec's own copies of its imports, by name
      std::string key = "<files>/" + name;
      if (done_.count(key)) return;
      check_cycle(key, base_name(path));
      auto f = files_->find(name);
      if (f == files_->end())
        user_error(imp.loc, fmt::format("the imported file '{}' is not among the spec's sources", written),
                   "the checkpoint's copy of the spec is incomplete; rebuild from the spec file");
      SourceFile* sf = sources_.add(path, f->second);
      sf->name = name;
      load(sf, key, false);
      return;
    }
    std::string key = file_key(path);
    if (done_.count(key)) return;
    check_cycle(key, base_name(path));

    std::error_code ec;
    if (!fs::exists(path, ec)) {
      std::string hint = fmt::format("looked for '{}'; an import is relative to the directory of the file that "
                                     "imports it",
                                     path);
      std::string stem = fs::path(imp.path).stem().string();
      if (lib.count(stem)) hint += fmt::format("; to use the standard library write 'import {}'", stem);
      user_error(imp.loc, fmt::format("cannot find the imported file '{}'", written), hint);
    }
    std::string text, why;
    if (!read_file(path, text, why))
      user_error(imp.loc, fmt::format("cannot read the imported file '{}': {}", written, why),
                 fmt::format("the import resolves to '{}'", path));
    SourceFile* sf = sources_.add(path, std::move(text));
    sf->name = name;
    load(sf, key, false);
  }

  void check_cycle(const std::string& key, const std::string& shown) {
    for (size_t i = 0; i < stack_.size(); ++i) {
      if (stack_[i].key != key) continue;
      std::string chain;
      for (size_t j = i; j < stack_.size(); ++j) chain += stack_[j].shown + " -> ";
      chain += shown;
      user_error(stack_[i].import_loc, fmt::format("import cycle: {}", chain),
                 "remove one of these imports; definitions that several files need can move to a separate "
                 "file that each of them imports");
    }
  }
};

}  // namespace

Program load_program(Sources& sources, const std::string& main_path) {
  std::string text, why;
  if (!read_file(main_path, text, why)) {
    std::error_code ec;
    std::string cwd = fs::current_path(ec).string();
    user_error_noloc(fmt::format("cannot read spec file '{}': {}", main_path, why),
                     fmt::format("check the path; a relative path starts from the current directory '{}'", cwd));
  }
  SourceFile* f = sources.add(main_path, std::move(text));
  return Loader(sources).run(f, file_key(main_path));
}

Program load_program_text(Sources& sources, const std::string& path_label, const std::string& text) {
  SourceFile* f = sources.add(path_label, text);
  return Loader(sources).run(f, file_key(path_label));
}

Program load_program_files(Sources& sources, const std::string& path_label, const std::string& text,
                           const std::map<std::string, std::string>& imports) {
  SourceFile* f = sources.add(path_label, text);
  return Loader(sources, &imports).run(f, "<files>/" + base_name(path_label));
}

}  // namespace ddpmc
