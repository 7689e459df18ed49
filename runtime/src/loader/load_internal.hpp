// Pieces of Model::load shared by the readers of each file kind (load.cpp, keras_zip.cpp) and by the fuzz
// targets (tests/fuzz), which feed them bytes without a file on disk.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "fkb/model.hpp"
#include "loader/keras_config.hpp"
#include "loader/limits.hpp"

namespace fkb {

/// "2.2.4-tf" -> 2, "3.5.0" -> 3; 0 when unknown.
int keras_major_of(const std::string& version);
/// Take keras_version / backend from a config document when the file did not say.
void take_keras_versions(ModelInfo& info, const keras::json& doc);
/// Build the graph from a spec tree with its weights and infer shapes; errors are prefixed with `where`.
void finish_model(Model& m, keras::LayerSpec& top, int major, const std::string& where);

/// Run `load`, turning what escapes the readers into FormatError naming `label`: a config value of another type
/// than Keras writes (nlohmann's json::value throws), and running out of memory.
Model load_guarded(const std::string& label, const std::function<Model()>& load);
/// A .keras zip on disk (loader/keras_zip.cpp). The caller holds h5::lock() and an h5::QuietErrors.
Model load_keras_zip(const std::string& path, const loader::Limits& limits);
/// A .keras zip held in memory; `label` names it in messages. Takes the HDF5 lock itself.
Model load_keras_zip_buffer(const std::vector<char>& bytes, const std::string& label, const Model::LoadOptions& options);
/// A legacy / weights-only HDF5 file held in memory (HDF5 file image); `label` names it. Takes the HDF5 lock.
Model load_h5_image(const std::vector<char>& image, const std::string& label, const Model::LoadOptions& options);

}  // namespace fkb
