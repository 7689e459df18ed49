// Reading Keras weights into a LayerSpec tree, for both layouts Keras writes:
//  - legacy HDF5 (model.save('x.h5') / save_weights('x.h5')): one group per top-level layer with a
//    `weight_names` attribute listing datasets, in the order of layer.trainable_weights +
//    layer.non_trainable_weights (keras/src/legacy/saving/legacy_h5_format.py, `_legacy_weights`).
//    Datasets are resolved through `weight_names`, never guessed from layer names.
//  - Keras 3 (.keras zip's model.weights.h5, x.weights.h5): layers/<snake_case_class>[_N]/vars/<i>
//    (keras/src/saving/saving_lib.py, `_save_container_state`).
#include "loader/keras_weights.hpp"

#include <algorithm>
#include <map>

#include "fkb/error.hpp"
#include "loader/h5.hpp"

namespace fkb::keras {

namespace {

struct Slot {
  LayerSpec* layer;
  VarSpec var;
  size_t index;  ///< position in own_variables(layer): LayerSpec::weights keeps that order
};

// The order Keras' legacy format lists a layer's weights: all trainable variables of the layer and its
// sublayers in layer order, then all non-trainable ones. A frozen layer's variables all count as
// non-trainable, in their own order.
void gather(LayerSpec& l, int major, std::vector<Slot>* trainable, std::vector<Slot>* frozen) {
  if (!l.is_model) {
    const auto vars = own_variables(l, major);
    for (size_t i = 0; i < vars.size(); ++i)
      (vars[i].trainable && l.trainable ? trainable : frozen)->push_back({&l, vars[i], i});
    return;
  }
  if (!l.trainable) {
    for (auto& c : l.layers) {
      std::vector<Slot> t, n;
      gather(c, major, &t, &n);
      frozen->insert(frozen->end(), t.begin(), t.end());
      frozen->insert(frozen->end(), n.begin(), n.end());
    }
    return;
  }
  for (auto& c : l.layers) gather(c, major, trainable, frozen);
}

// "dense_21_1/kernel:0" -> "kernel"; "sequential/dense/bias" -> "bias".
std::string var_role(const std::string& name) {
  std::string s = name;
  size_t slash = s.rfind('/');
  if (slash != std::string::npos) s = s.substr(slash + 1);
  size_t colon = s.rfind(':');
  if (colon != std::string::npos) s = s.substr(0, colon);
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += (s.empty() ? "" : ", ") + e;
  return s.empty() ? "none" : s;
}

// Whether an attribute exists with zero elements.
bool attr_empty(hid_t loc, const char* name) {
  if (!h5::has_attr(loc, name)) return false;
  h5::Handle a(H5Aopen(loc, name, H5P_DEFAULT), h5::Handle::Kind::Attribute);
  if (!a.valid()) return false;
  h5::Handle space(H5Aget_space(a.get()), h5::Handle::Kind::Dataspace);
  return space.valid() && H5Sget_simple_extent_npoints(space.get()) == 0;
}

bool has_custom(const LayerSpec& l) {
  if (is_registered_custom(l)) return true;
  for (const auto& c : l.layers)
    if (has_custom(c)) return true;
  return false;
}

// What the config fixes about a variable's shape, checked before the weight is read: a Dense/Conv1D kernel ends in
// `units`/`filters` (Keras: kernel (input_dim, units) / (kernel_size, in_channels, filters)), its bias is (units,).
// Other layers' shapes depend on their inputs and are checked when the graph is built.
// An int8 Dense's kernel_scale is (units,) (Dense._int8_build).
const h5::ShapeRule* shape_rule(const LayerSpec& l, const std::string& role, h5::ShapeRule* out) {
  if ((l.cls != "Dense" && l.cls != "Conv1D") || (role != "kernel" && role != "bias" && role != "kernel_scale"))
    return nullptr;
  const char* key = l.cls == "Dense" ? "units" : "filters";
  auto it = l.config.find(key);
  if (it == l.config.end() || !it->is_number_integer() || it->get<int64_t>() < 0) return nullptr;
  out->last_dim = it->get<int64_t>();
  out->rank = role == "kernel" ? (l.cls == "Dense" ? 2 : 3) : 1;
  out->why = std::string(key) + "=" + std::to_string(out->last_dim) + " in the config";
  return out;
}

Array read_weight(hid_t loc, const std::string& path, const std::string& where, loader::WeightBudget& budget,
                  const LayerSpec& l, const std::string& role) {
  h5::ShapeRule r;
  return h5::read_array(loc, path, where, budget, shape_rule(l, role, &r), variables_bfloat16(l));
}

void clear_weights(LayerSpec& l) {
  l.weights.clear();
  l.weight_names.clear();
  for (auto& c : l.layers) clear_weights(c);
}

}  // namespace

void read_legacy_weights(hid_t group, const std::string& where, LayerSpec& model, int keras_major,
                         loader::WeightBudget& budget) {
  clear_weights(model);
  for (auto& child : model.layers) {
    if (child.cls == "InputLayer") continue;
    if (is_registered_custom(child)) {
      // A registered custom layer: FKB cannot know its variables from the config, so it takes every weight
      // the file lists for it, in the file's order.
      const std::string lw = where + ": layer '" + child.name + "' (" + child.cls + ")";
      const std::string gwhat = "weights group '" + child.name + "'";
      if (!h5::is_group(group, child.name, lw, gwhat)) continue;
      h5::Handle g = h5::open_group(group, child.name, lw, gwhat);
      if (attr_empty(g.get(), "weight_names")) continue;  // h5py writes an empty list as a 0-length float array
      for (const auto& name : h5::attr_strings(g.get(), "weight_names", lw)) {
        child.weights.push_back(h5::read_array(g.get(), name, lw, budget, nullptr, variables_bfloat16(child)));
        child.weight_names.push_back(name);
      }
      continue;
    }
    std::vector<Slot> slots, frozen;
    gather(child, keras_major, &slots, &frozen);
    slots.insert(slots.end(), frozen.begin(), frozen.end());
    if (slots.empty()) continue;

    const std::string lw = where + ": layer '" + child.name + "' (" + child.cls + ")";
    const std::string gwhat = "weights group '" + child.name + "'";
    if (!h5::is_group(group, child.name, lw, gwhat))
      throw_error(Status::FormatError, lw + ": the file has no weights group '" + child.name + "'");
    h5::Handle g = h5::open_group(group, child.name, lw, gwhat);
    const auto names = h5::attr_strings(g.get(), "weight_names", lw);
    std::vector<std::string> expected;
    for (const auto& s : slots) expected.push_back(s.var.role);
    if (names.size() != slots.size())
      throw_error(Status::FormatError, lw + ": the file lists " + std::to_string(names.size()) + " weight(s) (" +
                                           join(names) + ") but the config implies " + std::to_string(slots.size()) +
                                           " (" + join(expected) + ")" +
                                           (has_custom(child) ? "; custom layers with weights inside nested models "
                                                                "are supported in .keras files only"
                                                              : ""));
    // The file's order (trainable first) can differ from Keras' creation order (an int8 Dense: bias, kernel,
    // kernel_scale): each weight goes to its own_variables position.
    for (const auto& s : slots) {
      s.layer->weights.resize(std::max(s.layer->weights.size(), s.index + 1));
      s.layer->weight_names.resize(s.layer->weights.size());
    }
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string role = var_role(names[i]);
      if (role != slots[i].var.role)
        throw_error(Status::FormatError, lw + ": weight " + std::to_string(i) + " is '" + names[i] +
                                             "' but the config implies '" + slots[i].var.role + "' (" +
                                             join(expected) + ")");
      // A weight of a nested model's layer: messages name the layer it belongs to.
      const std::string vw = slots[i].layer == &child
                                 ? lw
                                 : lw + ": layer '" + slots[i].layer->name + "' (" + slots[i].layer->cls + ")";
      slots[i].layer->weights[slots[i].index] = read_weight(g.get(), names[i], vw, budget, *slots[i].layer, role);
      slots[i].layer->weight_names[slots[i].index] = names[i];
    }
  }
}

