// Pass `merge_hints`: facts about merges and concatenations a backend may use to move less data. The graph is
// unchanged; backends that cannot use a hint ignore it.
//
// Add.accumulate_input: the first operand produced by a Dense or Conv1D with a linear activation (not
// int8-quantized) that nothing else reads (possibly through Reshapes), when no operand broadcasts and the Add has
// no softmax. A GPU GEMM can then add the other operands as its C matrix (beta = 1) instead of a separate kernel.
//
// Concatenate.concat_in_place (last-axis concatenations): per input, whether its producer may write it straight
// into its column slice of the output (a strided view): not a model input or output, not a Reshape or read by
// one (a strided value cannot be viewed as another shape), not produced by a Concatenate or a custom layer,
// given once, and not claimed by an earlier Concatenate.
#include <algorithm>

#include "opt/graph_edit.hpp"
#include "opt/optimize.hpp"

namespace fkb::opt {
namespace {

bool same_shape_operands(const Model& m, const Node& n) {
  for (int i : n.inputs)
    if (m.nodes[static_cast<size_t>(i)].shape != n.shape) return false;
  return true;
}

int accumulate_candidate(const Model& m, const std::vector<int>& uses, const Node& add) {
  if (add.inputs.size() < 2 || add.activation.kind == ActKind::Softmax || !same_shape_operands(m, add)) return -1;
  for (size_t j = 0; j < add.inputs.size(); ++j) {
    const int pi = producer_through_reshapes(m, uses, add.inputs[j]);
    if (pi < 0) continue;
    const Node& g = m.nodes[static_cast<size_t>(pi)];
    if ((g.op == OpKind::Dense || g.op == OpKind::Conv1D) && !g.quantized_int8 &&
        g.activation.kind == ActKind::Linear)
      return static_cast<int>(j);
  }
  return -1;
}

}  // namespace

void merge_hints(Model& m, Notes& /*notes*/) {
  const std::vector<int> uses = use_counts(m);
  const auto rd = readers(m);
  std::vector<bool> read_by_reshape(m.nodes.size(), false), claimed(m.nodes.size(), false);
  for (size_t i = 0; i < m.nodes.size(); ++i)
    for (int r : rd[i]) read_by_reshape[i] = read_by_reshape[i] || m.nodes[static_cast<size_t>(r)].op == OpKind::Reshape;
  for (Node& n : m.nodes) {
    n.accumulate_input = -1;
    n.concat_in_place.clear();
    if (n.op == OpKind::Add) n.accumulate_input = accumulate_candidate(m, uses, n);
    if (n.op != OpKind::Concatenate) continue;
    const int rank = static_cast<int>(n.shape.size());
    if (n.axis != -1 && n.axis != rank - 1) continue;
    n.concat_in_place.assign(n.inputs.size(), 0);
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      const int v = n.inputs[j];
      const Node& p = m.nodes[static_cast<size_t>(v)];
      const bool ok = p.op != OpKind::Input && p.op != OpKind::Reshape && p.op != OpKind::Concatenate &&
                      p.op != OpKind::Custom && !read_by_reshape[static_cast<size_t>(v)] && !claimed[static_cast<size_t>(v)] &&
                      !is_model_output(m, v) && std::count(n.inputs.begin(), n.inputs.end(), v) == 1;
      if (!ok) continue;
      n.concat_in_place[j] = 1;
      claimed[static_cast<size_t>(v)] = true;
    }
  }
}

}  // namespace fkb::opt
