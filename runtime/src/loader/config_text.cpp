// JSON and YAML documents under the loading policy's limits (see config_text.hpp).
#include "loader/config_text.hpp"

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "fkb/error.hpp"

namespace fkb::keras {

namespace {

[[noreturn]] void format_error(const std::string& where, const std::string& what) {
  throw_error(Status::FormatError, where + ": " + what);
}


// yaml-cpp 0.7's parser recurses a few frames per nesting level and throws DeepRecursion near 500 levels; FKB stops
// YAML documents at 400 levels, where that recursion fits a 2 MiB thread stack (tests/unit/test_loader_text_policy.cpp;
// it needs about 250 KiB in one Release build and over 256 KiB in another, depending on inlining).
constexpr int kMaxYamlDepth = 400;

// yaml-cpp reads a few MB/s (a long plain scalar: about 1 MB/s) and FKB reads a YAML document twice (counting, then
// building): at 64 MiB a document took minutes. Keras YAML configs are kilobytes; at most this much.
constexpr uint64_t kMaxYamlBytes = uint64_t{4} << 20;

std::string mark_str(const YAML::Mark& m) {
  return "line " + std::to_string(m.line + 1) + ", column " + std::to_string(m.column + 1);
}

// What a YAML scalar means in a Keras config (Keras writes them with PyYAML's safe_dump).
json yaml_scalar(const std::string& tag, const std::string& s) {
  if (tag == "!") return s;  // quoted scalar: always a string
  if (s == "null" || s == "~" || s.empty()) return nullptr;
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  if (s == ".inf") return INFINITY;
  try {
    size_t pos = 0;
    long long v = std::stoll(s, &pos);
    if (pos == s.size()) return v;
  } catch (...) {
  }
  try {
    size_t pos = 0;
    double v = std::stod(s, &pos);
    if (pos == s.size()) return v;
  } catch (...) {
  }
  return s;
}

// YAML events -> JSON, counting what the document becomes once its aliases are expanded: values, bytes of
// scalars and nesting depth, each checked before the node is made. yaml-cpp's own Node API shares aliased
// nodes, so walking it re-visits them without limit (the "billion laughs" file: 500 bytes, 10^9 values).
// Run twice: first with build = false (counting only, so a bomb is refused in microseconds), then to build.
class YamlToJson final : public YAML::EventHandler {
 public:
  YamlToJson(const std::string& where, const std::string& what, const loader::Limits& lim, bool build)
      : where_(where), what_(what), lim_(lim), max_depth_(std::min(lim.max_config_depth, kMaxYamlDepth)),
        build_(build) {}