VarStore::Found SingleFileStore::find(const std::string& vars_group, size_t index, const std::string& where) {
  const std::string vpath = vars_group + "/" + std::to_string(index);
  if (!h5::exists(file_, vpath, where, "weight '" + vpath + "'")) return {};
  return {file_, where};
}

void read_keras3_weights(hid_t file, const std::string& base, const std::string& where, LayerSpec& model,
                         int keras_major, loader::WeightBudget& budget) {
  SingleFileStore store(file);
  read_keras3_weights(store, base, where, model, keras_major, budget);
}

namespace {

// A leaf whose vars group is absent, waiting for the copy of the same layer elsewhere in the tree.
struct Pending {
  LayerSpec* layer;
  std::string missing;  // the error if no copy is found
};

// The leaf of `model`'s tree (other than `self`) that is the same Keras layer as `self`: same name, class and config,
// with its variables read.
const LayerSpec* same_layer(const LayerSpec& model, const LayerSpec& self) {
  for (const auto& l : model.layers) {
    if (l.is_model) {
      if (const LayerSpec* f = same_layer(l, self)) return f;
    } else if (&l != &self && !l.weights.empty() && l.name == self.name && l.cls == self.cls &&
               without_object_ids(l.config) == without_object_ids(self.config)) {
      return &l;
    }
  }
  return nullptr;
}

void read_keras3_tree(VarStore& store, const std::string& base, const std::string& where, LayerSpec& model,
                      int keras_major, loader::WeightBudget& budget, std::vector<Pending>& pending);

}  // namespace

