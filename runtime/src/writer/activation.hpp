// Activations as the target flavour names them: a string for a Dense/Conv1D/Activation config, or the layers that
// compute the same function when the flavour has no name for it.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/activations.hpp"
#include "fkb/keras_writer.hpp"
#include "fkb/model.hpp"

namespace fkb::writer {

/// The flavour's string for `a` ("relu", "hard_sigmoid", ...), or "" when it needs layers.
std::string activation_string(const Activation& a, Flavour flavour);

struct ActivationLayer {
  std::string cls;               ///< "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Rescaling"
  nlohmann::json config;         ///< class-specific keys in the flavour's spelling
  std::string suffix;            ///< name suffix of the second and later layers ("clip")
};

/// The layers (applied in order) computing `a` in `flavour`. Throws Unsupported naming `layer` when there are none.
std::vector<ActivationLayer> activation_layers(const Activation& a, Flavour flavour, const std::string& layer);

}  // namespace fkb::writer
