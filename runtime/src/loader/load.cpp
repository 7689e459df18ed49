// Model::load: detect the file kind and read it into the IR.
//   legacy HDF5 (.h5)          root attrs keras_version/backend/model_config + group model_weights
//   legacy weights-only (.h5)  root attr layer_names, no model_config (needs a config file)
//   Keras 3 weights (.weights.h5) group layers/..., no model_config (needs a config file)
//   Keras 3 zip (.keras)       config.json, metadata.json, model.weights.h5
#include <zip.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <sys/stat.h>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "loader/h5.hpp"
#include "loader/keras_config.hpp"
#include "loader/keras_weights.hpp"

namespace fkb {

namespace {

using keras::json;

int major_of(const std::string& version) {
  if (version.empty() || !std::isdigit(static_cast<unsigned char>(version[0]))) return 0;
  return std::atoi(version.c_str());
}

// Keras 3 configs carry "module" keys on layers; Keras 2 configs never do.
int guess_major(const json& doc) {
  if (doc.contains("module")) return 3;
  if (doc.contains("config") && doc["config"].is_object() && doc["config"].contains("layers") &&
      doc["config"]["layers"].is_array() && !doc["config"]["layers"].empty() &&
      doc["config"]["layers"][0].contains("module"))
    return 3;
  return 2;
}

std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error(Status::FileError, "cannot open " + what + " '" + path + "': " + std::strerror(errno));
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct ConfigDoc {
  json doc;
  std::string where;
};

ConfigDoc read_config_file(const std::string& path) {
  const std::string text = read_text_file(path, "model config");
  const bool yaml = ends_with(path, ".yaml") || ends_with(path, ".yml");
  return {keras::parse_config_text(text, path, yaml), path};
}

void finish(Model& m, keras::LayerSpec& top, int major, const std::string& where) {
  keras::build_graph(top, major, m, where);
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
void take_versions(ModelInfo& info, const json& doc) {
  if (info.keras_version.empty() && doc.contains("keras_version") && doc["keras_version"].is_string())
    info.keras_version = doc["keras_version"].get<std::string>();
  if (info.backend.empty() && doc.contains("backend") && doc["backend"].is_string())
    info.backend = doc["backend"].get<std::string>();
}

Model load_h5(const std::string& path, const Model::LoadOptions& opt) {
  h5::File f = h5::File::open(path);
  const hid_t root = f.id();
  Model m;
  m.info.path = path;
  if (h5::has_attr(root, "keras_version")) m.info.keras_version = h5::attr_string(root, "keras_version", path);
  if (h5::has_attr(root, "backend")) m.info.backend = h5::attr_string(root, "backend", path);

  const bool full = h5::has_attr(root, "model_config");
  const bool legacy_weights = h5::has_attr(root, "layer_names") || h5::has_attr(root, "layer_names0");
  const bool k3_weights = h5::is_group(root, "layers");
  json doc;
  std::string where = path;
  if (full) {
    doc = keras::parse_config_text(h5::attr_string(root, "model_config", path), path, false);
    m.info.format = "h5";
  } else if (legacy_weights || k3_weights) {
    if (opt.config_path.empty())
      throw_error(Status::FormatError,
                  "'" + path +
                      "' holds weights only (it was written by save_weights and has no model_config); pass the "
                      "architecture as a Keras JSON or YAML file (model.to_json()) with --config / config_path");
    ConfigDoc c = read_config_file(opt.config_path);
    doc = c.doc;
    where = path + " (config " + opt.config_path + ")";
    m.info.format = "weights_h5";
  } else {
    throw_error(Status::FormatError, "'" + path +
                                         "' is an HDF5 file but not a Keras model: it has no model_config attribute "
                                         "and no Keras weights layout");
  }
  take_versions(m.info, doc);
  int major = major_of(m.info.keras_version);
  if (major == 0) major = guess_major(doc);

  keras::LayerSpec top = keras::parse_model_config(doc, where);
  keras::check_supported_tree(top, where);
  if (full) {
    if (!h5::is_group(root, "model_weights"))
      throw_error(Status::FormatError, "'" + path + "' has a model_config but no model_weights group");
    h5::Handle g(H5Gopen2(root, "model_weights", H5P_DEFAULT), h5::Handle::Kind::Group);
    keras::read_legacy_weights(g.get(), where, top, major);
  } else if (legacy_weights) {
    keras::read_legacy_weights(root, where, top, major);
  } else {
    keras::read_keras3_weights(root, "", where, top, major);
  }
  finish(m, top, major, where);
  return m;
}

// ---------------------------------------------------------------------------------------------------------------------

struct Zip {
  zip_t* z = nullptr;
  ~Zip() {
    if (z) zip_discard(z);
  }
};

bool zip_read(zip_t* z, const char* name, std::vector<char>* out, const std::string& path) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(z, name, 0, &st) != 0) return false;
  zip_file_t* zf = zip_fopen(z, name, 0);
  if (!zf) throw_error(Status::FormatError, "'" + path + "': cannot read '" + name + "' from the zip (corrupted)");
  out->resize(static_cast<size_t>(st.size));
  zip_int64_t got = out->empty() ? 0 : zip_fread(zf, out->data(), out->size());
  // libzip checks the entry's CRC when the end of the data is reached: one more read makes it do so.
  char extra;
  const zip_int64_t more = zip_fread(zf, &extra, 1);
  zip_fclose(zf);
  if (got < 0 || more != 0 || static_cast<zip_uint64_t>(got) != st.size)
    throw_error(Status::FormatError, "'" + path + "': '" + name + "' in the zip is truncated or corrupted");
  return true;
}

Model load_keras_zip(const std::string& path) {
  int err = 0;
  Zip zip;
  zip.z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (!zip.z) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    std::string msg = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    throw_error(Status::FormatError, "'" + path + "' is not a readable zip (" + msg + "): the .keras file is "
                                                                                          "truncated or corrupted");
  }
  std::vector<char> config, metadata, weights;
  if (!zip_read(zip.z, "config.json", &config, path))
    throw_error(Status::FormatError, "'" + path + "' is a zip but not a Keras model: it has no config.json");
  zip_read(zip.z, "metadata.json", &metadata, path);
  const bool has_weights = zip_read(zip.z, "model.weights.h5", &weights, path);

