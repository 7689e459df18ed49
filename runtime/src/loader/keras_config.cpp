#include "loader/keras_config.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"

namespace fkb::keras {

[[noreturn]] void format_error(const std::string& where, const std::string& what) {
  throw_error(Status::FormatError, where + ": " + what);
}

// A JSON value for a message: one line, at most 200 characters, invalid UTF-8 replaced (YAML strings may hold any
// bytes, and dump() would throw on them).
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 200) s = s.substr(0, 200) + "...";
  return s;
}

namespace {

bool is_model_class(const std::string& cls) {
  return cls == "Sequential" || cls == "Functional" || cls == "Model";
}

// Layer classes FKB executes (DESIGN.md "Layers"), by the op they become.
const std::map<std::string, OpKind>& layer_ops() {
  static const std::map<std::string, OpKind> ops = {
      {"InputLayer", OpKind::Input},
      {"Dense", OpKind::Dense},
      {"Activation", OpKind::Activation},
      {"LeakyReLU", OpKind::Activation},
      {"ReLU", OpKind::Activation},
      {"ELU", OpKind::Activation},
      {"PReLU", OpKind::Activation},
      {"Softmax", OpKind::Activation},
      {"Dropout", OpKind::Dropout},
      {"SpatialDropout1D", OpKind::Dropout},
      {"GaussianNoise", OpKind::Dropout},
      {"GaussianDropout", OpKind::Dropout},
      {"AlphaDropout", OpKind::Dropout},
      {"ActivityRegularization", OpKind::Dropout},
      {"BatchNormalization", OpKind::BatchNorm},
      {"Normalization", OpKind::Normalization},
      {"Rescaling", OpKind::Rescaling},
      {"Add", OpKind::Add},
      {"Subtract", OpKind::Subtract},
      {"Multiply", OpKind::Multiply},
      {"Average", OpKind::Average},
      {"Maximum", OpKind::Maximum},
      {"Minimum", OpKind::Minimum},
      {"Concatenate", OpKind::Concatenate},
      {"Flatten", OpKind::Flatten},
      {"Reshape", OpKind::Reshape},
      {"Conv1D", OpKind::Conv1D},
  };
  return ops;
}

std::string supported_list() {
  std::string s;
  for (const auto& kv : layer_ops()) s += (s.empty() ? "" : ", ") + kv.first;
  return s + ", and nested Sequential/Functional models";
}

}  // namespace

// Keras 3 configs name the class in "class_name" and may add "module"/"registered_name"; a registered
// custom class shows up as "package>Name".
std::string class_of(const json& layer) {
  if (!layer.is_object() || !layer.contains("class_name") || !layer["class_name"].is_string())
    return "";
  return layer["class_name"].get<std::string>();
}

namespace {

// Shape from [null, 94] / [None, 30, 3]: drop the batch dimension.
Shape batch_shape_to_shape(const json& s, const std::string& where, const std::string& layer) {
  if (!s.is_array() || s.empty()) format_error(where, "layer '" + layer + "' has an invalid input shape " + brief(s));
  Shape out;
  for (size_t i = 1; i < s.size(); ++i) {
    if (!s[i].is_number_integer())
      throw_error(Status::Unsupported, where + ": layer '" + layer + "' has input shape " + brief(s) +
                                           " with an unknown dimension; FKB needs fixed per-column shapes");
    out.push_back(s[i].get<int64_t>());
  }
  return out;
}

}  // namespace

// Input shape stated on a layer config, if any (batch_input_shape, batch_shape or input_shape).
bool stated_input_shape(const json& cfg, Shape* out, const std::string& where, const std::string& layer) {
  for (const char* key : {"batch_input_shape", "batch_shape"}) {
    if (cfg.contains(key) && cfg[key].is_array()) {
      *out = batch_shape_to_shape(cfg[key], where, layer);
      return true;
    }
  }
  if (cfg.contains("input_shape") && cfg["input_shape"].is_array()) {
    json s = json::array({nullptr});
    for (const auto& v : cfg["input_shape"]) s.push_back(v);
    *out = batch_shape_to_shape(s, where, layer);
    return true;
  }
  return false;
}

