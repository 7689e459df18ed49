// Fuzz target: a model config as YAML, the weights-only config of `--config model.yaml` (fuzz_config.hpp).
#include "fuzz_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fkb_fuzz::fuzz_config(data, size, true);
}
