// Fuzz target: an ensemble spec (fkb::read_ensemble_spec), the same bytes read once as a YAML config
// (ensemble.yaml) and once as a list file (members.txt). Member paths are resolved but not loaded; a YAML
// `members: <path>` naming a directory or list file is followed, relative to the scratch directory.
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "fkb/ensemble.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const char* name : {"ensemble.yaml", "members.txt"}) {
    const std::string path = fkb_fuzz::write_scratch(name, data, size);
    fkb_fuzz::run_guarded([&] { (void)fkb::read_ensemble_spec(path); });
    std::remove(path.c_str());
  }
  return 0;
}
