// fkb::save_keras: IR → a Keras 3 Functional config + weights, as .keras (zip) or legacy .h5.
//
// Keras assigns weights by layer position in model.layers (legacy .h5) and by per-class counters in
// model.layers order (.keras), and it recomputes that order from the graph when it loads a config
// (keras/src/ops/function.py, map_graph: operations by decreasing depth, ties by first DFS visit from the
// outputs). We write layers in exactly that order so both layouts line up.
#include "fkb/keras_writer.hpp"

#include <zip.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "fkb/error.hpp"
#include "loader/h5.hpp"
#include "loader/keras_config.hpp"

namespace fkb {

namespace {

using json = nlohmann::json;

// The Keras version whose file layout and semantics we write (hard_sigmoid etc. follow Keras 3).
constexpr const char* kKerasFormatVersion = "3.0.0";

struct WLayer {
  std::string cls;
  std::string name;
  json config;
  std::vector<const Array*> vars;       // own variables in Keras order
  std::vector<std::string> var_roles;   // their names ("kernel", ...)
  std::vector<int> inputs;              // indices into the layer list
  Shape in_shape;                       // per-column shape of the first input (for build_config)
  Shape shape;                          // output per-column shape
};

json batch(const Shape& s) {
  json a = json::array({nullptr});
  for (auto v : s) a.push_back(v);
  return a;
}

bool feq(float a, float b) { return a == b; }

class Writer {
 public:
  explicit Writer(const Model& m) : m_(m) {}

  void lower() {
    std::set<std::string> used;
    map_.assign(m_.nodes.size(), -1);
    for (size_t i = 0; i < m_.nodes.size(); ++i) {
      const Node& n = m_.nodes[i];
      std::string name = n.name;
      std::replace(name.begin(), name.end(), '/', '_');
      std::string base = name;
      for (int k = 1; used.count(name); ++k) name = base + "_" + std::to_string(k);
      used.insert(name);
      map_[i] = lower_node(n, name, used);
    }
  }

  // Keras' map_graph order over the written layers.
  std::vector<int> keras_order() const {
    std::vector<int> visit_index(layers_.size(), -1), order;
    std::vector<char> finished(layers_.size(), 0);
    int counter = 0;
    std::function<void(int)> dfs = [&](int l) {
      if (finished[l]) return;
      if (visit_index[l] < 0) visit_index[l] = counter++;
      for (int in : layers_[l].inputs) dfs(in);
      finished[l] = 1;
      order.push_back(l);
    };
    for (int o : outputs()) dfs(o);
    std::vector<int> depth(layers_.size(), -1);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      if (depth[*it] < 0) depth[*it] = 0;
      for (int p : layers_[*it].inputs) depth[p] = std::max(depth[p], depth[*it] + 1);
    }
    for (int in : inputs()) {
      if (depth[in] < 0) {  // an input no output depends on
        depth[in] = 0;
        visit_index[in] = -1;
      }
    }
    std::vector<int> ops;
    for (size_t l = 0; l < layers_.size(); ++l)
      if (depth[l] >= 0) ops.push_back(static_cast<int>(l));
    std::stable_sort(ops.begin(), ops.end(), [&](int a, int b) {
      if (depth[a] != depth[b]) return depth[a] > depth[b];
      return visit_index[a] < visit_index[b];
    });
    return ops;
  }

  std::vector<int> inputs() const {
    std::vector<int> v;
    for (int i : m_.inputs) v.push_back(map_[i]);
    return v;
  }
  std::vector<int> outputs() const {
    std::vector<int> v;
    for (int o : m_.outputs) v.push_back(map_[o]);
    return v;
  }

