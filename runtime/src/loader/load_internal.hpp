// Pieces of Model::load shared by the readers of each file kind (load.cpp, keras_zip.cpp) and by the fuzz
// targets (tests/fuzz), which feed them bytes without a file on disk.
#pragma once

#include <hdf5.h>

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
/// The three parts of Keras 3's saving_lib layout (a .keras zip, or the directory model.save(path, zipped=False)
/// writes), and how messages name them.
struct Keras3Parts {
  std::string config;    ///< config.json's text
  std::string metadata;  ///< metadata.json's text; empty when absent
  std::string path;      ///< the zip or directory
  std::string config_label, metadata_label;
  std::string format;  ///< ModelInfo::format: "keras" or "keras_dir"
};
/// The model from its parts (loader/keras_zip.cpp): the config is parsed and checked first; then `with_weights` opens
/// model.weights.h5 (or throws when there is none) and calls its argument with the open file.
Model keras3_model_from_parts(const Keras3Parts& parts,
                              const std::function<void(const std::function<void(hid_t)>&)>& with_weights,
                              const loader::Limits& lim);
/// Whether `path` is a directory Keras would load as a model (it holds config.json): not an ensemble directory.
bool is_keras_model_dir(const std::string& path);
/// The directory model.save(path, zipped=False) writes (loader/keras_dir.cpp). The caller holds h5::lock() and an
/// h5::QuietErrors.
Model load_keras_dir(const std::string& dir, const loader::Limits& limits);
/// Sharded weights: the x.weights.json that save_weights(..., max_shard_size=...) writes, with its shard files and the
/// architecture from options.config_path (loader/keras_shards.cpp). The caller holds h5::lock() and h5::QuietErrors.
Model load_sharded_weights(const std::string& json_path, const Model::LoadOptions& options,
                           const loader::Limits& limits);
/// The architecture for a weights-only source (LoadOptions::config_path, JSON or YAML), parsed under the limits.
keras::json read_weights_only_config(const std::string& config_path, const loader::Limits& limits);
/// Keras 3 configs carry "module" keys on layers; Keras 2 configs never do.
int guess_keras_major(const keras::json& doc);
/// A .keras zip on disk (loader/keras_zip.cpp). The caller holds h5::lock() and an h5::QuietErrors.
Model load_keras_zip(const std::string& path, const loader::Limits& limits);
/// A .keras zip held in memory; `label` names it in messages. Takes the HDF5 lock itself.
Model load_keras_zip_buffer(const std::vector<char>& bytes, const std::string& label, const Model::LoadOptions& options);
/// A legacy / weights-only HDF5 file held in memory (HDF5 file image); `label` names it. Takes the HDF5 lock.
Model load_h5_image(const std::vector<char>& image, const std::string& label, const Model::LoadOptions& options);

}  // namespace fkb
