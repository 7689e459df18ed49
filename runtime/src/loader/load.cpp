// Model::load: detect the file kind and read it into the IR.
//   legacy HDF5 (.h5)          root attrs keras_version/backend/model_config + group model_weights
//   legacy weights-only (.h5)  root attr layer_names, no model_config (needs a config file)
//   Keras 3 weights (.weights.h5) group layers/..., no model_config (needs a config file)
//   Keras 3 zip (.keras)       config.json, metadata.json, model.weights.h5 (loader/keras_zip.cpp)
//   Keras 3 directory          the same three files, unzipped: model.save(path, zipped=False) (loader/keras_dir.cpp)
//   Keras 3 sharded weights    x.weights.json + shard .h5 files beside it (needs a config file; loader/keras_shards.cpp)
// Every reader enforces the loading policy (loader/limits.hpp, README "Loading policy").
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <new>
#include <sstream>
#include <sys/stat.h>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "loader/h5.hpp"
#include "loader/keras_config.hpp"
#include "loader/keras_weights.hpp"
#include "loader/limits.hpp"
#include "loader/load_internal.hpp"

namespace fkb {

using keras::json;

int keras_major_of(const std::string& version) {
  if (version.empty() || !std::isdigit(static_cast<unsigned char>(version[0]))) return 0;
  return std::atoi(version.c_str());
}

int guess_keras_major(const json& doc) {
  if (doc.contains("module")) return 3;
  if (doc.contains("config") && doc["config"].is_object() && doc["config"].contains("layers") &&
      doc["config"]["layers"].is_array() && !doc["config"]["layers"].empty() &&
      doc["config"]["layers"][0].contains("module"))
    return 3;
  return 2;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct ConfigDoc {
  json doc;
  std::string where;
};

ConfigDoc read_config_file(const std::string& path, const loader::Limits& lim) {
  const std::string text = loader::read_text_file(path, "model config", lim.max_config_bytes);
  const bool yaml = ends_with(path, ".yaml") || ends_with(path, ".yml");
  return {keras::parse_config_text(text, path, yaml, lim), path};
}

}  // namespace

json read_weights_only_config(const std::string& config_path, const loader::Limits& lim) {
  return read_config_file(config_path, lim).doc;
}

void finish_model(Model& m, keras::LayerSpec& top, int major, const std::string& where) {
  keras::build_graph(top, major, m, where);
  keras::mark_quantized_nodes(m);
  m.info.model_class = top.cls;
  m.info.name = top.name;
  m.info.keras_major = major;
  try {
    m.infer_shapes();
  } catch (const Error& e) {
    throw_error(e.status(), where + ": " + e.what());
  }
}

// Keras files put the version in the file; weights-only configs from to_json() carry it too.
void take_keras_versions(ModelInfo& info, const json& doc) {
  if (info.keras_version.empty() && doc.contains("keras_version") && doc["keras_version"].is_string())
    info.keras_version = doc["keras_version"].get<std::string>();
  if (info.backend.empty() && doc.contains("backend") && doc["backend"].is_string())
    info.backend = doc["backend"].get<std::string>();
}

namespace {

// `path` names the file in messages (for an in-memory image: its label).
Model load_h5_file(const h5::File& f, const std::string& path, const Model::LoadOptions& opt,
                   const loader::Limits& lim) {
  const hid_t root = f.id();
  Model m;
  m.info.path = path;
  if (h5::has_attr(root, "keras_version")) m.info.keras_version = h5::attr_string(root, "keras_version", path);
  if (h5::has_attr(root, "backend")) m.info.backend = h5::attr_string(root, "backend", path);

  const bool full = h5::has_attr(root, "model_config");
  const bool legacy_weights = h5::has_attr(root, "layer_names") || h5::has_attr(root, "layer_names0");
  const bool k3_weights = h5::is_group(root, "layers", path, "group 'layers'");
  json doc;
  std::string where = path;
  if (full) {
    doc = keras::parse_config_text(
        h5::attr_string(root, "model_config", path, lim.max_config_bytes, "FKB_MAX_CONFIG_BYTES"), path, false, lim);
    m.info.format = "h5";
  } else if (legacy_weights || k3_weights) {
    if (opt.config_path.empty())
      throw_error(Status::FormatError,
                  "'" + path +
                      "' holds weights only (it was written by save_weights and has no model_config); pass the "
                      "architecture as a Keras JSON or YAML file (model.to_json()) with --config / config_path");
    ConfigDoc c = read_config_file(opt.config_path, lim);
    doc = c.doc;
    where = path + " (config " + opt.config_path + ")";
    m.info.format = "weights_h5";
  } else {
    throw_error(Status::FormatError, "'" + path +
                                         "' is an HDF5 file but not a Keras model: it has no model_config attribute "
                                         "and no Keras weights layout");
  }
  take_keras_versions(m.info, doc);
  int major = keras_major_of(m.info.keras_version);
  if (major == 0) major = guess_keras_major(doc);

  keras::LayerSpec top = keras::parse_model_config(doc, where);
  keras::check_quantized_tree(top, where);
  keras::check_supported_tree(top, where);
  loader::WeightBudget budget(lim.max_weight_bytes, path);
  if (full) {
    if (!h5::is_group(root, "model_weights", path, "group 'model_weights'"))
      throw_error(Status::FormatError, "'" + path + "' has a model_config but no model_weights group");
    h5::Handle g = h5::open_group(root, "model_weights", path, "group 'model_weights'");
    keras::read_legacy_weights(g.get(), where, top, major, budget);
  } else if (legacy_weights) {
    keras::read_legacy_weights(root, where, top, major, budget);
  } else {
    keras::read_keras3_weights(root, "", where, top, major, budget);
  }
  finish_model(m, top, major, where);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------------

}  // namespace

Model load_guarded(const std::string& label, const std::function<Model()>& load) {
  try {
    return load();
  } catch (const json::exception& e) {  // a config value of another type than Keras writes (json::value)
    throw_error(Status::FormatError, "'" + label + "': the model config has a value of the wrong type (" +
                                         std::string(e.what()) + ")");
  } catch (const std::bad_alloc&) {
    throw_error(Status::FormatError, "'" + label +
                                         "': out of memory while loading: the file declares more data than this "
                                         "process can allocate (see LoadLimits / FKB_MAX_WEIGHT_BYTES)");
  }
}

Model load_h5_image(const std::vector<char>& image, const std::string& label, const Model::LoadOptions& options) {
  const loader::Limits lim = loader::resolve(options.limits);
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  return load_guarded(label, [&] {
    h5::File f = h5::File::open_image(image, label);
    return load_h5_file(f, label, options, lim);
  });
}

Model Model::load(const std::string& path, const LoadOptions& options) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw_error(Status::FileError, "cannot open model '" + path + "': " + std::strerror(errno));
  const loader::Limits lim = loader::resolve(options.limits);
  if (S_ISDIR(st.st_mode)) {
    std::lock_guard<std::recursive_mutex> guard(h5::lock());
    h5::QuietErrors quiet;
    return load_guarded(path, [&] { return load_keras_dir(path, lim); });
  }
  unsigned char magic[8] = {0};
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw_error(Status::FileError, "cannot open model '" + path + "': " + std::strerror(errno));
    f.read(reinterpret_cast<char*>(magic), sizeof magic);
    if (f.gcount() == 0) throw_error(Status::FormatError, "'" + path + "' is empty");
  }
  static const unsigned char hdf5_sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  const bool is_zip = magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
  // A JSON document: sharded weights (x.weights.json). Keras writes it with json.dumps, so it starts with '{'.
  size_t first = 0;
  while (first < sizeof magic && std::isspace(magic[first])) ++first;
  const bool is_json = first < sizeof magic && magic[first] == '{';

  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  try {
    if (is_zip) return load_keras_zip(path, lim);
    if (is_json) return load_guarded(path, [&] { return load_sharded_weights(path, options, lim); });
    if (std::memcmp(magic, hdf5_sig, 8) == 0 || H5Fis_hdf5(path.c_str()) > 0) {
      h5::File f = h5::File::open(path);
      return load_h5_file(f, path, options, lim);
    }
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw_error(Status::FormatError, "'" + path +
                                         "': out of memory while loading: the file declares more data than this "
                                         "process can allocate (see LoadLimits / FKB_MAX_WEIGHT_BYTES)");
  } catch (const std::exception& e) {
    throw_error(Status::FormatError, "'" + path + "': " + e.what());
  }
  throw_error(Status::FormatError, "'" + path +
                                       "' is neither an HDF5 Keras file (.h5, .weights.h5) nor a Keras zip "
                                       "(.keras); FKB reads those, Keras model directories (model.save(path, "
                                       "zipped=False)) and sharded weights (.weights.json with --config)");
}

}  // namespace fkb