  json take() { return std::move(result_); }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { scalar(mark, anchor, nullptr, 0, nullptr); }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    scalar(mark, anchor, build_ ? yaml_scalar(tag, value) : json(), value.size(), &value);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor, false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor, true);
  }
  void OnMapEnd() override { close(); }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end())
      format_error(where_, what_ + " is not valid YAML: the alias at " + mark_str(mark) +
                               " refers to a node that contains it");
    const Anchored& a = it->second;
    aliases_ = true;
    count(mark, a.values, a.bytes);
    const int depth = static_cast<int>(stack_.size()) + a.height;
    if (depth > max_depth_) too_deep(mark);
    if (!stack_.empty()) stack_.back().deepest = std::max(stack_.back().deepest, depth);
    attach(mark, build_ ? a.value : json(), a.scalar ? &a.raw : nullptr);
  }

 private:
  struct Frame {
    json value;
    bool map = false;
    bool have_key = false;
    std::string key;
    YAML::anchor_t anchor = 0;
    uint64_t values_before = 0, bytes_before = 0;
    int deepest = 0;  // deepest nesting level reached inside, counted from the document's top
    YAML::Mark mark;
  };
  // An anchored node, as its aliases expand to.
  struct Anchored {
    json value;
    uint64_t values = 0, bytes = 0;
    int height = 0;       // nesting levels it adds where an alias puts it (0 for a scalar)
    bool scalar = false;  // a scalar can be a mapping key; `raw` is its text
    std::string raw;
  };

  [[noreturn]] void too_deep(const YAML::Mark& mark) const {
    format_error(where_, what_ + " is nested deeper than " + std::to_string(max_depth_) + " levels (at " +
                             mark_str(mark) + (aliases_ ? ", after expanding aliases" : "") +
                             "), over the limit for a YAML document (LoadLimits::max_config_depth; at most " +
                             std::to_string(kMaxYamlDepth) + " for YAML)");
  }

  // `copy`: the copy an anchor keeps for its aliases, counted apart from the document (values_/bytes_ measure the
  // document itself) but against the same limits.
  void count(const YAML::Mark& mark, uint64_t values, uint64_t bytes, bool copy = false) {
    const std::string how = copy ? " counting the copies its YAML anchors keep (at " + mark_str(mark) + ")"
                                 : " once its YAML aliases are expanded (at " + mark_str(mark) + ")";
    if (values > lim_.max_config_values - values_ - copied_values_)
      format_error(where_, what_ + " holds more than " + std::to_string(lim_.max_config_values) + " values" +
                               (aliases_ || copy ? how : "") +
                               ", over the limit for one JSON/YAML document (LoadLimits::max_config_values)");
    if (bytes > lim_.max_config_bytes - bytes_ - copied_bytes_)
      format_error(where_, what_ + " grows past " + loader::bytes_str(lim_.max_config_bytes) + how +
                               ", over the limit for one JSON/YAML document (FKB_MAX_CONFIG_BYTES)");
    (copy ? copied_values_ : values_) += values;
    (copy ? copied_bytes_ : bytes_) += bytes;
  }

  void scalar(const YAML::Mark& mark, YAML::anchor_t anchor, json v, size_t bytes, const std::string* raw) {
    count(mark, 1, bytes);
    if (anchor) anchors_[anchor] = Anchored{build_ ? v : json(), 1, bytes, 0, raw != nullptr, raw ? *raw : ""};
    attach(mark, std::move(v), raw);
  }

  void open(const YAML::Mark& mark, YAML::anchor_t anchor, bool map) {
    count(mark, 1, 0);
    if (static_cast<int>(stack_.size()) + 1 > max_depth_) too_deep(mark);
    Frame f;
    if (build_) f.value = map ? json::object() : json::array();
    f.map = map;
    f.anchor = anchor;
    if (anchor) ++anchored_open_;
    f.values_before = values_ - 1;
    f.bytes_before = bytes_;
    f.deepest = static_cast<int>(stack_.size()) + 1;
    f.mark = mark;
    stack_.push_back(std::move(f));
  }

  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    const int level = static_cast<int>(stack_.size()) + 1;
    if (!stack_.empty()) stack_.back().deepest = std::max(stack_.back().deepest, f.deepest);
    // An anchored node is copied for its aliases, once; inside another anchored node it is copied again with it, and
    // anchors nested d deep copy a subtree d times: those copies count too.
    if (f.anchor && --anchored_open_ > 0) count(f.mark, values_ - f.values_before, bytes_ - f.bytes_before, true);
    if (f.anchor)
      anchors_[f.anchor] = Anchored{build_ ? f.value : json(), values_ - f.values_before, bytes_ - f.bytes_before,
                                    f.deepest - level + 1, false, ""};
    attach(f.mark, std::move(f.value), nullptr);
  }

  // Put a finished node into its parent (or make it the document); `raw` is a scalar's text, for mapping keys.
  void attach(const YAML::Mark& mark, json v, const std::string* raw) {
    if (stack_.empty()) {
      result_ = std::move(v);
      return;
    }
    Frame& f = stack_.back();
    if (!f.map) {
      if (build_) f.value.push_back(std::move(v));
    } else if (!f.have_key) {
      if (!raw)
        format_error(where_, what_ + " has a mapping key that is not a string (at " + mark_str(mark) +
                                 "); Keras configs have string keys");
      f.key = *raw;
      f.have_key = true;
    } else {
      if (build_) f.value[f.key] = std::move(v);
      f.have_key = false;
    }
  }

  const std::string& where_;
  const std::string& what_;
  const loader::Limits& lim_;
  const int max_depth_;
  const bool build_;
  std::vector<Frame> stack_;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
  json result_;
  uint64_t values_ = 0, bytes_ = 0;
  uint64_t copied_values_ = 0, copied_bytes_ = 0;  // the copies of nested anchored nodes
  int anchored_open_ = 0;                           // anchored nodes open around the current one
  bool aliases_ = false;
};

