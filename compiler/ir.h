// The typed graph IR: an SSA graph of primitive ops with static shapes.
//
// Lowering builds one Graph per entry point (the loss, each sampler); passes map
// Graph → Graph (autodiff, simplify, fuse, memplan); codegen and the reference
// interpreter read the final Graph.
//
// Dimension legend:
//   B      the batch axis, the only symbolic one. A batched value has shape [B, dims...].
//   dims   the static per-sample (or, for parameters, whole) shape.
// Nodes are stored in topological order: every input id is smaller than its user's id.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/spec_sources.h"
#include "diag.h"

namespace ddpmc {

struct Type {
  bool batched = false;
  std::vector<int64_t> dims;

  int64_t numel() const;  // per sample when batched
  bool is_scalar() const { return dims.empty(); }
  std::string str() const;  // "[B,128]", "[66,128]", "[B]", "[]"
  bool operator==(const Type& o) const { return batched == o.batched && dims == o.dims; }
  bool operator!=(const Type& o) const { return !(*this == o); }
};

enum class Op : uint8_t {
#define DDPM_OP(name) name,
#include "ops.def"
#undef DDPM_OP
};

using NodeId = int32_t;

// Matmul modes (attribute i0):
//   NN: [B,K]  x [K,N]  -> [B,N]   (activations times weights)
//   NT: [B,N]  x [K,N]^T -> [B,K]  (gradient wrt activations)
//   TN: [B,K]^T x [B,N] -> [K,N]   (gradient wrt weights; contracts over the batch)
enum MatmulMode : int { kNN = 0, kNT = 1, kTN = 2 };

struct Node {
  Op op;
  Type type;
  std::vector<NodeId> in;
  double value = 0;          // Const: the value; InvBatch: scale (the node is scale / B); Clip*: low bound
  double value2 = 0;         // Clip*: high bound
  int64_t i0 = 0, i1 = 0;    // Matmul: mode; Slice: start, length; Rand*: stream; UniformStep: i1 = T;
                             // Conv2d*: stride, padding
  int64_t axis = -1;         // Concat, Slice: the per-sample axis (-1: the last)
  std::vector<float> data;   // ConstTensor and Lookup: the table
  std::string name;          // Input: the input's name; Param: the parameter's name
  int index = -1;            // Param: index into Model::params
  std::vector<Loc> locs;     // the spec positions this node comes from (call site first)
};

// One fused loop nest, produced by passes/fuse.cpp. See that file for the kinds.
enum class KernelKind { Elementwise, Gemm, Conv, Norm, Layout, Call };

struct Kernel {
  KernelKind kind;
  std::vector<NodeId> nodes;    // in topological order; Gemm/Conv: nodes[0] is the contraction, the rest its epilogue;
                                // Norm: at most one group_norm and one group_norm_back (of the same x) among them
  std::vector<NodeId> outputs;  // nodes whose values are stored to memory
  Type domain;                  // the iteration space of the elementwise part
  // Channels: [B,C,...] -> [C,1,...] (per-channel parameter gradients).
  enum class Reduce { None, All, Batch, Features, Channels, General } reduce = Reduce::None;
  // Conv: the nodes of a forward group normalization (and the elementwise ops after it) that
  // compute the convolution's input x while it is copied into the convolution's scratch
  // (passes/prologue.cpp); x itself is not stored.
  std::vector<NodeId> prologue;
};

// Where a materialized value lives (passes/memplan.cpp).
struct Slot {
  enum class Where { None, Arena, Param, Grad, Input, Output, Loss } where = Where::None;
  int64_t per_sample = 0;  // arena: offset = per_sample * B + fixed (in floats)
  int64_t fixed = 0;
  int index = -1;          // Param/Grad: parameter index; Input: input index
};

struct Graph {
  std::string name;                       // "train", "loss", "sampler_ddpm"
  std::vector<Node> nodes;
  std::vector<NodeId> outputs;
  std::vector<std::string> output_names;  // "loss", "grad/<param>", "x_out"
  std::vector<std::string> input_names;   // Input nodes refer to these by name

  // Filled by fuse and memplan.
  std::vector<Kernel> kernels;
  std::vector<Slot> slots;                // one per node when planned
  int64_t arena_per_sample = 0;           // floats per sample of batched arena region
  int64_t arena_fixed = 0;                // floats of unbatched arena region