  Model m;
  m.info.path = path;
  m.info.format = "keras";
  const json doc = keras::parse_config_text(std::string(config.begin(), config.end()), path + ":config.json", false);
  if (!metadata.empty()) {
    try {
      take_versions(m.info, json::parse(metadata.begin(), metadata.end()));
    } catch (const json::exception&) {
      throw_error(Status::FormatError, "'" + path + "': metadata.json is not valid JSON");
    }
  }
  int major = major_of(m.info.keras_version);
  if (major == 0) major = 3;
  keras::LayerSpec top = keras::parse_model_config(doc, path);
  keras::check_supported_tree(top, path);
  if (!has_weights) throw_error(Status::FormatError, "'" + path + "' has no model.weights.h5 in the zip");
  h5::File wf = h5::File::open_image(weights, path + ":model.weights.h5");
  keras::read_keras3_weights(wf.id(), "", path, top, major);
  finish(m, top, major, path);
  return m;
}

}  // namespace

Model Model::load(const std::string& path, const LoadOptions& options) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw_error(Status::FileError, "cannot open model '" + path + "': " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    throw_error(Status::FileError, "'" + path +
                                       "' is a directory; FKB reads Keras files (.h5, .keras), not TensorFlow "
                                       "SavedModel directories");
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

  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  try {
    if (is_zip) return load_keras_zip(path);
    if (std::memcmp(magic, hdf5_sig, 8) == 0 || H5Fis_hdf5(path.c_str()) > 0) return load_h5(path, options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw_error(Status::FormatError, "'" + path + "': " + e.what());
  }
  throw_error(Status::FormatError, "'" + path +
                                       "' is neither an HDF5 Keras file (.h5) nor a Keras zip (.keras); FKB reads "
                                       "files written by Keras' model.save / save_weights");
}

}  // namespace fkb
