// Advisory file locks (flock) for the two places where processes must not race:
// concurrent builds of one module in the module cache (the first builds, the
// others wait and then use its result) and the run directory of ddpm-train (a
// second trainer on the same --out is refused). The kernel drops the lock when the
// holder exits for any reason, SIGKILL included, so a crash never leaves a stale
// lock. The lock file holds the holder's pid, for messages.
#pragma once
#include <optional>
#include <string>

namespace ddpmc {

class FileLock {
 public:
  // Takes the lock if it is free; std::nullopt if another process holds it.
  // Throws a UserError if the lock file cannot be created.
  static std::optional<FileLock> try_lock(const std::string& path);
  // Waits for the lock.
  static FileLock lock(const std::string& path);

  FileLock(FileLock&& o) noexcept;
  FileLock& operator=(FileLock&& o) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

  // The pid written by the current holder of the lock at `path` ("" if unknown).
  static std::string holder(const std::string& path);

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace ddpmc
