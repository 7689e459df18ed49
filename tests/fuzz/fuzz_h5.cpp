// Fuzz target: a legacy Keras .h5 (model_config attribute + model_weights group) handed to the loader as an HDF5
// in-memory file image (fkb::load_h5_image), then compiled and run on two columns when it loads.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_common.hpp"
#include "loader/load_internal.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<char> image(data, data + size);
  fkb::Model::LoadOptions opt;
  opt.limits = fkb_fuzz::load_limits();
  fkb_fuzz::run_guarded([&] { fkb_fuzz::smoke_run(fkb::load_h5_image(image, "fuzz.h5", opt)); });
  return 0;
}
