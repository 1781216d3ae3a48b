// NumPy .npy reader and writer (see npy.h).
//
// Format (NEP 1, version 1.0): "\x93NUMPY", major 1, minor 0, a little-endian
// uint16 header length, then an ASCII Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }
// padded with spaces and ended by '\n' so that magic + length + header is a
// multiple of 64 bytes; then the raw data. Version 2.0/3.0 files (uint32 header
// length) are accepted when reading.
#include "npy.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "common/input_limits.h"

namespace ddpm {

static_assert(std::endian::native == std::endian::little, "ddpmc assumes a little-endian host");

// ---------------------------------------------------------------- write_npy

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
    count *= shape[i];
  }
  dict += "), }";
  // magic (6) + version (2) + header length (2) + dict + padding + '\n' = 64k bytes.
  size_t total = 10 + dict.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  uint16_t hlen = (uint16_t)dict.size();

  ddpmc::AtomicFile f(path, "samples file");
  f.write("\x93NUMPY\x01\x00", 8);
  f.write(&hlen, 2);
  f.write(dict.data(), dict.size());
  f.write(data, (size_t)count * sizeof(float));
  f.commit();
}

// ---------------------------------------------------------------- read_npy

namespace {

[[noreturn]] void bad_npy(const std::string& path, const std::string& what) {
  ddpmc::user_error_noloc(".npy file '" + path + "' " + what,
                          "write it with numpy.save(path, array) from a float32, float64 or integer array");
}

// The value text of `key` in the header dict: from after "'key':" up to the
// matching top-level ',' or '}'.
std::string dict_value(const std::string& path, const std::string& dict, const std::string& key) {
  size_t k = dict.find("'" + key + "'");
  if (k == std::string::npos) k = dict.find("\"" + key + "\"");
  if (k == std::string::npos) bad_npy(path, "has no '" + key + "' in its header");
  size_t colon = dict.find(':', k + key.size() + 2);
  if (colon == std::string::npos) bad_npy(path, "has a malformed header");
  size_t b = colon + 1, e = b;
  int depth = 0;
  for (; e < dict.size(); ++e) {
    char c = dict[e];
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    if (depth < 0) bad_npy(path, "has a malformed header");
  }
  std::string v = dict.substr(b, e - b);
  size_t s = v.find_first_not_of(" \t"), t = v.find_last_not_of(" \t");
  return s == std::string::npos ? "" : v.substr(s, t - s + 1);
}

}  // namespace