  json config(const std::vector<int>& order) const {
    json layers = json::array();
    for (int l : order) {
      const WLayer& w = layers_[l];
      json e;
      e["module"] = "keras.layers";
      e["class_name"] = w.cls;
      e["config"] = w.config;
      e["config"]["name"] = w.name;
      e["registered_name"] = nullptr;
      e["name"] = w.name;
      if (w.cls == "InputLayer") {
        e["inbound_nodes"] = json::array();
      } else {
        e["build_config"] = {{"input_shape", w.inputs.size() == 1 ? batch(w.in_shape) : json(nullptr)}};
        if (w.inputs.size() > 1) {
          json shapes = json::array();
          for (int in : w.inputs) shapes.push_back(batch(layers_[in].shape));
          e["build_config"]["input_shape"] = shapes;
        }
        json args = json::array();
        for (int in : w.inputs) args.push_back(tensor(in));
        json call;
        call["args"] = w.inputs.size() == 1 ? args : json::array({args});
        call["kwargs"] = json::object();
        e["inbound_nodes"] = json::array({call});
      }
      layers.push_back(e);
    }
    json ins = json::array(), outs = json::array();
    for (int i : inputs()) ins.push_back({layers_[i].name, 0, 0});
    for (int o : outputs()) outs.push_back({layers_[o].name, 0, 0});
    std::string name = m_.info.name.empty() ? "fkb_model" : m_.info.name;
    std::replace(name.begin(), name.end(), '/', '_');
    json doc;
    doc["module"] = "keras.src.models.functional";
    doc["class_name"] = "Functional";
    doc["config"] = {{"name", name}, {"trainable", true}, {"layers", layers},
                     {"input_layers", ins},        {"output_layers", outs}};
    doc["registered_name"] = "Functional";
    doc["build_config"] = {{"input_shape", nullptr}};
    doc["compile_config"] = nullptr;
    return doc;
  }

  const std::vector<WLayer>& layers() const { return layers_; }

 private:
  const Model& m_;
  std::vector<WLayer> layers_;
  std::vector<int> map_;  // IR node -> written layer producing its output

  json tensor(int l) const {
    return {{"class_name", "__keras_tensor__"},
            {"config", {{"shape", batch(layers_[l].shape)}, {"dtype", "float32"}, {"keras_history", {layers_[l].name, 0, 0}}}}};
  }

  int add(WLayer w) {
    if (!w.inputs.empty()) w.in_shape = layers_[w.inputs[0]].shape;
    layers_.push_back(std::move(w));
    return static_cast<int>(layers_.size()) - 1;
  }

  void var(WLayer& w, const Node& n, const char* role) {
    const Array* a = n.find(role);
    if (!a) throw_error(Status::Internal, "layer '" + n.name + "' has no '" + role + "' to write");
    w.vars.push_back(a);
    w.var_roles.push_back(role);
  }

  // An activation as a Keras 3 string, or "" when it needs its own layer(s).
  static std::string act_string(const Activation& a) {
    const ActParams& p = a.params;
    switch (a.kind) {
      case ActKind::Linear: return "linear";
      case ActKind::Relu:
        if (p.alpha == 0 && p.threshold == 0 && std::isinf(p.max_value)) return "relu";
        if (p.alpha == 0 && p.threshold == 0 && feq(p.max_value, 6.0f)) return "relu6";
        return "";
      case ActKind::LeakyRelu: return feq(p.alpha, 0.2f) ? "leaky_relu" : "";
      case ActKind::Elu: return feq(p.alpha, 1.0f) ? "elu" : "";
      case ActKind::Selu: return "selu";
      case ActKind::Gelu: return "gelu";
      case ActKind::Sigmoid: return "sigmoid";
      case ActKind::HardSigmoidK3: return "hard_sigmoid";
      case ActKind::HardSilu: return "hard_silu";
      case ActKind::Tanh: return "tanh";
      case ActKind::Softplus: return "softplus";
      case ActKind::Softsign: return "softsign";
      case ActKind::Swish: return "silu";
      case ActKind::Mish: return "mish";
      case ActKind::Exponential: return "exponential";
      case ActKind::Softmax: return "softmax";
      default: return "";
    }
  }

