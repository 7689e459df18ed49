// The Keras 3 zip (.keras): config.json, metadata.json, model.weights.h5 (keras/src/saving/saving_lib.py), and the
// model built from those three parts, which the unzipped directory (loader/keras_dir.cpp) shares.
// Sizes are checked from the zip's central directory before anything is inflated (README "Loading policy").
#include <zip.h>

#include <algorithm>
#include <functional>
#include <new>
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

// A JSON entry may be small and very compressible (a config of many identical layers); the ratio rule applies
// from this declared size on.
constexpr uint64_t kZipRatioFromBytes = uint64_t{1} << 20;

// Check the zip's central directory against the limits before anything is inflated: the entry count, the declared
// sizes of config.json / metadata.json / model.weights.h5 and their compression ratio.
void check_directory(zip_t* z, const std::string& path, const loader::Limits& lim) {
  const zip_int64_t n = zip_get_num_entries(z, 0);
  if (n < 0) throw_error(Status::FormatError, "'" + path + "' is not a readable zip (no central directory)");
  if (static_cast<uint64_t>(n) > loader::kMaxZipEntries)
    throw_error(Status::FormatError, "'" + path + "': the zip holds " + std::to_string(n) +
                                         " entries, over the limit of " + std::to_string(loader::kMaxZipEntries) +
                                         " for a .keras file (Keras writes config.json, metadata.json, "
                                         "model.weights.h5 and its assets)");
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME)) continue;
    const std::string name = st.name;
    const bool json_entry = name == "config.json" || name == "metadata.json";
    if (!json_entry && name != "model.weights.h5") continue;
    if (!(st.valid & ZIP_STAT_SIZE) || !(st.valid & ZIP_STAT_COMP_SIZE))
      throw_error(Status::FormatError, "'" + path + "': zip entry '" + name + "' has no size in the zip directory");
    const std::string entry = "'" + path + "': zip entry '" + name + "' declares " + loader::bytes_str(st.size) +
                              " uncompressed";
    if (json_entry) {
      if (st.size > lim.max_config_bytes)
        throw_error(Status::FormatError, entry + ", over the limit of " + loader::bytes_str(lim.max_config_bytes) +
                                             " for one JSON/YAML document (FKB_MAX_CONFIG_BYTES)");
      if (st.size >= kZipRatioFromBytes && st.size / loader::kMaxZipJsonRatio > st.comp_size)
        throw_error(Status::FormatError, entry + " from " + loader::bytes_str(st.comp_size) +
                                             ", a compression ratio over the limit of " +
                                             std::to_string(loader::kMaxZipJsonRatio) +
                                             ":1 for a JSON entry (a decompression bomb)");
    } else if (st.size > lim.max_weight_bytes + loader::kZipWeightsSlackBytes) {
      throw_error(Status::FormatError, entry + ", over the limit of " + loader::bytes_str(lim.max_weight_bytes) +
                                           " of weights plus " + loader::bytes_str(loader::kZipWeightsSlackBytes) +
                                           " (raise it with LoadLimits::max_weight_bytes or FKB_MAX_WEIGHT_BYTES)");
    } else if (st.size >= kZipRatioFromBytes && st.size / loader::kMaxZipJsonRatio > st.comp_size) {
      // Keras stores model.weights.h5 uncompressed and float weights hardly compress: a high ratio is a bomb, which
      // would cost seconds and gigabytes to inflate before the HDF5 checks could see it.
      throw_error(Status::FormatError, entry + " from " + loader::bytes_str(st.comp_size) +
                                           ", a compression ratio over the limit of " +
                                           std::to_string(loader::kMaxZipJsonRatio) +
                                           ":1 for the weights (a decompression bomb)");
    }
  }
}

