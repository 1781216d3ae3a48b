// The atomic file writer (see atomic_file.h): temp file, fsync, rename, fsync of
// the directory.
#include "atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "diag.h"

namespace ddpmc {

namespace {

// Makes a rename in `path`'s directory durable. A failure here leaves a complete
// file, so it is not reported.
void fsync_dir_of(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

[[noreturn]] void io_error(const std::string& what, const std::string& path, const std::string& action,
                           const std::string& tmp, int err) {
  user_error_noloc("cannot write " + what + " '" + path + "': cannot " + action + " temp file '" + tmp +
                       "': " + std::strerror(err),
                   "check that the directory exists, is writable and has free space");
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::string what)
    : path_(std::move(path)), tmp_(path_ + ".tmp"), what_(std::move(what)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("create");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::fail(const std::string& action) {
  int err = errno;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  io_error(what_, path_, action, tmp_, err);
}

void AtomicFile::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t k = ::write(fd_, p, bytes);
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += k;
    bytes -= (size_t)k;
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail("fsync");
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("close");
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename");
  committed_ = true;
  fsync_dir_of(path_);
}

void write_file_atomic(const std::string& path, const std::string& bytes, const std::string& what) {
  AtomicFile f(path, what);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void durable_rename(const std::string& tmp, const std::string& path, const std::string& what) {
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_error(what, path, "open", tmp, errno);
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    io_error(what, path, "fsync", tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) io_error(what, path, "rename", tmp, errno);
  fsync_dir_of(path);
}

}  // namespace ddpmc
