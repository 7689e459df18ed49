// Writing models back as files Keras loads (the Runtime → Keras half of the bridge).
#pragma once

#include <string>

#include "fkb/model.hpp"

namespace fkb {

/// Save `model` as a Keras 3 file that `keras.saving.load_model` reads: a `.keras` zip (config.json,
/// metadata.json, model.weights.h5) or a legacy `.h5` (model_config + model_weights), chosen by the
/// extension of `path`. The model is written as one flat Functional model (nested models are already
/// inlined in the IR; "/" in their layer names becomes "_"). Activations Keras 3 cannot name as a string
/// are written as separate layers with the same math (e.g. Keras 2's hard_sigmoid as Rescaling + ReLU).
/// The file is written under a temporary name and renamed, so a failure leaves nothing behind.
/// Throws fkb::Error (InvalidArgument for an unknown extension, Unsupported for a layer Keras cannot
/// express, FileError when the file cannot be written).
void save_keras(const Model& model, const std::string& path);

}  // namespace fkb
