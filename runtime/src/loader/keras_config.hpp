// Keras model configs (JSON, or YAML converted to JSON) → a tree of layer specs → the IR graph.
//
// Absorbs the differences between Keras 2.1–2.x, tf-keras and Keras 3 configs (DESIGN.md "Config
// differences to absorb").
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/model.hpp"
#include "loader/config_text.hpp"
#include "loader/limits.hpp"

namespace fkb::keras {

using json = nlohmann::json;

/// One Keras layer as written in a config; models (Sequential/Functional) nest their layers.
struct LayerSpec {
  std::string name;
  std::string cls;             ///< class_name ("Dense", "Sequential", "Functional", "Model", ...)
  json config;                 ///< the layer's own config object
  json inbound_nodes;          ///< Functional parent only: how this layer is called
  bool trainable = true;
  bool is_model = false;
  bool sequential = false;
  std::vector<LayerSpec> layers;  ///< models: the layers in Keras' model.layers order (InputLayers included)
  json input_layers, output_layers;  ///< Functional: [[name, node, tensor], ...]
  std::vector<Array> weights;        ///< leaf layers: own variables in Keras order (set by the weight readers)
  std::vector<std::string> weight_names;  ///< names from the file, when it has them (for messages/checks)
};

/// Parse a config document: {"class_name": ..., "config": ...} (model_config attribute, config.json, to_json()).
/// `where` names the file in messages.
LayerSpec parse_model_config(const json& doc, const std::string& where);


/// Role and trainability of a leaf layer's own variables, in the order Keras creates them.
struct VarSpec {
  std::string role;  ///< "kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance", "alpha", "mean", ...
  bool trainable;
};
std::vector<VarSpec> own_variables(const LayerSpec& layer, int keras_major);

/// Whether `cls` is a layer class FKB implements itself (Dense, ..., InputLayer and the model classes).
bool is_builtin_class(const std::string& cls);
/// Whether a leaf layer's class is served by a registered custom layer (fkb/custom_layer.hpp).
bool is_registered_custom(const LayerSpec& layer);

/// Whether FKB knows this layer class (Input, Dense, ... and the models). Throws Unsupported otherwise,
/// naming the layer, its class and the supported classes.
void check_supported(const LayerSpec& layer, const std::string& where);
/// Checks the whole tree.
void check_supported_tree(const LayerSpec& model, const std::string& where);

/// Build the IR (nodes, inputs, outputs) from a spec tree whose leaf weights are filled (keras_graph.cpp).
void build_graph(const LayerSpec& top, int keras_major, Model& model, const std::string& where);

/// One leaf layer's IR node (op, config values, weights by role); name, inputs and shape are left to the caller.
/// Throws Unsupported for a class FKB does not run, FormatError when weights and config disagree.
Node make_node(const LayerSpec& layer, int keras_major, const std::string& where);

// Helpers shared by the config and graph readers.
/// Throws fkb::Error(FormatError) "where: what".
[[noreturn]] void format_error(const std::string& where, const std::string& what);
/// A JSON value for a message: one line, at most 200 characters.
std::string brief(const json& j);
/// "class_name" of a config object; empty when absent.
std::string class_of(const json& layer);
/// The per-column input shape stated on a layer config (batch_input_shape, batch_shape or input_shape), if any.
bool stated_input_shape(const json& cfg, Shape* out, const std::string& where, const std::string& layer);

/// `j` without Keras 3's "shared_object_id" entries: serialization bookkeeping that differs between the two copies
/// of one layer written inside and outside a nested model.
json without_object_ids(const json& j);

/// Keras' naming.to_snake_case (used for .keras weight paths).
std::string to_snake_case(const std::string& name);

}  // namespace fkb::keras
