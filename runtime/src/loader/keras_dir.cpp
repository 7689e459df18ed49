// The unzipped Keras 3 model: model.save(path, zipped=False) writes the .keras zip's three files into a directory,
// config.json, metadata.json and model.weights.h5 (keras/src/saving/saving_lib.py, _save_model_to_dir; an assets/
// folder only for layers with assets, which FKB has none of). Loading policy: only those three names are read, each
// must be a regular file in the directory itself (a symbolic link is refused, wherever it points), and the sizes
// follow the zip's rules (the JSON files within the document limit, model.weights.h5 within the weight limit plus
// its slack) before anything is read.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <string>

#include "fkb/error.hpp"
#include "loader/h5.hpp"
#include "loader/load_internal.hpp"

namespace fkb {

namespace {

bool present(const std::string& file) {
  struct stat st;
  return lstat(file.c_str(), &st) == 0;
}

// lstat the entry: false when it does not exist; throws for a link or a non-regular file, or one over `max_bytes`.
bool regular_entry(const std::string& dir, const std::string& name, uint64_t max_bytes, const std::string& limit,
                   uint64_t* size) {
  const std::string file = dir + "/" + name;
  struct stat st;
  if (lstat(file.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return false;
    throw_error(Status::FileError, "cannot open '" + file + "': " + std::strerror(errno));
  }
  if (S_ISLNK(st.st_mode))
    throw_error(Status::FormatError, "'" + dir + "': '" + name +
                                         "' in the model directory is a symbolic link; FKB reads only files stored "
                                         "in the directory itself (Keras writes no links)");
  if (!S_ISREG(st.st_mode))
    throw_error(Status::FormatError, "'" + dir + "': '" + name + "' in the model directory is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    throw_error(Status::FormatError,
                "'" + dir + "': '" + name + "' is " + loader::bytes_str(st.st_size) + ", over the limit of " + limit);
  *size = static_cast<uint64_t>(st.st_size);
  return true;
}

} // namespace

bool is_keras_model_dir(const std::string& path) {
  // Keras' own test (saving_lib.load_model): a directory holding config.json.
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && present(path + "/config.json");
}

Model load_keras_dir(const std::string& dir, const loader::Limits& lim) {
  const std::string config_limit =
      loader::bytes_str(lim.max_config_bytes) + " for one JSON/YAML document (FKB_MAX_CONFIG_BYTES)";
  uint64_t size = 0;
  if (!regular_entry(dir, "config.json", lim.max_config_bytes, config_limit, &size)) {
    if (present(dir + "/saved_model.pb"))
      throw_error(Status::FormatError,
                  "'" + dir +
                      "' is a TensorFlow SavedModel directory (saved_model.pb), which FKB does not read; save the "
                      "model with Keras (model.save('m.keras'), or model.save('dir', zipped=False))");
    throw_error(Status::FormatError, "'" + dir +
                                         "' is a directory without config.json, not a Keras model directory "
                                         "(model.save(path, zipped=False) writes config.json, metadata.json and "
                                         "model.weights.h5 there)");
  }
  const std::string config = loader::read_text_file(dir + "/config.json", "config.json", lim.max_config_bytes);
  std::string metadata;
  if (regular_entry(dir, "metadata.json", lim.max_config_bytes, config_limit, &size))
    metadata = loader::read_text_file(dir + "/metadata.json", "metadata.json", lim.max_config_bytes);
  const std::string weights_limit = loader::bytes_str(lim.max_weight_bytes) + " of weights plus " +
                                    loader::bytes_str(loader::kZipWeightsSlackBytes) +
                                    " (raise it with LoadLimits::max_weight_bytes or FKB_MAX_WEIGHT_BYTES)";
  return keras3_model_from_parts(
      {config, metadata, dir, dir + "/config.json", dir + "/metadata.json", "keras_dir"},
      [&](const std::function<void(hid_t)>& read) {
        const bool has_weights = regular_entry(
            dir, "model.weights.h5", lim.max_weight_bytes + loader::kZipWeightsSlackBytes, weights_limit, &size);
        if (!has_weights) {
          if (present(dir + "/model.weights.npz"))
            throw_error(Status::FormatError, "'" + dir +
                                                 "' holds its weights as model.weights.npz (weights_format=\"npz\"); "
                                                 "FKB reads model.weights.h5, Keras' default");
          throw_error(Status::FormatError, "'" + dir + "' has no model.weights.h5 in the model directory");
        }
        h5::File wf = h5::File::open(dir + "/model.weights.h5");
        read(wf.id());
      },
      lim);
}

} // namespace fkb
