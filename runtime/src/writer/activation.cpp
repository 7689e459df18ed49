// Activation names and layers per flavour. Keras 3 (keras/src/activations/__init__.py) and tf-keras
// (tf_keras/src/activations.py) share most names; "hard_sigmoid" is clip(0.2x + 0.5, 0, 1) in tf-keras and
// relu6(x + 3) / 6 in Keras 3, and tf-keras has no relu6/leaky_relu/silu/hard_silu strings.
#include "writer/activation.hpp"

#include <cmath>

#include "fkb/error.hpp"

namespace fkb::writer {

namespace {
bool plain_relu(const ActParams& p) { return p.alpha == 0 && p.threshold == 0 && std::isinf(p.max_value); }
}  // namespace

std::string activation_string(const Activation& a, Flavour flavour) {
  const ActParams& p = a.params;
  const bool k3 = flavour != Flavour::TfKeras;
  switch (a.kind) {
    case ActKind::Linear: return "linear";
    case ActKind::Relu:
      if (plain_relu(p)) return "relu";
      if (k3 && p.alpha == 0 && p.threshold == 0 && p.max_value == 6.0f) return "relu6";
      return "";
    case ActKind::LeakyRelu: return k3 && p.alpha == 0.2f ? "leaky_relu" : "";
    case ActKind::Elu: return p.alpha == 1.0f ? "elu" : "";
    case ActKind::Selu: return "selu";
    case ActKind::Gelu: return "gelu";
    case ActKind::Sigmoid: return "sigmoid";
    // "hard_sigmoid" means Keras 2's formula to tf-keras and Keras 3's to Keras 3, which reads a tf-keras file's
    // string with its own formula: Keras 2's is written as layers in both flavours so either Keras computes it right.
    case ActKind::HardSigmoidK3: return k3 ? "hard_sigmoid" : "";
    case ActKind::HardSigmoidK2: return "";
    case ActKind::HardSilu: return k3 ? "hard_silu" : "";
    case ActKind::Tanh: return "tanh";
    case ActKind::Softplus: return "softplus";
    case ActKind::Softsign: return "softsign";
    case ActKind::Swish: return k3 ? "silu" : "swish";
    case ActKind::Mish: return "mish";
    case ActKind::Exponential: return "exponential";
    case ActKind::Softmax: return "softmax";
    default: return "";
  }
}

std::vector<ActivationLayer> activation_layers(const Activation& a, Flavour flavour, const std::string& layer) {
  const ActParams& p = a.params;
  const bool k3 = flavour != Flavour::TfKeras;
  const std::string s = activation_string(a, flavour);
  if (!s.empty() && a.kind != ActKind::Softmax) return {{"Activation", {{"activation", s}}, ""}};
  auto relu = [&](float max_value, float slope, float threshold) {
    return ActivationLayer{"ReLU",
                           {{"max_value", std::isinf(max_value) ? nlohmann::json(nullptr) : nlohmann::json(max_value)},
                            {"negative_slope", slope},
                            {"threshold", threshold}},
                           "clip"};
  };
  switch (a.kind) {
    case ActKind::Softmax: return {{"Softmax", {{"axis", -1}}, ""}};
    case ActKind::Relu: return {relu(p.max_value, p.alpha, p.threshold)};
    case ActKind::LeakyRelu:
      // LeakyReLU's slope is "negative_slope" in Keras 3 and "alpha" in tf-keras.
      return {{"LeakyReLU", {{k3 ? "negative_slope" : "alpha", p.alpha}}, ""}};
    case ActKind::Elu: return {{"ELU", {{"alpha", p.alpha}}, ""}};
    case ActKind::PRelu: return {{"PReLU", nlohmann::json::object(), ""}};
    case ActKind::HardSigmoidK2:
      // Keras 2's hard_sigmoid, clip(0.2 x + 0.5, 0, 1), which Keras 3 has no name for.
      return {{"Rescaling", {{"scale", 0.2}, {"offset", 0.5}}, ""}, relu(1.0f, 0.0f, 0.0f)};
    case ActKind::HardSigmoidK3:
      // Keras 3's relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1), which tf-keras has no name for.
      return {{"Rescaling", {{"scale", 1.0 / 6.0}, {"offset", 0.5}}, ""}, relu(1.0f, 0.0f, 0.0f)};
    default:
      throw_error(Status::Unsupported, "layer '" + layer + "': activation '" + a.keras_name + "' cannot be written in a form " +
                                           (k3 ? "Keras 3" : "tf-keras") + " loads" +
                                           (k3 ? "" : "; write the file for Keras 3 (--flavour keras3)"));
  }
}

}  // namespace fkb::writer