namespace {

// A parsed .npy file: its shape, element type and where the data starts in bytes.
struct NpyFile {
  std::string bytes, descr, shape_text;
  std::vector<int64_t> shape;
  int64_t count = 1;
  int elem = 0;     // bytes per element
  char kind = 0;    // 'f' float, 'i' signed, 'u' unsigned integer
  size_t data_start = 0;
  double at(int64_t i) const;
};

double NpyFile::at(int64_t i) const {
  const char* p = bytes.data() + data_start + (size_t)i * (size_t)elem;
  auto get = [&]<class T>(T v) {
    std::memcpy(&v, p, sizeof v);
    return (double)v;
  };
  if (kind == 'f') return elem == 4 ? get(float{}) : get(double{});
  if (kind == 'u') {
    switch (elem) {
      case 1: return get(uint8_t{});
      case 2: return get(uint16_t{});
      case 4: return get(uint32_t{});
      default: return get(uint64_t{});
    }
  }
  switch (elem) {
    case 1: return get(int8_t{});
    case 2: return get(int16_t{});
    case 4: return get(int32_t{});
    default: return get(int64_t{});
  }
}

NpyFile parse_npy(const std::string& path) {
  const std::string problem = ddpmc::input_file_problem(path);
  if (!problem.empty())
    ddpmc::user_error_noloc(".npy file '" + path + "' cannot be opened: " + problem,
                            "pass the path of an .npy file (numpy.save writes one)");
  NpyFile f;
  f.bytes = ddpmc::read_input_file(path, ".npy file", "write it with numpy.save(path, array)");
  const std::string& bytes = f.bytes;

  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    bad_npy(path, "is not a .npy file (bad magic; expected \\x93NUMPY)");
  int major = (unsigned char)bytes[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (unsigned char)bytes[8] | ((size_t)(unsigned char)bytes[9] << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) bad_npy(path, "is truncated inside its header");
    uint32_t h;
    std::memcpy(&h, bytes.data() + 8, 4);
    hlen = h;
    hstart = 12;
  } else {
    bad_npy(path, "has unsupported format version " + std::to_string(major));
  }
  if (hstart + hlen > bytes.size())
    bad_npy(path, "is truncated: header length " + std::to_string(hlen) + " exceeds file size " +
                      std::to_string(bytes.size()));
  std::string dict = bytes.substr(hstart, hlen);

  std::string descr = dict_value(path, dict, "descr");
  if (descr.size() >= 2 && (descr.front() == '\'' || descr.front() == '"'))
    descr = descr.substr(1, descr.size() - 2);
  f.descr = descr;
  const bool one_byte = descr.size() == 3 && descr[2] == '1' && (descr[0] == '|' || descr[0] == '<' || descr[0] == '>');
  if (descr.size() == 3 && (descr[0] == '<' || one_byte) && std::string("fiu").find(descr[1]) != std::string::npos &&
      std::string(descr[1] == 'f' ? "48" : "1248").find(descr[2]) != std::string::npos) {
    f.kind = descr[1];
    f.elem = descr[2] - '0';
  } else if (!descr.empty() && descr[0] == '>') {
    bad_npy(path, "is big-endian ('" + descr + "'); only little-endian arrays are read");
  } else {
    bad_npy(path, "has dtype '" + descr + "'; only float32/float64 and integer arrays are read");
  }

  std::string fortran = dict_value(path, dict, "fortran_order");
  if (fortran == "True") bad_npy(path, "is in Fortran order; save a C-contiguous array");
  if (fortran != "False") bad_npy(path, "has a malformed 'fortran_order' value '" + fortran + "'");

  std::string shape_text = dict_value(path, dict, "shape");
  if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
    bad_npy(path, "has a malformed shape '" + shape_text + "'");
  f.shape_text = shape_text;
  std::string inner = shape_text.substr(1, shape_text.size() - 2);
  size_t pos = 0;
  while (pos < inner.size()) {
    size_t comma = inner.find(',', pos);
    std::string tok = inner.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? inner.size() : comma + 1;
    size_t s = tok.find_first_not_of(' '), t = tok.find_last_not_of(' ');
    if (s == std::string::npos) continue;
    tok = tok.substr(s, t - s + 1);
    if (tok.empty() || tok.find_first_not_of("0123456789") != std::string::npos || tok.size() > 15)
      bad_npy(path, "has a malformed shape '" + shape_text + "'");
    int64_t d = std::stoll(tok);
    f.shape.push_back(d);
    if (d != 0 && f.count > std::numeric_limits<int64_t>::max() / 8 / d)
      bad_npy(path, "has an impossibly large shape '" + shape_text + "'");
    f.count *= d;
  }

  f.data_start = hstart + hlen;
  size_t need = (size_t)f.count * (size_t)f.elem;
  if (bytes.size() - f.data_start < need)
    bad_npy(path, "is truncated: shape " + shape_text + " needs " + std::to_string(need) +
                      " data bytes but the file has " + std::to_string(bytes.size() - f.data_start));
  return f;
}

}  // namespace

NpyArray read_npy(const std::string& path) {
  NpyFile f = parse_npy(path);
  NpyArray out;
  out.shape = f.shape;
  out.dtype = f.descr;
  out.integer = f.kind != 'f';
  ddpmc::check_memory((double)f.count * sizeof(float), fmt::format("reading .npy file '{}' as float32", path),
                      "use a smaller array");
  out.data.resize((size_t)f.count);
  if (f.kind == 'f' && f.elem == 4) {
    if (f.count) std::memcpy(out.data.data(), f.bytes.data() + f.data_start, (size_t)f.count * 4);
  } else {
    for (int64_t i = 0; i < f.count; ++i) out.data[i] = (float)f.at(i);
  }
  return out;
}

std::vector<double> read_npy_values(const std::string& path, std::vector<int64_t>& shape) {
  NpyFile f = parse_npy(path);
  shape = f.shape;
  std::vector<double> out((size_t)f.count);
  for (int64_t i = 0; i < f.count; ++i) out[i] = f.at(i);
  return out;
}

}  // namespace ddpm
