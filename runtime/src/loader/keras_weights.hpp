// Fill a LayerSpec tree's leaf weights from a Keras file (both layouts). See keras_weights.cpp.
#pragma once

#include <hdf5.h>

#include <string>

#include "loader/keras_config.hpp"
#include "loader/limits.hpp"

namespace fkb::keras {

/// Legacy layout: `group` is model_weights (full model) or the root (weights-only file).
/// Every weight is counted against `budget` before it is allocated.
void read_legacy_weights(hid_t group, const std::string& where, LayerSpec& model, int keras_major,
                         loader::WeightBudget& budget);
/// Keras 3 layout: `base` is "" for the top-level model.
void read_keras3_weights(hid_t file, const std::string& base, const std::string& where, LayerSpec& model,
                         int keras_major, loader::WeightBudget& budget);

}  // namespace fkb::keras
