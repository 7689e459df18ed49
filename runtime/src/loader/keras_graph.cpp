// Graph construction: wires the IR nodes of a Keras model config (Sequential, Functional, nested models, shared
// layers) from the layers' inbound nodes. Each node's own computation comes from make_node (keras_config.cpp).
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "loader/keras_config.hpp"

namespace fkb::keras {

namespace {

struct TensorRef {
  std::string layer;
  int node = 0;
  int tensor = 0;
};

// Keras 2: [name, node, tensor(, kwargs)]; Keras 3: {"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}
bool parse_ref(const json& j, TensorRef* r) {
  if (j.is_array() && j.size() >= 3 && j[0].is_string() && j[1].is_number_integer() && j[2].is_number_integer()) {
    r->layer = j[0].get<std::string>();
    r->node = j[1].get<int>();
    r->tensor = j[2].get<int>();
    return true;
  }
  if (j.is_object() && class_of(j) == "__keras_tensor__" && j.contains("config") &&
      j["config"].contains("keras_history"))
    return parse_ref(j["config"]["keras_history"], r);
  return false;
}

// The leaves of a nested structure of tensor refs (input_layers, output_layers, a call's arguments) in Keras' flat
// order: lists in order, dicts by sorted key (keras.tree.flatten and tf.nest.flatten sort dict keys; nlohmann::json
// objects iterate in that order). `key` is the leaf's path of dict keys and list positions, "/"-joined.
struct FlatRef {
  std::string key;
  TensorRef ref;
};

// Keras 3 marks tensors as __keras_tensor__ objects and may hold other values (None masks, numbers) beside them;
// Keras 2 leaves are [name, node, tensor, kwargs] lists. `strict`: anything else is an error (Keras 2 structures).
void flatten_refs(const json& j, const std::string& key, bool strict, std::vector<FlatRef>* out,
                  const std::string& what, const std::string& where) {
  if (j.is_array() && j.size() >= 2 && j[0].is_string() && j[0].get<std::string>() == "_CONSTANT_VALUE")
    throw_error(Status::Unsupported, where + ": " + what + " takes a constant value " + brief(j) +
                                         " as an input (tf-keras _CONSTANT_VALUE); FKB reads layer inputs that are "
                                         "tensors of the model");
  TensorRef r;
  if (parse_ref(j, &r)) {
    out->push_back({key, r});
    return;
  }
  const std::string sep = key.empty() ? "" : "/";
  if (j.is_array() && !(j.size() >= 2 && j[0].is_string())) {
    for (size_t i = 0; i < j.size(); ++i) flatten_refs(j[i], key + sep + std::to_string(i), strict, out, what, where);
    return;
  }
  if (j.is_object() && class_of(j).empty()) {
    for (const auto& kv : j.items()) flatten_refs(kv.value(), key + sep + kv.key(), strict, out, what, where);
    return;
  }
  if (strict) format_error(where, what + " has a malformed entry " + brief(j));
}

// Tensors in a call's keyword arguments: FKB's layers take their inputs from the first argument only. A mask is
// ignored (the layers FKB runs do not use masks, as in Keras); a tensor passed under another keyword would be an
// input FKB does not feed, so it is refused.
void check_call_kwargs(const json& kwargs, const std::set<std::string>& layer_names, const std::string& layer,
                       const std::string& where) {
  if (!kwargs.is_object()) return;
  for (const auto& kv : kwargs.items()) {
    if (kv.key() == "mask") continue;
    std::vector<FlatRef> found;
    flatten_refs(kv.value(), "", false, &found, "", where);
    for (const auto& f : found)
      if (layer_names.count(f.ref.layer))
        throw_error(Status::Unsupported, where + ": layer '" + layer + "' is called with the tensor of layer '" +
                                             f.ref.layer + "' as keyword argument '" + kv.key() +
                                             "'; FKB feeds a layer only the tensors of its first argument");
  }
}

// The input tensors of each call (node) of a layer, in the flat order the layer receives them.
std::vector<std::vector<TensorRef>> parse_inbound(const LayerSpec& l, const std::set<std::string>& layer_names,
                                                  const std::string& where) {
  std::vector<std::vector<TensorRef>> calls;
  if (l.inbound_nodes.is_null()) return calls;
  if (!l.inbound_nodes.is_array()) format_error(where, "layer '" + l.name + "' has malformed inbound_nodes");
  const std::string what = "layer '" + l.name + "' inbound node";
  for (const auto& node : l.inbound_nodes) {
    std::vector<FlatRef> flat;
    if (node.is_object() && (node.contains("args") || node.contains("kwargs"))) {  // Keras 3
      const json kwargs = node.value("kwargs", json::object());
      if (node.contains("args")) flatten_refs(node["args"], "", false, &flat, what, where);
      if (flat.empty() && kwargs.is_object() && kwargs.contains("inputs")) {  // layer(inputs=x)
        flatten_refs(kwargs["inputs"], "", false, &flat, what, where);
        json rest = kwargs;
        rest.erase("inputs");
        check_call_kwargs(rest, layer_names, l.name, where);
      } else {
        check_call_kwargs(kwargs, layer_names, l.name, where);
      }
    } else if (node.is_array() || node.is_object()) {  // Keras 2: a structure of [name, node, tensor, kwargs]
      flatten_refs(node, "", true, &flat, what, where);
      std::function<void(const json&)> kw = [&](const json& j) {  // the kwargs each leaf carries
        if (j.is_array() && j.size() >= 4 && j[0].is_string()) {
          check_call_kwargs(j[3], layer_names, l.name, where);
        } else if (j.is_array() || j.is_object()) {
          for (const auto& e : j) kw(e);
        }
      };
      kw(node);
    } else {
      format_error(where, "layer '" + l.name + "' has a malformed inbound node " + brief(node));
    }
    std::vector<TensorRef> refs;
    for (const auto& f : flat) refs.push_back(f.ref);
    calls.push_back(refs);
  }
  return calls;
}

std::string ref_key(const TensorRef& r) {
  return r.layer + "\x1f" + std::to_string(r.node) + "\x1f" + std::to_string(r.tensor);
}

class GraphBuilder {
 public:
  GraphBuilder(Model& m, int keras_major, const std::string& where) : m_(m), major_(keras_major), where_(where) {}

