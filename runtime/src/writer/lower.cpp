// IR → Keras layers for one flavour (writer/graph.hpp): per-op configs, activations as strings or layers, shared
// layers as several calls of one layer, dtype policies and custom layers kept from the source config.
#include <algorithm>
#include <cmath>
#include <set>

#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"
#include "writer/activation.hpp"
#include "writer/graph.hpp"

namespace fkb::writer {

std::string dtype_policy_name(const json& config) {
  if (!config.is_object() || !config.contains("dtype")) return "float32";
  const json& d = config["dtype"];
  if (d.is_string()) return d.get<std::string>();
  // Keras 3 DTypePolicy {"config": {"name": ...}}; tf-keras Policy {"class_name": "Policy", "config": {"name"}}.
  if (d.is_object() && d.contains("config") && d["config"].is_object() && d["config"].contains("name") &&
      d["config"]["name"].is_string())
    return d["config"]["name"].get<std::string>();
  return "float32";
}

namespace {

// The dtype Keras gives a layer's variables under a policy (mixed_*: float32 variables, float16 compute).
h5::StoreType variable_store(const std::string& policy) {
  if (policy == "float16") return h5::StoreType::Float16;
  if (policy == "float64") return h5::StoreType::Float64;
  if (policy == "bfloat16") return h5::StoreType::BFloat16;
  return h5::StoreType::Float32;
}

json parse_config(const Node& n) {
  json c = json::parse(n.config_json.empty() ? "{}" : n.config_json, nullptr, false);
  return c.is_object() ? c : json::object();
}

// Keras' per-column shape of an array with its 1-sized leading axes dropped ({1, 8} → {8}; {1} stays {1}).
json nested(const std::vector<float>& data, const Shape& shape, size_t axis, size_t& pos) {
  if (axis == shape.size()) return data[pos++];
  json a = json::array();
  for (int64_t i = 0; i < shape[axis]; ++i) a.push_back(nested(data, shape, axis + 1, pos));
  return a;
}

class Lowerer {
 public:
  Lowerer(const Model& m, Flavour f) : m_(m), f_(f) {}

  Graph run() {
    out_.assign(m_.nodes.size(), {});
    main_.assign(m_.nodes.size(), -1);
    single_.assign(m_.nodes.size(), false);
    for (size_t i = 0; i < m_.nodes.size(); ++i) lower_node(static_cast<int>(i));
    for (int i : m_.inputs) g_.inputs.push_back(out_[i]);
    for (int o : m_.outputs) g_.outputs.push_back(out_[o]);
    g_.input_keys = m_.info.input_keys;
    g_.output_keys = m_.info.output_keys;
    g_.name = m_.info.name.empty() ? "fkb_model" : m_.info.name;
    std::replace(g_.name.begin(), g_.name.end(), '/', '_');
    return std::move(g_);
  }

 private:
  const Model& m_;
  Flavour f_;
  Graph g_;
  std::set<std::string> used_;
  std::vector<TensorRef> out_;  // IR node → the tensor holding its output
  std::vector<int> main_;       // IR node → the layer that holds its weights / does its main operation
  std::vector<char> single_;    // the node became one layer (plus, for Dense/Conv1D, per-call activation layers)

  std::string fresh(std::string base) {
    std::replace(base.begin(), base.end(), '/', '_');
    std::string s = base;
    for (int k = 1; used_.count(s); ++k) s = base + "_" + std::to_string(k);
    used_.insert(s);
    return s;
  }

  Shape shape_of(TensorRef t) const { return g_.layers[t.layer].calls[t.node].out_shape; }

  TensorRef add(Layer l, std::vector<TensorRef> inputs, const Shape& out) {
    l.calls.push_back({std::move(inputs), out});
    g_.layers.push_back(std::move(l));
    return {static_cast<int>(g_.layers.size()) - 1, 0};
  }

  TensorRef call_again(int layer, std::vector<TensorRef> inputs, const Shape& out) {
    g_.layers[layer].calls.push_back({std::move(inputs), out});
    return {layer, static_cast<int>(g_.layers[layer].calls.size()) - 1};
  }

