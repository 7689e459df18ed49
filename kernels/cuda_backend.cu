// Placeholder: replaced by the CUDA backend. Reports that no CUDA backend is implemented yet.
#include "cuda_entry.hpp"
#include "fkb/error.hpp"

#include <cuda_runtime.h>

namespace fkb::cuda {
int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}
std::unique_ptr<Backend> create_backend() {
  throw_error(Status::Unsupported, "the CUDA backend is not implemented in this build");
}
}  // namespace fkb::cuda
