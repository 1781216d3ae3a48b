// Input-file and memory bounds (see input_limits.h).
#include "input_limits.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "diag.h"

namespace ddpmc {

namespace {

const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

uint64_t cgroup_limit() {
  std::ifstream f("/sys/fs/cgroup/memory.max");
  std::string s;
  if (!(f >> s) || s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return UINT64_MAX;
  return std::strtoull(s.c_str(), nullptr, 10);
}

}  // namespace

std::string input_file_problem(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::strerror(errno);
  if (S_ISREG(st.st_mode)) return "";
  if (S_ISDIR(st.st_mode)) return "it is a directory";
  return fmt::format("it is {}, not a regular file", file_kind(st.st_mode));
}

std::string read_input_file(const std::string& path, const std::string& what, const std::string& hint,
                            uint64_t max_bytes) {
  // Opened first and checked through the descriptor, so the file checked is the file read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) user_error_noloc(fmt::format("cannot open {} '{}': {}", what, path, std::strerror(errno)), hint);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    user_error_noloc(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)), hint);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    user_error_noloc(fmt::format("{} '{}' is {}; ddpmc reads only regular files", what, path, file_kind(st.st_mode)),
                     hint);
  }
  const uint64_t size = (uint64_t)st.st_size;
  const uint64_t limit = std::min(max_bytes, memory_limit_bytes());
  if (size > limit) {
    ::close(fd);
    user_error_noloc(fmt::format("{} '{}' is {}, more than the {} limit for it", what, path, format_bytes((double)size),
                                 format_bytes((double)limit)),
                     hint);
  }
  std::string bytes(size, '\0');
  size_t got = 0;
  while (got < size) {
    const ssize_t k = ::read(fd, bytes.data() + got, size - got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      const int err = errno;
      ::close(fd);
      user_error_noloc(fmt::format("cannot read {} '{}': {}", what, path, std::strerror(err)), hint);
    }
    if (k == 0) break;  // the file shrank while it was read
    got += (size_t)k;
  }
  ::close(fd);
  bytes.resize(got);
  return bytes;
}

uint64_t memory_limit_bytes() {
  uint64_t limit = UINT64_MAX;
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) limit = (uint64_t)pages * (uint64_t)page;
  limit = std::min(limit, cgroup_limit());
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) limit = std::min<uint64_t>(limit, rl.rlim_cur);
  if (const char* env = std::getenv("DDPM_MEMORY_LIMIT_MB")) {
    char* end = nullptr;
    const double mb = std::strtod(env, &end);
    if (end != env && *end == '\0' && mb > 0 && mb < 1e12) limit = std::min(limit, (uint64_t)(mb * 1048576.0));
  }
  return limit;
}

std::string format_bytes(double b) {
  if (b >= 1099511627776.0) return fmt::format("{:.1f} TiB", b / 1099511627776.0);
  if (b >= 1073741824.0) return fmt::format("{:.1f} GiB", b / 1073741824.0);
  if (b >= 1048576.0) return fmt::format("{:.1f} MiB", b / 1048576.0);
  if (b >= 1024.0) return fmt::format("{:.1f} KiB", b / 1024.0);
  return fmt::format("{:.0f} bytes", b);
}

void check_memory(double bytes, const std::string& what, const std::string& hint) {
  const uint64_t limit = memory_limit_bytes();
  if (bytes > (double)limit)
    user_error_noloc(fmt::format("{} needs {}, more than the {} of memory this machine allows", what,
                                 format_bytes(bytes), format_bytes((double)limit)),
                     hint);
}

}  // namespace ddpmc