namespace {

float num(const json& cfg, const char* key, float dflt) {
  if (!cfg.contains(key) || cfg[key].is_null()) return dflt;
  if (!cfg[key].is_number())
    throw_error(Status::FormatError, std::string("config value '") + key + "' is not a number: " + brief(cfg[key]));
  return cfg[key].get<float>();
}

int64_t int_or_first(const json& v, int64_t dflt) {
  if (v.is_null()) return dflt;
  if (v.is_array()) return v.empty() ? dflt : v[0].get<int64_t>();
  return v.get<int64_t>();
}

Activation named_activation(const std::string& raw, int keras_major, const std::string& where) {
  Activation a;
  a.keras_name = raw;
  std::string name = raw;
  if (name.rfind("keras.activations.", 0) == 0) name = name.substr(18);
  static const std::map<std::string, ActKind> simple = {
      {"linear", ActKind::Linear},       {"relu", ActKind::Relu},         {"elu", ActKind::Elu},
      {"selu", ActKind::Selu},           {"gelu", ActKind::Gelu},         {"sigmoid", ActKind::Sigmoid},
      {"tanh", ActKind::Tanh},           {"softplus", ActKind::Softplus}, {"softsign", ActKind::Softsign},
      {"swish", ActKind::Swish},         {"silu", ActKind::Swish},        {"mish", ActKind::Mish},
      {"exponential", ActKind::Exponential}, {"softmax", ActKind::Softmax}, {"hard_silu", ActKind::HardSilu},
      {"hard_swish", ActKind::HardSilu},
  };
  if (name.empty() || name == "None") {
    a.kind = ActKind::Linear;
    a.keras_name = "linear";
    return a;
  }
  auto it = simple.find(name);
  if (it != simple.end()) {
    a.kind = it->second;
    if (a.kind == ActKind::Elu) a.params.alpha = 1.0f;
    return a;
  }
  if (name == "relu6") {
    a.kind = ActKind::Relu;
    a.params.max_value = 6.0f;
    return a;
  }
  if (name == "leaky_relu") {
    // The *function* keras.activations.leaky_relu / tf.nn.leaky_relu defaults to 0.2 (the layer to 0.3).
    a.kind = ActKind::LeakyRelu;
    a.params.alpha = 0.2f;
    return a;
  }
  if (name == "hard_sigmoid") {
    // Keras 2: clip(0.2 x + 0.5); Keras 3: relu6(x + 3) / 6.
    a.kind = keras_major >= 3 ? ActKind::HardSigmoidK3 : ActKind::HardSigmoidK2;
    return a;
  }
  throw_error(Status::Unsupported, where + ": activation '" + raw +
                                       "' is not supported; FKB supports linear, relu, relu6, leaky_relu, elu, selu, "
                                       "gelu, sigmoid, hard_sigmoid, hard_silu, tanh, softplus, softsign, swish/silu, "
                                       "mish, exponential, softmax");
}

Activation activation_layer(const std::string& cls, const json& cfg, int keras_major, const std::string& where);

Activation parse_activation(const json& a, int keras_major, const std::string& where) {
  if (a.is_null()) return named_activation("linear", keras_major, where);
  if (a.is_string()) return named_activation(a.get<std::string>(), keras_major, where);
  if (a.is_object()) {
    const std::string cls = class_of(a);
    const json cfg = a.contains("config") ? a["config"] : json::object();
    if (cfg.is_string()) return named_activation(cfg.get<std::string>(), keras_major, where);
    if (cls == "LeakyReLU" || cls == "ReLU" || cls == "ELU" || cls == "Softmax")
      return activation_layer(cls, cfg, keras_major, where);
    if (cfg.is_object() && cfg.contains("name") && cfg["name"].is_string())
      return named_activation(cfg["name"].get<std::string>(), keras_major, where);
    if (!cls.empty() && cls != "function") return named_activation(cls, keras_major, where);
  }
  throw_error(Status::Unsupported, where + ": activation " + brief(a) + " is not supported");
}

Activation activation_layer(const std::string& cls, const json& cfg, int keras_major, const std::string& where) {
  Activation a;
  if (cls == "Activation") return parse_activation(cfg.value("activation", json("linear")), keras_major, where);
  if (cls == "LeakyReLU") {
    a.kind = ActKind::LeakyRelu;
    // Keras 2 `alpha`, Keras 3 `negative_slope`; the layer's default is 0.3 in both.
    a.params.alpha = cfg.contains("negative_slope") ? num(cfg, "negative_slope", 0.3f) : num(cfg, "alpha", 0.3f);
    a.keras_name = "leaky_relu(" + std::to_string(a.params.alpha).substr(0, 6) + ")";
    return a;
  }
  if (cls == "ReLU") {
    a.kind = ActKind::Relu;
    a.params.alpha = num(cfg, "negative_slope", 0.0f);
    a.params.max_value = num(cfg, "max_value", INFINITY);
    a.params.threshold = num(cfg, "threshold", 0.0f);
    a.keras_name = "relu";
    return a;
  }
  if (cls == "ELU") {
    a.kind = ActKind::Elu;
    a.params.alpha = num(cfg, "alpha", 1.0f);
    a.keras_name = "elu";
    return a;
  }
  if (cls == "Softmax") {
    a.kind = ActKind::Softmax;
    a.keras_name = "softmax";
    return a;
  }
  if (cls == "PReLU") {
    a.kind = ActKind::PRelu;
    a.keras_name = "prelu";
    return a;
  }
  throw_error(Status::Internal, "not an activation layer: " + cls);
}

LayerSpec parse_layer(const json& layer, const std::string& where);

void parse_model_body(LayerSpec& spec, const json& cfg, const std::string& where) {
  spec.is_model = true;
  spec.sequential = spec.cls == "Sequential";
  json layers;
  if (cfg.is_array()) {
    layers = cfg;  // Keras <= 2.1 Sequential: the config is the layer list itself
  } else {
    if (!cfg.contains("layers") || !cfg["layers"].is_array())
      format_error(where, "model '" + spec.name + "' config has no 'layers' list");
    layers = cfg["layers"];
    if (cfg.contains("input_layers")) spec.input_layers = cfg["input_layers"];
    if (cfg.contains("output_layers")) spec.output_layers = cfg["output_layers"];
    if (spec.cls == "Model" && !cfg.contains("input_layers")) spec.sequential = true;
  }
  for (const auto& l : layers) spec.layers.push_back(parse_layer(l, where));
  if (spec.sequential && cfg.is_object() && cfg.contains("build_input_shape") && !spec.layers.empty() &&
      spec.layers[0].cls != "InputLayer") {
    // Keras 3 Sequential built from an input shape: keep it on the first layer.
    if (!spec.layers[0].config.contains("batch_input_shape") && !spec.layers[0].config.contains("batch_shape"))
      spec.layers[0].config["batch_shape"] = cfg["build_input_shape"];
  }
  if (!spec.sequential) {
    // A list of [name, node, tensor] (Keras 3 writes a single one bare), or a dict of them for models built with
    // dict inputs/outputs (keras_graph.cpp flattens them in Keras' order).
    for (json* io : {&spec.input_layers, &spec.output_layers}) {
      if ((!io->is_array() && !io->is_object()) || io->empty())
        format_error(where, "functional model '" + spec.name + "' has no input_layers/output_layers (a list or dict of "
                            "[layer, node, tensor] entries)");
    }
  }
}

LayerSpec parse_layer(const json& layer, const std::string& where) {
  if (!layer.is_object()) format_error(where, "a layer entry is not an object: " + brief(layer));
  LayerSpec spec;
  spec.cls = class_of(layer);
  if (spec.cls.empty()) format_error(where, "a layer entry has no class_name: " + brief(layer));
  spec.config = layer.contains("config") ? layer["config"] : json::object();
  if (spec.config.is_object() && spec.config.contains("name") && spec.config["name"].is_string())
    spec.name = spec.config["name"].get<std::string>();
  if (layer.contains("name") && layer["name"].is_string()) spec.name = layer["name"].get<std::string>();
  if (spec.config.is_object() && spec.config.contains("trainable") && spec.config["trainable"].is_boolean())
    spec.trainable = spec.config["trainable"].get<bool>();
  if (layer.contains("inbound_nodes")) spec.inbound_nodes = layer["inbound_nodes"];
  if (is_model_class(spec.cls)) parse_model_body(spec, spec.config, where);
  return spec;
}

}  // namespace

