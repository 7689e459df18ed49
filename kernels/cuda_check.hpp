// Checks of CUDA runtime and cuBLAS/cuBLASLt status codes: a failure throws fkb::Error with the call, the
// error string and file:line (TorchFort's internal/defines.h style). Allocation failures throw
// Status::OutOfMemory so the compile-time batch fallback (plan_math.hpp) can recognise them; every other
// failure is Status::CudaError.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "fkb/error.hpp"

namespace fkb::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* expr, const char* file, int line);

}  // namespace fkb::cuda

#define FKB_CHECK_CUDA(expr)                                                                                           \
  do {                                                                                                                 \
    const cudaError_t fkb_err_ = (expr);                                                                               \
    if (fkb_err_ != cudaSuccess) ::fkb::cuda::throw_cuda_error(fkb_err_, #expr, __FILE__, __LINE__);                   \
  } while (0)

#define FKB_CHECK_CUBLAS(expr)                                                                                         \
  do {                                                                                                                 \
    const cublasStatus_t fkb_st_ = (expr);                                                                             \
    if (fkb_st_ != CUBLAS_STATUS_SUCCESS) ::fkb::cuda::throw_cublas_error(fkb_st_, #expr, __FILE__, __LINE__);         \
  } while (0)

/// Kernel launches: the launch error (bad configuration) is returned by cudaGetLastError.
#define FKB_CHECK_LAUNCH() FKB_CHECK_CUDA(cudaGetLastError())
