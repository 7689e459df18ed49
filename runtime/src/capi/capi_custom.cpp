// The C API of custom layers (fkb.h, fkb_register_layer*): a C function (or a Fortran bind(c) procedure)
// wrapped as an fkb::CustomLayer whose calls are serialized (thread_safe = false) and whose status codes
// become fkb::Error.
#include <string>

#include "capi/capi_internal.hpp"
#include "fkb/custom_layer.hpp"
#include "fkb/fkb.h"

namespace {

using fkb::capi::guarded;
using fkb::capi::invalid;

fkb::Status status_of(int code) {
  return code >= FKB_ERR_INVALID_ARGUMENT && code <= FKB_ERR_INTERNAL ? static_cast<fkb::Status>(code)
                                                                      : fkb::Status::Internal;
}

void do_register(const char* fn_name, const char* class_name, fkb_layer_fn fn, int64_t n_out, fkb_shape_fn shape_fn,
                 void* user_data) {
  if (!class_name) invalid(std::string(fn_name) + ": class_name is NULL");
  if (!fn) invalid(std::string(fn_name) + ": the layer function is NULL");
  if (n_out < 0)
    invalid(std::string(fn_name) + ": n_out must be >= 0 (0 = the input's shape), got " + std::to_string(n_out));
  const std::string cls = class_name;
  fkb::CustomLayer layer;
  layer.thread_safe = false;
  layer.output_shape = [cls, n_out, shape_fn, user_data](const std::vector<fkb::Shape>& in, const std::string& config) {
    if (in.size() != 1)
      fkb::throw_error(fkb::Status::Unsupported, "custom layer class '" + cls +
                                                     "' registered through the C API takes "
                                                     "one input, the layer has " +
                                                     std::to_string(in.size()));
    if (shape_fn) {
      int64_t nout = -1;
      const int rc = shape_fn(fkb::shape_size(in[0]), config.c_str(), &nout, user_data);
      if (rc != 0)
        fkb::throw_error(status_of(rc), "the shape function of '" + cls + "' returned " + std::to_string(rc));
      return fkb::Shape{nout};
    }
    return n_out > 0 ? fkb::Shape{n_out} : in[0];
  };
  layer.cpu = [cls, fn, user_data](const fkb::CustomLayerInfo& l, const float* const* x, int64_t ncol, float* y) {
    const int rc = fn(x[0], ncol, l.input_sizes[0], y, l.output_size, user_data);
    if (rc != 0) fkb::throw_error(status_of(rc), "the layer function of '" + cls + "' returned " + std::to_string(rc));
  };
  fkb::register_custom_layer(cls, std::move(layer));
}

}  // namespace

extern "C" {

int fkb_register_layer(const char* class_name, fkb_layer_fn fn, int64_t n_out, void* user_data) {
  return guarded("fkb_register_layer",
                 [&] { do_register("fkb_register_layer", class_name, fn, n_out, nullptr, user_data); });
}

int fkb_register_layer_ex(const char* class_name, fkb_layer_fn fn, fkb_shape_fn shape_fn, void* user_data) {
  return guarded("fkb_register_layer_ex", [&] {
    if (!shape_fn)
      invalid("fkb_register_layer_ex: the shape function is NULL (use fkb_register_layer for a fixed size)");
    do_register("fkb_register_layer_ex", class_name, fn, 0, shape_fn, user_data);
  });
}

int fkb_unregister_layer(const char* class_name) {
  return guarded("fkb_unregister_layer", [&] {
    if (!class_name) invalid("fkb_unregister_layer: class_name is NULL");
    if (!fkb::unregister_custom_layer(class_name))
      invalid(std::string("fkb_unregister_layer: '") + class_name + "' is not registered");
  });
}

}  // extern "C"
