// What the trainer and the sampler check when they load the user's data, labels
// and checkpoints: uint8 .npy images scaled like IDX pixels, NaN and infinity
// refused at the first bad value, exactly one label per sample, integer label
// arrays read and bad label values reported as they are, checkpoints with
// non-finite weights refused for sampling and resume, and inputs that are not
// regular files (a directory, a FIFO, /dev/zero) refused before they are read.
// The model is tests/specs/cond_idx.ddpm: [1, 1, 2] samples with a 2-class label.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/diag.h"
#include "compiler/driver.h"
#include "runtime/data_source.h"
#include "runtime/idx.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "runtime/safetensors.h"
#include "runtime/sample.h"
#include "runtime/train.h"
#include "test_runs.h"
#include "tools/spec_module.h"
#include "test_shell.h"

namespace fs = std::filesystem;

namespace {

const char* kSpec = "tests/specs/cond_idx.ddpm";

std::string module_so() {
  return ddpm_tools::module_for(std::string(DDPM_SOURCE_DIR) + "/" + kSpec, std::string(DDPM_TEST_CACHE)).so;
}

// A .npy file of dtype `descr` and shape `shape` holding the raw bytes `payload`.
void write_raw_npy(const fs::path& p, const std::string& descr, const std::string& shape, const std::string& payload) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += (char)(h.size() & 0xff);
  out += (char)(h.size() >> 8);
  std::ofstream(p, std::ios::binary) << out << h << payload;
}

template <class T>
std::string raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

using ddpm_test::user_error_of;

// Four [1, 1, 2] float samples and four int64 labels 0, 1, 0, 1.
struct Files {
  fs::path dir, x, y;
};
Files write_good(const std::string& name) {
  Files f{ddpm_test::process_dir("test-data-checks", name), {}, {}};
  fs::create_directories(f.dir);
  f.x = f.dir / "x.npy";
  f.y = f.dir / "y.npy";
  const std::vector<float> x = {-1, -0.5f, 0, 0.5f, 1, 0.25f, -0.25f, 0.75f};
  ddpm::write_npy(f.x.string(), x.data(), {4, 1, 1, 2});
  write_raw_npy(f.y, "<i8", "(4,)", raw(std::vector<int64_t>{0, 1, 0, 1}));
  return f;
}

}  // namespace

TEST_CASE("data: a uint8 .npy of images is scaled to [-1, 1] like IDX pixels") {
  ddpm::Module mod(module_so());
  Files f = write_good("u8");
  write_raw_npy(f.x, "|u1", "(1, 1, 1, 2)", raw(std::vector<uint8_t>{0, 255}));
  write_raw_npy(f.y, "<i8", "(1,)", raw(std::vector<int64_t>{1}));
  ddpm::DataSource src(f.x.string(), mod, f.y.string());
  float x0[2], y[1];
  src.fill(1, 0, 1, x0, y);
  CHECK(x0[0] == -1.0f);
  CHECK(x0[1] == 1.0f);
  CHECK(y[0] == 1.0f);
  // Other integer data has no agreed range: refused with a hint.
  write_raw_npy(f.x, "<i4", "(1, 1, 1, 2)", raw(std::vector<int32_t>{0, 255}));
  CHECK(user_error_of([&] { ddpm::DataSource(f.x.string(), mod, f.y.string()); })
            .find("holds integers of dtype '<i4'") != std::string::npos);
}

TEST_CASE("data: NaN or infinity in a data file is an error naming the first bad value") {
  ddpm::Module mod(module_so());
  Files f = write_good("nan");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x = {-1, -0.5f, 0, 0.5f, 1, bad, -0.25f, bad};
    ddpm::write_npy(f.x.string(), x.data(), {4, 1, 1, 2});
    const std::string msg = user_error_of([&] { ddpm::DataSource(f.x.string(), mod, f.y.string()); });
    CAPTURE(msg);
    CHECK(msg.find(f.x.string()) != std::string::npos);
    CHECK(msg.find("at sample 2, element 1 (flat index 5)") != std::string::npos);
  }
}

TEST_CASE("data: a label file must hold exactly one label per sample") {
  ddpm::Module mod(module_so());
  Files f = write_good("count");
  write_raw_npy(f.y, "<i8", "(5,)", raw(std::vector<int64_t>{0, 1, 0, 1, 1}));
  CHECK(user_error_of([&] { ddpm::DataSource(f.x.string(), mod, f.y.string()); }).find("holds 5 labels but") !=
        std::string::npos);
  write_raw_npy(f.y, "<i8", "(3,)", raw(std::vector<int64_t>{0, 1, 0}));
  CHECK(user_error_of([&] { ddpm::DataSource(f.x.string(), mod, f.y.string()); }).find("holds 3 labels but") !=
        std::string::npos);
}

