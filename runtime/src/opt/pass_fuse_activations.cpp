// Pass `fuse_activations`: an Activation node (ReLU, LeakyReLU, ELU, PReLU, Softmax layers, Activation(...))
// whose input is produced by a Dense, Conv1D, Affine or merge with a linear activation, read by nothing else,
// becomes that producer's activation: backends apply it in the producer's epilogue (one pass over the output
// instead of two). Element-wise activations fuse through Reshapes (the data is the same); a softmax only into a
// direct producer, since it normalizes over the last axis of its own input's shape.
#include "opt/graph_edit.hpp"
#include "opt/optimize.hpp"

namespace fkb::opt {
namespace {

bool takes_activation(const Node& g) {
  const bool op_ok = g.op == OpKind::Dense || g.op == OpKind::Conv1D || g.op == OpKind::Affine || is_merge(g.op);
  return op_ok && g.activation.kind == ActKind::Linear;
}

bool fuse_one(Model& m, Notes& notes) {
  const std::vector<int> uses = use_counts(m);
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    Node& a = m.nodes[i];
    if (a.op != OpKind::Activation || a.activation.kind == ActKind::Linear) continue;
    const int in = a.inputs[0];
    if (a.activation.kind == ActKind::Softmax && m.nodes[static_cast<size_t>(in)].op == OpKind::Reshape) continue;
    const int pi = producer_through_reshapes(m, uses, in);
    if (pi < 0) continue;
    Node& g = m.nodes[static_cast<size_t>(pi)];
    if (!takes_activation(g)) continue;
    move_activation(g, a);
    notes.push_back("fused " + a.name + " into " + g.name);
    g.name += "+" + a.name;
    bypass_node(m, static_cast<int>(i));
    return true;
  }
  return false;
}

}  // namespace

void fuse_activations(Model& m, Notes& notes) {
  while (fuse_one(m, notes)) {
  }
}

}  // namespace fkb::opt
