// flock-based file locks (see file_lock.h).
#include "file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "diag.h"

namespace ddpmc {

namespace {

int open_lock_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    user_error_noloc("cannot create the lock file '" + path + "': " + std::strerror(errno),
                     "check that the directory exists and is writable");
  return fd;
}

void write_pid(int fd) {
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, pid.data(), pid.size(), 0);
}

}  // namespace

std::optional<FileLock> FileLock::try_lock(const std::string& path) {
  int fd = open_lock_file(path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  write_pid(fd);
  return FileLock(fd);
}

FileLock FileLock::lock(const std::string& path) {
  int fd = open_lock_file(path);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      int err = errno;
      ::close(fd);
      user_error_noloc("cannot lock '" + path + "': " + std::strerror(err), "");
    }
  }
  write_pid(fd);
  return FileLock(fd);
}

FileLock::FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

std::string FileLock::holder(const std::string& path) {
  std::ifstream f(path);
  std::string pid;
  f >> pid;
  return pid;
}

}  // namespace ddpmc