TEST_CASE("data: int64, int32, uint8 and whole float label arrays are read") {
  ddpm::Module mod(module_so());
  Files f = write_good("ints");
  const std::vector<std::pair<std::string, std::string>> arrays = {
      {"<i8", raw(std::vector<int64_t>{1, 1, 1, 1})}, {"<i4", raw(std::vector<int32_t>{1, 1, 1, 1})},
      {"|u1", raw(std::vector<uint8_t>{1, 1, 1, 1})}, {"<f8", raw(std::vector<double>{1, 1, 1, 1})}};
  for (const auto& [descr, bytes] : arrays) {
    CAPTURE(descr);
    write_raw_npy(f.y, descr, "(4,)", bytes);
    ddpm::DataSource src(f.x.string(), mod, f.y.string());
    float x0[2], y[1];
    src.fill(1, 0, 1, x0, y);
    CHECK(y[0] == 1.0f);
  }
}

TEST_CASE("data: a bad label value is reported as itself") {
  ddpm::Module mod(module_so());
  Files f = write_good("badlabel");
  struct Case {
    std::vector<double> v;
    const char* expect;
  } cases[] = {{{0, 1, 0.5, 1}, "label 0.5 of sample 2 is not a whole number"},
               {{0, 1, std::nan(""), 1}, "label nan of sample 2 is not a whole number"},
               {{0, 1, 3e9, 1}, "label 3000000000 of sample 2 is outside the model's classes 0..1"},
               {{0, -1, 0, 1}, "label -1 of sample 1 is outside"}};
  for (const Case& c : cases) {
    CAPTURE(c.expect);
    write_raw_npy(f.y, "<f8", "(4,)", raw(c.v));
    CHECK(user_error_of([&] { ddpm::DataSource(f.x.string(), mod, f.y.string()); }).find(c.expect) !=
          std::string::npos);
  }
  write_raw_npy(f.y, "<i8", "(4,)", raw(std::vector<int64_t>{0, 1, 3000000000LL, 1}));
  CHECK(user_error_of([&] { ddpm::DataSource(f.x.string(), mod, f.y.string()); })
            .find("label 3000000000 of sample 2 is outside") != std::string::npos);
}

TEST_CASE("data: a checkpoint with non-finite weights is refused for sampling and resume, naming the tensor") {
  Files f = write_good("ckpt");
  const fs::path run = f.dir / "run";
  ddpm::TrainConfig c = ddpm_test::run_config(kSpec, f.x.string(), run, 2, 4, 1);
  c.labels = f.y.string();
  REQUIRE(ddpm::train(c) == 0);
  const std::string ckpt = (run / "checkpoint.safetensors").string();
  ddpm::SafeTensors st = ddpm::read_safetensors(ckpt);
  std::string poisoned;
  std::vector<ddpm::TensorView> views;
  for (auto& [name, t] : st.tensors) {
    if (poisoned.empty() && name.rfind("ema/", 0) == 0) {
      t.second[1] = std::numeric_limits<float>::quiet_NaN();
      poisoned = name;
    }
    views.push_back({name, t.first, t.second.data()});
  }
  ddpm::write_safetensors(ckpt, views, st.metadata);
  // What ddpm-sample and ddpm-eval load (the model has no sampler to run).
  ddpm::Module mod((run / "module.so").string());
  ddpm::AlignedFloats params(mod->param_floats);
  const std::string msg = user_error_of([&] { ddpm::load_weights(ckpt, mod, true, params.data()); });
  CAPTURE(msg);
  CHECK(msg.find("tensor '" + poisoned + "' holds nan at index 1") != std::string::npos);
  c.resume = true;
  c.steps = 4;
  CHECK(user_error_of([&] { ddpm::train(c); }).find("tensor '" + poisoned + "' holds nan") != std::string::npos);
}

TEST_CASE("input: a directory, a FIFO or a device given as a spec, data, labels or checkpoint is a one-line error") {
  const fs::path dir = ddpm_test::process_dir("test-data-checks", "special");
  fs::create_directories(dir / "x.npy");
  fs::create_directories(dir / "spec.ddpm");
  REQUIRE(::mkfifo((dir / "fifo.npy").c_str(), 0600) == 0);
  fs::create_symlink("/dev/zero", dir / "zero.npy");
  for (const char* name : {"x.npy", "fifo.npy", "zero.npy"}) {
    const std::string p = (dir / name).string();
    CAPTURE(p);
    const std::string msg = user_error_of([&] { ddpm::read_npy(p); });
    CHECK(msg.find("'" + p + "' cannot be opened: it is") != std::string::npos);
    CHECK(user_error_of([&] { ddpm::read_safetensors(p); }).find("ddpmc reads only regular files") != std::string::npos);
    CHECK(user_error_of([&] { ddpm::read_idx_labels(p); }).find("cannot be read: it is") != std::string::npos);
  }
  CHECK(user_error_of([&] { ddpmc::check_spec_file("/dev/zero"); })
            .find("'/dev/zero': it is a character device, not a regular file") != std::string::npos);
  CHECK(user_error_of([&] { ddpmc::check_spec_file((dir / "spec.ddpm").string()); }).find("it is a directory") !=
        std::string::npos);
  CHECK(user_error_of([&] { ddpmc::check_spec_file((dir / "fifo.npy").string()); }).find("it is a FIFO") !=
        std::string::npos);
  // Labels the same way, through the trainer's data source.
  ddpm::Module mod(module_so());
  Files f = write_good("special-labels");
  CHECK(user_error_of([&] { ddpm::DataSource(f.x.string(), mod, (dir / "zero.npy").string()); })
            .find("it is a character device") != std::string::npos);
}
