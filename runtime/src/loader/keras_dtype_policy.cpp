// What a layer's dtype policy says about its stored weights: their float type (bfloat16 needs saying, see
// h5::read_array) and Keras 3 quantization (model.quantize(mode): QuantizedDTypePolicy, "<mode>_from_<source>").
// Keras: keras/src/dtype_policies/dtype_policy.py (names and configs), keras/src/layers/core/dense.py (_int8_build,
// _int8_call), keras/src/quantizers/quantizers.py (AbsMaxQuantizer).
#include <cmath>
#include <string>

#include "fkb/error.hpp"
#include "loader/keras_weights.hpp"

namespace fkb::keras {

namespace {

// The policy's name from the forms Keras writes:
//   "bfloat16", "mixed_float16", "int8_from_float32"                                   (a string; tf-keras, Keras 3.0)
//   {"class_name": "DTypePolicy" | "Policy", "config": {"name": "bfloat16"}}             (Keras 3, tf-keras)
//   {"class_name": "QuantizedDTypePolicy", "config": {"name": "int8_from_float32"}}      (Keras 3.1 - 3.5)
//   {"class_name": "QuantizedDTypePolicy", "config": {"mode": "int8", "source_name": "float32"}}  (Keras 3.6 on)
std::string policy_name_of(const json& d) {
  if (d.is_string())
    return d.get<std::string>();
  if (!d.is_object() || !d.contains("config") || !d["config"].is_object())
    return "";
  const json& c = d["config"];
  if (c.contains("name") && c["name"].is_string())
    return c["name"].get<std::string>();
  if (c.contains("mode") && c["mode"].is_string()) {
    const std::string source = c.contains("source_name") && c["source_name"].is_string()
                                   ? c["source_name"].get<std::string>()
                                   : std::string("float32");
    return c["mode"].get<std::string>() + "_from_" + source;
  }
  return "";
}

bool number_is(const json& v, double want) {
  return v.is_number() && std::fabs(v.get<double>() - want) <= 1e-12 * std::fabs(want);
}

// Why an int8 Dense's input quantizer differs from the one FKB runs (Keras' default AbsMaxQuantizer over the last
// axis, value_range (-127, 127), epsilon 1e-7, int8), or "" when it is that one.
std::string input_quantizer_difference(const LayerSpec& l) {
  const json& c = l.config;
  // No quantization_config (Keras before 3.11): the layer uses the default quantizer.
  if (!c.contains("quantization_config") || c["quantization_config"].is_null())
    return "";
  const json& qc = c["quantization_config"];
  if (!qc.is_object() || !qc.contains("config") || !qc["config"].is_object())
    return "its quantization_config is not an object with a config";
  const json& qcc = qc["config"];
  if (!qcc.contains("activation_quantizer"))
    return "";
  const json& aq = qcc["activation_quantizer"];
  if (aq.is_null())
    return "it quantizes only its weights (activation_quantizer: null), so Keras multiplies float inputs by the "
           "int8 kernel";
  if (class_of(aq) != "AbsMaxQuantizer")
    return "its input quantizer is '" + class_of(aq) + "', not AbsMaxQuantizer";
  const json& q = aq.contains("config") && aq["config"].is_object() ? aq["config"] : json::object();
  if (q.contains("value_range")) {
    const json& r = q["value_range"];
    if (!r.is_array() || r.size() != 2 || !number_is(r[0], -127) || !number_is(r[1], 127))
      return "its input quantizer's value_range is " + brief(r) + ", not [-127, 127]";
  }
  if (q.contains("epsilon") && !number_is(q["epsilon"], 1e-7))
    return "its input quantizer's epsilon is " + brief(q["epsilon"]) + ", not 1e-07";
  if (q.contains("output_dtype") && q["output_dtype"] != "int8")
    return "its input quantizer's output_dtype is " + brief(q["output_dtype"]) + ", not int8";
  if (q.contains("axis") && !q["axis"].is_null() && q["axis"] != json(-1) && q["axis"] != json::array({-1}))
    return "its input quantizer's axis is " + brief(q["axis"]) + ", not the last axis";
  return "";
}

} // namespace

std::string dtype_policy_name(const LayerSpec& l) {
  if (!l.config.is_object() || !l.config.contains("dtype"))
    return "";
  return policy_name_of(l.config["dtype"]);
}

std::string quantization_mode(const LayerSpec& l) {
  const std::string name = dtype_policy_name(l);
  const size_t from = name.find("_from_");
  if (from == std::string::npos)
    return "";
  std::string mode = name.substr(0, from);
  const size_t slash = mode.find('/'); // "int4/128", "gptq/4/128": the mode with its parameters
  return slash == std::string::npos ? mode : mode.substr(0, slash);
}

bool variables_bfloat16(const LayerSpec& l) {
  // A policy's variable dtype: "bfloat16" stores bfloat16, "mixed_bfloat16" float32; a quantized policy keeps its
  // source's (int8_from_bfloat16: bias and scale in bfloat16, the kernel in int8).
  const std::string name = dtype_policy_name(l);
  const std::string suffix = "_from_bfloat16";
  return name == "bfloat16" ||
         (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0);
}

std::string quantization_refusal(const LayerSpec& l) {
  const std::string mode = quantization_mode(l);
  if (mode.empty())
    return "";
  const std::string head = "layer '" + l.name + "' (" + l.cls + ") is quantized by Keras (model.quantize(\"" + mode +
                           "\"), dtype policy '" + dtype_policy_name(l) + "')";
  if (mode != "int8")
    return head + "; FKB runs int8-quantized Dense layers only, not " + mode + " quantization";
  if (l.cls != "Dense")
    return head + "; FKB runs int8-quantized Dense layers only, not int8 " + l.cls;
  const std::string diff = input_quantizer_difference(l);
  if (!diff.empty())
    return head + ", but " + diff +
           "; FKB runs int8 Dense with Keras' default input quantizer (AbsMaxQuantizer over the last axis, "
           "value_range [-127, 127])";
  return "";
}

void check_quantized_tree(const LayerSpec& model, const std::string& where) {
  for (const auto& l : model.layers) {
    if (l.is_model) {
      check_quantized_tree(l, where);
      continue;
    }
    const std::string why = quantization_refusal(l);
    if (!why.empty())
      throw_error(Status::Unsupported, where + ": " + why);
  }
}

void mark_quantized_nodes(Model& m) {
  // own_variables gives an int8 Dense the role "kernel_scale", which no other layer has.
  for (auto& n : m.nodes)
    if (n.op == OpKind::Dense && n.weights.count("kernel_scale"))
      n.quantized_int8 = true;
}

} // namespace fkb::keras