  // Returns the IR node ids of the model's outputs. `inputs` empty: top level (creates Input nodes).
  std::vector<int> build(const LayerSpec& model, const std::vector<int>& inputs, const std::string& prefix) {
    return model.sequential ? build_sequential(model, inputs, prefix) : build_functional(model, inputs, prefix);
  }

 private:
  Model& m_;
  int major_;
  std::string where_;

  int add_input(const LayerSpec& l, const Shape& shape, const std::string& prefix) {
    Node n;
    n.name = prefix + l.name;
    n.keras_class = "InputLayer";
    n.op = OpKind::Input;
    n.shape = shape;
    m_.nodes.push_back(std::move(n));
    int id = static_cast<int>(m_.nodes.size()) - 1;
    m_.inputs.push_back(id);
    return id;
  }

  std::vector<int> build_sequential(const LayerSpec& model, const std::vector<int>& inputs, const std::string& prefix) {
    int cur = -1;
    size_t start = 0;
    if (!inputs.empty()) {
      if (inputs.size() != 1)
        format_error(where_, "Sequential model '" + model.name + "' called with " + std::to_string(inputs.size()) +
                                 " inputs");
      cur = inputs[0];
      if (!model.layers.empty() && model.layers[0].cls == "InputLayer") start = 1;
    } else {
      if (model.layers.empty()) format_error(where_, "Sequential model '" + model.name + "' has no layers");
      const LayerSpec& first = model.layers[0];
      Shape shape;
      if (!stated_input_shape(first.config, &shape, where_, first.name))
        format_error(where_, "Sequential model '" + model.name +
                                 "' does not state its input shape (no InputLayer, batch_input_shape or "
                                 "build_input_shape); FKB needs it to size the network");
      LayerSpec in;
      in.name = first.cls == "InputLayer" ? first.name : model.name + "_input";
      cur = add_input(in, shape, prefix);
      if (first.cls == "InputLayer") start = 1;
    }
    for (size_t i = start; i < model.layers.size(); ++i) {
      const LayerSpec& l = model.layers[i];
      if (l.cls == "InputLayer") continue;
      if (l.is_model) {
        auto outs = build(l, {cur}, prefix + l.name + "/");
        if (outs.size() != 1)
          format_error(where_, "nested model '" + l.name + "' inside a Sequential has " +
                                   std::to_string(outs.size()) + " outputs");
        cur = outs[0];
      } else {
        cur = add_layer(l, {cur}, prefix, 0);
      }
    }
    return {cur};
  }

