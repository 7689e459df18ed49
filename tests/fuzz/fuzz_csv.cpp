// Fuzz target: a CSV input of `fkb predict` (fkb::io::read_csv takes a path: the bytes go to a scratch file), read
// as `fkb predict` reads it and as an input that may be empty.
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "fuzz_common.hpp"
#include "io/array_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fkb_fuzz::write_scratch("input.csv", data, size);
  for (const bool allow_empty : {false, true}) {
    fkb_fuzz::run_guarded([&] {
      const fkb::io::HostArray a = fkb::io::read_csv(path, allow_empty);
      (void)a.rows();
      (void)a.row_size();
    });
  }
  std::remove(path.c_str());
  return 0;
}