  void var(Layer& l, const Node& n, const std::string& role, Shape shape = {}, bool keep_shape = true) {
    const Array* a = n.find(role);
    if (!a) throw_error(Status::Internal, "layer '" + n.name + "' has no '" + role + "' to write");
    Var v;
    v.role = role;
    v.value = a;
    v.shape = keep_shape ? a->shape : shape;
    v.store = role == "count" ? h5::StoreType::Int64 : variable_store(l.dtype);
    l.vars.push_back(v);
  }

  // Name, dtype policy and trainable from the source config; the class-specific keys are filled by the caller.
  Layer base(const Node& n, const std::string& cls, const std::string& name) {
    const json c = parse_config(n);
    Layer l;
    l.cls = cls;
    l.name = name;
    l.dtype = dtype_policy_name(c);
    if (c.contains("dtype")) l.dtype_json = c["dtype"];
    if (c.contains("trainable") && c["trainable"].is_boolean()) l.trainable = c["trainable"].get<bool>();
    return l;
  }

  void lower_node(int i) {
    const Node& n = m_.nodes[i];
    std::vector<TensorRef> ins;
    for (int in : n.inputs) ins.push_back(out_[in]);
    const int from = n.shared_from;
    if (from >= 0 && from < i && single_[from] && main_[from] >= 0) {
      // Another call of a shared layer: one more inbound node of the same layer, weights written once.
      TensorRef t = call_again(main_[from], ins, n.shape);
      if ((n.op == OpKind::Dense || n.op == OpKind::Conv1D) && activation_string(n.activation, f_).empty())
        t = add_activation_layers(n, n.activation, t, "");
      out_[i] = t;
      main_[i] = main_[from];
      single_[i] = true;
      return;
    }
    const std::string name = fresh(n.name);
    const size_t before = g_.layers.size();
    out_[i] = lower_op(n, name, ins);
    main_[i] = static_cast<int>(before);
    single_[i] = g_.layers.size() == before + 1 || n.op == OpKind::Dense || n.op == OpKind::Conv1D;
  }

  TensorRef add_activation_layers(const Node& n, const Activation& a, TensorRef in, const std::string& name) {
    const Shape shape = shape_of(in);
    const std::string nm = name.empty() ? fresh(g_.layers[in.layer].name + "_activation") : name;
    std::vector<ActivationLayer> parts = activation_layers(a, f_, n.name);
    TensorRef t = in;
    for (size_t k = 0; k < parts.size(); ++k) {
      Layer l = base(n, parts[k].cls, k == 0 ? nm : fresh(nm + "_" + parts[k].suffix));
      l.config = parts[k].config;
      if (parts[k].cls == "PReLU") {
        const json c = parse_config(n);
        if (c.contains("shared_axes")) l.config["shared_axes"] = c["shared_axes"];
        var(l, n, "alpha");
      }
      t = add(std::move(l), {t}, shape);
    }
    return t;
  }

