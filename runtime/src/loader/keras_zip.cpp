// The Keras 3 zip (.keras): config.json, metadata.json, model.weights.h5 (keras/src/saving/saving_lib.py).
// Sizes are checked from the zip's central directory before anything is inflated (README "Loading policy").
#include <zip.h>

#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "loader/h5.hpp"
#include "loader/keras_weights.hpp"
#include "loader/load_internal.hpp"

namespace fkb {

using keras::json;

namespace {

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

// The Keras model in an open zip; `path` names it in messages.
Model read_keras_zip(zip_t* z, const std::string& path, const loader::Limits& lim) {
  Zip zip;
  zip.z = z;
  std::vector<char> config, metadata, weights;
  if (!zip_read(zip.z, "config.json", &config, path))
    throw_error(Status::FormatError, "'" + path + "' is a zip but not a Keras model: it has no config.json");
  zip_read(zip.z, "metadata.json", &metadata, path);
  const bool has_weights = zip_read(zip.z, "model.weights.h5", &weights, path);

  Model m;
  m.info.path = path;
  m.info.format = "keras";
  const json doc = keras::parse_config_text(std::string(config.begin(), config.end()), path + ":config.json", false, lim);
  if (!metadata.empty()) {
    try {
      take_keras_versions(m.info, keras::parse_config_text(std::string(metadata.begin(), metadata.end()), path + ":metadata.json", false, lim));
    } catch (const json::exception&) {
      throw_error(Status::FormatError, "'" + path + "': metadata.json is not a JSON object of strings");
    }
  }
  int major = keras_major_of(m.info.keras_version);
  if (major == 0) major = 3;
  keras::LayerSpec top = keras::parse_model_config(doc, path);
  keras::check_supported_tree(top, path);
  if (!has_weights) throw_error(Status::FormatError, "'" + path + "' has no model.weights.h5 in the zip");
  h5::File wf = h5::File::open_image(weights, path + ":model.weights.h5");
  loader::WeightBudget budget(lim.max_weight_bytes, path);
  keras::read_keras3_weights(wf.id(), "", path, top, major, budget);
  finish_model(m, top, major, path);
  return m;
}


[[noreturn]] void not_a_zip(const std::string& path, zip_error_t* ze) {
  const std::string msg = zip_error_strerror(ze);
  zip_error_fini(ze);
  throw_error(Status::FormatError, "'" + path + "' is not a readable zip (" + msg +
                                       "): the .keras file is truncated or corrupted");
}

}  // namespace

Model load_keras_zip(const std::string& path, const loader::Limits& limits) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (!z) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, err);
    not_a_zip(path, &ze);
  }
  return read_keras_zip(z, path, limits);
}

Model load_keras_zip_buffer(const std::vector<char>& bytes, const std::string& label,
                            const Model::LoadOptions& options) {
  const loader::Limits lim = loader::resolve(options.limits);
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &ze);
  if (!src) not_a_zip(label, &ze);
  zip_t* z = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
  if (!z) {
    zip_source_free(src);
    not_a_zip(label, &ze);
  }
  zip_error_fini(&ze);
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  return read_keras_zip(z, label, lim);
}

}  // namespace fkb
