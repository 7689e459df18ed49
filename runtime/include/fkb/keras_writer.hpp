// Writing models back as files Keras loads (the Runtime → Keras half of the bridge).
#pragma once

#include <string>

#include "fkb/model.hpp"

namespace fkb {

/// Which Keras the written file is for.
enum class Flavour {
  Source,   ///< the source model's: tf-keras for a .h5 read from a Keras 2 / tf-keras file, else Keras 3
  Keras3,   ///< Keras 3 (keras.saving.load_model): .keras or legacy .h5
  TfKeras,  ///< tf-keras 2.x / standalone Keras 2 (tf_keras.models.load_model): legacy .h5 only; Keras 3 reads it too
};

/// "keras3" / "tf-keras" → Flavour; throws InvalidArgument naming the accepted values otherwise.
Flavour parse_flavour(const std::string& name);
/// The flavour `save_keras` uses for `model` written to `path` with `requested` (resolves Source).
Flavour resolve_flavour(const Model& model, const std::string& path, Flavour requested);

struct SaveOptions {
  Flavour flavour = Flavour::Source;
};

/// Save `model` as a file Keras loads: a `.keras` zip (config.json, metadata.json, model.weights.h5) or a legacy
/// `.h5` (model_config + model_weights), chosen by the extension of `path`, for the Keras of `options.flavour`.
/// The model is written as one flat Functional model (nested models are already inlined in the IR; "/" in their
/// layer names becomes "_"). What the source config says and Keras needs is kept: dtype policies (mixed_float16,
/// float16/bfloat16/float64 layers, with variables stored in the layer's variable dtype), custom layers' configs and
/// registered names, dict input/output keys, shared layers (one layer with several inbound nodes, weights once),
/// Normalization's axis (mean/variance in the shapes Keras' build gives) and invert. Activations the flavour cannot
/// name as a string are written as separate layers with the same math (e.g. Keras 2's hard_sigmoid as Rescaling +
/// ReLU for Keras 3). Attributes over HDF5's 64 KiB header limit (layer_names, weight_names) are split as Keras does.
/// The file is written under a temporary name and renamed, so a failure leaves nothing behind.
/// Throws fkb::Error (InvalidArgument for an unknown extension or a .keras file in the tf-keras flavour,
/// Unsupported for a layer the flavour cannot express, FileError when the file cannot be written).
void save_keras(const Model& model, const std::string& path, const SaveOptions& options);
inline void save_keras(const Model& model, const std::string& path) { save_keras(model, path, SaveOptions{}); }

}  // namespace fkb
