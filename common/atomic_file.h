// The one atomic file writer of ddpmc: every output that must never be seen
// half-written (checkpoints, module.so in a run directory and in the module
// cache, .npy samples, PNGs, config.json, eval.json, the generated C++) goes
// through it. Bytes go to a temp file next to the target; commit() fsyncs the
// file, renames it over the target and fsyncs the directory, so after a crash
// (even SIGKILL or a power cut) the target is the old file or the new one, never
// a torn mix.
#pragma once
#include <cstddef>
#include <string>

namespace ddpmc {

// Writes `path` atomically: bytes go to path + ".tmp"; commit() fsyncs it,
// renames it over `path` and fsyncs the directory. If commit() is never reached
// (an exception), the destructor removes the temp file and `path` is untouched.
// `what` names the file's role in error messages ("checkpoint", "samples").
// Errors are UserErrors naming the file and the failed system call.
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string what);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);
  void commit();

 private:
  [[noreturn]] void fail(const std::string& action);
  std::string path_, tmp_, what_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole of `bytes` into `path`, through AtomicFile.
void write_file_atomic(const std::string& path, const std::string& bytes, const std::string& what);

// For a file written by another program (the C++ compiler's .so): fsyncs `tmp`,
// renames it over `path` and fsyncs the directory. Throws a UserError on failure.
void durable_rename(const std::string& tmp, const std::string& path, const std::string& what);

}  // namespace ddpmc
