// The variables of a leaf Keras layer in the order Keras creates them (their roles in the IR), and Keras' naming
// rules used for .keras weight paths.
#include <string>
#include <vector>

#include "loader/keras_config.hpp"
#include "loader/keras_weights.hpp"

namespace fkb::keras {

std::string to_snake_case(const std::string& name) {
  // keras/src/utils/naming.py to_snake_case: re.sub(r"\W+", "", name), then r"(.)([A-Z][a-z]+)" -> r"\1_\2", then
  // r"([a-z])([A-Z])" -> r"\1_\2", then lower(). Written as scans: std::regex recurses once per character and
  // overflows the stack on a long name.
  auto upper = [](char c) { return c >= 'A' && c <= 'Z'; };
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  std::string s;
  for (char c : name)
    if (upper(c) || lower(c) || (c >= '0' && c <= '9') || c == '_') s += c;
  std::string t;
  for (size_t i = 0; i < s.size();) {
    if (i + 2 < s.size() && upper(s[i + 1]) && lower(s[i + 2])) {
      size_t j = i + 3;
      while (j < s.size() && lower(s[j])) ++j;
      t += s[i];
      t += '_';
      t.append(s, i + 1, j - i - 1);
      i = j;
    } else {
      t += s[i++];
    }
  }
  std::string u;
  for (size_t i = 0; i < t.size();) {
    if (i + 1 < t.size() && lower(t[i]) && upper(t[i + 1])) {
      u += t[i];
      u += '_';
      u += t[i + 1];
      i += 2;
    } else {
      u += t[i++];
    }
  }
  for (auto& c : u)
    if (upper(c)) c = static_cast<char>(c - 'A' + 'a');
  return u;
}

std::vector<VarSpec> own_variables(const LayerSpec& l, int /*keras_major*/) {
  std::vector<VarSpec> v;
  const json& c = l.config;
  const bool t = l.trainable;
  if (l.cls == "Dense" && quantization_mode(l) == "int8") {
    // Keras 3 Dense.variable_serialization_spec["int8"]: kernel (int8), bias, kernel_scale; the int8 kernel and its
    // scale are created non-trainable (Dense._int8_build), which orders the legacy .h5 list bias, kernel, scale.
    v.push_back({"kernel", false});
    if (c.value("use_bias", true)) v.push_back({"bias", t});
    v.push_back({"kernel_scale", false});
  } else if (l.cls == "Dense" || l.cls == "Conv1D") {
    v.push_back({"kernel", t});
    if (c.value("use_bias", true)) v.push_back({"bias", t});
  } else if (l.cls == "BatchNormalization") {
    if (c.value("scale", true)) v.push_back({"gamma", t});
    if (c.value("center", true)) v.push_back({"beta", t});
    v.push_back({"moving_mean", false});
    v.push_back({"moving_variance", false});
  } else if (l.cls == "PReLU") {
    v.push_back({"alpha", t});
  } else if (l.cls == "Normalization") {
    const bool given = c.contains("mean") && !c["mean"].is_null();
    if (!given) {
      v.push_back({"mean", false});
      v.push_back({"variance", false});
      v.push_back({"count", false});
    }
  }
  return v;
}

}  // namespace fkb::keras