  // Layers applying `a` to layer `in`; returns the last one.
  int add_activation(const Node& n, const Activation& a, int in, const std::string& name, std::set<std::string>& used) {
    auto fresh = [&](const std::string& base) {
      std::string s = base;
      for (int k = 1; used.count(s); ++k) s = base + "_" + std::to_string(k);
      used.insert(s);
      return s;
    };
    WLayer w;
    w.inputs = {in};
    w.shape = layers_[in].shape;
    w.name = name.empty() ? fresh(layers_[in].name + "_activation") : name;
    const ActParams& p = a.params;
    const std::string s = act_string(a);
    if (!s.empty() && a.kind != ActKind::Softmax) {
      w.cls = "Activation";
      w.config = {{"activation", s}};
      return add(w);
    }
    switch (a.kind) {
      case ActKind::Softmax:
        w.cls = "Softmax";
        w.config = {{"axis", -1}};
        return add(w);
      case ActKind::Relu:
        w.cls = "ReLU";
        w.config = {{"max_value", std::isinf(p.max_value) ? json(nullptr) : json(p.max_value)},
                    {"negative_slope", p.alpha},
                    {"threshold", p.threshold}};
        return add(w);
      case ActKind::LeakyRelu:
        w.cls = "LeakyReLU";
        w.config = {{"negative_slope", p.alpha}};
        return add(w);
      case ActKind::Elu:
        w.cls = "ELU";
        w.config = {{"alpha", p.alpha}};
        return add(w);
      case ActKind::PRelu: {
        w.cls = "PReLU";
        json orig = json::parse(n.config_json.empty() ? "{}" : n.config_json, nullptr, false);
        w.config = json::object();
        if (orig.is_object() && orig.contains("shared_axes")) w.config["shared_axes"] = orig["shared_axes"];
        var(w, n, "alpha");
        return add(w);
      }
      case ActKind::HardSigmoidK2: {
        // Keras 2's hard_sigmoid, clip(0.2 x + 0.5, 0, 1), which Keras 3 has no name for.
        w.cls = "Rescaling";
        w.config = {{"scale", 0.2}, {"offset", 0.5}};
        int r = add(w);
        WLayer c;
        c.inputs = {r};
        c.shape = layers_[r].shape;
        c.name = fresh(layers_[in].name + "_clip");
        c.cls = "ReLU";
        c.config = {{"max_value", 1.0}, {"negative_slope", 0.0}, {"threshold", 0.0}};
        return add(c);
      }
      default:
        throw_error(Status::Unsupported, "layer '" + n.name + "': activation '" + a.keras_name +
                                             "' cannot be written in a form Keras 3 loads");
    }
  }

