// The device-independent model IR: a DAG of layers with float32 weights, in execution order.
//
// Loaders produce it, backends compile it, writers serialize it. It knows nothing about devices.
// Shapes are per column (the batch dimension is never stored): a Dense on 94 features has shape {94};
// a Conv1D output over 30 levels with 8 filters has shape {30, 8} (Keras channels_last). Data of one
// column is contiguous and row-major over that shape, so Flatten and Reshape never move data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fkb/activations.hpp"

namespace fkb {

using Shape = std::vector<int64_t>;

/// Number of elements of a per-column shape (1 for the empty shape).
int64_t shape_size(const Shape& s);
/// "(30, 8)" style text.
std::string shape_str(const Shape& s);

/// A float32 array (weights). Row-major in Keras' own axis order (Dense kernel: [in, out]; Conv1D
/// kernel: [kernel_size, in_channels, filters]).
struct Array {
  Shape shape;
  std::vector<float> data;
  int64_t size() const { return static_cast<int64_t>(data.size()); }
};

/// What a node computes.
enum class OpKind {
  Input,          ///< a model input; no computation
  Dense,          ///< y = act(x W + b) over the last axis (rank-2 inputs: per step/level)
  Activation,     ///< element-wise activation (Activation, LeakyReLU, ReLU, ELU, PReLU, Softmax layers)
  Dropout,        ///< identity at inference (also GaussianNoise/GaussianDropout/AlphaDropout, SpatialDropout1D)
  BatchNorm,      ///< (x - mean) / sqrt(var + eps) * gamma + beta over `axis`
  Normalization,  ///< (x - mean) / max(sqrt(var), epsilon=1e-7) (Keras Normalization); `invert`: x * sqrt(var) + mean.
                  ///< mean/variance have the node's shape with 1 on axes Keras does not normalize over, so they
                  ///< broadcast (axis=-1: {features}; axis=None: {} or all ones, one scalar for every element)
  Rescaling,      ///< x * scale + offset
  Add,            ///< merge layers (Add ... Minimum): element-wise over inputs whose per-column shapes broadcast
  Subtract,       ///< as NumPy/Keras do (right-aligned; a 1 stretches): (2,) with (1,), (30, 8) with (30, 1) or
  Multiply,       ///< (1, 8). The node's shape is the broadcast shape.
  Average,
  Maximum,
  Minimum,
  Concatenate,    ///< along `axis` (normalized to a non-negative per-column axis)
  Flatten,        ///< identity on data; shape becomes {size}
  Reshape,        ///< identity on data; shape becomes `target_shape`
  Conv1D,         ///< 1-D convolution over the first per-column axis (channels_last)
  Custom,         ///< a layer class registered by the user (not executed by the built-in backends)
  /// Produced only by the graph optimizer (fkb::opt, runtime/src/opt/): BatchNormalization, Rescaling and
  /// Normalization in one form, y = x * scale + shift, or y = (x - shift) * scale when `subtract_first` (Keras
  /// Normalization's form). constants["scale"] and constants["shift"] hold one value per element of the node's
  /// shape. Never loaded from or written to a Keras file.
  Affine,
};

const char* op_name(OpKind op);

/// Add, Subtract, Multiply, Average, Maximum, Minimum: element-wise merges of broadcast inputs.
inline bool is_merge(OpKind op) {
  return op == OpKind::Add || op == OpKind::Subtract || op == OpKind::Multiply || op == OpKind::Average ||
         op == OpKind::Maximum || op == OpKind::Minimum;
}

enum class Padding { Valid, Same, Causal };

/// The activation a node applies after its main operation.
struct Activation {
  ActKind kind = ActKind::Linear;
  ActParams params;
  std::string keras_name = "linear";  ///< as written in the file, for messages and inspect
};

/// One layer application. A Keras layer called twice (shared weights) becomes two nodes.
struct Node {
  std::string name;         ///< Keras layer name; nested models give "outer/inner"
  std::string keras_class;  ///< Keras class name as written in the config ("Dense", "LeakyReLU", ...)
  OpKind op = OpKind::Input;
  std::vector<int> inputs;  ///< indices of producer nodes (earlier in Model::nodes)
  Shape shape;              ///< output shape per column, filled by shape inference

  Activation activation;    ///< Dense/Conv1D activation, or the Activation node's function

  // Dense / Conv1D
  int64_t units = 0;        ///< Dense units, Conv1D filters
  bool use_bias = true;
  int64_t kernel_size = 1, stride = 1, dilation = 1;
  Padding padding = Padding::Valid;

  // BatchNorm / Normalization / Concatenate / Softmax
  int axis = -1;            ///< per-column axis, negative counts from the end (converted at load)
  float epsilon = 1e-3f;

  Shape target_shape;       ///< Reshape

  bool invert = false;      ///< Normalization(invert=True): de-normalizes, y = mean + x * max(sqrt(variance), 1e-7) (Keras)

  /// Keras 3 int8-quantized Dense (model.quantize("int8")): weights["kernel"] holds the int8 values (exact in
  /// float32) and weights["kernel_scale"] one scale per unit. Keras quantizes each column's inputs to int8 too
  /// (its AbsMaxQuantizer over the last axis) and divides the integer product by both scales; backends do the
  /// same so the outputs match Keras, not a dequantized float model.
  bool quantized_int8 = false;

  /// A Keras layer called several times (shared weights) becomes one node per call, each with a copy of the
  /// weights. Every call after the first holds the index of the first call's node here (-1: the first or only
  /// call). Keras counts the layer's parameters once (Model::param_count does too) and writers write one layer
  /// with several inbound nodes.
  int shared_from = -1;

