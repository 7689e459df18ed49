// Which layers of a Keras model FKB can run, layer by layer, without building the model: what `fkb inspect`
// shows when Model::load refuses a model as Unsupported (issue 12 kind 10: every layer listed, each unsupported
// one marked with its reason, not just the first).
#pragma once

#include <string>
#include <vector>

#include "fkb/model.hpp"

namespace fkb::loader {

/// One layer of the model's config, in Keras' model.layers order; nested models are listed, then their layers
/// with the path "outer/inner".
struct LayerSupport {
  std::string path;    ///< "dense", or "tower/double" inside the nested model "tower"
  std::string cls;     ///< Keras class name ("Dense", "Lambda", "Sequential", ...)
  bool ok = true;      ///< FKB runs this layer class with this config
  std::string reason;  ///< why not (empty when ok): the loader's own message, without the file name and class list
};

/// The support report of a model file: a Keras 3 .keras zip or unzipped model directory, a legacy .h5, or a
/// weights-only file whose architecture is `options.config_path`. Reads only the config (no weights), under the
/// loading policy's limits. Throws FileError/FormatError when the config itself cannot be read.
std::vector<LayerSupport> support_report(const std::string& path, const Model::LoadOptions& options);

}  // namespace fkb::loader