  TensorRef lower_op(const Node& n, const std::string& name, const std::vector<TensorRef>& ins) {
    const int rank = static_cast<int>(n.shape.size()) + 1;  // with the batch axis
    switch (n.op) {
      case OpKind::Input: {
        Layer l = base(n, "InputLayer", name);
        // InputLayer's "dtype" is the input tensor's dtype (a plain string, "bfloat16" for a bfloat16 model).
        l.config = {{"shape", n.shape}, {"sparse", false}, {"ragged", false}};
        return add(std::move(l), {}, n.shape);
      }
      case OpKind::Dense:
      case OpKind::Conv1D: {
        const std::string act = activation_string(n.activation, f_);
        Layer l = base(n, n.op == OpKind::Dense ? "Dense" : "Conv1D", name);
        if (n.op == OpKind::Dense) {
          l.config = {{"units", n.units}, {"use_bias", n.use_bias}};
        } else {
          const char* pad = n.padding == Padding::Valid ? "valid" : n.padding == Padding::Same ? "same" : "causal";
          l.config = {{"filters", n.units},         {"kernel_size", {n.kernel_size}}, {"strides", {n.stride}},
                      {"padding", pad},            {"dilation_rate", {n.dilation}},  {"use_bias", n.use_bias},
                      {"data_format", "channels_last"}};
        }
        l.config["activation"] = act.empty() ? "linear" : act;
        if (n.quantized_int8) quantized_dense(l, n);
        var(l, n, "kernel");
        if (n.use_bias) var(l, n, "bias");
        if (n.quantized_int8) {
          var(l, n, "kernel_scale");
          l.vars[0].store = h5::StoreType::Int8;
          // layer.weights of a quantized Dense: bias (built first), kernel, kernel_scale.
          l.legacy_order = n.use_bias ? std::vector<int>{1, 0, 2} : std::vector<int>{0, 1};
        }
        TensorRef t = add(std::move(l), ins, n.shape);
        if (act.empty()) t = add_activation_layers(n, n.activation, t, "");
        return t;
      }
      case OpKind::Activation: return add_activation_layers(n, n.activation, ins[0], name);
      case OpKind::Dropout: {
        Layer l = base(n, "Dropout", name);
        const json c = parse_config(n);
        l.config = {{"rate", c.contains("rate") ? c["rate"] : json(0.5)}};
        return add(std::move(l), ins, n.shape);
      }
      case OpKind::BatchNorm: {
        Layer l = base(n, "BatchNormalization", name);
        const bool scale = n.find("gamma") != nullptr, center = n.find("beta") != nullptr;
        l.config = {{"axis", rank + n.axis}, {"epsilon", n.epsilon}, {"center", center}, {"scale", scale},
                    {"momentum", 0.99}};
        if (scale) var(l, n, "gamma");
        if (center) var(l, n, "beta");
        var(l, n, "moving_mean");
        var(l, n, "moving_variance");
        return add(std::move(l), ins, n.shape);
      }
      case OpKind::Normalization: return normalization(n, name, ins);
      case OpKind::Rescaling: {
        Layer l = base(n, "Rescaling", name);
        for (const char* r : {"scale", "offset"}) {
          const Array* a = n.find(r);
          if (!a) l.config[r] = r[0] == 's' ? 1.0 : 0.0;
          else if (a->size() == 1) l.config[r] = a->data[0];
          else l.config[r] = a->data;
        }
        return add(std::move(l), ins, n.shape);
      }
      case OpKind::Add:
      case OpKind::Subtract:
      case OpKind::Multiply:
      case OpKind::Average:
      case OpKind::Maximum:
      case OpKind::Minimum:
      case OpKind::Concatenate: {
        Layer l = base(n, op_class(n.op), name);
        l.merge = true;
        if (n.op == OpKind::Concatenate) l.config = {{"axis", n.axis}};
        return add(std::move(l), ins, n.shape);
      }
      case OpKind::Flatten: {
        Layer l = base(n, "Flatten", name);
        return add(std::move(l), ins, n.shape);
      }
      case OpKind::Reshape: {
        Layer l = base(n, "Reshape", name);
        l.config = {{"target_shape", n.shape}};
        return add(std::move(l), ins, n.shape);
      }
      case OpKind::Custom: return custom(n, name, ins);
      case OpKind::Affine: break;  // the graph optimizer's internal form: write the model as loaded, not optimized
    }
    throw_error(Status::Unsupported, "layer '" + n.name + "' (" + n.keras_class +
                                         ") cannot be written as a standard Keras layer");
  }

  static const char* op_class(OpKind op) {
    switch (op) {
      case OpKind::Add: return "Add";
      case OpKind::Subtract: return "Subtract";
      case OpKind::Multiply: return "Multiply";
      case OpKind::Average: return "Average";
      case OpKind::Maximum: return "Maximum";
      case OpKind::Minimum: return "Minimum";
      default: return "Concatenate";
    }
  }

  // Keras 3 int8 Dense (model.quantize("int8")): an int8 kernel and a float32 kernel_scale per unit, under the
  // int8_from_<source> policy. tf-keras has no quantized layers.
  void quantized_dense(Layer& l, const Node& n) {
    if (f_ == Flavour::TfKeras || n.op != OpKind::Dense)
      throw_error(Status::Unsupported, "layer '" + n.name +
                                           "' is an int8-quantized Dense (Keras 3 model.quantize(\"int8\")), which "
                                           "tf-keras cannot load; write it with --flavour keras3");
    if (l.dtype.rfind("int8_from_", 0) != 0) l.dtype = "int8_from_" + l.dtype;
  }

