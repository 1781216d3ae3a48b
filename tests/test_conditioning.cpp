// Class conditioning (`label y: K`, the embed builtin, label dropout, guidance):
// a small model of two labelled 2-D clusters trains from .npy data with --labels
// and samples each class where its training data lies; the label sources' errors
// (missing, short, out of range, given to a model without a label, a data set
// without labels) are one-line user errors naming the file; IDX images find the
// label file next to them.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/diag.h"
#include "runtime/module.h"
#include "runtime/npy.h"
#include "philox.h"
#include "runtime/sample.h"
#include "runtime/train.h"
#include "test_runs.h"
#include "tools/spec_module.h"

namespace fs = std::filesystem;

namespace {

const fs::path kDir = fs::path(DDPM_BINARY_DIR) / "test-conditioning";

// N points: class 0 around (-1.5, 0), class 1 around (1.5, 0), alternating.
void write_clusters(const fs::path& x_path, const fs::path& y_path, int64_t n, int64_t n_labels, float bad_label = -1) {
  std::vector<float> x(n * 2), y(n_labels);
  for (int64_t i = 0; i < n; ++i) {
    const int c = (int)(i % 2);
    x[2 * i] = (c ? 1.5f : -1.5f) + 0.3f * (float)ddpm::philox_normal(5, 0, 1, 2 * i);
    x[2 * i + 1] = 0.3f * (float)ddpm::philox_normal(5, 0, 1, 2 * i + 1);
  }
  for (int64_t i = 0; i < n_labels; ++i) y[i] = (float)(i % 2);
  if (bad_label >= 0 && n_labels > 3) y[3] = bad_label;
  ddpm::write_npy(x_path.string(), x.data(), {n, 2});
  ddpm::write_npy(y_path.string(), y.data(), {n_labels});
}

// Trains `spec` (relative to the source tree) instead: its module, checksum and source.
void use_module(ddpm::TrainConfig& c, const std::string& spec) {
  const ddpm_tools::ModuleFile mf =
      ddpm_tools::module_for(std::string(DDPM_SOURCE_DIR) + "/" + spec, std::string(DDPM_TEST_CACHE));
  c.module_so = mf.so;
  c.module_checksum = mf.checksum;
  c.spec_sources = mf.sources;
}

ddpm::TrainConfig config(const std::string& data, const std::string& labels, const fs::path& out, int64_t steps) {
  ddpm::TrainConfig c = ddpm_test::run_config("tests/specs/cond2d.ddpm", data, out, steps, 128, 3);
  c.labels = labels;
  return c;
}

std::string train_error(const ddpm::TrainConfig& c) {
  try {
    ddpm::train(c);
  } catch (const ddpmc::UserError& e) {
    return e.what();
  }
  return "no error";
}

void write_be32(std::ofstream& f, uint32_t v) {
  const unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
  f.write((const char*)b, 4);
}

}  // namespace

TEST_CASE("conditioning: labels reach the net, and each class samples where its data lies") {
  fs::create_directories(kDir);
  const fs::path x = kDir / "x.npy", y = kDir / "y.npy", run = kDir / "run";
  write_clusters(x, y, 2000, 2000);
  fs::remove_all(run);
  REQUIRE(ddpm::train(config(x.string(), y.string(), run, 2500)) == 0);
  auto mean_x = [&](const std::string& cls) {
    ddpm::SampleConfig s = ddpm_test::draw_config(run, "cfg", 50, 400);
    s.args = {"class=" + cls, "w=1"};
    std::vector<float> v = ddpm::sample_to_vector(s);
    double m = 0;
    for (int i = 0; i < 400; ++i) m += v[2 * i] / 400;
    return m;
  };
  const double m0 = mean_x("0"), m1 = mean_x("1");
  MESSAGE("mean x of class 0 samples " << m0 << ", class 1 " << m1 << " (data: -1.5 and 1.5)");
  CHECK(m0 < -1.0);
  CHECK(m1 > 1.0);
  // --class all: both classes, class by class, with one grid row each.
  ddpm::SampleConfig s = ddpm_test::draw_config(run, "cfg", 20, 100);
  s.class_all = true;
  s.out_npy = (kDir / "all.npy").string();
  std::vector<float> all = ddpm::sample_to_vector(s);
  REQUIRE(all.size() == 400);
  CHECK(ddpm::read_npy(s.out_npy).shape == std::vector<int64_t>{200, 2});
  double a0 = 0, a1 = 0;
  for (int i = 0; i < 100; ++i) a0 += all[2 * i] / 100, a1 += all[200 + 2 * i] / 100;
  CHECK(a0 < -1.0);
  CHECK(a1 > 1.0);
}

TEST_CASE("conditioning: missing, short and out-of-range labels are one-line errors naming the file") {
  fs::create_directories(kDir);
  const fs::path x = kDir / "ex.npy", y = kDir / "ey.npy", out = kDir / "err-run";
  write_clusters(x, y, 100, 100);
  CHECK(train_error(config(x.string(), "", out, 1)).find("comes without labels") != std::string::npos);
  CHECK(train_error(config(x.string(), (kDir / "nope.npy").string(), out, 1)).find("nope.npy does not exist") !=
        std::string::npos);
  write_clusters(x, y, 100, 60);
  CHECK(train_error(config(x.string(), y.string(), out, 1)).find("holds 60 labels but") != std::string::npos);
  write_clusters(x, y, 100, 100, 7);
  CHECK(train_error(config(x.string(), y.string(), out, 1)).find("label 7 of sample 3 is outside the model's classes 0..1") !=
        std::string::npos);
  CHECK(train_error(config("moons", "", out, 1)).find("data set 'moons' has no labels") != std::string::npos);
  // IDX images take the label file beside them (images-idx3 -> labels-idx1).
  auto write_idx = [&](int n_labels, char last_label) {
    std::ofstream f(kDir / "t10k-images-idx3-ubyte", std::ios::binary);
    write_be32(f, 2051), write_be32(f, 5), write_be32(f, 1), write_be32(f, 2);
    const char px[10] = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90};
    f.write(px, 10);
    std::ofstream l(kDir / "t10k-labels-idx1-ubyte", std::ios::binary);
    write_be32(l, 2049), write_be32(l, (uint32_t)n_labels);
    const char ys[5] = {0, 1, 0, 1, last_label};
    l.write(ys, n_labels);
  };
  ddpm::TrainConfig c = config((kDir / "t10k-images-idx3-ubyte").string(), "", out, 2);
  use_module(c, "tests/specs/cond_idx.ddpm");
  c.batch = 4;
  write_idx(4, 0);
  CHECK(train_error(c).find("t10k-labels-idx1-ubyte holds 4 labels but") != std::string::npos);
  write_idx(5, 2);
  CHECK(train_error(c).find("label 2 of sample 4 is outside the model's classes 0..1") != std::string::npos);
  fs::remove(kDir / "t10k-labels-idx1-ubyte");
  CHECK(train_error(c).find("t10k-labels-idx1-ubyte does not exist") != std::string::npos);
  write_idx(5, 1);
  fs::remove_all(out);
  CHECK(ddpm::train(c) == 0);
  // A model without a label refuses --labels.
  ddpm::TrainConfig plain = config(x.string(), y.string(), out, 1);
  use_module(plain, "models/moons.ddpm");
  CHECK(train_error(plain).find("the model declares no label") != std::string::npos);
}
