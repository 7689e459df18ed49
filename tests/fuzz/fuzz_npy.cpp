// Fuzz target: a NumPy .npy input of `fkb predict` (fkb::io::read_npy takes a path: the bytes go to a scratch file).
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "fuzz_common.hpp"
#include "io/array_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fkb_fuzz::write_scratch("input.npy", data, size);
  fkb_fuzz::run_guarded([&] {
    const fkb::io::HostArray a = fkb::io::read_npy(path);
    (void)a.rows();
    (void)a.row_size();
  });
  std::remove(path.c_str());
  return 0;
}
