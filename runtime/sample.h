// The sampling loop (Algorithm 2 of Ho et al. 2020, or any `sampler` block).
//
// Data flow: run_dir/module.so + run_dir/checkpoint.safetensors (EMA or raw
// weights; the spec hashes must match) → x_T ~ N(0, I) from Philox keyed by the
// sample's global index → module sampler_step over a step sequence T = t_K > ... >
// t_1 > t_0 = 0, in chunks of `batch` samples → .npy [N, data dims...] and a PNG
// (scatter plot for 2-D points, image grid for [C, H, W]).
//
// Step sequence: K = steps (0 means T): t_i = round(i * T / K), and step i goes
// from t_i to t_{i-1}. For K = T that is t = T..1, s = t - 1. A continuous-time
// module (ABI 7) goes through real times t_K = t_max > ... > t_0 = 0 spaced by its
// grid (ddpm_abi.h), K = steps (0 means the module's sample_steps).
//
// Determinism: x_T depends only on (seed, global sample index), and an ABI
// version 3 module keys the noise it draws by the global index too (row0), so
// sample i does not depend on --batch or on the number of processes. A version 2
// module keys it by the position within the call, so there DDPM samples depend on
// --batch (and such modules are not sampled under mpirun).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ddpm_abi.h"

namespace ddpm {

struct SampleConfig {
  std::string run_dir;
  std::string sampler;      // empty: ddpm if the spec has it, else its first sampler
  int steps = 0;            // K reverse steps; 0 = all T
  int64_t n = 1000;
  int batch = 500;
  int threads = 1;
  uint64_t seed = 1;
  bool use_ema = true;      // false: the raw parameters
  std::string out_npy;      // empty: not written
  std::string out_png;      // empty: not written
  bool quiet = false;       // no progress line
  // Sampling-time arguments, "name=value" as given on the command line (--arg);
  // the sampler's declared defaults fill the rest.
  std::vector<std::string> args;
  // --class all: for a model with a label of K classes, n samples of each class
  // (the sampler's `class` argument set to 0..K-1), written as one grid row per
  // class; the samples are [K * n, ...], class by class.
  bool class_all = false;
  // The module to load and its checksum (tools/spec_module.h builds it from the
  // checkpoint's source); empty: the run's own module.so, checked against the
  // checksum its checkpoint records.
  std::string module_so, module_checksum;
};

// The argument vector for sampler `idx` of module m: its defaults, overridden by
// "name=value" settings. An unknown name or a malformed setting is a one-line
// user error that lists the sampler's arguments.
std::vector<float> sampler_args(const ddpm_module& m, int idx, const std::vector<std::string>& settings);

// The step sequence t_K > ... > t_1 > t_0 = 0 as a vector [t_0, t_1, ..., t_K].
// Throws ddpmc::UserError unless 0 <= steps <= T.
std::vector<int> sampling_steps(int T, int steps);

// The times a sampler of module m goes through with K = steps, as [t_0, ..., t_K]:
// sampling_steps for discrete time, else the module's grid (0 means its
// sample_steps; at most 100000). Throws ddpmc::UserError for a bad step count.
std::vector<double> sampling_times(const ddpm_module& m, int steps);

// Runs the sampler and returns the samples [n, data_numel] (also written to
// out_npy / out_png when set). Under mpirun (dist.h) each rank samples its share
// of the global indices and rank 0 gathers and writes them; other ranks return
// their own share. Throws ddpmc::UserError for bad input.
std::vector<float> sample_to_vector(const SampleConfig& cfg);

// The module and checkpoint of a ddpm-train output directory, or a user error
// naming what is missing; `then` ends the hint ("sample from DIR"). The module is
// `module_so` with `checksum` when given (the tools pass the one they rebuilt from
// the checkpoint's source: tools/spec_module.h), else the run's own module.so with
// the checksum its checkpoint records. Load it with Module(so, checksum).
struct RunFiles {
  std::string so, ckpt, checksum;
};
RunFiles run_files(const std::string& run_dir, const std::string& then, const std::string& module_so = "",
                   const std::string& checksum = "");

class Module;
// Loads a checkpoint's weights (EMA or raw) into params [param_floats], checking
// the spec hash and every tensor's presence and shape; returns its training step
// ("" if it records none).
std::string load_weights(const std::string& path, const Module& mod, bool use_ema, float* params);

// Runs sampler `idx` of `mod` with the weights `params` over the times `ts`
// (sampling_times) for N samples, `batch` at a time, from x_T keyed by
// (seed, sample index), with the sampler's arguments `args` (ABI 4; nullptr: its
// defaults) and its per-sample state carried from step to step. The samples are
// those of global indices first .. first + N - 1 of the whole set (a rank's share
// under mpirun). Progress goes to stderr unless `quiet`. `stop`, when set, is
// asked before every reverse step; once it returns true the sampling is abandoned
// and an empty vector returned (the trainer's previews stop this way on Ctrl-C).
std::vector<float> run_sampler(const Module& mod, const float* params, int idx, const std::vector<double>& ts, int64_t N,
                               int batch, uint64_t seed, bool quiet, const float* args = nullptr, int64_t first = 0,
                               const std::function<bool()>& stop = nullptr);

// A scatter plot ([2] points) or an image grid ([1|3, H, W], at most 256 images)
// of n samples, with `title` above it if given; a scatter plot covers
// [-lim, lim]^2 (lim = 0: chosen from the samples, plot.h scatter_limit). False
// (nothing written) for any other data shape.
bool write_samples_png(const std::string& path, const Module& mod, const float* samples, int64_t n,
                       const std::string& title = "", float lim = 0);

// The row labels of a --class all grid for a model trained on `data` (config.json's
// "data") with K classes: "0 T-shirt/top" ... for Fashion-MNIST's ten classes (and
// its IDX files), "class 0" ... otherwise.
std::vector<std::string> class_row_labels(const std::string& data, int K);

// The tool entry: sample_to_vector, then returns 0 (throws on bad input).
int sample(const SampleConfig& cfg);

}  // namespace ddpm