  // Set by the graph optimizer (runtime/src/opt/) on the graph it hands to backends; loaders leave the defaults.
  bool subtract_first = false;        ///< Affine: y = (x - shift) * scale (Keras Normalization), else x * scale + shift
  OpKind affine_of = OpKind::Input;   ///< Affine: the Keras op it came from (BatchNorm, Normalization, Rescaling)
  /// Add: the input (index into `inputs`) produced by a linear Dense that nothing else reads; a backend may let that
  /// GEMM accumulate onto the other operands instead of running a separate add (-1: none).
  int accumulate_input = -1;
  /// Concatenate along the last axis: per input, 1 when its producer may write it straight into its slice of the
  /// output (read by no Reshape, not a model input or output, not a Concatenate/Custom/Reshape result, given once,
  /// not claimed by an earlier Concatenate). Empty: no hint.
  std::vector<uint8_t> concat_in_place;

  /// Keras variables by role: "kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance",
  /// "mean", "variance", "count" (adapted Normalization; count is unused), "alpha" (PReLU).
  /// These are what Keras' count_params() counts.
  std::map<std::string, Array> weights;
  /// Values that come from the layer config, not from Keras variables (not counted as parameters):
  /// "scale", "offset" (Rescaling, size 1 = broadcast, else per last axis), "mean", "variance"
  /// (Normalization built with mean/variance arguments).
  std::map<std::string, Array> constants;

  /// The array of a role from `weights`, else from `constants`; nullptr when absent. Use this in backends.
  const Array* find(const std::string& role) const;

  std::string config_json;  ///< the layer's Keras config as JSON text (kept for custom layers and writers)

  int64_t param_count() const;
};

/// Where a model came from.
struct ModelInfo {
  std::string path;            ///< file it was loaded from
  std::string format;          ///< "keras" (Keras 3 zip), "h5" (legacy HDF5), "weights_h5" (+ config file)
  std::string keras_version;   ///< as written in the file ("2.2.4-tf", "3.5.0"); empty when absent
  std::string backend;         ///< "tensorflow", "jax", ... when recorded
  std::string model_class;     ///< top-level class: "Sequential", "Functional", "Model"
  std::string name;            ///< Keras model name
  int keras_major = 0;         ///< 2 or 3 (decides version-dependent semantics such as hard_sigmoid)
  /// Models built with dict inputs/outputs (keras.Input dicts, Model(inputs={...}, outputs={...})): the dict
  /// keys in Keras' flat order (sorted keys), one per Model::inputs / Model::outputs entry. Empty for lists.
  std::vector<std::string> input_keys, output_keys;
};

/// A loaded model. Value type: copying copies the weights.
/// Limits the loader enforces on every file it reads (README "Loading policy: what FKB refuses"). A model file is
/// untrusted input: the limits keep a crafted file from exhausting memory or time before FKB refuses it. The
/// defaults are far above any real Keras model; 0 means "the default" (or the environment variable, where one is
/// named). A file over a limit is refused with fkb::Error (Status::FormatError) naming the file, the object and
/// the limit.
struct LoadLimits {
  /// Sum of all weights of one model, in bytes as float32 (4 bytes per value). Default 16 GiB, or the
  /// environment variable FKB_MAX_WEIGHT_BYTES (a byte count; suffixes K, M, G, T are powers of 1024).
  uint64_t max_weight_bytes = 0;
  /// One JSON or YAML document (model config, config.json, metadata.json, weights-only config, ensemble YAML),
  /// in bytes. Default 64 MiB, or FKB_MAX_CONFIG_BYTES.
  uint64_t max_config_bytes = 0;
  /// Nesting depth of a JSON/YAML document ({"a": [ ... ]} is 2). Default 512.
  int max_config_depth = 0;
  /// Values in a JSON/YAML document after YAML aliases are expanded (the "billion laughs" pattern). Default
  /// 10 000 000.
  uint64_t max_config_values = 0;
};

class Model {
 public:
  struct LoadOptions {
    std::string config_path;  ///< architecture JSON/YAML for weights-only files
    LoadLimits limits;        ///< what the loader refuses (defaults: see LoadLimits)
  };

  /// Load a Keras file (.h5 legacy, .keras zip, or weights-only .h5 with options.config_path).
  /// Throws fkb::Error with a message naming the file and what is wrong.
  static Model load(const std::string& path, const LoadOptions& options);
  static Model load(const std::string& path) { return load(path, LoadOptions{}); }

  std::vector<Node> nodes;   ///< topological (execution) order
  std::vector<int> inputs;   ///< node indices of the model inputs, in Keras' input order
  std::vector<int> outputs;  ///< node indices of the model outputs, in Keras' output order
  ModelInfo info;

  int64_t num_inputs() const { return static_cast<int64_t>(inputs.size()); }
  int64_t num_outputs() const { return static_cast<int64_t>(outputs.size()); }
  /// Features per column of input/output i (product of its per-column shape).
  int64_t input_size(int i = 0) const;
  int64_t output_size(int i = 0) const;
  const Shape& input_shape(int i = 0) const;
  const Shape& output_shape(int i = 0) const;

  int64_t param_count() const;
  /// Floating-point operations per column (multiply-add = 2), over all nodes.
  int64_t flops_per_column() const;
  /// Human-readable summary (like Keras' model.summary()).
  std::string summary() const;

  /// Recompute every node's shape from the inputs and check weights against them. Throws on mismatch.
  void infer_shapes();
  /// Check the graph is well formed (indices in range, topological, inputs/outputs set).
  void validate() const;
};

/// FLOPs of one node per column.
int64_t node_flops(const Model& m, const Node& n);

}  // namespace fkb
