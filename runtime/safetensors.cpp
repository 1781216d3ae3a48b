// safetensors reader and writer (format in safetensors.h). Writes go through
// AtomicFile (common/atomic_file.h); reads load the whole file and validate every field before
// copying tensor data out.
#include "safetensors.h"

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/diag.h"
#include "common/input_limits.h"
#include "npy.h"

namespace ddpm {

using nlohmann::json;

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::vector<size_t> bytes(tensors.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    DDPM_CHECK(t.name != "__metadata__" && !header.contains(t.name),
               "bad or duplicate tensor name '" + t.name + "'");
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      DDPM_CHECK(d >= 0, "negative dimension in tensor '" + t.name + "'");
      count *= (uint64_t)d;
    }
    DDPM_CHECK(count == 0 || t.data != nullptr, "null data for tensor '" + t.name + "'");
    bytes[i] = (size_t)count * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes[i]}}};
    offset += bytes[i];
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t n = text.size();

  ddpmc::AtomicFile f(path, "checkpoint");
  f.write(&n, 8);
  f.write(text.data(), text.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (bytes[i]) f.write(tensors[i].data, bytes[i]);
  f.commit();
}

namespace {

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  ddpmc::user_error_noloc("checkpoint '" + path + "' is corrupt: " + what,
                          "re-run training or point --resume at a valid checkpoint");
}

// A JSON number that is a non-negative integer, or the checkpoint is corrupt.
uint64_t as_index(const std::string& path, const json& v, const std::string& where) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return (uint64_t)v.get<int64_t>();
    corrupt(path, where + " is not a non-negative integer");
  }
  return v.get<uint64_t>();
}

// The header's length field, checked against the file size and the bound.
uint64_t header_length(const std::string& path, const char* first8, uint64_t file_size) {
  uint64_t n;
  std::memcpy(&n, first8, 8);
  if (n > kMaxHeaderBytes)
    corrupt(path, "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes) +
                      " bytes");
  if (n > file_size - 8)
    corrupt(path, "header length " + std::to_string(n) + " exceeds file size " + std::to_string(file_size));
  return n;
}

json parse_header(const std::string& path, const char* begin, uint64_t n) {
  json header = json::parse(begin, begin + n, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) corrupt(path, "the header is not valid JSON");
  if (!header.is_object()) corrupt(path, "the header is not a JSON object");
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& v) {
  std::map<std::string, std::string> out;
  if (!v.is_object()) corrupt(path, "__metadata__ is not an object");
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string()) corrupt(path, "metadata value '" + m.key() + "' is not a string");
    out[m.key()] = m.value().get<std::string>();
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    ddpmc::user_error_noloc("cannot open checkpoint '" + path + "': " + std::strerror(errno),
                            "check the path, or re-run training to create it");
  in.seekg(0, std::ios::end);
  const uint64_t size = (uint64_t)in.tellg();
  in.seekg(0);
  if (size < 8) corrupt(path, "file size " + std::to_string(size) + " is smaller than the 8-byte header length");
  char first8[8];
  in.read(first8, 8);
  const uint64_t n = header_length(path, first8, size);
  std::string text((size_t)n, '\0');
  in.read(text.data(), (std::streamsize)n);
  if (!in) corrupt(path, "the header cannot be read");
  const json header = parse_header(path, text.data(), n);
  auto it = header.find("__metadata__");
  return it == header.end() ? std::map<std::string, std::string>{} : parse_metadata(path, *it);
}

SafeTensors read_safetensors(const std::string& path) {
  const std::string bytes =
      ddpmc::read_input_file(path, "checkpoint", "check the path, or re-run training to create it");

  if (bytes.size() < 8)
    corrupt(path, "file size " + std::to_string(bytes.size()) + " is smaller than the 8-byte header length");
  const uint64_t n = header_length(path, bytes.data(), bytes.size());
  const json header = parse_header(path, bytes.data() + 8, n);

  const uint64_t data_size = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;
  SafeTensors out;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end) of each tensor

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      out.metadata = parse_metadata(path, v);
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!v.is_object()) corrupt(path, where + " is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) corrupt(path, where + " has no dtype");
    std::string dtype = v["dtype"].get<std::string>();
    if (dtype != "F32") corrupt(path, where + " has dtype " + dtype + "; only F32 is supported");
    if (!v.contains("shape") || !v["shape"].is_array()) corrupt(path, where + " has no shape array");
    std::vector<int64_t> shape;
    uint64_t count = 1;
    for (const json& d : v["shape"]) {
      uint64_t k = as_index(path, d, where + " shape entry");
      if (k != 0 && count > data_size / k) corrupt(path, where + " has a shape larger than the file");
      count *= k;
      shape.push_back((int64_t)k);
    }
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      corrupt(path, where + " has no [begin, end] data_offsets");
    uint64_t b = as_index(path, v["data_offsets"][0], where + " data_offsets[0]");
    uint64_t e = as_index(path, v["data_offsets"][1], where + " data_offsets[1]");
    if (b > e || e > data_size)
      corrupt(path, where + " data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                        "] are outside the data section of " + std::to_string(data_size) + " bytes");
    if (e - b != count * sizeof(float))
      corrupt(path, where + " has " + std::to_string(e - b) + " data bytes but its shape needs " +
                        std::to_string(count * sizeof(float)));
    ranges.emplace_back(b, e);
    std::vector<float> values((size_t)count);
    if (count) std::memcpy(values.data(), data + b, e - b);
    out.tensors.emplace(name, std::make_pair(std::move(shape), std::move(values)));
  }

  std::sort(ranges.begin(), ranges.end());
  uint64_t end_so_far = 0;
  for (const auto& [b, e] : ranges) {
    if (b == e) continue;
    if (b < end_so_far) corrupt(path, "two tensors overlap at data offset " + std::to_string(b));
    end_so_far = std::max(end_so_far, e);
  }
  return out;
}

void require_finite(const std::string& path, const std::string& name, const std::vector<float>& values,
                    const std::string& hint) {
  const auto bad = std::find_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); });
  if (bad == values.end()) return;
  ddpmc::user_error_noloc(fmt::format("checkpoint {}: tensor '{}' holds {} at index {} ({} of its {} values are not "
                                      "finite)",
                                      path, name, *bad, bad - values.begin(),
                                      std::count_if(values.begin(), values.end(), [](float v) { return !std::isfinite(v); }),
                                      values.size()),
                          hint);
}

}  // namespace ddpm