  int lower_node(const Node& n, const std::string& name, std::set<std::string>& used) {
    WLayer w;
    w.name = name;
    w.shape = n.shape;
    for (int in : n.inputs) w.inputs.push_back(map_[in]);
    const int rank = static_cast<int>(n.shape.size()) + 1;  // with the batch axis
    switch (n.op) {
      case OpKind::Input:
        w.cls = "InputLayer";
        w.config = {{"batch_shape", batch(n.shape)}, {"dtype", "float32"}, {"sparse", false}};
        return add(w);
      case OpKind::Dense:
      case OpKind::Conv1D: {
        const std::string s = act_string(n.activation);
        if (n.op == OpKind::Dense) {
          w.cls = "Dense";
          w.config = {{"units", n.units}, {"use_bias", n.use_bias}};
        } else {
          w.cls = "Conv1D";
          const char* pad = n.padding == Padding::Valid ? "valid" : n.padding == Padding::Same ? "same" : "causal";
          w.config = {{"filters", n.units},         {"kernel_size", {n.kernel_size}}, {"strides", {n.stride}},
                      {"padding", pad},            {"dilation_rate", {n.dilation}},  {"use_bias", n.use_bias},
                      {"data_format", "channels_last"}};
        }
        w.config["activation"] = s.empty() ? "linear" : s;
        var(w, n, "kernel");
        if (n.use_bias) var(w, n, "bias");
        int l = add(w);
        if (s.empty()) l = add_activation(n, n.activation, l, "", used);
        return l;
      }
      case OpKind::Activation: return add_activation(n, n.activation, w.inputs[0], name, used);
      case OpKind::Dropout: {
        w.cls = "Dropout";
        json orig = json::parse(n.config_json.empty() ? "{}" : n.config_json, nullptr, false);
        w.config = {{"rate", orig.is_object() && orig.contains("rate") ? orig["rate"] : json(0.5)}};
        return add(w);
      }
      case OpKind::BatchNorm: {
        w.cls = "BatchNormalization";
        const bool scale = n.find("gamma") != nullptr, center = n.find("beta") != nullptr;
        w.config = {{"axis", rank + n.axis}, {"epsilon", n.epsilon}, {"center", center}, {"scale", scale},
                    {"momentum", 0.99}};
        if (scale) var(w, n, "gamma");
        if (center) var(w, n, "beta");
        var(w, n, "moving_mean");
        var(w, n, "moving_variance");
        return add(w);
      }
      case OpKind::Normalization: {
        w.cls = "Normalization";
        w.config = {{"axis", -1}, {"invert", false}};
        if (n.weights.count("mean")) {
          var(w, n, "mean");
          var(w, n, "variance");
          if (!n.weights.count("count"))
            throw_error(Status::Internal, "layer '" + n.name + "': adapted Normalization without 'count'");
          var(w, n, "count");
        } else {
          w.config["mean"] = n.constants.at("mean").data;
          w.config["variance"] = n.constants.at("variance").data;
        }
        return add(w);
      }
      case OpKind::Rescaling: {
        w.cls = "Rescaling";
        for (const char* r : {"scale", "offset"}) {
          const Array* a = n.find(r);
          if (!a) w.config[r] = r[0] == 's' ? 1.0 : 0.0;
          else if (a->size() == 1) w.config[r] = a->data[0];
          else w.config[r] = a->data;
        }
        return add(w);
      }
      case OpKind::Add: w.cls = "Add"; return add(w);
      case OpKind::Subtract: w.cls = "Subtract"; return add(w);
      case OpKind::Multiply: w.cls = "Multiply"; return add(w);
      case OpKind::Average: w.cls = "Average"; return add(w);
      case OpKind::Maximum: w.cls = "Maximum"; return add(w);
      case OpKind::Minimum: w.cls = "Minimum"; return add(w);
      case OpKind::Concatenate:
        w.cls = "Concatenate";
        w.config = {{"axis", n.axis}};
        return add(w);
      case OpKind::Flatten: w.cls = "Flatten"; return add(w);
      case OpKind::Reshape:
        w.cls = "Reshape";
        w.config = {{"target_shape", n.shape}};
        return add(w);
      case OpKind::Custom: break;
    }
    throw_error(Status::Unsupported, "layer '" + n.name + "' (" + n.keras_class +
                                         ") cannot be written as a standard Keras layer");
  }
};

std::string lowercase_ext(const std::string& path) {
  auto dot = path.rfind('.');
  if (dot == std::string::npos) return "";
  std::string e = path.substr(dot);
  for (auto& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

std::string temp_name(const std::string& path) { return path + ".fkb-tmp"; }

void commit_file(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw_error(Status::FileError, "cannot write '" + path + "': " + std::strerror(errno));
  }
}

std::string now_string() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d@%H:%M:%S", std::gmtime(&t));
  return buf;
}

// Keras 3 weights layout: layers/<snake_case_class>[_N]/vars/<i>, plus an empty vars group per layer.
std::vector<char> keras3_weights_image(const Writer& w, const std::vector<int>& order, const std::string& model_name) {
  const std::string where = "model.weights.h5";
  h5::Handle f = h5::create_memory_file("fkb-weights.h5");
  {
    h5::Handle root_vars = h5::create_group(f.get(), "vars", where);
    h5::write_attr_string(root_vars.get(), "name", model_name, where);
  }
  std::map<std::string, int> used;
  for (int l : order) {
    const WLayer& layer = w.layers()[l];
    std::string key = keras::to_snake_case(layer.cls);
    auto it = used.find(key);
    if (it == used.end()) {
      used[key] = 0;
    } else {
      key += "_" + std::to_string(++it->second);
    }
    h5::Handle g = h5::create_group(f.get(), "layers/" + key + "/vars", where);
    h5::write_attr_string(g.get(), "name", layer.name, where);
    for (size_t i = 0; i < layer.vars.size(); ++i) h5::write_array(g.get(), std::to_string(i), *layer.vars[i], where);
  }
  return h5::file_image(f.get());
}

void write_keras_zip(const Writer& w, const std::vector<int>& order, const json& cfg, const std::string& path) {
  const std::string config = cfg.dump();
  const json meta = {{"keras_version", kKerasFormatVersion}, {"date_saved", now_string()},
                     {"fkb_version", FKB_VERSION}};
  const std::string metadata = meta.dump();
  const std::vector<char> weights = keras3_weights_image(w, order, cfg["config"]["name"].get<std::string>());

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

// Legacy HDF5 as Keras 3 writes it (keras/src/legacy/saving/legacy_h5_format.py).
void write_legacy_h5(const Writer& w, const std::vector<int>& order, const json& cfg, const std::string& path) {
  const std::string tmp = temp_name(path);
  try {
    h5::Handle f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), h5::Handle::Kind::File);
    if (!f.valid()) throw_error(Status::FileError, "cannot create '" + path + "'");
    h5::write_attr_string(f.get(), "keras_version", kKerasFormatVersion, path);
    h5::write_attr_string(f.get(), "backend", "tensorflow", path);
    h5::write_attr_string(f.get(), "model_config", cfg.dump(), path);
    h5::Handle mw = h5::create_group(f.get(), "model_weights", path);
    std::vector<std::string> names;
    for (int l : order) names.push_back(w.layers()[l].name);
    h5::write_attr_strings(mw.get(), "layer_names", names, path);
    h5::write_attr_string(mw.get(), "backend", "tensorflow", path);
    h5::write_attr_string(mw.get(), "keras_version", kKerasFormatVersion, path);
    for (int l : order) {
      const WLayer& layer = w.layers()[l];
      h5::Handle g = h5::create_group(mw.get(), layer.name, path);
      std::vector<std::string> wn;
      for (size_t i = 0; i < layer.vars.size(); ++i) {
        wn.push_back(layer.name + "/" + layer.var_roles[i]);
        h5::write_array(g.get(), wn.back(), *layer.vars[i], path);
      }
      h5::write_attr_strings(g.get(), "weight_names", wn, path);
    }
    h5::Handle top = h5::create_group(mw.get(), "top_level_model_weights", path);
    h5::write_attr_strings(top.get(), "weight_names", {}, path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  commit_file(tmp, path);
}

}  // namespace

void save_keras(const Model& model, const std::string& path) {
  const std::string ext = lowercase_ext(path);
  if (ext != ".keras" && ext != ".h5" && ext != ".hdf5")
    throw_error(Status::InvalidArgument, "cannot tell the Keras format from '" + path +
                                             "': use a .keras (Keras 3 zip) or .h5 (legacy HDF5) file name");
  Writer w(model);
  w.lower();
  const std::vector<int> order = w.keras_order();
  const json cfg = w.config(order);
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  if (ext == ".keras") {
    write_keras_zip(w, order, cfg, path);
  } else {
    write_legacy_h5(w, order, cfg, path);
  }
}

}  // namespace fkb
