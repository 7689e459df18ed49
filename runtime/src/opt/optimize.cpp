// The optimizer's pipeline and the helpers its passes and the backends share.
#include "opt/optimize.hpp"

#include <algorithm>
#include <cmath>

#include "fkb/error.hpp"

namespace fkb::opt {

void unsupported(const Node& n, const std::string& what) {
  throw_error(Status::Unsupported, "layer '" + n.name + "' (" + n.keras_class + "): " + what);
}

const Array& required_weight(const Node& n, const char* role) {
  const Array* a = n.find(role);
  if (!a)
    throw_error(Status::ShapeMismatch, "layer '" + n.name + "' (" + n.keras_class + "): weight '" + role +
                                           "' is missing");
  return *a;
}

std::vector<float> broadcast_to(const Node& n, const char* role, const Array& a, const Shape& shape) {
  const int64_t total = shape_size(shape);
  if (a.size() == 1) return std::vector<float>(static_cast<size_t>(total), a.data[0]);
  if (a.size() == total) return a.data;
  auto refuse = [&] {
    unsupported(n, std::string("weight '") + role + "' of shape " + shape_str(a.shape) +
                       " does not broadcast to the input shape " + shape_str(shape));
  };
  Shape as = a.shape;
  while (as.size() > shape.size() && as.front() == 1) as.erase(as.begin());
  if (shape_size(as) != a.size() || as.size() > shape.size()) refuse();
  while (as.size() < shape.size()) as.insert(as.begin(), 1);
  for (size_t d = 0; d < shape.size(); ++d)
    if (as[d] != 1 && as[d] != shape[d]) refuse();
  // Strides of `a` in the broadcast index space (0 on broadcast axes).
  std::vector<int64_t> stride(shape.size(), 0);
  int64_t s = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    stride[static_cast<size_t>(d)] = as[static_cast<size_t>(d)] == 1 ? 0 : s;
    s *= as[static_cast<size_t>(d)];
  }
  std::vector<float> out(static_cast<size_t>(total));
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < shape.size(); ++d) off += idx[d] * stride[d];
    out[static_cast<size_t>(i)] = a.data[static_cast<size_t>(off)];
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < shape[static_cast<size_t>(d)]) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
  return out;
}

int64_t conv1d_pad_left(const Node& n, const Shape& in) {
  const int64_t span = n.dilation * (n.kernel_size - 1) + 1;
  if (n.padding == Padding::Valid) return 0;
  if (n.padding == Padding::Causal) return span - 1;  // Keras pads the start by dilation * (kernel_size - 1)
  // 'same': TensorFlow puts the smaller half of the padding at the start.
  const int64_t steps_out = n.shape[0];
  const int64_t total = std::max<int64_t>((steps_out - 1) * n.stride + span - in[0], 0);
  return total / 2;
}

void check_int8_dense(const Model& m) {
  for (const Node& n : m.nodes) {
    if (n.op != OpKind::Dense || !n.quantized_int8) continue;
    const Shape& in = m.nodes[static_cast<size_t>(n.inputs[0])].shape;
    const int64_t k = in.back();
    const Array& kernel = required_weight(n, "kernel");
    const Array& scale = required_weight(n, "kernel_scale");
    if (kernel.size() != k * n.units || scale.size() != n.units)
      unsupported(n, "int8 kernel " + shape_str(kernel.shape) + " or kernel_scale " + shape_str(scale.shape) +
                         " does not match " + std::to_string(k) + " inputs and " + std::to_string(n.units) + " units");
    for (float v : kernel.data)
      if (!(v >= -128.0f && v <= 127.0f) || v != std::nearbyint(v))
        unsupported(n, "int8 kernel holds " + std::to_string(v) + ", not an int8 value");
  }
}

std::vector<std::string> pass_names(const Options& o) {
  std::vector<std::string> p = {"dead_nodes", "aliases", "affine"};
  if (o.fold_affine) p.push_back("fold_affine");
  if (o.fuse_activations) p.push_back("fuse_activations");
  p.push_back("merge_hints");
  return p;
}

Optimized optimize(const Model& model, const Options& options) {
  Optimized r;
  r.model = model;
  Model& m = r.model;
  check_int8_dense(m);
  remove_dead_nodes(m, r.notes);
  resolve_aliases(m, r.notes);
  canonicalize_affine(m, r.notes);
  if (options.fold_affine) fold_affine(m, r.notes);
  if (options.fuse_activations) fuse_activations(m, r.notes);
  merge_hints(m, r.notes);
  return r;
}

}  // namespace fkb::opt
