// The Keras 3 `.keras` zip: config.json, metadata.json and model.weights.h5 with each layer's variables under
// layers/<snake_case_class>[_N]/vars/<i> (keras/src/saving/saving_lib.py), layers in model.layers order.
#include <zip.h>

#include <cstdio>
#include <ctime>
#include <map>

#include "fkb/error.hpp"
#include "loader/keras_config.hpp"
#include "writer/graph.hpp"

namespace fkb::writer {

namespace {

// The Keras version whose .keras layout and semantics we write.
constexpr const char* kKeras3FormatVersion = "3.0.0";

std::string now_string() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d@%H:%M:%S", std::gmtime(&t));
  return buf;
}

// A variable in the shape Keras declares for it (the IR may hold extra 1-sized axes).
void write_var(hid_t g, const std::string& path, const Var& v, h5::StoreType store, const std::string& where) {
  if (v.shape == v.value->shape) {
    h5::write_array(g, path, *v.value, where, store);
  } else {
    Array a{v.shape, v.value->data};
    h5::write_array(g, path, a, where, store);
  }
}

std::vector<char> weights_image(const Graph& g, const std::vector<int>& order) {
  const std::string where = "model.weights.h5";
  h5::Handle f = h5::create_memory_file("fkb-weights.h5");
  {
    h5::Handle root_vars = h5::create_group(f.get(), "vars", where);
    h5::write_attr_string(root_vars.get(), "name", g.name, where);
  }
  std::map<std::string, int> used;
  for (int li : order) {
    const Layer& layer = g.layers[li];
    std::string key = keras::to_snake_case(layer.cls);
    auto it = used.find(key);
    if (it == used.end()) {
      used[key] = 0;
    } else {
      key += "_" + std::to_string(++it->second);
    }
    h5::Handle grp = h5::create_group(f.get(), "layers/" + key + "/vars", where);
    h5::write_attr_string(grp.get(), "name", layer.name, where);
    for (size_t i = 0; i < layer.vars.size(); ++i)
      write_var(grp.get(), std::to_string(i), layer.vars[i], layer.vars[i].store, where);
  }
  return h5::file_image(f.get());
}

}  // namespace

void write_keras_zip(const Graph& g, const std::vector<int>& order, const json& cfg, const std::string& path) {
  const std::string config = cfg.dump();
  const json meta = {{"keras_version", kKeras3FormatVersion}, {"date_saved", now_string()},
                     {"fkb_version", FKB_VERSION}};
  const std::string metadata = meta.dump();
  const std::vector<char> weights = weights_image(g, order);

  const std::string tmp = temp_name(path);
  int err = 0;
  zip_t* z = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  if (!z) throw_error(Status::FileError, "cannot create '" + path + "'");
  auto add = [&](const char* name, const void* data, size_t size) {
    zip_source_t* src = zip_source_buffer(z, data, size, 0);
    if (!src || zip_file_add(z, name, src, ZIP_FL_OVERWRITE | ZIP_FL_ENC_UTF_8) < 0) {
      if (src) zip_source_free(src);
      zip_discard(z);
      std::remove(tmp.c_str());
      throw_error(Status::FileError, std::string("cannot write '") + name + "' into '" + path + "'");
    }
  };
  add("metadata.json", metadata.data(), metadata.size());
  add("config.json", config.data(), config.size());
  add("model.weights.h5", weights.data(), weights.size());
  if (zip_close(z) != 0) {
    zip_discard(z);
    std::remove(tmp.c_str());
    throw_error(Status::FileError, "cannot write '" + path + "'");
  }
  commit_file(tmp, path);
}

// Legacy HDF5 as Keras writes it (keras/src/legacy/saving/legacy_h5_format.py save_model_to_hdf5; tf-keras'
// hdf5_format.py is the same layout): root attributes keras_version, backend, model_config; model_weights with
// layer_names and one group per layer whose weight_names point at its datasets. Attributes over HDF5's header limit
// are split into name0, name1, ... as Keras' save_attributes_to_hdf5_group does.
void write_legacy_h5(const Graph& g, const std::vector<int>& order, const json& cfg, Flavour flavour,
                     const std::string& source_version, const std::string& path) {
  const bool tf = flavour == Flavour::TfKeras;
  // The version attribute says which Keras the file is for; tf-keras only looks for a "1." prefix.
  const std::string version = tf ? (source_version.rfind("2.", 0) == 0 ? source_version : std::string("2.15.0"))
                                 : std::string(kKeras3FormatVersion);
  const std::string tmp = temp_name(path);
  try {
    h5::Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), h5::Handle::Kind::File);
    if (!f.valid()) throw_error(Status::FileError, "cannot create '" + path + "'");
    h5::write_attr_string(f.get(), "keras_version", version, path);
    h5::write_attr_string(f.get(), "backend", "tensorflow", path);
    h5::write_attr_string(f.get(), "model_config", cfg.dump(), path);
    h5::Handle mw = h5::create_group(f.get(), "model_weights", path);
    std::vector<std::string> names;
    for (int l : order) names.push_back(g.layers[l].name);
    h5::write_attr_strings_chunked(mw.get(), "layer_names", names, path);
    h5::write_attr_string(mw.get(), "backend", "tensorflow", path);
    h5::write_attr_string(mw.get(), "keras_version", version, path);
    for (int l : order) {
      const Layer& layer = g.layers[l];
      h5::Handle grp = h5::create_group(mw.get(), layer.name, path);
      std::vector<std::string> wn;
      std::vector<int> positions = layer.legacy_order;
      if (positions.empty())
        for (size_t i = 0; i < layer.vars.size(); ++i) positions.push_back(static_cast<int>(i));
      for (int pos : positions) {
        const Var& v = layer.vars[pos];
        // tf-keras names variables "<layer>/<role>:0", Keras 3 "<layer>/<role>"; loaders match by position.
        wn.push_back(layer.name + "/" + v.role + (tf ? ":0" : ""));
        // bfloat16 has no HDF5 type h5py reads back as a number in a legacy file: float32 holds it exactly, and
        // Keras casts it to the variable's dtype when it assigns it.
        const h5::StoreType store = v.store == h5::StoreType::BFloat16 ? h5::StoreType::Float32 : v.store;
        write_var(grp.get(), wn.back(), v, store, path);
      }
      h5::write_attr_strings_chunked(grp.get(), "weight_names", wn, path);
    }
    h5::Handle top = h5::create_group(mw.get(), "top_level_model_weights", path);
    h5::write_attr_strings(top.get(), "weight_names", {}, path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  commit_file(tmp, path);
}

}  // namespace fkb::writer
