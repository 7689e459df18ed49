// Pass `aliases`: layers that move no data. Dropout (and GaussianNoise, GaussianDropout, AlphaDropout,
// SpatialDropout1D: identities at inference, as Keras' call(training=False)) and Activation('linear') are removed,
// their readers reading their input instead. Flatten becomes a Reshape to one axis: a column's data is contiguous
// and row-major whatever its shape, so backends treat every Reshape as a new view of the same buffer.
#include "opt/graph_edit.hpp"
#include "opt/optimize.hpp"

namespace fkb::opt {

void resolve_aliases(Model& m, Notes& notes) {
  std::vector<bool> dead(m.nodes.size(), false);
  bool any = false;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    Node& n = m.nodes[i];
    if (n.op == OpKind::Flatten) {
      n.op = OpKind::Reshape;
      n.target_shape = n.shape;
      continue;
    }
    const bool identity = n.op == OpKind::Dropout || (n.op == OpKind::Activation && n.activation.kind == ActKind::Linear);
    if (!identity) continue;
    replace_uses(m, static_cast<int>(i), n.inputs[0]);
    dead[i] = any = true;
    notes.push_back("removed " + n.name + " (identity at inference)");
  }
  if (any) erase_nodes(m, dead);
}

}  // namespace fkb::opt
