// The throw side of FKB_CHECK_CUDA / FKB_CHECK_CUBLAS (cuda_check.hpp).
#include <string>

#include "cuda_check.hpp"

namespace fkb::cuda {

void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  const Status st = e == cudaErrorMemoryAllocation ? Status::OutOfMemory : Status::CudaError;
  throw Error(st, std::string("CUDA error: ") + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ") in " + expr +
                      " at " + file + ":" + std::to_string(line));
}

void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line) {
  const Status st = s == CUBLAS_STATUS_ALLOC_FAILED ? Status::OutOfMemory : Status::CudaError;
  throw Error(st, std::string("cuBLAS error: ") + cublasGetStatusString(s) + " (" + std::to_string(static_cast<int>(s)) +
                      ") in " + expr + " at " + file + ":" + std::to_string(line));
}

}  // namespace fkb::cuda