void read_keras3_weights(VarStore& store, const std::string& base, const std::string& where, LayerSpec& model,
                         int keras_major, loader::WeightBudget& budget) {
  if (base.empty()) clear_weights(model);
  std::vector<Pending> pending;
  read_keras3_tree(store, base, where, model, keras_major, budget, pending);
  // A layer used inside a nested model and again outside it appears twice in the config, but Keras 3 saves its
  // variables once, under one of the two paths: the other copy takes them (the graph builder then ties the calls).
  for (const Pending& p : pending) {
    const LayerSpec* src = same_layer(model, *p.layer);
    if (!src) throw_error(Status::FormatError, p.missing);
    p.layer->weights = src->weights;
    p.layer->weight_names = src->weight_names;
  }
}

namespace {

void read_keras3_tree(VarStore& store, const std::string& base, const std::string& where, LayerSpec& model,
                      int keras_major, loader::WeightBudget& budget, std::vector<Pending>& pending) {
  std::map<std::string, int> used;
  for (auto& child : model.layers) {
    std::string cls = child.cls;
    size_t gt = cls.rfind('>');  // registered custom classes: "package>Name"
    if (gt != std::string::npos) cls = cls.substr(gt + 1);
    std::string name = to_snake_case(cls);
    auto it = used.find(name);
    if (it == used.end()) {
      used[name] = 0;
    } else {
      name += "_" + std::to_string(++it->second);
    }
    const std::string path = (base.empty() ? "" : base + "/") + "layers/" + name;
    if (child.is_model) {
      read_keras3_tree(store, path, where, child, keras_major, budget, pending);
      continue;
    }
    const std::string lw = where + ": layer '" + child.name + "' (" + child.cls + ")";
    const std::string vars_group = path + "/vars";
    if (is_registered_custom(child)) {
      // A registered custom layer takes every variable the file holds for it: vars/0, vars/1, ...
      for (size_t i = 0;; ++i) {
        const VarStore::Found f = store.find(vars_group, i, lw);
        if (f.file < 0) break;
        const std::string vpath = vars_group + "/" + std::to_string(i);
        child.weights.push_back(h5::read_array(f.file, vpath, f.where, budget, nullptr, variables_bfloat16(child)));
        child.weight_names.push_back(vpath);
      }
      continue;
    }
    const auto vars = own_variables(child, keras_major);
    if (!vars.empty() && store.find(vars_group, 0, lw).file < 0) {
      pending.push_back({&child, lw + ": weight '" + vars[0].role + "' is missing (expected dataset '" + vars_group +
                                     "/0')"});
      continue;
    }
    for (size_t i = 0; i < vars.size(); ++i) {
      const std::string vpath = vars_group + "/" + std::to_string(i);
      const VarStore::Found f = store.find(vars_group, i, lw);
      if (f.file < 0)
        throw_error(Status::FormatError, lw + ": weight '" + vars[i].role + "' is missing (expected dataset '" +
                                             vpath + "')");
      child.weights.push_back(read_weight(f.file, vpath, f.where, budget, child, vars[i].role));
      child.weight_names.push_back(vpath);
    }
    if (store.find(vars_group, vars.size(), lw).file >= 0)
      throw_error(Status::FormatError, lw + ": the file holds more weights under '" + vars_group +
                                           "' than the config implies (" + std::to_string(vars.size()) + ")");
  }
}

}  // namespace

}  // namespace fkb::keras
