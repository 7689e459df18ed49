// Pass `fold_affine`: Affine nodes folded into the GEMM next to them, where that is exact up to rounding.
//
// Into the producer: an x*s+t Affine (BatchNormalization, Rescaling, inverted Normalization) reading a Dense or
// Conv1D with a linear activation that nothing else reads (possibly through Reshapes):
//     (x W + b) * s + t == x (W s) + (b s + t)          when s and t repeat with the layer's units
// Into the consumer: a BatchNormalization read only by a Dense (possibly through Reshapes):
//     (x s + t) W + b == x (s W) + (t W + b)            when s and t repeat with the Dense's inputs
// Normalization keeps its (x - mean) / d form (Keras keeps it to avoid cancellation on inputs with large
// offsets), and is not folded. int8-quantized Dense layers keep their integer kernels.
#include <cstdint>

#include "opt/graph_edit.hpp"
#include "opt/optimize.hpp"

namespace fkb::opt {
namespace {

bool is_periodic(const std::vector<float>& v, int64_t period) {
  for (size_t i = static_cast<size_t>(period); i < v.size(); ++i)
    if (v[i] != v[i % static_cast<size_t>(period)]) return false;
  return true;
}

bool linear(const Node& n) { return n.activation.kind == ActKind::Linear; }

bool fold_into_producer(Model& m, Notes& notes) {
  const std::vector<int> uses = use_counts(m);
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    Node& a = m.nodes[i];
    if (a.op != OpKind::Affine || a.subtract_first) continue;
    const int pi = producer_through_reshapes(m, uses, a.inputs[0]);
    if (pi < 0) continue;
    Node& g = m.nodes[static_cast<size_t>(pi)];
    if ((g.op != OpKind::Dense && g.op != OpKind::Conv1D) || g.quantized_int8 || !linear(g)) continue;
    const std::vector<float>& scale = a.constants.at("scale").data;
    const std::vector<float>& shift = a.constants.at("shift").data;
    if (!is_periodic(scale, g.units) || !is_periodic(shift, g.units)) continue;
    std::vector<float>& w = g.weights.at("kernel").data;
    const int64_t units = g.units, rows = static_cast<int64_t>(w.size()) / units;
    for (int64_t kk = 0; kk < rows; ++kk)
      for (int64_t j = 0; j < units; ++j) w[static_cast<size_t>(kk * units + j)] *= scale[static_cast<size_t>(j)];
    std::vector<float>& b = bias_of(g);
    for (int64_t j = 0; j < units; ++j)
      b[static_cast<size_t>(j)] = b[static_cast<size_t>(j)] * scale[static_cast<size_t>(j)] + shift[static_cast<size_t>(j)];
    move_activation(g, a);
    notes.push_back("folded " + a.name + " into " + g.name);
    g.name += "+" + a.name;
    bypass_node(m, static_cast<int>(i));
    return true;
  }
  return false;
}

bool fold_into_consumer(Model& m, Notes& notes) {
  const std::vector<int> uses = use_counts(m);
  const auto rd = readers(m);
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const Node& a = m.nodes[i];
    if (a.op != OpKind::Affine || a.affine_of != OpKind::BatchNorm || !linear(a)) continue;
    if (uses[i] != 1 || is_model_output(m, static_cast<int>(i))) continue;
    // Down through Reshapes, each read once, to the one consumer.
    int ci = rd[i][0];
    while (m.nodes[static_cast<size_t>(ci)].op == OpKind::Reshape && uses[static_cast<size_t>(ci)] == 1 &&
           !is_model_output(m, ci))
      ci = rd[static_cast<size_t>(ci)][0];
    Node& g = m.nodes[static_cast<size_t>(ci)];
    if (g.op != OpKind::Dense || g.quantized_int8) continue;
    const std::vector<float>& scale = a.constants.at("scale").data;
    const std::vector<float>& shift = a.constants.at("shift").data;
    const int64_t units = g.units;
    std::vector<float>& w = g.weights.at("kernel").data;
    const int64_t k = static_cast<int64_t>(w.size()) / units;
    if (!is_periodic(scale, k) || !is_periodic(shift, k)) continue;
    std::vector<double> extra(static_cast<size_t>(units), 0.0);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < units; ++j)
        extra[static_cast<size_t>(j)] += static_cast<double>(shift[static_cast<size_t>(kk)]) * w[static_cast<size_t>(kk * units + j)];
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < units; ++j) w[static_cast<size_t>(kk * units + j)] *= scale[static_cast<size_t>(kk)];
    std::vector<float>& b = bias_of(g);
    for (int64_t j = 0; j < units; ++j)
      b[static_cast<size_t>(j)] = static_cast<float>(b[static_cast<size_t>(j)] + extra[static_cast<size_t>(j)]);
    notes.push_back("folded " + a.name + " into " + g.name);
    g.name = a.name + "+" + g.name;
    bypass_node(m, static_cast<int>(i));
    return true;
  }
  return false;
}

}  // namespace

void fold_affine(Model& m, Notes& notes) {
  while (fold_into_producer(m, notes)) {
  }
  while (fold_into_consumer(m, notes)) {
  }
}

}  // namespace fkb::opt
