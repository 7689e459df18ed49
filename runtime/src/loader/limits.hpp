// The loading policy's limits (README "Loading policy: what FKB refuses"), resolved once per load from
// fkb::LoadLimits, the environment and the defaults, and the helpers every reader uses to check sizes
// BEFORE it allocates.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fkb/model.hpp"

namespace fkb::loader {

constexpr uint64_t kDefaultMaxWeightBytes = uint64_t{16} << 30;  // 16 GiB
constexpr uint64_t kDefaultMaxConfigBytes = uint64_t{64} << 20;  // 64 MiB
constexpr int kDefaultMaxConfigDepth = 512;
constexpr uint64_t kDefaultMaxConfigValues = 10'000'000;
/// The .keras zip: at most this many entries (Keras writes 3, plus assets).
constexpr uint64_t kMaxZipEntries = 10'000;
/// The .keras zip: a JSON entry may inflate to at most this many times its compressed size (real configs: < 20).
constexpr uint64_t kMaxZipJsonRatio = 200;
/// The .keras zip: model.weights.h5 may exceed the weight limit by this much (HDF5 metadata).
constexpr uint64_t kZipWeightsSlackBytes = uint64_t{64} << 20;

/// The limits in force for one load: every field resolved (no zeros).
struct Limits {
  uint64_t max_weight_bytes = kDefaultMaxWeightBytes;
  uint64_t max_config_bytes = kDefaultMaxConfigBytes;
  int max_config_depth = kDefaultMaxConfigDepth;
  uint64_t max_config_values = kDefaultMaxConfigValues;
};

/// Options first, then the environment (FKB_MAX_WEIGHT_BYTES, FKB_MAX_CONFIG_BYTES), then the defaults.
/// Throws InvalidArgument when an environment variable is not a byte count.
Limits resolve(const LoadLimits& options);

/// "16 GiB", "3.2 MiB", "512 bytes": for messages.
std::string bytes_str(uint64_t bytes);

/// Read a whole text file (a config, a list) after checking its size against `max_bytes`. `what` names it in
/// messages ("model config", "ensemble list"). Throws FileError (cannot open) or FormatError (too large).
std::string read_text_file(const std::string& path, const std::string& what, uint64_t max_bytes);

/// Size of a regular file in bytes; throws FileError naming it when it cannot be stat'ed.
uint64_t file_size(const std::string& path);

/// The running total of weight bytes of one load, checked against the limit before each allocation.
class WeightBudget {
 public:
  WeightBudget(uint64_t limit, std::string file) : limit_(limit), file_(std::move(file)) {}
  /// Account for `bytes` more of weights for `what` (a dataset path with its layer); throws FormatError naming
  /// `what`, the running total and the limit when the total would pass it.
  void take(uint64_t bytes, const std::string& what);
  uint64_t used() const { return used_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t limit_;
  uint64_t used_ = 0;
  std::string file_;
};

}  // namespace fkb::loader
