// Custom layers: a Keras layer class FKB does not know, implemented once in C++ (or through the C API, in C or
// Fortran) and registered by class name. Keras files holding that class then load and run on every backend.
//
//   fkb::CustomLayer st;
//   st.output_shape = [](const std::vector<fkb::Shape>& in, const std::string&) { return in.at(0); };
//   st.prepare = [](const fkb::CustomLayerInfo& l) {       // once per plan: read the Keras config
//     return std::make_shared<float>(nlohmann::json::parse(l.config_json).value("scale", 1.0f));
//   };
//   st.cpu = [](const fkb::CustomLayerInfo& l, const float* const* x, int64_t ncol, float* y) {
//     const float s = *static_cast<const float*>(l.state);
//     for (int64_t i = 0; i < ncol * l.input_sizes[0]; ++i) y[i] = s * std::tanh(x[0][i]);
//   };
//   fkb::register_custom_layer("ScaledTanh", st);   // matches "ScaledTanh" and "package>ScaledTanh"
//   fkb::Model m = fkb::Model::load("custom.keras");
//
// Matching: Keras 3 writes a registered class as "package>Name" in .h5 files and as "Name" (with
// "registered_name": "package>Name") in .keras files. A layer registered as "Name" matches both "Name" and
// any "package>Name"; one registered as "package>Name" matches "package>Name" and the bare "Name".
//
// Weights: a custom layer's Keras variables are read in the file's order (all of them: in a .keras file the
// datasets vars/0, vars/1, ...; in an .h5 file the layer's weight_names) and handed over as
// CustomLayerInfo::weights. In legacy .h5 files this works for custom layers at the top level of the model
// (inside nested models their variables cannot be told apart from their siblings').
//
// Execution: functions are called on blocks of columns (`ncol` <= the plan's block or chunk size), with data
// in FKB's layout: input i is row-major [ncol][input_sizes[i]] float32, the output [ncol][output_size].
// Without `thread_safe`, calls are serialized (one at a time per registered implementation; a callback may call
// predict itself, on any model); with it, the CPU backend may
// call `cpu` from several threads at once on different blocks. The functions must not throw across a C
// boundary; exceptions they throw are reported by predict() with the layer's name.
// CUDA: `cuda` (optional) receives device pointers and the plan's stream and must only enqueue work on that
// stream (the call is recorded into the plan's CUDA graph). Without `cuda`, the CUDA backend stages the layer
// through pinned host memory: copy to the host, call `cpu` in a host node (cudaLaunchHostFunc), copy back —
// CUDA graphs stay enabled.
//
// The registry is process-wide and thread-safe. Plans keep the implementation they were compiled with, so
// unregistering or re-registering a class affects models loaded and plans compiled afterwards only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fkb/model.hpp"

namespace fkb {

/// What an implementation is told about the layer it computes (built once per compiled plan).
struct CustomLayerInfo {
  std::string class_name;             ///< the class as written in the file ("ScaledTanh" or "fkbtest>ScaledTanh")
  std::string layer_name;             ///< the Keras layer name ("scaled_tanh"; nested models give "outer/inner")
  std::string config_json;            ///< the layer's Keras config object as JSON text (e.g. {"scale": 1.7, ...})
  std::vector<Shape> input_shapes;    ///< per-column shapes of the inputs (batch dimension excluded)
  std::vector<int64_t> input_sizes;   ///< floats per column of each input
  Shape output_shape;                 ///< per-column output shape (what output_shape returned)
  int64_t output_size = 0;            ///< floats per column of the output
  std::vector<const Array*> weights;  ///< the layer's Keras variables in the file's order (owned by the plan)
  void* state = nullptr;              ///< what `prepare` returned (nullptr without `prepare`)
};

/// The implementation of one custom layer class. `output_shape` and `cpu` are required.
struct CustomLayer {
  /// Per-column output shape from the per-column input shapes and the layer's config JSON. Called at load.
  /// Throw fkb::Error (or any std::exception) to reject a configuration; every dimension must be >= 1.
  std::function<Shape(const std::vector<Shape>& input_shapes, const std::string& config_json)> output_shape;
  /// Optional, once per compiled plan: parse the config / weights into a state object kept by the plan and
  /// passed as CustomLayerInfo::state.
  std::function<std::shared_ptr<void>(const CustomLayerInfo& layer)> prepare;
  /// The host implementation: inputs[i] is [ncol][layer.input_sizes[i]], output [ncol][layer.output_size].
  std::function<void(const CustomLayerInfo& layer, const float* const* inputs, int64_t ncol, float* output)> cpu;
  /// Optional device implementation: device pointers, `stream` is the plan's cudaStream_t. Enqueue only.
  std::function<void(const CustomLayerInfo& layer, const float* const* inputs, int64_t ncol, float* output,
                     void* stream)>
      cuda;
  /// Whether `cpu` may run concurrently on different blocks (C++ layers: usually yes; C/Fortran callbacks
  /// registered through fkb_register_layer: no).
  bool thread_safe = true;
};

/// Register an implementation for a Keras class name ("Name" or "package>Name"). Throws InvalidArgument when
/// the name is empty, the class is already registered (unregister it first), a name of a built-in layer, or
/// `output_shape`/`cpu` is missing.
void register_custom_layer(const std::string& class_name, CustomLayer layer);
/// Remove a registration (exact name as registered). Returns false when it was not registered.
bool unregister_custom_layer(const std::string& class_name);
/// The implementation that serves a class as written in a file (see "Matching" above); nullptr when none.
std::shared_ptr<const CustomLayer> find_custom_layer(const std::string& file_class_name);
/// Names currently registered, sorted.
std::vector<std::string> registered_custom_layers();

/// The CustomLayerInfo of a Custom node of a model whose shapes are inferred (what backends build per plan;
/// `state` is left null: the backend calls `prepare`). Throws Unsupported when the class is not registered.
CustomLayerInfo make_custom_layer_info(const Model& model, const Node& node);
/// A Custom node's Keras variables in the file's order (roles "0", "1", ... in Node::weights).
std::vector<const Array*> custom_layer_weights(const Node& node);

}  // namespace fkb