LayerSpec parse_model_config(const json& doc, const std::string& where) {
  if (!doc.is_object()) format_error(where, "the model config is not a JSON object");
  const std::string cls = class_of(doc);
  if (!is_model_class(cls))
    throw_error(Status::Unsupported, where + ": top-level class '" + cls +
                                         "' is not a Keras model; FKB reads Sequential, Functional and Model configs");
  try {
    return parse_layer(doc, where);
  } catch (const json::exception& e) {
    format_error(where, std::string("the model config has a value of the wrong type (") + e.what() + ")");
  }
}

bool is_builtin_class(const std::string& cls) {
  return is_model_class(cls) || layer_ops().count(cls) > 0;
}

bool is_registered_custom(const LayerSpec& l) {
  return !l.is_model && !layer_ops().count(l.cls) && find_custom_layer(l.cls) != nullptr;
}

void check_supported(const LayerSpec& l, const std::string& where) {
  if (l.is_model) return;
  if (layer_ops().count(l.cls)) {
    if (l.cls == "Conv1D") {
      const std::string fmt = l.config.value("data_format", std::string("channels_last"));
      if (fmt != "channels_last")
        throw_error(Status::Unsupported, where + ": layer '" + l.name + "' (Conv1D) uses data_format '" + fmt +
                                             "'; FKB supports channels_last");
      if (l.config.value("groups", 1) != 1)
        throw_error(Status::Unsupported, where + ": layer '" + l.name + "' (Conv1D) uses groups != 1");
    }
    return;
  }
  if (is_registered_custom(l)) return;
  std::string hint;
  if (l.cls == "Lambda" || l.cls == "TFOpLambda" || l.cls == "SlicingOpLambda")
    hint = " (Lambda layers hold Python code, which FKB cannot run; rewrite it with standard layers)";
  else if (l.cls.find('>') != std::string::npos)
    hint = " (a custom layer class registered in Python; register a C++ implementation with FKB to load it)";
  std::string registered;
  for (const auto& r : registered_custom_layers()) registered += (registered.empty() ? "" : ", ") + r;
  if (!registered.empty()) registered = ". Registered custom layers: " + registered;
  throw_error(Status::Unsupported, where + ": layer '" + l.name + "' has class '" + l.cls +
                                       "', which FKB does not support" + hint + ". Supported: " + supported_list() +
                                       registered);
}

