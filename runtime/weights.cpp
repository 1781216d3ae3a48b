// Weights files of supervised models (see weights.h).
#include "weights.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/diag.h"
#include "data_source.h"

namespace ddpm {

using ddpmc::user_error_noloc;

void write_weights(const std::string& path, const ddpm_module& m, const float* ema,
                   const std::map<std::string, std::string>& meta) {
  std::vector<TensorView> views;
  for (int i = 0; i < m.n_params; ++i) {
    const ddpm_param_info& p = m.params[i];
    views.push_back({"ema/" + std::string(p.name), std::vector<int64_t>(p.dims, p.dims + p.rank), ema + p.offset});
  }
  std::map<std::string, std::string> out;
  for (const char* key : {"spec_hash", "spec_sources", "step"})
    if (auto it = meta.find(key); it != meta.end()) out[key] = it->second;
  out["format"] = kWeightsFormat;
  write_safetensors(path, views, out);
}

void copy_param_tensors(const SafeTensors& st, const std::string& path, const ddpm_module& m,
                        const std::string& prefix, float* params, const std::string& finite_hint) {
  for (int i = 0; i < m.n_params; ++i) {
    const ddpm_param_info& p = m.params[i];
    const std::string name = prefix + p.name;
    auto it = st.tensors.find(name);
    if (it == st.tensors.end())
      user_error_noloc(fmt::format("{} has no tensor '{}'", path, name), "the file is incomplete or from another model");
    const std::vector<int64_t> want(p.dims, p.dims + p.rank);
    if (it->second.first != want)
      user_error_noloc(fmt::format("{}: tensor '{}' has shape {}, the model needs {}", path, name,
                                   shape_string(it->second.first), shape_string(want)),
                       "the file is from another model");
    require_finite(path, name, it->second.second, finite_hint);
    std::copy(it->second.second.begin(), it->second.second.end(), params + p.offset);
  }
}

std::vector<float> load_weights(const std::string& path, const Module& mod) {
  const ddpm_module& m = mod.get();
  const SafeTensors st = read_safetensors(path);
  std::vector<float> params((size_t)m.param_floats, 0.0f);
  copy_param_tensors(st, path, m, "ema/", params.data(),
                     "the run diverged before these weights were written; retrain with a lower --lr or with --grad-clip");
  return params;
}

}  // namespace ddpm
