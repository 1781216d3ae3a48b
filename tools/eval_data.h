// The held-out data ddpm-eval computes the bound on, as [n, D] floats with
// their class labels. The data set is --data or the one RUN_DIR/config.json says
// the run was trained on, mapped to held-out data: Fashion-MNIST's (or any IDX
// set's) training file to its t10k test file; a built-in 2-D set to fresh points
// (the draw of step 0, which training never uses, so no point was seen in
// training); an .npy array is taken as given (with a note if it is the training
// data). A model with a label also gets each row's class: from --labels, else the
// run's training labels when config.json records them and the data is the run's,
// else the IDX label file next to the images. --class keeps only the rows of one
// class.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {
class Module;
}

namespace ddpm_tools {

struct EvalDataRequest {
  std::string run_dir;
  std::string data;    // empty: from RUN_DIR/config.json
  std::string labels;  // empty: the IDX label file next to IDX images
  int64_t n = 1000;    // the first n rows (of the class, with cls >= 0)
  int cls = -1;        // keep only this class (a model with a label); -1 = all
};

struct EvalData {
  std::string source;           // the file, or "moons (held-out draw)"
  std::vector<float> x;         // [n, D]
  std::vector<int32_t> labels;  // [n] class indices for a model with a label, else empty
  int64_t n = 0;
  int64_t available = 0;        // rows (of the class) the source holds; n = min(request n, available)
  bool on_grid = false;         // every value is on the 8-bit grid 2k/255 - 1 (so in [-1, 1])
};

// Loads the data; throws ddpmc::UserError (one line naming the file and the fix)
// for a missing or malformed file, a shape that is not the model's, non-finite
// values, missing or bad labels, or a class with no rows.
EvalData load_eval_data(const EvalDataRequest& r, const ddpm::Module& mod);

}  // namespace ddpm_tools