json parse_yaml(const std::string& text, const std::string& where, const std::string& what,
                const loader::Limits& lim) {
  json out;
  for (const bool build : {false, true}) {
    std::istringstream in(text);
    YamlToJson h(where, what, lim, build);
    try {
      YAML::Parser parser(in);
      parser.HandleNextDocument(h);  // Keras writes one document; like YAML::Load, read the first
    } catch (const YAML::DeepRecursion& e) {
      format_error(where, what + " is nested too deeply for the YAML reader (" + e.what() +
                              "), over the limit for a YAML document (LoadLimits::max_config_depth; at most " +
                              std::to_string(kMaxYamlDepth) + " for YAML)");
    } catch (const YAML::Exception& e) {
      format_error(where, what + " is not valid YAML: " + e.what());
    }
    out = h.take();
  }
  return out;
}

// JSON: counted first (values, nesting depth) by a SAX pass that builds nothing, so a document over the limits is
// refused before anything is allocated; then parsed by nlohmann's plain DOM parser. Both keep their own stack (no
// recursion). Not nlohmann's callback parser: at the end of every object it scans the whole parent container for
// discarded values, quadratic in a container's size (10^5 small objects in one array took minutes). What reads the
// document afterwards (copies, dump(), the layer walk) recurses at most max_config_depth levels.
class JsonLimits final : public nlohmann::json_sax<json> {
 public:
  JsonLimits(const std::string& where, const std::string& what, const loader::Limits& lim)
      : where_(where), what_(what), lim_(lim) {}

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool string(string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool start_object(std::size_t) override { return open(); }
  bool key(string_t&) override { return value(); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    format_error(where_, what_ + " is not valid JSON: " + e.what());
  }

 private:
  bool value() {
    if (++values_ > lim_.max_config_values)
      format_error(where_, what_ + " holds more than " + std::to_string(lim_.max_config_values) +
                               " values, over the limit for one JSON/YAML document (LoadLimits::max_config_values)");
    return true;
  }
  // A container opening with `depth_` containers around it is level depth_ + 1.
  bool open() {
    value();
    if (depth_ >= lim_.max_config_depth)
      format_error(where_, what_ + " is nested deeper than " + std::to_string(lim_.max_config_depth) +
                               " levels, over the limit for one JSON/YAML document (LoadLimits::max_config_depth)");
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  const std::string& where_;
  const std::string& what_;
  const loader::Limits& lim_;
  uint64_t values_ = 0;
  int depth_ = 0;
};

json parse_json(const std::string& text, const std::string& where, const std::string& what,
                const loader::Limits& lim) {
  JsonLimits limits(where, what, lim);
  json::sax_parse(text, &limits);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    format_error(where, what + " is not valid JSON: " + e.what());
  }
}

}  // namespace

json parse_document(const std::string& text, const std::string& where, const std::string& what, bool yaml,
                    const loader::Limits& limits) {
  const uint64_t max_bytes =
      yaml ? std::min<uint64_t>(limits.max_config_bytes, kMaxYamlBytes) : limits.max_config_bytes;
  if (text.size() > max_bytes)
    format_error(where, what + " is " + loader::bytes_str(text.size()) + ", over the limit of " +
                            loader::bytes_str(max_bytes) + " for one JSON/YAML document (FKB_MAX_CONFIG_BYTES" +
                            (yaml ? "; at most " + loader::bytes_str(kMaxYamlBytes) + " for YAML)" : ")"));
  return yaml ? parse_yaml(text, where, what, limits) : parse_json(text, where, what, limits);
}

json parse_config_text(const std::string& text, const std::string& where, bool yaml, const loader::Limits& limits) {
  return parse_document(text, where, "the model config", yaml, limits);
}

}  // namespace fkb::keras
