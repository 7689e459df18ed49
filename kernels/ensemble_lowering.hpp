// The batched-ensemble program: N members of one plain MLP architecture as one list of layers whose weights
// are stacked member after member, so each layer is ONE strided-batched GEMM over all members
// (cublasGemmStridedBatchedEx, batch = members) followed by one bias + activation kernel.
//
// Pure host C++ (no CUDA headers): the lowering, the cuBLAS geometry of every GEMM and a host emulation of
// the whole run (same strides, same column-major indexing, same reduction) are unit-tested without a GPU
// (tests/unit/test_ensemble_batched.cpp), which checks the geometry handed to cuBLAS against Keras' outputs.
//
// Layouts (row-major, as everywhere in FKB):
//   x                  [nc][nin]                 shared by all members: the first GEMM reads it with stride 0
//   layer l output     [M][nc][n_l]              member m's block at m * nc * n_l (compact for this chunk)
//   weights of layer l [M][k_l][n_l]             member m's Dense kernel (Keras [in, out]) at m * k_l * n_l
//   biases of layer l  [M][n_l]
// In cuBLAS' column-major terms a row-major [k][n] kernel is an n x k matrix with lda = n, a row-major
// [nc][k] activation a k x nc matrix with ldb = k, so  C(n x nc) = A(n x k) * B(k x nc)  is  Y = X W.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fkb/activations.hpp"
#include "fkb/backend.hpp"
#include "fkb/model.hpp"

namespace fkb::cuda {

struct BatchedLayer {
  std::string name;  ///< Keras layer(s)
  int64_t k = 0, n = 0;
  bool bias = false;
  std::vector<std::pair<ActKind, ActParams>> acts;  ///< applied in order after the bias
};

struct BatchedEnsembleProgram {
  int64_t members = 0, nin = 0, nout = 0;
  Precision precision = Precision::FP32;
  std::vector<BatchedLayer> layers;
  std::vector<std::vector<float>> weights;  ///< per layer [M][k][n]
  std::vector<std::vector<float>> biases;   ///< per layer [M][n]; empty without bias
  int64_t max_width() const {
    int64_t w = 0;
    for (const auto& l : layers) w = l.n > w ? l.n : w;
    return w;
  }
};

/// cublasGemmStridedBatchedEx arguments (column-major) of layer l for a chunk of nc columns.
struct StridedGemm {
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 0;
};

inline StridedGemm layer_gemm(const BatchedEnsembleProgram& p, size_t l, int64_t nc) {
  const BatchedLayer& L = p.layers[l];
  StridedGemm g;
  g.m = L.n;
  g.n = nc;
  g.k = L.k;
  g.lda = L.n;
  g.ldb = L.k;
  g.ldc = L.n;
  g.stride_a = L.k * L.n;
  g.stride_b = l == 0 ? 0 : nc * L.k;  // the model input is shared by every member
  g.stride_c = nc * L.n;
  g.batch = p.members;
  return g;
}

/// Build the program, or return false with `why` when the members are not plain chains the batched engine
/// runs: Input -> (Dense on a rank-1 input | element-wise Activation | Dropout)*, single input and output,
/// precision fp32 or tf32. The members must already have one architecture (check_same_architecture).
inline bool lower_batched_ensemble(const std::vector<const Model*>& members, Precision precision,
                                   BatchedEnsembleProgram* out, std::string* why) {
  auto no = [&](const std::string& w) {
    if (why) *why = w;
    return false;
  };
  if (members.empty()) return no("no members");
  if (precision != Precision::FP32 && precision != Precision::TF32)
    return no(std::string("precision ") + precision_name(precision) + " (the batched engine runs fp32 and tf32)");
  const Model& a = *members[0];
  if (a.num_inputs() != 1 || a.num_outputs() != 1) return no("not a single-input, single-output model");
  BatchedEnsembleProgram p;
  p.members = static_cast<int64_t>(members.size());
  p.precision = precision;
  p.nin = a.input_size(0);
  p.nout = a.output_size(0);
  if (a.inputs[0] != 0 || a.nodes[0].op != OpKind::Input) return no("the input is not the first layer");
  if (a.nodes[0].shape.size() != 1) return no("the input is not rank 1");
  if (a.outputs[0] != static_cast<int>(a.nodes.size()) - 1) return no("the output is not the last layer");
  std::vector<std::vector<size_t>> layer_nodes;  // per batched layer: the Dense node
  for (size_t i = 1; i < a.nodes.size(); ++i) {
    const Node& n = a.nodes[i];
    if (n.inputs.size() != 1 || n.inputs[0] != static_cast<int>(i) - 1)
      return no("layer '" + n.name + "' is not part of a plain chain");
    if (n.op == OpKind::Dropout) continue;
    if (n.op == OpKind::Dense) {
      const Shape& in = a.nodes[i - 1].shape;
      if (in.size() != 1) return no("Dense layer '" + n.name + "' on a rank-" + std::to_string(in.size()) + " input");
      BatchedLayer L;
      L.name = n.name;
      L.k = in[0];
      L.n = n.units;
      L.bias = n.use_bias;
      if (n.activation.kind == ActKind::Softmax || n.activation.kind == ActKind::PRelu)
        return no("layer '" + n.name + "' uses activation " + n.activation.keras_name);
      if (n.activation.kind != ActKind::Linear) L.acts.push_back({n.activation.kind, n.activation.params});
      p.layers.push_back(L);
      layer_nodes.push_back({i});
      continue;
    }
    if (n.op == OpKind::Activation) {
      if (p.layers.empty()) return no("activation '" + n.name + "' before the first Dense");
      if (n.activation.kind == ActKind::Softmax || n.activation.kind == ActKind::PRelu)
        return no("layer '" + n.name + "' is a " + n.activation.keras_name + " activation");
      if (n.activation.kind != ActKind::Linear) {
        p.layers.back().acts.push_back({n.activation.kind, n.activation.params});
        p.layers.back().name += "+" + n.name;
      }
      continue;
    }
    return no("layer '" + n.name + "' (" + n.keras_class + ") is not Dense, an element-wise activation or Dropout");
  }
  if (p.layers.empty()) return no("no Dense layer");
  // Weights stacked member after member.
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const BatchedLayer& L = p.layers[l];
    std::vector<float> w, b;
    w.reserve(static_cast<size_t>(p.members * L.k * L.n));
    for (const Model* m : members) {
      const Node& n = m->nodes[layer_nodes[l][0]];
      const Array* kernel = n.find("kernel");
      if (!kernel || kernel->size() != L.k * L.n) return no("layer '" + n.name + "' has no kernel of the shared shape");
      w.insert(w.end(), kernel->data.begin(), kernel->data.end());
      if (L.bias) {
        const Array* bias = n.find("bias");
        if (!bias || bias->size() != L.n) return no("layer '" + n.name + "' has no bias of the shared shape");
        b.insert(b.end(), bias->data.begin(), bias->data.end());
      }
    }
    p.weights.push_back(std::move(w));
    p.biases.push_back(std::move(b));
  }
  *out = std::move(p);
  return true;
}