  // Normalization: mean/variance in the shape Keras' build gives them, input_shape[d] for the kept axes
  // (keras/src/layers/preprocessing/normalization.py; tf-keras is the same): axis=None keeps none (scalars).
  TensorRef normalization(const Node& n, const std::string& name, const std::vector<TensorRef>& ins) {
    Layer l = base(n, "Normalization", name);
    const int ndim = static_cast<int>(n.shape.size());
    const Array* mean = n.find("mean");
    if (!mean || !n.find("variance"))
      throw_error(Status::Internal, "layer '" + n.name + "': Normalization without mean/variance");
    // Kept axes: where the (right-aligned) mean has the node's size and that size is not 1; a mean of one value
    // is axis=None. Where both readings fit (a size-1 feature axis), the source config's axis decides.
    std::vector<int> keep;
    if (mean->size() > 1) {
      const int off = ndim - static_cast<int>(mean->shape.size());
      for (int d = 0; d < ndim; ++d) {
        const int md = d - off;
        if (md >= 0 && mean->shape[md] == n.shape[d] && n.shape[d] != 1) keep.push_back(d);
      }
      int64_t kept = 1;
      for (int d : keep) kept *= n.shape[d];
      if (kept != mean->size())
        throw_error(Status::Internal, "layer '" + n.name + "' (Normalization): mean of shape " +
                                          shape_str(mean->shape) + " does not broadcast against " + shape_str(n.shape));
    } else {
      const json c = parse_config(n);
      if (c.contains("axis") && !c["axis"].is_null() && !(c["axis"].is_array() && c["axis"].empty()) && ndim > 0 &&
          n.shape[ndim - 1] == 1) {
        keep.push_back(ndim - 1);
      }
    }
    Shape var_shape;
    json axis = json::array();
    for (int d : keep) {
      var_shape.push_back(n.shape[d]);
      axis.push_back(d + 1);  // with the batch axis, as Keras stores a positive axis
    }
    // Keras 3 and tf-keras both write the axis tuple as a list; [-1] when it is the last axis, as users write it.
    if (keep.size() == 1 && keep[0] == ndim - 1) axis = json::array({-1});
    l.config = {{"axis", axis}, {"invert", n.invert}};
    if (n.weights.count("mean")) {
      l.config["mean"] = nullptr;
      l.config["variance"] = nullptr;
      var(l, n, "mean", var_shape, false);
      var(l, n, "variance", var_shape, false);
      if (!n.weights.count("count"))
        throw_error(Status::Internal, "layer '" + n.name + "': adapted Normalization without 'count'");
      var(l, n, "count", {}, false);
    } else {
      for (const char* key : {"mean", "variance"}) {
        const Array& a = n.constants.at(key);
        size_t pos = 0;
        l.config[key] = nested(a.data, var_shape, 0, pos);
      }
    }
    return add(std::move(l), ins, n.shape);
  }

  // A registered custom layer: its config as read, its class under the registered name Keras knows it by.
  TensorRef custom(const Node& n, const std::string& name, const std::vector<TensorRef>& ins) {
    Layer l = base(n, n.keras_class, name);
    l.custom = true;
    l.config = parse_config(n);
    for (const char* k : {"name", "trainable", "dtype"}) l.config.erase(k);
    const auto gt = n.keras_class.rfind('>');
    if (gt != std::string::npos) {
      l.cls = n.keras_class.substr(gt + 1);
      l.registered_name = n.keras_class;
    } else {
      // The .keras config's class_name is the bare class; the C++ registration may carry the package.
      l.registered_name = n.keras_class;
      for (const auto& r : registered_custom_layers()) {
        const auto p = r.rfind('>');
        if (p != std::string::npos && r.substr(p + 1) == n.keras_class) l.registered_name = r;
      }
    }
    for (size_t k = 0; n.weights.count(std::to_string(k)); ++k) var(l, n, std::to_string(k));
    return add(std::move(l), ins, n.shape);
  }
};

}  // namespace

Graph lower(const Model& model, Flavour flavour) { return Lowerer(model, flavour).run(); }

}  // namespace fkb::writer
