// The body of fuzz_config_json and fuzz_config_yaml: a model config text (model_config attribute, config.json,
// a weights-only JSON/YAML config) parsed under the default limits, turned into the layer-spec tree and checked
// for supported layers, as Model::load does before it reads any weight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "loader/keras_config.hpp"
#include "loader/limits.hpp"

namespace fkb_fuzz {

inline int fuzz_config(const uint8_t* data, size_t size, bool yaml) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fkb::LoadLimits l = load_limits();
  const std::string where = yaml ? "fuzz.yaml" : "fuzz.json";
  run_guarded([&] {
    const fkb::keras::json doc = fkb::keras::parse_config_text(text, where, yaml, fkb::loader::resolve(l));
    const fkb::keras::LayerSpec top = fkb::keras::parse_model_config(doc, where);
    fkb::keras::check_supported_tree(top, where);
  });
  return 0;
}

} // namespace fkb_fuzz