  std::vector<int> build_functional(const LayerSpec& model, const std::vector<int>& inputs, const std::string& prefix) {
    std::map<std::string, int> refs;  // tensor ref -> IR node id
    std::map<std::string, const LayerSpec*> by_name;
    std::set<std::string> names;
    for (const auto& l : model.layers) {
      by_name[l.name] = &l;
      names.insert(l.name);
    }

    // Inputs: the model's input_layers in Keras' flat order (a dict of inputs: sorted keys).
    std::vector<FlatRef> ins;
    flatten_refs(model.input_layers, "", true, &ins, "model '" + model.name + "' input_layers", where_);
    if (ins.empty()) format_error(where_, "functional model '" + model.name + "' has no inputs in input_layers");
    if (!inputs.empty() && inputs.size() != ins.size())
      format_error(where_, "nested model '" + model.name + "' has " + std::to_string(ins.size()) +
                               " inputs but is called with " + std::to_string(inputs.size()));
    const bool top = inputs.empty();
    for (size_t i = 0; i < ins.size(); ++i) {
      const TensorRef& r = ins[i].ref;
      auto it = by_name.find(r.layer);
      if (it == by_name.end()) format_error(where_, "input layer '" + r.layer + "' is not among the model's layers");
      if (!top) {
        refs[ref_key(r)] = inputs[i];
      } else {
        const LayerSpec& l = *it->second;
        if (l.cls != "InputLayer") format_error(where_, "input '" + r.layer + "' is not an InputLayer");
        Shape shape;
        if (!stated_input_shape(l.config, &shape, where_, l.name))
          format_error(where_, "InputLayer '" + l.name + "' has no shape");
        refs[ref_key(r)] = add_input(l, shape, prefix);
      }
    }
    if (top && model.input_layers.is_object())
      for (const auto& f : ins) m_.info.input_keys.push_back(f.key);

    // Layers may be listed before the layers feeding a later call of theirs (shared layers): resolve calls
    // until nothing more can be built, as Keras' own reconstruct_from_config does.
    std::vector<std::vector<std::vector<TensorRef>>> calls(model.layers.size());
    std::vector<std::vector<bool>> done(model.layers.size());
    size_t pending = 0;
    for (size_t i = 0; i < model.layers.size(); ++i) {
      if (model.layers[i].cls == "InputLayer") continue;
      calls[i] = parse_inbound(model.layers[i], names, where_);
      done[i].assign(calls[i].size(), false);
      pending += calls[i].size();
    }
    bool progress = true;
    while (pending > 0 && progress) {
      progress = false;
      for (size_t i = 0; i < model.layers.size(); ++i) {
        const LayerSpec& l = model.layers[i];
        for (size_t k = 0; k < calls[i].size(); ++k) {
          if (done[i][k]) continue;
          std::vector<int> args;
          bool ready = true;
          for (const auto& r : calls[i][k]) {
            auto it = refs.find(ref_key(r));
            if (it == refs.end()) {
              ready = false;
              break;
            }
            args.push_back(it->second);
          }
          if (!ready) continue;
          if (args.empty()) format_error(where_, "layer '" + l.name + "' is called without inputs");
          if (l.is_model) {
            auto outs = build(l, args, prefix + l.name + (k ? "_call" + std::to_string(k) : "") + "/");
            const int index = static_cast<int>(k) + construction_nodes(l);
            for (size_t t = 0; t < outs.size(); ++t)
              refs[ref_key({l.name, index, static_cast<int>(t)})] = outs[t];
          } else {
            refs[ref_key({l.name, static_cast<int>(k), 0})] = add_layer(l, args, prefix, static_cast<int>(k));
          }
          done[i][k] = true;
          --pending;
          progress = true;
        }
      }
    }
    if (pending > 0) {
      for (size_t i = 0; i < model.layers.size(); ++i)
        for (size_t k = 0; k < calls[i].size(); ++k)
          if (!done[i][k])
            format_error(where_, "layer '" + model.layers[i].name +
                                     "' takes an input that no layer of the model produces (broken graph)");
    }
    // Outputs: output_layers in Keras' flat order. Keras 3 numbers a nested Functional's calls from 1 here (its
    // get_config counts a pre-existing node for Functional models, and functional_from_config subtracts it) but
    // from 0 in inbound_nodes; Keras 2 counts the construction node in both (construction_nodes).
    std::vector<FlatRef> outs_flat;
    flatten_refs(model.output_layers, "", true, &outs_flat, "model '" + model.name + "' output_layers", where_);
    if (outs_flat.empty()) format_error(where_, "functional model '" + model.name + "' has no outputs in output_layers");
    std::vector<int> outs;
    for (const auto& f : outs_flat) {
      TensorRef r = f.ref;
      auto l = by_name.find(r.layer);
      if (major_ >= 3 && l != by_name.end() && l->second->is_model && !l->second->sequential && r.node > 0) --r.node;
      auto it = refs.find(ref_key(r));
      if (it == refs.end()) format_error(where_, "output '" + r.layer + "' is not produced by the model");
      outs.push_back(it->second);
    }
    if (top && model.output_layers.is_object())
      for (const auto& f : outs_flat) m_.info.output_keys.push_back(f.key);
    return outs;
  }

