// JSON and YAML text documents (model configs, config.json, metadata.json, weights-only configs, the ensemble YAML)
// parsed under the loading policy's limits (README "Loading policy: what FKB refuses"): document size, nesting
// depth, and the number and bytes of values after YAML aliases are expanded. Nothing here recurses per nesting level.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "loader/limits.hpp"

namespace fkb::keras {

using json = nlohmann::json;

/// Parse a JSON or YAML document (YAML converted event by event, Keras' PyYAML scalars) under `limits`. `where`
/// names the file and `what` the document ("the model config", "the ensemble config") in messages. Throws
/// FormatError naming the limit or the syntax error.
json parse_document(const std::string& text, const std::string& where, const std::string& what, bool yaml,
                    const loader::Limits& limits);

/// parse_document for a Keras model config: {"class_name": ..., "config": ...} (model_config attribute,
/// config.json, to_json()).
json parse_config_text(const std::string& text, const std::string& where, bool yaml, const loader::Limits& limits);

}  // namespace fkb::keras
