// Reference interpreter (see interp.h). Elementwise ops evaluate through their
// op-table rows; the other ops are written out here as plain loops.
#include "interp.h"

#include <cmath>

#include <fmt/format.h>

#include "ops.h"
#include "common/prelude/philox.h"

namespace ddpmc {
namespace {

// Reads input value v (of type ti) at element (b, j) of a domain of type d.
double at(const Type& ti, const std::vector<double>& v, const Type& d, int64_t b, int64_t j) {
  return v[(ti.batched ? b * ti.numel() : 0) + broadcast_index(ti, d, j)];
}

}  // namespace

std::vector<std::vector<double>> interpret_all(const Graph& g, const Model& m, const InterpEnv& env) {
  const int64_t B = env.B;
  std::vector<std::vector<double>> val(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const Type& t = n.type;
    const int64_t N = t.numel(), R = t.batched ? B : 1;
    std::vector<double>& out = val[i];
    out.assign(R * N, 0.0);
    auto in = [&](int k) -> const std::vector<double>& { return val[n.in[k]]; };
    auto ty = [&](int k) -> const Type& { return g.nodes[n.in[k]].type; };
    const OpRow& row = op_row(n.op);
    switch (n.op) {
      case Op::Input: {
        auto it = env.inputs.find(n.name);
        if (it == env.inputs.end() || (int64_t)it->second.size() != R * N)
          DDPM_ICE(fmt::format("interpreter: input '{}' missing or of the wrong size", n.name));
        out = it->second;
        break;
      }
      case Op::Param: {
        int64_t off = m.params[n.index].offset;
        for (int64_t e = 0; e < N; ++e) out[e] = env.params.at(off + e);
        break;
      }
      case Op::Const: out[0] = n.value; break;
      case Op::ConstTensor:
        for (int64_t e = 0; e < N; ++e) out[e] = n.data[e];
        break;
      case Op::InvBatch: out[0] = n.value / (double)B; break;
      case Op::RandN:
        for (int64_t e = 0; e < R * N; ++e)
          out[e] = (float)ddpm::philox_normal(env.seed, env.step, (uint32_t)n.i0, (uint64_t)e);
        break;
      case Op::RandU:
        for (int64_t e = 0; e < R * N; ++e)
          out[e] = (float)ddpm::philox_uniform(env.seed, env.step, (uint32_t)n.i0, (uint64_t)e);
        break;
      case Op::UniformStep:
        for (int64_t e = 0; e < R * N; ++e)
          out[e] = ddpm::philox_step(env.seed, env.step, (uint32_t)n.i0, (uint64_t)e, (int)n.i1);
        break;
      case Op::Lookup:
        for (int64_t e = 0; e < R * N; ++e) {
          int64_t k = (int64_t)in(0)[e];
          if (k < 0 || k >= (int64_t)n.data.size()) DDPM_ICE(fmt::format("interpreter: step {} out of range", k));
          out[e] = n.data[k];
        }
        break;
      case Op::SumTo: {
        const Type& ti = ty(0);
        const int64_t Ni = ti.numel(), Ri = ti.batched ? B : 1;
        for (int64_t b = 0; b < Ri; ++b)
          for (int64_t j = 0; j < Ni; ++j) out[(t.batched ? b : 0) * N + broadcast_index(t, ti, j)] += in(0)[b * Ni + j];
        break;
      }
      case Op::Matmul: {
        // Activations [B,...,K] are rows: M = B * prod(leading axes).
        const auto &X = in(0), &Y = in(1);
        const Type &tx = ty(0), &tyy = ty(1);
        const int64_t Kx = tx.dims.back(), M = B * tx.numel() / Kx;
        if (n.i0 == kNN) {  // [M,K] x [K,N]
          const int64_t Nn = tyy.dims[1];
          for (int64_t r = 0; r < M; ++r)
            for (int64_t j = 0; j < Nn; ++j) {
              double s = 0;
              for (int64_t k = 0; k < Kx; ++k) s += X[r * Kx + k] * Y[k * Nn + j];
              out[r * Nn + j] = s;
            }
        } else if (n.i0 == kNT) {  // [M,Nn] x [K,Nn]^T -> [M,K]
          const int64_t K = tyy.dims[0];
          for (int64_t r = 0; r < M; ++r)
            for (int64_t k = 0; k < K; ++k) {
              double s = 0;
              for (int64_t j = 0; j < Kx; ++j) s += X[r * Kx + j] * Y[k * Kx + j];
              out[r * K + k] = s;
            }
        } else {  // [M,K]^T x [M,Nn] -> [K,Nn]
          const int64_t Nn = tyy.dims.back();
          for (int64_t r = 0; r < M; ++r)
            for (int64_t k = 0; k < Kx; ++k)
              for (int64_t j = 0; j < Nn; ++j) out[k * Nn + j] += X[r * Kx + k] * Y[r * Nn + j];
        }
        break;
      }
      case Op::Softmax:
      case Op::SoftmaxBack: {
        // Rows of the last axis: y = exp(x - max) / sum; dx = y * (dy - sum(dy * y)).
        const int64_t k = t.dims.back(), rows = R * N / k;
        for (int64_t r = 0; r < rows; ++r) {
          const double* x = in(0).data() + r * k;
          double* o = out.data() + r * k;
          if (n.op == Op::Softmax) {
            double m = x[0], s = 0;
            for (int64_t j = 1; j < k; ++j) m = std::max(m, x[j]);
            for (int64_t j = 0; j < k; ++j) s += (o[j] = std::exp(x[j] - m));
            for (int64_t j = 0; j < k; ++j) o[j] /= s;
          } else {
            const double* dy = in(1).data() + r * k;
            double s = 0;
            for (int64_t j = 0; j < k; ++j) s += dy[j] * x[j];
            for (int64_t j = 0; j < k; ++j) o[j] = x[j] * (dy[j] - s);
          }
        }
        break;
      }
      case Op::LogSoftmax:
      case Op::LogSoftmaxBack: {
        // Rows of the last axis: y = x - max - log(sum(exp(x - max))); dx = dy - exp(y) * sum(dy).
        const int64_t k = t.dims.back(), rows = R * N / k;
        for (int64_t r = 0; r < rows; ++r) {
          const double* x = in(0).data() + r * k;
          double* o = out.data() + r * k;
          if (n.op == Op::LogSoftmax) {
            double m = x[0], s = 0;
            for (int64_t j = 1; j < k; ++j) m = std::max(m, x[j]);
            for (int64_t j = 0; j < k; ++j) s += std::exp(x[j] - m);
            const double ls = std::log(s);
            for (int64_t j = 0; j < k; ++j) o[j] = x[j] - m - ls;
          } else {
            const double* dy = in(1).data() + r * k;
            double s = 0;
            for (int64_t j = 0; j < k; ++j) s += dy[j];
            for (int64_t j = 0; j < k; ++j) o[j] = dy[j] - std::exp(x[j]) * s;
          }
        }
        break;
      }
      case Op::Transpose: {
        const Type& ti = ty(0);
        const int64_t m = ti.dims[ti.dims.size() - 2], k = ti.dims.back(), mats = R * N / (m * k);
        for (int64_t i = 0; i < mats; ++i)
          for (int64_t r = 0; r < m; ++r)
            for (int64_t c = 0; c < k; ++c) out[i * m * k + c * m + r] = in(0)[i * m * k + r * k + c];
        break;
      }
      case Op::Bmm: {
        const Type& ta = ty(0);
        const int64_t m = ta.dims[ta.dims.size() - 2], k = ta.dims.back(), nn = t.dims.back(), mats = R * N / (m * nn);
        for (int64_t i = 0; i < mats; ++i)
          for (int64_t r = 0; r < m; ++r)
            for (int64_t j = 0; j < nn; ++j) {
              double s = 0;
              for (int64_t p = 0; p < k; ++p) s += in(0)[(i * m + r) * k + p] * in(1)[(i * k + p) * nn + j];
              out[(i * m + r) * nn + j] = s;
            }
        break;
      }
      case Op::Conv2d:
      case Op::Conv2dBackData:
      case Op::Conv2dBackFilter: {
        // Direct convolution loops over y[b,o,i,j] += x[b,c,i*s+ki-p, j*s+kj-p] * w[o,c,ki,kj].
        const bool fwd = n.op == Op::Conv2d, bd = n.op == Op::Conv2dBackData;
        const ConvRoles r = conv_roles(n.op);
        const Type& xt = r.x < 0 ? t : ty(r.x);
        const Type& wt = r.w < 0 ? t : ty(r.w);
        const Type& yt = r.y < 0 ? t : ty(r.y);
        const auto& X = r.x < 0 ? out : in(r.x);
        const auto& W = r.w < 0 ? out : in(r.w);
        const auto& Y = r.y < 0 ? out : in(r.y);
        const int64_t C = xt.dims[0], H = xt.dims[1], Wd = xt.dims[2], O = wt.dims[0], K = wt.dims[2];
        const int64_t Ho = yt.dims[1], Wo = yt.dims[2], s = n.i0, p = n.i1;
        auto& Xm = const_cast<std::vector<double>&>(X);
        auto& Wm = const_cast<std::vector<double>&>(W);
        auto& Ym = const_cast<std::vector<double>&>(Y);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t o = 0; o < O; ++o)
            for (int64_t c = 0; c < C; ++c)
              for (int64_t ki = 0; ki < K; ++ki)
                for (int64_t kj = 0; kj < K; ++kj)
                  for (int64_t i = 0; i < Ho; ++i)
                    for (int64_t j = 0; j < Wo; ++j) {
                      const int64_t hi = i * s + ki - p, wj = j * s + kj - p;
                      if (hi < 0 || hi >= H || wj < 0 || wj >= Wd) continue;
                      const int64_t xi = ((b * C + c) * H + hi) * Wd + wj, wi = ((o * C + c) * K + ki) * K + kj,
                                    yi = ((b * O + o) * Ho + i) * Wo + j;
                      if (fwd) Ym[yi] += Xm[xi] * Wm[wi];
                      else if (bd) Xm[xi] += Ym[yi] * Wm[wi];
                      else Wm[wi] += Ym[yi] * Xm[xi];
                    }
        break;
      }
      case Op::Concat: {
        const int64_t a = layout_axis(n, t), W = dims_from(t, a), rows = R * (N / W);
        int64_t at_col = 0;
        for (size_t k = 0; k < n.in.size(); ++k) {
          int64_t w = dims_from(ty((int)k), a);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < w; ++c) out[r * W + at_col + c] = in((int)k)[r * w + c];
          at_col += w;
        }
        break;
      }
      case Op::Slice: {
        const int64_t a = layout_axis(n, t), W = dims_from(t, a), Wi = dims_from(ty(0), a), rows = R * (N / W);
        const int64_t start = n.i0 * (a + 1 < (int64_t)t.dims.size() ? dims_from(t, a + 1) : 1);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < W; ++c) out[r * W + c] = in(0)[r * Wi + start + c];
        break;
      }
      case Op::GroupNorm:
      case Op::GroupNormBack: {
        // Per (sample, group) row: mean, variance (two passes), then xhat or
        // dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
        const int64_t G = n.i0, row = N / G;
        for (int64_t b = 0; b < R; ++b)
          for (int64_t q = 0; q < G; ++q) {
            const double* x = in(0).data() + b * N + q * row;
            double mean = 0, var = 0;
            for (int64_t k = 0; k < row; ++k) mean += x[k];
            mean /= row;
            for (int64_t k = 0; k < row; ++k) var += (x[k] - mean) * (x[k] - mean);
            const double rstd = 1.0 / std::sqrt(var / row + n.value);
            double* o = out.data() + b * N + q * row;
            if (n.op == Op::GroupNorm) {
              for (int64_t k = 0; k < row; ++k) o[k] = (x[k] - mean) * rstd;
              continue;
            }
            const double* dy = in(1).data() + b * N + q * row;
            double mdy = 0, mdyx = 0;
            for (int64_t k = 0; k < row; ++k) mdy += dy[k], mdyx += dy[k] * (x[k] - mean) * rstd;
            mdy /= row;
            mdyx /= row;
            for (int64_t k = 0; k < row; ++k) o[k] = rstd * (dy[k] - mdy - (x[k] - mean) * rstd * mdyx);
          }
        break;
      }
      case Op::Reshape: out = in(0); break;
      case Op::Upsample2x:
      case Op::Pool2xSum: {
        const bool up = n.op == Op::Upsample2x;
        const Type& small = up ? ty(0) : t;
        const int64_t planes = R * small.dims[0], H = small.dims[1], W = small.dims[2];
        for (int64_t q = 0; q < planes; ++q)
          for (int64_t i = 0; i < 2 * H; ++i)
            for (int64_t j = 0; j < 2 * W; ++j) {
              const int64_t si = (q * H + i / 2) * W + j / 2, bi = (q * 2 * H + i) * 2 * W + j;
              if (up) out[bi] = in(0)[si];
              else out[si] += in(0)[bi];
            }
        break;
      }
      default: {
        if (row.cls != OpClass::Elementwise || !row.eval)
          DDPM_ICE(fmt::format("interpreter: no evaluation for {}", row.name));
        double x[3];  // up to three operands (where)
        for (int64_t b = 0; b < R; ++b)
          for (int64_t j = 0; j < N; ++j) {
            for (size_t k = 0; k < n.in.size(); ++k) x[k] = at(ty((int)k), in((int)k), t, b, j);
            out[b * N + j] = row.eval(n, x);
          }
      }
    }
  }
  return val;
}

std::vector<std::vector<double>> interpret(const Graph& g, const Model& m, const InterpEnv& env) {
  auto all = interpret_all(g, m, env);
  std::vector<std::vector<double>> out;
  for (NodeId o : g.outputs) out.push_back(all[o]);
  return out;
}

}  // namespace ddpmc