  // Keras 2 (tf-keras and standalone) counts a nested model's own construction node: a model built from
  // inputs starts with one node, so its first call in the outer config is node 1 (tf-keras functional.py
  // `_should_skip_first_node`). Keras 3 numbers only the calls listed in the config.
  int construction_nodes(const LayerSpec& l) const {
    if (major_ >= 3 || !l.is_model) return 0;
    if (!l.sequential) return 1;
    if (l.layers.empty()) return 0;
    Shape unused;
    return l.layers[0].cls == "InputLayer" || stated_input_shape(l.layers[0].config, &unused, where_, l.name) ? 1 : 0;
  }

  int add_layer(const LayerSpec& l, const std::vector<int>& args, const std::string& prefix, int call) {
    Node n = make_node(l, major_, where_);
    n.name = prefix + l.name + (call ? "_call" + std::to_string(call) : "");
    n.inputs = args;
    const int id = static_cast<int>(m_.nodes.size());
    n.shared_from = first_call(l, id);
    m_.nodes.push_back(std::move(n));
    return id;
  }

  // Shared layers: every call of one Keras layer after the first points at the first call's node. A layer's calls
  // are one spec (several inbound nodes, or a nested model built once per call). A layer used inside a nested model
  // and outside it appears twice in the config, each copy with the same name, class, config and weights (legacy
  // h5 stores them twice; Keras' count_params() counts them once): those are the same layer too. Layers without
  // weights are matched only by spec, so two distinct weightless layers never merge.
  int first_call(const LayerSpec& l, int id) {
    auto it = first_.find(&l);
    if (it != first_.end()) return it->second;
    int found = -1;
    if (!l.weights.empty()) {
      auto range = by_name_.equal_range(l.name);
      for (auto c = range.first; c != range.second && found < 0; ++c)
        if (same_layer(*c->second.first, l)) found = c->second.second;
      by_name_.emplace(l.name, std::make_pair(&l, found >= 0 ? found : id));
    }
    first_[&l] = found >= 0 ? found : id;
    return found;
  }

  static bool same_layer(const LayerSpec& a, const LayerSpec& b) {
    auto bare = [](const json& config) {  // the input shape Keras states on a Sequential's first layer is not the
      json c = without_object_ids(config);  // layer's; nor is Keras 3's serialization bookkeeping
      if (c.is_object())
        for (const char* k : {"batch_input_shape", "batch_shape", "input_shape"}) c.erase(k);
      return c;
    };
    if (a.cls != b.cls || bare(a.config) != bare(b.config) || a.weights.size() != b.weights.size()) return false;
    for (size_t i = 0; i < a.weights.size(); ++i)
      if (a.weights[i].shape != b.weights[i].shape || a.weights[i].data != b.weights[i].data) return false;
    return true;
  }

  std::map<const LayerSpec*, int> first_;                                   // spec -> node of its first call
  std::multimap<std::string, std::pair<const LayerSpec*, int>> by_name_;    // weighted layers by name
};

}  // namespace

void build_graph(const LayerSpec& top, int keras_major, Model& model, const std::string& where) {
  GraphBuilder b(model, keras_major, where);
  try {
    model.outputs = b.build(top, {}, "");
  } catch (const json::exception& e) {
    format_error(where, std::string("the model config has a value of the wrong type (") + e.what() + ")");
  }
}

}  // namespace fkb::keras
