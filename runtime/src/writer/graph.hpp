// The writer's view of a model: Keras layers (one per written layer, several calls when shared) lowered from the
// IR for one target flavour, before any file format is chosen. lower.cpp builds it, order.cpp sorts it as Keras
// does, config.cpp turns it into a model config, package_*.cpp write the files.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/keras_writer.hpp"
#include "fkb/model.hpp"
#include "loader/h5.hpp"

namespace fkb::writer {

using json = nlohmann::json;

/// The output of one call of one layer: Keras' keras_history [layer name, node index, tensor index 0].
struct TensorRef {
  int layer = -1;
  int node = 0;
};

/// One call of a layer (one Keras inbound node).
struct Call {
  std::vector<TensorRef> inputs;
  Shape out_shape;  ///< per-column shape of the call's output
};

/// One Keras variable as written: the IR array, the shape Keras declares for it, and its storage type.
struct Var {
  std::string role;     ///< "kernel", "bias", ... ("0", "1", ... for custom layers)
  const Array* value = nullptr;
  Shape shape;          ///< Keras' shape for the variable (may differ from value->shape by 1-sized axes)
  h5::StoreType store = h5::StoreType::Float32;
};

struct Layer {
  std::string cls;              ///< Keras class name ("Dense"; the bare class of a registered custom layer)
  std::string registered_name;  ///< registered custom layers: "package>Name"; empty for built-ins
  std::string name;
  json config = json::object();  ///< class-specific config keys (no name/trainable/dtype), in the target flavour
  std::string dtype = "float32";  ///< dtype policy name ("float32", "mixed_float16", "bfloat16", ...)
  json dtype_json;                ///< the source config's "dtype" as read (null when absent), kept when it fits
  bool trainable = true;
  bool custom = false;           ///< config is the user's, written back as it was read
  bool merge = false;            ///< called with a list of tensors (merge layers, Concatenate)
  std::vector<Var> vars;         ///< in Keras' variable order (what save_own_variables writes to .keras)
  /// Positions in `vars` in the order of layer.weights, which legacy .h5 files list (an int8 Dense creates its bias
  /// before its int8 kernel and scale); empty: the same as `vars`.
  std::vector<int> legacy_order;
  std::vector<Call> calls;       ///< InputLayer: one call with no inputs
  bool is_input() const { return cls == "InputLayer"; }
};

struct Graph {
  std::vector<Layer> layers;
  std::vector<TensorRef> inputs, outputs;
  std::vector<std::string> input_keys, output_keys;  ///< dict inputs/outputs (ModelInfo), else empty
  std::string name;
};

/// IR → Keras layers for `flavour` (activations Keras cannot name become their own layers; a shared layer's calls
/// become calls of one layer). Throws Unsupported naming the layer when the flavour cannot express it.
Graph lower(const Model& model, Flavour flavour);

/// Keras' model.layers order (keras/src/ops/function.py map_graph: operations by decreasing depth, ties by first
/// visit of a depth-first walk from the outputs): legacy .h5 weights are matched by this position and .keras
/// weights by per-class counters in this order, so both layouts line up.
std::vector<int> keras_order(const Graph& g);

/// The model config (what model.get_config() gives, wrapped in class_name/config) for `flavour`, layers in `order`.
json model_config(const Graph& g, const std::vector<int>& order, Flavour flavour);

/// Dtype policy name from a layer config's "dtype" (a string, a Keras 3 DTypePolicy or a tf-keras Policy object);
/// "float32" when absent.
std::string dtype_policy_name(const json& config);

/// Files.
void write_keras_zip(const Graph& g, const std::vector<int>& order, const json& config, const std::string& path);
void write_legacy_h5(const Graph& g, const std::vector<int>& order, const json& config, Flavour flavour,
                     const std::string& source_version, const std::string& path);

/// Write to path + ".fkb-tmp" and rename into place; a failure removes the temporary file.
std::string temp_name(const std::string& path);
void commit_file(const std::string& tmp, const std::string& path);

}  // namespace fkb::writer
