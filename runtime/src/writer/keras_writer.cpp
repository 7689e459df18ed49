// fkb::save_keras: IR → a Functional config + weights for the target Keras (writer/graph.hpp), as .keras (zip) or
// legacy .h5. Layers are written in Keras' own model.layers order (writer/order.cpp) so that both weight layouts
// (by position in .h5, by per-class counters in .keras) line up when Keras loads the config.
#include "fkb/keras_writer.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "fkb/error.hpp"
#include "loader/h5.hpp"
#include "writer/graph.hpp"

namespace fkb {

namespace {

std::string lowercase_ext(const std::string& path) {
  auto dot = path.rfind('.');
  if (dot == std::string::npos) return "";
  std::string e = path.substr(dot);
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

}  // namespace

namespace writer {

std::string temp_name(const std::string& path) { return path + ".fkb-tmp"; }

void commit_file(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw_error(Status::FileError, "cannot write '" + path + "': " + why);
  }
}

}  // namespace writer

Flavour parse_flavour(const std::string& name) {
  if (name == "keras3" || name == "keras-3" || name == "keras") return Flavour::Keras3;
  if (name == "tf-keras" || name == "tf_keras" || name == "keras2" || name == "keras-2") return Flavour::TfKeras;
  if (name == "source" || name.empty()) return Flavour::Source;
  throw_error(Status::InvalidArgument, "unknown Keras flavour '" + name +
                                           "': use keras3 (Keras 3, .keras or .h5), tf-keras (tf-keras / Keras 2, "
                                           ".h5) or source (the input file's)");
}

Flavour resolve_flavour(const Model& model, const std::string& path, Flavour requested) {
  const bool keras_zip = lowercase_ext(path) == ".keras";
  if (requested != Flavour::Source) return requested;
  // .keras is Keras 3's format; a .h5 keeps the flavour of the file the model came from.
  return !keras_zip && model.info.keras_major == 2 ? Flavour::TfKeras : Flavour::Keras3;
}

void save_keras(const Model& model, const std::string& path, const SaveOptions& options) {
  const std::string ext = lowercase_ext(path);
  if (ext != ".keras" && ext != ".h5" && ext != ".hdf5")
    throw_error(Status::InvalidArgument, "cannot tell the Keras format from '" + path +
                                             "': use a .keras (Keras 3 zip) or .h5 (legacy HDF5) file name");
  const Flavour flavour = resolve_flavour(model, path, options.flavour);
  if (flavour == Flavour::TfKeras && ext == ".keras")
    throw_error(Status::InvalidArgument, "cannot write '" + path +
                                             "' for tf-keras: FKB writes tf-keras models as legacy HDF5 only; use a "
                                             ".h5 file name, or the keras3 flavour for a .keras file");
  const writer::Graph g = writer::lower(model, flavour);
  const std::vector<int> order = writer::keras_order(g);
  const writer::json cfg = writer::model_config(g, order, flavour);
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  if (ext == ".keras") {
    writer::write_keras_zip(g, order, cfg, path);
  } else {
    writer::write_legacy_h5(g, order, cfg, flavour, model.info.keras_version, path);
  }
}

}  // namespace fkb
