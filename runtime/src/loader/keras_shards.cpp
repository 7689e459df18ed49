// Sharded Keras 3 weights: model.save_weights("m.weights.json", max_shard_size=...) writes m.weights.json
//   {"metadata": {"total_size": ...}, "weight_map": {"/layers/dense/vars": "m_00000.weights.h5" | [names...], ...}}
// and the shard files m_00000.weights.h5, m_00001.weights.h5, ... beside it, each in the Keras 3 weights layout
// (keras/src/saving/saving_lib.py, ShardedH5IOStore: a layer's vars group may be split over several shards, listed in
// its weight_map entry). Loading policy: the shards must be plain file names in the json's directory (no '/', no
// "..", not absolute), regular files and not symbolic links; each is read under the HDF5 rules, and all shards
// together count against one weight limit.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "loader/h5.hpp"
#include "loader/keras_weights.hpp"
#include "loader/load_internal.hpp"

namespace fkb {

using keras::json;

namespace {

// "m.weights.json" -> "" ; "dir/m.weights.json" -> "dir/"
std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

// A shard name as Keras writes it (pathlib's with_name: a bare file name); anything that could leave the directory
// is refused.
void check_shard_name(const std::string& name, const std::string& key, const std::string& path) {
  const std::string entry = "'" + path + "': weight_map entry '" + keras::brief(json(key)) + "' names the shard ";
  const std::string why = "; FKB reads only shard files in the directory of the .weights.json, named by a plain file "
                          "name (Keras writes <name>_00000.weights.h5)";
  if (name.empty() || name == "." || name == "..")
    throw_error(Status::FormatError, entry + "'" + name + "', which is not a file name" + why);
  if (name.size() > 255)
    throw_error(Status::FormatError, entry + keras::brief(json(name)) + ", a name over 255 bytes" + why);
  if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos)
    throw_error(Status::FormatError, entry + keras::brief(json(name)) +
                                         (name[0] == '/' ? ", an absolute path" : ", a path with directories") + why);
  if (name.find('\0') != std::string::npos)
    throw_error(Status::FormatError, entry + keras::brief(json(name)) + ", a name with a NUL byte" + why);
}

// The weight_map: vars group ("/layers/dense/vars") -> shard names, every name checked.
std::map<std::string, std::vector<std::string>> read_weight_map(const json& doc, const std::string& path) {
  if (!doc.is_object() || !doc.contains("weight_map") || !doc["weight_map"].is_object())
    throw_error(Status::FormatError,
                "'" + path +
                    "' is a JSON file but not Keras sharded weights (it has no \"weight_map\" object); FKB reads the "
                    ".weights.json that save_weights(..., max_shard_size=...) writes, and takes a model config "
                    "(model.to_json()) only as --config / LoadOptions::config_path");
  std::map<std::string, std::vector<std::string>> map;
  for (const auto& [key, value] : doc["weight_map"].items()) {
    std::vector<std::string> names;
    if (value.is_string()) {
      names.push_back(value.get<std::string>());
    } else if (value.is_array()) {
      for (const auto& v : value) {
        if (!v.is_string())
          throw_error(Status::FormatError, "'" + path + "': weight_map entry '" + keras::brief(json(key)) + "' lists " +
                                               keras::brief(v) + ", not a shard file name");
        names.push_back(v.get<std::string>());
      }
    } else {
      throw_error(Status::FormatError, "'" + path + "': weight_map entry '" + keras::brief(json(key)) + "' is " +
                                           keras::brief(value) + ", not a shard file name or a list of them");
    }
    for (const auto& n : names)
      check_shard_name(n, key, path);
    map[key] = names;
  }
  return map;
}

class ShardStore : public keras::VarStore {
public:
  ShardStore(const std::string& json_path, std::map<std::string, std::vector<std::string>> map)
      : path_(json_path), dir_(dir_of(json_path)), map_(std::move(map)) {}
  ~ShardStore() override {
    // Each File restores the HDF5 plugin state it found when it was opened: close in reverse order.
    while (!files_.empty())
      files_.pop_back();
  }
  ShardStore(const ShardStore&) = delete;
  ShardStore& operator=(const ShardStore&) = delete;

  Found find(const std::string& vars_group, size_t index, const std::string& where) override {
    auto it = map_.find("/" + vars_group);
    if (it == map_.end())
      return {};
    const std::string vpath = vars_group + "/" + std::to_string(index);
    for (const auto& name : it->second) {
      const std::string w = where + ", shard '" + name + "'";
      const hid_t f = open(name, where);
      if (h5::exists(f, vpath, w, "weight '" + vpath + "'"))
        return {f, w};
    }
    return {};
  }

private:
  hid_t open(const std::string& name, const std::string& where) {
    for (size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == name)
        return files_[i]->id();
    const std::string file = dir_ + name;
    struct stat st;
    if (lstat(file.c_str(), &st) != 0)
      throw_error(Status::FileError,
                  where + ": cannot open the shard '" + file + "' named in '" + path_ + "': " + std::strerror(errno));
    if (S_ISLNK(st.st_mode))
      throw_error(Status::FormatError, where + ": the shard '" + file +
                                           "' is a symbolic link; FKB reads only shard files stored in the "
                                           "directory of the .weights.json, not links (Keras writes none)");
    if (!S_ISREG(st.st_mode))
      throw_error(Status::FormatError, where + ": the shard '" + file + "' is not a regular file");
    files_.push_back(std::make_unique<h5::File>(h5::File::open(file)));
    names_.push_back(name);
    return files_.back()->id();
  }

  std::string path_, dir_;
  std::map<std::string, std::vector<std::string>> map_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<h5::File>> files_;
};

} // namespace

Model load_sharded_weights(const std::string& json_path, const Model::LoadOptions& opt, const loader::Limits& lim) {
  const std::string text = loader::read_text_file(json_path, "sharded weights index", lim.max_config_bytes);
  const json doc = keras::parse_document(text, json_path, "the sharded weights index", false, lim);
  ShardStore store(json_path, read_weight_map(doc, json_path));
  if (opt.config_path.empty())
    throw_error(Status::FormatError,
                "'" + json_path +
                    "' holds sharded weights only (the index of shard files that save_weights(..., "
                    "max_shard_size=...) writes, with no architecture); pass the architecture as a Keras JSON or "
                    "YAML file (model.to_json(), or config.json of a .keras) with --config / config_path");
  const json config = read_weights_only_config(opt.config_path, lim);
  const std::string where = json_path + " (config " + opt.config_path + ")";
  Model m;
  m.info.path = json_path;
  m.info.format = "weights_json";
  take_keras_versions(m.info, config);
  int major = keras_major_of(m.info.keras_version);
  if (major == 0)
    major = guess_keras_major(config);
  keras::LayerSpec top = keras::parse_model_config(config, where);
  keras::check_quantized_tree(top, where);
  keras::check_supported_tree(top, where);
  loader::WeightBudget budget(lim.max_weight_bytes, json_path);
  keras::read_keras3_weights(store, "", where, top, major, budget);
  finish_model(m, top, major, where);
  return m;
}

} // namespace fkb
