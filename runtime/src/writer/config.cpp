// The model config of a written graph, in the spelling each flavour's loader expects:
//  - Keras 3 (keras/src/models/functional.py get_config, serialization_lib): layers with module/registered_name,
//    DTypePolicy objects, InputLayer batch_shape, inbound_nodes as {"args": [...], "kwargs": {}} with
//    __keras_tensor__ entries, dict input_layers/output_layers for dict models.
//  - tf-keras (tf_keras/src/engine/functional.py get_network_config): class_name/config only, dtype strings (a
//    Policy object for mixed precision), InputLayer batch_input_shape, inbound_nodes as lists of
//    [layer, node, tensor, {}].
#include <algorithm>

#include "writer/graph.hpp"

namespace fkb::writer {

namespace {

json batch(const Shape& s) {
  json a = json::array({nullptr});
  for (auto v : s) a.push_back(v);
  return a;
}

bool is_mixed(const std::string& policy) { return policy.rfind("mixed_", 0) == 0; }

// The dtype a layer computes in (its output tensors'): mixed_float16 → float16, int8_from_float32 → float32.
std::string compute_dtype(const std::string& p) {
  if (is_mixed(p)) return p.substr(6);
  if (p.rfind("int8_from_", 0) == 0) return compute_dtype(p.substr(10));
  return p;
}

// InputLayer's dtype is a tensor dtype string, never a policy.
std::string input_dtype(const Layer& l) {
  if (l.dtype_json.is_string() && !is_mixed(l.dtype_json.get<std::string>())) return l.dtype_json.get<std::string>();
  return is_mixed(l.dtype) ? "float32" : l.dtype;
}

json keras3_dtype(const Layer& l) {
  // A Keras 3 policy object (DTypePolicy, QuantizedDTypePolicy, ...) is kept as read; tf-keras' "Policy" is not one.
  const json& dj = l.dtype_json;
  if (dj.is_object() && dj.contains("module") && dj.contains("class_name") && dj["class_name"].is_string() &&
      dj["class_name"].get<std::string>().find("DTypePolicy") != std::string::npos) {
    json d = l.dtype_json;  // a Keras 3 policy object as read (DTypePolicy, QuantizedDTypePolicy, ...)
    d.erase("shared_object_id");
    return d;
  }
  if (l.dtype.rfind("int8_from_", 0) == 0)
    return {{"module", "keras"},
            {"class_name", "QuantizedDTypePolicy"},
            {"config", {{"mode", "int8"}, {"source_name", l.dtype.substr(10)}}},
            {"registered_name", nullptr}};
  return {{"module", "keras"}, {"class_name", "DTypePolicy"}, {"config", {{"name", l.dtype}}},
          {"registered_name", nullptr}};
}

// tf-keras takes a policy name string for "dtype" ("mixed_float16" included, Layer._set_dtype_policy), and so does
// Keras 3, which cannot read tf-keras' {"class_name": "Policy"} object: the string loads in both.
json tfkeras_dtype(const Layer& l) { return l.dtype; }

json layer_config(const Layer& l, Flavour f) {
  json c = json::object();
  c["name"] = l.name;
  if (l.is_input()) {
    c[f == Flavour::TfKeras ? "batch_input_shape" : "batch_shape"] = batch(l.config.at("shape").get<Shape>());
    c["dtype"] = input_dtype(l);
    c["sparse"] = false;
    c["ragged"] = false;
    return c;
  }
  c["trainable"] = l.trainable;
  c["dtype"] = f == Flavour::TfKeras ? tfkeras_dtype(l) : keras3_dtype(l);
  for (auto it = l.config.begin(); it != l.config.end(); ++it) c[it.key()] = it.value();
  return c;
}

json tensor_ref_keras3(const Graph& g, TensorRef t) {
  const Layer& l = g.layers[t.layer];
  return {{"class_name", "__keras_tensor__"},
          {"config",
           {{"shape", batch(l.calls[t.node].out_shape)},
            {"dtype", compute_dtype(l.dtype)},
            {"keras_history", {l.name, t.node, 0}}}}};
}

json io_layers(const Graph& g, const std::vector<TensorRef>& refs, const std::vector<std::string>& keys) {
  auto one = [&](TensorRef t) { return json::array({g.layers[t.layer].name, t.node, 0}); };
  if (!keys.empty() && keys.size() == refs.size()) {
    // Keras flattens a dict by sorted key; ModelInfo holds the keys in that (flat) order.
    json d = json::object();
    for (size_t i = 0; i < refs.size(); ++i) d[keys[i]] = one(refs[i]);
    return d;
  }
  json a = json::array();
  for (TensorRef t : refs) a.push_back(one(t));
  return a;
}

json keras3_layer(const Graph& g, const Layer& l) {
  json e;
  e["module"] = l.custom ? json(nullptr) : json("keras.layers");
  e["class_name"] = l.cls;
  e["config"] = layer_config(l, Flavour::Keras3);
  e["registered_name"] = l.registered_name.empty() ? json(nullptr) : json(l.registered_name);
  e["name"] = l.name;
  json nodes = json::array();
  if (!l.is_input()) {
    const Call& first = l.calls.front();
    json shapes = json::array();
    for (TensorRef t : first.inputs) shapes.push_back(batch(g.layers[t.layer].calls[t.node].out_shape));
    e["build_config"] = {{"input_shape", l.merge ? shapes : shapes.at(0)}};
    for (const Call& call : l.calls) {
      json args = json::array();
      for (TensorRef t : call.inputs) args.push_back(tensor_ref_keras3(g, t));
      nodes.push_back({{"args", l.merge ? json::array({args}) : args}, {"kwargs", json::object()}});
    }
  }
  e["inbound_nodes"] = nodes;
  return e;
}

json tfkeras_layer(const Graph& g, const Layer& l) {
  json e;
  // Keras 3 reads a legacy entry (no "module") through legacy saving_utils.model_from_config, which keeps "axis" only
  // when it is one integer: Normalization(axis=None) ([]) or over several axes would come back as axis=-1. With a
  // module Keras 3 deserializes the config as it is; tf-keras ignores the key.
  if (l.cls == "Normalization" && l.config.contains("axis") && l.config["axis"].size() != 1)
    e["module"] = "keras.layers";
  // tf-keras looks a registered custom class up by its registered name ("package>Name") in class_name.
  e["class_name"] = l.registered_name.empty() ? l.cls : l.registered_name;
  e["config"] = layer_config(l, Flavour::TfKeras);
  e["name"] = l.name;
  json nodes = json::array();
  if (!l.is_input()) {
    for (const Call& call : l.calls) {
      json node = json::array();
      for (TensorRef t : call.inputs) node.push_back({g.layers[t.layer].name, t.node, 0, json::object()});
      nodes.push_back(node);
    }
  }
  e["inbound_nodes"] = nodes;
  return e;
}

}  // namespace

json model_config(const Graph& g, const std::vector<int>& order, Flavour flavour) {
  json layers = json::array();
  for (int l : order)
    layers.push_back(flavour == Flavour::TfKeras ? tfkeras_layer(g, g.layers[l]) : keras3_layer(g, g.layers[l]));
  json config = {{"name", g.name},
                 {"trainable", true},
                 {"layers", layers},
                 {"input_layers", io_layers(g, g.inputs, g.input_keys)},
                 {"output_layers", io_layers(g, g.outputs, g.output_keys)}};
  json doc;
  if (flavour == Flavour::TfKeras) {
    doc["class_name"] = "Functional";
    doc["config"] = config;
    return doc;
  }
  doc["module"] = "keras.src.models.functional";
  doc["class_name"] = "Functional";
  doc["config"] = config;
  doc["registered_name"] = "Functional";
  doc["build_config"] = {{"input_shape", nullptr}};
  doc["compile_config"] = nullptr;
  return doc;
}

}  // namespace fkb::writer