void check_supported_tree(const LayerSpec& model, const std::string& where) {
  for (const auto& l : model.layers) {
    try {
      check_supported(l, where);
    } catch (const json::exception& e) {  // json::value(key, default) throws when the key holds another type
      format_error(where, "layer '" + l.name + "' (" + l.cls + "): a config value has the wrong type (" + e.what() +
                              ")");
    }
    if (l.is_model) check_supported_tree(l, where);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// One layer config → one IR node

Node make_node(const LayerSpec& l, int keras_major, const std::string& where) {
  const std::string w = where + ": layer '" + l.name + "' (" + l.cls + ")";
  const json& c = l.config;
  Node n;
  n.keras_class = l.cls;
  n.config_json = c.dump(-1, ' ', false, json::error_handler_t::replace);
  auto op_it = layer_ops().find(l.cls);
  if (op_it == layer_ops().end()) {
    check_supported(l, where);  // throws with the full message unless the class is a registered custom layer
    // A registered custom layer: its Keras variables in the file's order, roles "0", "1", ...; the
    // registered output_shape gives its shape (Model::infer_shapes).
    n.op = OpKind::Custom;
    for (size_t i = 0; i < l.weights.size(); ++i) n.weights[std::to_string(i)] = l.weights[i];
    return n;
  }
  n.op = op_it->second;

  // Weights: the leaf's own variables in Keras order, matched to roles.
  const auto vars = own_variables(l, keras_major);
  if (l.weights.size() != vars.size()) {
    std::string expect;
    for (const auto& v : vars) expect += (expect.empty() ? "" : ", ") + v.role;
    throw_error(Status::FormatError, w + ": the file holds " + std::to_string(l.weights.size()) +
                                         " weight(s) but the config implies " + std::to_string(vars.size()) + " (" +
                                         (expect.empty() ? "none" : expect) + ")");
  }
  for (size_t i = 0; i < vars.size(); ++i) n.weights[vars[i].role] = l.weights[i];

  try {
    switch (n.op) {
      case OpKind::Dense:
        n.units = c.at("units").get<int64_t>();
        n.use_bias = c.value("use_bias", true);
        n.activation = parse_activation(c.value("activation", json("linear")), keras_major, w);
        break;
      case OpKind::Conv1D: {
        n.units = c.at("filters").get<int64_t>();
        n.use_bias = c.value("use_bias", true);
        n.kernel_size = int_or_first(c.at("kernel_size"), 1);
        n.stride = int_or_first(c.value("strides", json(1)), 1);
        n.dilation = int_or_first(c.value("dilation_rate", json(1)), 1);
        const std::string pad = c.value("padding", std::string("valid"));
        if (pad == "valid") n.padding = Padding::Valid;
        else if (pad == "same") n.padding = Padding::Same;
        else if (pad == "causal") n.padding = Padding::Causal;
        else throw_error(Status::Unsupported, w + ": padding '" + pad + "' is not supported (valid, same, causal)");
        if (n.stride > 1 && n.dilation > 1)
          throw_error(Status::Unsupported, w + ": strides > 1 together with dilation_rate > 1");
        n.activation = parse_activation(c.value("activation", json("linear")), keras_major, w);
        break;
      }
      case OpKind::Activation:
        n.activation = activation_layer(l.cls, c, keras_major, w);
        if (l.cls == "Softmax") n.axis = static_cast<int>(int_or_first(c.value("axis", json(-1)), -1));
        break;
      case OpKind::BatchNorm:
        n.axis = static_cast<int>(int_or_first(c.value("axis", json(-1)), -1));
        if (c.contains("axis") && c["axis"].is_array() && c["axis"].size() != 1)
          throw_error(Status::Unsupported, w + ": normalization over several axes " + brief(c["axis"]));
        n.epsilon = num(c, "epsilon", 1e-3f);
        break;
      case OpKind::Normalization: {
      // axis: an int or a list (Keras 3 and tf-keras write a list; [] or null is axis=None, one mean for all
      // elements). Kept as written; Model::infer_shapes makes it per-column and places mean/variance on it.
      const json ax = c.value("axis", json(-1));
      const bool scalar = ax.is_null() || (ax.is_array() && ax.empty());
      if (ax.is_array() && ax.size() > 1)
        throw_error(Status::Unsupported, w + ": normalization over several axes " + brief(ax) +
                                             "; FKB supports one axis or axis=None");
      n.axis = scalar ? -1 : static_cast<int>(int_or_first(ax, -1));
      n.invert = c.value("invert", false);
      n.epsilon = 1e-7f;  // keras.backend.epsilon(): (x - mean) / max(sqrt(var), eps)
      for (const char* key : {"mean", "variance"}) {
        if (!c.contains(key) || c[key].is_null()) continue;
        // Given mean/variance (config values): a number, or one value per element of the normalized axis.
        const json& v = c[key];
        Array a;
        if (v.is_number()) {
          a.data.push_back(v.get<float>());
        } else if (v.is_array()) {
          for (const auto& e : v) {
            if (!e.is_number())
              throw_error(Status::Unsupported, w + ": " + key + " " + brief(v) +
                                                   " is not a number or a list of numbers; FKB supports one "
                                                   "normalized axis");
            a.data.push_back(e.get<float>());
          }
          a.shape = {a.size()};
        } else {
          throw_error(Status::FormatError, w + ": " + key + " is " + brief(v) + ", not a number or a list");
        }
        if (scalar && a.size() != 1)
          throw_error(Status::FormatError, w + ": axis=None takes one " + key + " value, but the config gives " +
                                               std::to_string(a.size()));
        n.constants[key] = a;
      }
      break;
    }
    case OpKind::Rescaling: {
        for (const char* key : {"scale", "offset"}) {
          Array a;
          const json v = c.value(key, json(key[0] == 's' ? 1.0 : 0.0));
          if (v.is_array()) {
            for (const auto& e : v) a.data.push_back(e.get<float>());
          } else {
            a.data.push_back(v.get<float>());
          }
          a.shape = {a.size()};
          n.constants[key] = a;
        }
        break;
      }
      case OpKind::Concatenate: n.axis = c.value("axis", -1); break;
      case OpKind::Reshape:
        for (const auto& v : c.at("target_shape")) n.target_shape.push_back(v.get<int64_t>());
        break;
      default: break;
    }
  } catch (const json::exception& e) {
    throw_error(Status::FormatError, w + ": invalid config: " + e.what());
  }
  if (n.op == OpKind::Activation && n.activation.kind == ActKind::PRelu) {
    // PReLU's alpha is a weight; keep the node's params neutral.
    n.activation.params.alpha = 0.0f;
  }
  return n;
}

// A config without Keras 3's "shared_object_id" entries (serialization bookkeeping that differs between the two
// copies of one layer).
json without_object_ids(const json& j) {
  if (j.is_object()) {
    json out = json::object();
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "shared_object_id") out[it.key()] = without_object_ids(it.value());
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(without_object_ids(v));
    return out;
  }
  return j;
}


}  // namespace fkb::keras