/// The per-element epilogue of a layer (shared by the CUDA kernel and the emulator).
FKB_HD float batched_epilogue(float v, const float* bias_row, int64_t j, const ActKind* kinds, const ActParams* params,
                              int nacts) {
  if (bias_row) v += bias_row[j];
  for (int a = 0; a < nacts; ++a) v = activate(kinds[a], v, params[a]);
  return v;
}

/// Host emulation of one batched run: the strided GEMMs exactly as layer_gemm describes them (column-major
/// indexing, strides, stride 0 for the shared input), the epilogue, then mean and population standard
/// deviation over members in double. members_out: [M][nc][nout] or nullptr.
inline void emulate_batched_ensemble(const BatchedEnsembleProgram& p, const float* x, int64_t nc, float* mean,
                                     float* spread, float* members_out) {
  std::vector<float> in(x, x + nc * p.nin), out;
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const BatchedLayer& L = p.layers[l];
    const StridedGemm g = layer_gemm(p, l, nc);
    out.assign(static_cast<size_t>(g.batch * g.stride_c), 0.0f);
    std::vector<ActKind> kinds;
    std::vector<ActParams> params;
    for (const auto& a : L.acts) kinds.push_back(a.first), params.push_back(a.second);
    for (int64_t bi = 0; bi < g.batch; ++bi) {
      const float* A = p.weights[l].data() + bi * g.stride_a;
      const float* B = in.data() + bi * g.stride_b;
      float* C = out.data() + bi * g.stride_c;
      for (int64_t col = 0; col < g.n; ++col)
        for (int64_t row = 0; row < g.m; ++row) {
          float acc = 0.0f;
          for (int64_t kk = 0; kk < g.k; ++kk) acc = std::fma(A[row + kk * g.lda], B[kk + col * g.ldb], acc);
          C[row + col * g.ldc] = acc;
        }
    }
    for (int64_t e = 0; e < g.batch * g.stride_c; ++e) {
      const int64_t mb = e / (nc * L.n), j = e % L.n;
      const float* brow = L.bias ? p.biases[l].data() + mb * L.n : nullptr;
      out[static_cast<size_t>(e)] = batched_epilogue(out[static_cast<size_t>(e)], brow, j, kinds.data(), params.data(),
                                                     static_cast<int>(kinds.size()));
    }
    in.swap(out);
  }
  const int64_t n = nc * p.nout;
  for (int64_t e = 0; e < n; ++e) {
    double s = 0.0;
    for (int64_t m = 0; m < p.members; ++m) s += in[static_cast<size_t>(m * n + e)];
    const double mu = s / static_cast<double>(p.members);
    double q = 0.0;
    for (int64_t m = 0; m < p.members; ++m) {
      const double d = in[static_cast<size_t>(m * n + e)] - mu;
      q += d * d;
    }
    mean[e] = static_cast<float>(mu);
    if (spread) spread[e] = static_cast<float>(std::sqrt(q / static_cast<double>(p.members)));
  }
  if (members_out)
    for (int64_t i = 0; i < p.members * n; ++i) members_out[i] = in[static_cast<size_t>(i)];
}

}  // namespace fkb::cuda
