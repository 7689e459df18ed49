// The layer-by-layer support report behind `fkb inspect` for models FKB refuses (support_report.hpp).
// It reads the model config the way Model::load does (model_config attribute, config.json, or --config) and asks
// keras::check_supported about every layer, catching its refusal instead of stopping at the first one.
#include "loader/support_report.hpp"

#include <sys/stat.h>
#include <zip.h>

#include <fstream>
#include <mutex>

#include "fkb/error.hpp"
#include "loader/config_text.hpp"
#include "loader/h5.hpp"
#include "loader/keras_config.hpp"
#include "loader/limits.hpp"

namespace fkb::loader {

using keras::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

json read_config_path(const std::string& path, const Limits& lim) {
  const std::string text = read_text_file(path, "model config", lim.max_config_bytes);
  return keras::parse_config_text(text, path, ends_with(path, ".yaml") || ends_with(path, ".yml"), lim);
}

// config.json of a .keras zip, its declared size checked before it is inflated.
json read_zip_config(const std::string& path, const Limits& lim) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY, &err);
  if (!z) throw_error(Status::FormatError, "'" + path + "' is not a readable zip");
  struct Closer {
    zip_t* z;
    ~Closer() { zip_discard(z); }
  } closer{z};
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(z, "config.json", 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
    throw_error(Status::FormatError, "'" + path + "' is a zip but not a Keras model: it has no config.json");
  if (st.size > lim.max_config_bytes)
    throw_error(Status::FormatError, "'" + path + "': config.json declares " + bytes_str(st.size) +
                                         ", over the limit of " + bytes_str(lim.max_config_bytes) +
                                         " (FKB_MAX_CONFIG_BYTES)");
  zip_file_t* f = zip_fopen(z, "config.json", 0);
  if (!f) throw_error(Status::FormatError, "'" + path + "': cannot read config.json from the zip (corrupted)");
  std::string text(static_cast<size_t>(st.size), '\0');
  const zip_int64_t got = text.empty() ? 0 : zip_fread(f, text.data(), st.size);
  zip_fclose(f);
  if (got < 0 || static_cast<uint64_t>(got) != st.size)
    throw_error(Status::FormatError, "'" + path + "': config.json in the zip is truncated or corrupted");
  return keras::parse_config_text(text, path + ":config.json", false, lim);
}

json read_h5_config(const std::string& path, const Model::LoadOptions& options, const Limits& lim) {
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  h5::File f = h5::File::open(path);
  if (h5::has_attr(f.id(), "model_config"))
    return keras::parse_config_text(
        h5::attr_string(f.id(), "model_config", path, lim.max_config_bytes, "FKB_MAX_CONFIG_BYTES"), path, false,
        lim);
  if (options.config_path.empty())
    throw_error(Status::FormatError, "'" + path +
                                         "' has no model_config (a weights-only file?); pass the architecture "
                                         "with --config");
  return read_config_path(options.config_path, lim);
}

// check_supported's message without the file prefix and the list of supported classes (printed once by the
// caller): "layer 'x' has class 'Lambda', which FKB does not support (...)".
std::string short_reason(const std::string& msg, const std::string& where) {
  std::string s = msg;
  if (s.compare(0, where.size() + 2, where + ": ") == 0) s = s.substr(where.size() + 2);
  const size_t cut = s.find(". Supported: ");
  if (cut != std::string::npos) s = s.substr(0, cut);
  return s;
}

void walk(const keras::LayerSpec& model, const std::string& prefix, const std::string& where,
          std::vector<LayerSupport>& out) {
  for (const auto& l : model.layers) {
    LayerSupport r;
    r.path = prefix + l.name;
    r.cls = l.cls;
    try {
      keras::check_supported(l, where);
    } catch (const Error& e) {
      r.ok = false;
      r.reason = short_reason(e.what(), where);
    } catch (const json::exception& e) {  // a config value of another type than Keras writes
      r.ok = false;
      r.reason = std::string("a config value has the wrong type (") + e.what() + ")";
    }
    out.push_back(r);
    if (l.is_model) walk(l, r.path + "/", where, out);
  }
}

}  // namespace

std::vector<LayerSupport> support_report(const std::string& path, const Model::LoadOptions& options) {
  const Limits lim = resolve(options.limits);
  json doc;
  std::string where = path;
  if (!options.config_path.empty() && !is_dir(path)) {
    doc = read_config_path(options.config_path, lim);
    where = path + " (config " + options.config_path + ")";
  } else if (is_dir(path)) {  // an unzipped .keras (save_model(..., zipped=False))
    doc = read_config_path(path + "/config.json", lim);
  } else {
    char magic[4] = {0};
    std::ifstream f(path, std::ios::binary);
    if (!f) throw_error(Status::FileError, "cannot open model '" + path + "'");
    f.read(magic, sizeof magic);
    if (f.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)
      doc = read_zip_config(path, lim);
    else
      doc = read_h5_config(path, options, lim);
  }
  keras::LayerSpec top = keras::parse_model_config(doc, where);
  std::vector<LayerSupport> out;
  if (top.is_model) {
    walk(top, "", where, out);
  } else {  // a bare layer config: one row
    keras::LayerSpec holder;
    holder.layers.push_back(top);
    walk(holder, "", where, out);
  }
  return out;
}

}  // namespace fkb::loader