// Read one entry (its directory sizes were checked by check_directory). A stored entry's bytes are in the file
// (libzip refuses a compressed size past the end of the archive when it opens it), so its buffer is allocated at
// once; a deflated entry's buffer grows with the data actually inflated, never past the declared size, so a
// directory that lies about a size costs no more than the real data. libzip checks the CRC at the end of the data.
bool zip_read(zip_t* z, const char* name, std::vector<char>* out, const std::string& path) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(z, name, 0, &st) != 0) return false;
  zip_file_t* zf = zip_fopen(z, name, 0);
  if (!zf) throw_error(Status::FormatError, "'" + path + "': cannot read '" + name + "' from the zip (corrupted)");
  out->clear();
  const uint64_t comp = (st.valid & ZIP_STAT_COMP_SIZE) ? st.comp_size : 0;
  out->reserve(static_cast<size_t>(comp >= st.size ? st.size : std::min<uint64_t>(st.size, 2 * comp + (1u << 20))));
  constexpr uint64_t kChunk = uint64_t{1} << 20;
  uint64_t got = 0;
  bool ok = true;
  while (ok && got < st.size) {
    const uint64_t want = std::min<uint64_t>(kChunk, st.size - got);
    if (got + want > out->capacity()) {
      const uint64_t grow = std::max<uint64_t>(2 * out->capacity(), got + want);
      out->reserve(static_cast<size_t>(std::min<uint64_t>(st.size, grow)));
    }
    out->resize(static_cast<size_t>(got + want));
    const zip_int64_t r = zip_fread(zf, out->data() + got, want);
    if (r <= 0) ok = false;
    else got += static_cast<uint64_t>(r);
  }
  // libzip checks the entry's CRC when the end of the data is reached: one more read makes it do so.
  char extra;
  const zip_int64_t more = ok ? zip_fread(zf, &extra, 1) : -1;
  zip_fclose(zf);
  if (!ok || more != 0 || got != st.size)
    throw_error(Status::FormatError, "'" + path + "': '" + name + "' in the zip is truncated or corrupted");
  return true;
}

// The Keras model in an open zip; `path` names it in messages.
Model read_keras_zip(zip_t* z, const std::string& path, const loader::Limits& lim) {
  Zip zip;
  zip.z = z;
  check_directory(zip.z, path, lim);
  std::vector<char> config, metadata, weights;
  if (!zip_read(zip.z, "config.json", &config, path))
    throw_error(Status::FormatError, "'" + path + "' is a zip but not a Keras model: it has no config.json");
  zip_read(zip.z, "metadata.json", &metadata, path);
  const bool has_weights = zip_read(zip.z, "model.weights.h5", &weights, path);
  return keras3_model_from_parts(
      {std::string(config.begin(), config.end()), std::string(metadata.begin(), metadata.end()), path,
       path + ":config.json", path + ":metadata.json", "keras"},
      [&](const std::function<void(hid_t)>& read) {
        if (!has_weights) throw_error(Status::FormatError, "'" + path + "' has no model.weights.h5 in the zip");
        h5::File wf = h5::File::open_image(weights, path + ":model.weights.h5");
        read(wf.id());
      },
      lim);
}

[[noreturn]] void not_a_zip(const std::string& path, zip_error_t* ze) {
  const std::string msg = zip_error_strerror(ze);
  zip_error_fini(ze);
  throw_error(Status::FormatError, "'" + path + "' is not a readable zip (" + msg +
                                       "): the .keras file is truncated or corrupted");
}

}  // namespace

Model keras3_model_from_parts(const Keras3Parts& parts, const std::function<void(const std::function<void(hid_t)>&)>& with_weights,
                              const loader::Limits& lim) {
  Model m;
  m.info.path = parts.path;
  m.info.format = parts.format;
  const json doc = keras::parse_config_text(parts.config, parts.config_label, false, lim);
  if (!parts.metadata.empty()) {
    try {
      take_keras_versions(m.info, keras::parse_config_text(parts.metadata, parts.metadata_label, false, lim));
    } catch (const json::exception&) {
      throw_error(Status::FormatError, "'" + parts.path + "': metadata.json is not a JSON object of strings");
    }
  }
  int major = keras_major_of(m.info.keras_version);
  if (major == 0) major = 3;
  keras::LayerSpec top = keras::parse_model_config(doc, parts.path);
  keras::check_quantized_tree(top, parts.path);
  keras::check_supported_tree(top, parts.path);
  loader::WeightBudget budget(lim.max_weight_bytes, parts.path);
  with_weights([&](hid_t weights) { keras::read_keras3_weights(weights, "", parts.path, top, major, budget); });
  finish_model(m, top, major, parts.path);
  return m;
}

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
  return load_guarded(label, [&] { return read_keras_zip(z, label, lim); });
}

}  // namespace fkb
