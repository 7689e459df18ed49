// Pass `affine`: the per-element affine layers in one form, and per-element PReLU slopes.
//
//   BatchNormalization (inference; tf.nn.batch_normalization and Keras 3 alike):
//       inv = gamma / sqrt(moving_variance + epsilon);  y = x * inv + (beta - moving_mean * inv)
//   Rescaling:             y = x * scale + offset
//   Normalization:         y = (x - mean) / max(sqrt(variance), 1e-7)   (Keras' backend epsilon; subtract_first)
//   Normalization(invert): y = mean + x * max(sqrt(variance), 1e-7)
//
// Each becomes an Affine node whose constants "scale" and "shift" hold one value per element of its shape
// (NumPy broadcasting of the layer's per-axis vectors), so backends run one element-wise kernel and the folding
// pass sees one form. A node with a PReLU activation gets its "alpha" expanded to one slope per element too.
#include <algorithm>
#include <cmath>

#include "opt/optimize.hpp"

namespace fkb::opt {
namespace {

void batchnorm_to_affine(const Model& m, Node& n) {
  const Shape& in = m.nodes[static_cast<size_t>(n.inputs[0])].shape;
  const int axis = n.axis < 0 ? n.axis + static_cast<int>(in.size()) : n.axis;
  const int64_t c = in[static_cast<size_t>(axis)];
  const Array& mean = required_weight(n, "moving_mean");
  const Array& var = required_weight(n, "moving_variance");
  const Array* gamma = n.find("gamma");
  const Array* beta = n.find("beta");
  std::vector<float> inv(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int64_t i = 0; i < c; ++i) {
    const float g = gamma ? gamma->data[static_cast<size_t>(i)] : 1.0f;
    inv[static_cast<size_t>(i)] = g / std::sqrt(var.data[static_cast<size_t>(i)] + n.epsilon);
    shift[static_cast<size_t>(i)] =
        (beta ? beta->data[static_cast<size_t>(i)] : 0.0f) - mean.data[static_cast<size_t>(i)] * inv[static_cast<size_t>(i)];
  }
  Shape bshape(in.size(), 1);
  bshape[static_cast<size_t>(axis)] = c;
  Array scale{in, broadcast_to(n, "gamma", Array{bshape, inv}, in)};
  Array sh{in, broadcast_to(n, "beta", Array{bshape, shift}, in)};
  n.weights.clear();
  n.constants["scale"] = std::move(scale);
  n.constants["shift"] = std::move(sh);
}

void normalization_to_affine(const Model& m, Node& n) {
  const Shape& in = m.nodes[static_cast<size_t>(n.inputs[0])].shape;
  std::vector<float> mean = broadcast_to(n, "mean", required_weight(n, "mean"), in);
  std::vector<float> var = broadcast_to(n, "variance", required_weight(n, "variance"), in);
  std::vector<float> scale(mean.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    const float d = std::max(std::sqrt(var[i]), 1e-7f);
    scale[i] = n.invert ? d : 1.0f / d;
  }
  n.weights.clear();
  n.constants.clear();
  n.constants["scale"] = Array{in, std::move(scale)};
  n.constants["shift"] = Array{in, std::move(mean)};
  n.subtract_first = !n.invert;
}

void rescaling_to_affine(const Model& m, Node& n) {
  const Shape& in = m.nodes[static_cast<size_t>(n.inputs[0])].shape;
  const size_t total = static_cast<size_t>(shape_size(in));
  const Array* sc = n.find("scale");
  const Array* of = n.find("offset");
  Array scale{in, sc ? broadcast_to(n, "scale", *sc, in) : std::vector<float>(total, 1.0f)};
  Array shift{in, of ? broadcast_to(n, "offset", *of, in) : std::vector<float>(total, 0.0f)};
  n.weights.clear();
  n.constants.clear();
  n.constants["scale"] = std::move(scale);
  n.constants["shift"] = std::move(shift);
}

}  // namespace

void canonicalize_affine(Model& m, Notes& /*notes*/) {
  for (Node& n : m.nodes) {
    if (n.activation.kind == ActKind::PRelu) {
      const Array* a = n.find("alpha");
      if (!a) unsupported(n, "PReLU without an 'alpha' weight");
      Array full{n.shape, broadcast_to(n, "alpha", *a, n.shape)};
      if (n.weights.count("alpha"))
        n.weights["alpha"] = std::move(full);
      else
        n.constants["alpha"] = std::move(full);
    }
    switch (n.op) {
      case OpKind::BatchNorm: batchnorm_to_affine(m, n); break;
      case OpKind::Normalization: normalization_to_affine(m, n); break;
      case OpKind::Rescaling: rescaling_to_affine(m, n); break;
      default: continue;
    }
    n.affine_of = n.op;
    n.op = OpKind::Affine;
  }
}

}  // namespace fkb::opt
