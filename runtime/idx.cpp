// IDX reader (see idx.h). gzread reads gzip and plain files alike, so one path
// handles both; every header field is validated before the payload is read.
#include "idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <memory>

#include "common/diag.h"
#include "common/input_limits.h"

namespace ddpm {
namespace {

[[noreturn]] void bad_idx(const std::string& path, const std::string& what) {
  ddpmc::user_error_noloc("IDX file '" + path + "' " + what,
                          "use the MNIST/Fashion-MNIST IDX files (e.g. train-images-idx3-ubyte.gz)");
}

struct GzFile {
  std::string path;
  gzFile f = nullptr;
  explicit GzFile(const std::string& p) : path(p) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      std::string hint = "check the path";
      if (path.rfind(kFashionMnistDir, 0) == 0 && !std::filesystem::exists(kFashionMnistDir, ec))
        hint = std::string(kFashionMnistDir) + " is missing; install it with `apt-get install dataset-fashion-mnist`";
      ddpmc::user_error_noloc("IDX file '" + path + "' does not exist", hint);
    }
    const std::string problem = ddpmc::input_file_problem(path);
    if (!problem.empty()) bad_idx(path, "cannot be read: " + problem);
    f = gzopen(path.c_str(), "rb");
    if (!f) bad_idx(path, std::string("cannot be opened: ") + std::strerror(errno));
  }
  ~GzFile() {
    if (f) gzclose(f);
  }
  // Reads exactly `bytes` bytes or reports what is missing.
  void read(void* dst, size_t bytes, const char* what) {
    char* p = static_cast<char*>(dst);
    size_t got = 0;
    while (got < bytes) {
      unsigned want = (unsigned)std::min<size_t>(bytes - got, 1u << 30);
      int k = gzread(f, p + got, want);
      if (k < 0) {
        int code;
        const char* msg = gzerror(f, &code);
        bad_idx(path, std::string("cannot be read (") + what + "): " + msg);
      }
      if (k == 0) break;
      got += (size_t)k;
    }
    if (got < bytes)
      bad_idx(path, std::string("is truncated: ") + what + " needs " + std::to_string(bytes) +
                        " bytes but only " + std::to_string(got) + " remain");
  }
  uint32_t be32(const char* what) {
    unsigned char b[4];
    read(b, 4, what);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
  }
};

void check_magic(GzFile& f, uint32_t want, const char* kind) {
  uint32_t magic = f.be32("the magic number");
  if (magic != want)
    bad_idx(f.path, "has magic number " + std::to_string(magic) + " but " + kind + " files have " +
                        std::to_string(want) + (magic == 2051 || magic == 2049 ? " (images and labels swapped?)" : ""));
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  GzFile f(path);
  check_magic(f, 2051, "image");
  IdxImages out;
  uint32_t n = f.be32("the image count"), rows = f.be32("the row count"), cols = f.be32("the column count");
  if (rows == 0 || cols == 0 || rows > 4096 || cols > 4096)
    bad_idx(path, "has implausible image size " + std::to_string(rows) + "x" + std::to_string(cols));
  if ((uint64_t)n * rows * cols > (uint64_t)1 << 34)
    bad_idx(path, "claims " + std::to_string(n) + " images, more than 16 GiB of pixels");
  out.n = n;
  out.rows = (int)rows;
  out.cols = (int)cols;
  out.pixels.resize((size_t)n * rows * cols);
  f.read(out.pixels.data(), out.pixels.size(), "the pixel data");
  return out;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  GzFile f(path);
  check_magic(f, 2049, "label");
  uint32_t n = f.be32("the label count");
  if (n > (1u << 30)) bad_idx(path, "claims an implausible " + std::to_string(n) + " labels");
  std::vector<uint8_t> labels(n);
  f.read(labels.data(), labels.size(), "the label data");
  return labels;
}

}  // namespace ddpm
