// Backend factories. The CUDA backend lives in kernels/ and is linked in only when built with CUDA;
// without it, the API is the same and asking for CUDA gives a clear error.
#include "fkb/backend.hpp"
#include "fkb/error.hpp"

#ifdef FKB_WITH_CUDA
#include "cuda_entry.hpp"
#endif

namespace fkb {

bool built_with_cuda() noexcept {
#ifdef FKB_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() noexcept {
#ifdef FKB_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Backend> make_cuda_backend() {
#ifdef FKB_WITH_CUDA
  return cuda::create_backend();
#else
  throw_error(Status::CudaError, "FKB was built without CUDA (configure with FKB_ENABLE_CUDA=ON and a CUDA toolkit); "
                                 "use device 'cpu' or 'auto'");
#endif
}

}  // namespace fkb
