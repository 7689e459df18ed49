// The custom layer registry (fkb/custom_layer.hpp) and the per-plan CustomCall (custom_call.hpp).
#include "fkb/custom_layer.hpp"

#include <algorithm>
#include <map>
#include <mutex>
#include <new>

#include "custom_call.hpp"
#include "fkb/error.hpp"
#include "loader/keras_config.hpp"

namespace fkb {

namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<const CustomLayer>> layers;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: plans may outlive static destruction order
  return *r;
}

// Calls of a layer implementation that is not thread-safe (C and Fortran callbacks) run one at a time: one lock
// per registered implementation, recursive, so that a callback may itself call predict on a model using the same
// or another custom layer (a process-wide lock deadlocked there).
std::shared_ptr<std::recursive_mutex> serial_mutex_for(const CustomLayer* impl) {
  static std::mutex* mu = new std::mutex;
  static auto* locks = new std::map<const CustomLayer*, std::weak_ptr<std::recursive_mutex>>;
  std::lock_guard<std::mutex> lock(*mu);
  auto& slot = (*locks)[impl];
  std::shared_ptr<std::recursive_mutex> m = slot.lock();
  if (!m) {
    m = std::make_shared<std::recursive_mutex>();
    slot = m;
  }
  return m;
}

std::string bare(const std::string& name) {
  const size_t gt = name.rfind('>');
  return gt == std::string::npos ? name : name.substr(gt + 1);
}

std::string layer_label(const CustomLayerInfo& i) { return "layer '" + i.layer_name + "' (" + i.class_name + ")"; }

}  // namespace

void register_custom_layer(const std::string& class_name, CustomLayer layer) {
  if (class_name.empty() || bare(class_name).empty())
    throw_error(Status::InvalidArgument, "register_custom_layer: the class name is empty");
  if (keras::is_builtin_class(bare(class_name)))
    throw_error(Status::InvalidArgument, "register_custom_layer: '" + class_name +
                                             "' is a built-in Keras layer class that FKB implements itself");
  if (!layer.output_shape)
    throw_error(Status::InvalidArgument, "register_custom_layer: '" + class_name + "' has no output_shape function");
  if (!layer.cpu)
    throw_error(Status::InvalidArgument, "register_custom_layer: '" + class_name + "' has no cpu function");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.layers.count(class_name))
    throw_error(Status::InvalidArgument,
                "register_custom_layer: '" + class_name + "' is already registered (unregister_custom_layer it first)");
  r.layers[class_name] = std::make_shared<const CustomLayer>(std::move(layer));
}

bool unregister_custom_layer(const std::string& class_name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.layers.erase(class_name) > 0;
}

std::shared_ptr<const CustomLayer> find_custom_layer(const std::string& file_class) {
  if (file_class.empty()) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.layers.find(file_class);
  if (it != r.layers.end()) return it->second;
  const bool file_qualified = file_class.find('>') != std::string::npos;
  const std::string name = bare(file_class);
  for (const auto& kv : r.layers) {
    const bool reg_qualified = kv.first.find('>') != std::string::npos;
    // "Name" serves "pkg>Name"; "pkg>Name" serves the bare "Name" of a .keras file. Two different packages
    // never match each other.
    if (file_qualified && !reg_qualified && kv.first == name) return kv.second;
    if (!file_qualified && reg_qualified && bare(kv.first) == name) return kv.second;
  }
  return nullptr;
}

std::vector<std::string> registered_custom_layers() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> out;
  for (const auto& kv : r.layers) out.push_back(kv.first);
  return out;
}

std::vector<const Array*> custom_layer_weights(const Node& node) {
  std::vector<const Array*> out;
  for (size_t i = 0;; ++i) {
    auto it = node.weights.find(std::to_string(i));
    if (it == node.weights.end()) break;
    out.push_back(&it->second);
  }
  return out;
}

CustomLayerInfo make_custom_layer_info(const Model& model, const Node& node) {
  if (node.op != OpKind::Custom || !find_custom_layer(node.keras_class))
    throw_error(Status::Unsupported, "layer '" + node.name + "' has class '" + node.keras_class +
                                         "', which is not a registered custom layer");
  CustomLayerInfo info;
  info.class_name = node.keras_class;
  info.layer_name = node.name;
  info.config_json = node.config_json;
  for (int i : node.inputs) {
    info.input_shapes.push_back(model.nodes[static_cast<size_t>(i)].shape);
    info.input_sizes.push_back(shape_size(info.input_shapes.back()));
  }
  info.output_shape = node.shape;
  info.output_size = shape_size(node.shape);
  info.weights = custom_layer_weights(node);
  return info;
}

// ---------------------------------------------------------------------------------------------------------------------

std::shared_ptr<const CustomCall> CustomCall::make(const Model& model, const Node& node) {
  auto impl = find_custom_layer(node.keras_class);
  if (!impl || node.op != OpKind::Custom)
    throw_error(Status::Unsupported, "layer '" + node.name + "' has class '" + node.keras_class +
                                         "', which is not a registered custom layer (register it with "
                                         "fkb::register_custom_layer or fkb_register_layer before compiling)");
  std::shared_ptr<CustomCall> c(new CustomCall);
  c->impl_ = impl;
  if (!impl->thread_safe) c->serial_ = serial_mutex_for(impl.get());
  c->info_ = make_custom_layer_info(model, node);
  // Own copies of the weights: the plan must not depend on the Model it was compiled from.
  c->weights_.reserve(c->info_.weights.size());
  for (const Array* a : c->info_.weights) c->weights_.push_back(*a);
  for (size_t i = 0; i < c->weights_.size(); ++i) c->info_.weights[i] = &c->weights_[i];
  if (impl->prepare) {
    try {
      c->state_ = impl->prepare(c->info_);
    } catch (const Error& e) {
      throw_error(e.status(), layer_label(c->info_) + ": prepare failed: " + e.what());
    } catch (const std::exception& e) {
      throw_error(Status::InvalidArgument, layer_label(c->info_) + ": prepare failed: " + e.what());
    }
    c->info_.state = c->state_.get();
  }
  return c;
}

std::exception_ptr CustomCall::run_cpu(const float* const* inputs, int64_t ncol, float* output) const noexcept {
  try {
    try {
      if (impl_->thread_safe) {
        impl_->cpu(info_, inputs, ncol, output);
      } else {
        std::lock_guard<std::recursive_mutex> lock(*serial_);
        impl_->cpu(info_, inputs, ncol, output);
      }
      return nullptr;
    } catch (const Error& e) {
      throw_error(e.status(), layer_label(info_) + ": " + e.what());
    } catch (const std::bad_alloc&) {
      throw_error(Status::OutOfMemory, layer_label(info_) + ": out of memory");
    } catch (const std::exception& e) {
      throw_error(Status::Internal, layer_label(info_) + ": the custom layer failed: " + e.what());
    } catch (...) {
      throw_error(Status::Internal, layer_label(info_) + ": the custom layer failed with an unknown exception");
    }
  } catch (...) {
    return std::current_exception();
  }
}

void CustomCall::run_cuda(const float* const* inputs, int64_t ncol, float* output, void* stream) const {
  try {
    impl_->cuda(info_, inputs, ncol, output, stream);
  } catch (const Error& e) {
    throw_error(e.status(), layer_label(info_) + ": " + e.what());
  } catch (const std::exception& e) {
    throw_error(Status::Internal, layer_label(info_) + ": the custom layer's cuda function failed: " + e.what());
  }
}

}  // namespace fkb