  NodeId add(Node n);
  const Node& operator[](NodeId id) const { return nodes[id]; }
};

struct ParamInfo {
  std::string name;
  Type type;          // never batched
  float init_bound;   // U(-bound, bound); 0 means zeros
  int64_t offset = 0; // in the flat parameter array, 16-float aligned
};

// What a sampler declares besides (x, t, s): sampling-time arguments (scalars the
// runtime passes on each call, with defaults) and state (per-sample values carried
// from one step to the next, zero before the first). State lives in the caller's
// [S * B] buffers, variable k at per-sample offset state[k].offset (block layout:
// the variable's B * numel floats from offset * B on).
struct SamplerArg {
  std::string name;
  double default_value;
  bool is_class = false;  // reaches a `label` parameter or an embed: a class index
};
struct StateVar {
  std::string name;
  Type type;       // batched
  bool step;       // declared `step`
  int64_t offset;  // per-sample floats before it
};
struct SamplerInfo {
  std::vector<SamplerArg> args;
  std::vector<StateVar> state;
  int64_t state_floats = 0;  // per sample
};

// What a net predicts; ddpm-eval converts x0 and v predictions to eps.
enum class Prediction { Eps, X0, V };

struct Diffusion {
  int T = 0;
  std::string schedule;
  std::vector<double> beta, alpha, abar, abar_prev, beta_tilde;  // T+1 entries, index 0..T
  // Continuous time (`time = continuous`): t is a real number in [t_min, t_max], the
  // spec writes its schedule as expressions of t, and there are no tables (T = 0).
  // Samplers run over a grid whose spacing is declared and whose step count is
  // chosen at sampling time (sample_steps by default).
  bool continuous = false;
  double t_min = 0, t_max = 1;
  std::string grid = "uniform";  // uniform, quadratic, karras
  double rho = 7;                // karras only
  int sample_steps = 50;
  // The standard deviation of the prior N(0, prior_std^2 I) at t_max that the
  // probability-flow ODE starts from (ddpm-eval --nll ode): 1 for VP and flow models,
  // sigma_max for EDM.
  double prior_std = 1;
  // The ode's time range (Model::ode): [t_min, t_max] in continuous time; a
  // discrete-time spec's ode runs in its continuous-time limit over [1/T, 1].
  double ode_t_min = 0, ode_t_max = 1;
};

// Everything lowering produces for one spec.
struct Model {
  std::string spec_path;     // as given, for messages
  std::string spec_name;     // the main file's name (SourceFile::name), in the generated code
  std::string sources_text;  // every source file's name and text, for the hash
  SpecSources sources;       // the spec's own files (not the stdlib), carried by checkpoints
  Diffusion diffusion;
  std::string data_name;
  Type data;                 // batched
  int64_t label_classes = 0; // `label y: K`: K, else 0 (the loss reads input "label", [B] class indices)
  // The class indices the loss feeds the net: 0..label_values-1 (label_classes, or
  // more with a "no class" index such as where(drop, K, y)); what a sampler may pass.
  int64_t label_values = 0;
  std::vector<ParamInfo> params;
  int64_t param_floats = 0;
  Graph loss;                                        // output "loss"
  std::vector<std::pair<std::string, Graph>> samplers;  // outputs "x_out", then "state/<name>" per state variable
  std::vector<SamplerInfo> sampler_info;                // parallel to samplers
  // eps_theta(x, t) alone, for the variational bound: the net declared
  // (x: <data shape>, t: step) -> <data shape>, if the spec has exactly one, or
  // (x: <data shape>, t: step, y: label) -> <data shape> in a spec with a label
  // (eps_labelled; the graph then also reads input "label"). Output "eps".
  bool has_eps = false;
  bool eps_labelled = false;
  Prediction eps_predicts = Prediction::Eps;  // what the eps graph's net predicts (declared, default eps)
  // `predicts eps_var`: the eps graph also outputs "frac" (data-shaped), the learned
  // variance's interpolation between log beta_t (1) and log beta_tilde_t (0).
  bool eps_learned_var = false;
  Graph eps;
  // A supervised spec (no diffusion block; diffusion.T == 0): a net trained on data
  // and labels. classify runs its one net (x: <data shape>) on input "x": output
  // "logits" (logits_numel floats per sample) and, where the net marks a value with
  // features(...), output "features" (features_numel per sample; 0 when none).
  bool supervised = false;
  Graph classify;
  // The spec's `ode name(x, t)` (continuous time): dx/dt of the probability-flow ODE at
  // inputs "x" (data) and "t" (a time shared by the batch); output "drift". The
  // pipeline adds its vector-Jacobian product (passes/vjp.cpp) for the likelihood.
  bool has_ode = false;
  std::string ode_name;
  Graph ode;
  int64_t logits_numel = 0, features_numel = 0;
  std::vector<Loc> loss_locs;
};

std::string print_graph(const Graph& g);
// The nodes the outputs need, in the same order (dead-code elimination; used by
// simplify, and by remat after it gives the backward its own copies).
Graph remove_dead(const Graph& g);
// Checks SSA order, arity, and that every node's type is what its op's shape rule gives.
// Throws InternalError: a failure here is a compiler bug, not a user error.
void verify(const Graph& g, const Model& p);

}  // namespace ddpmc
