// One cuBLASLt matmul prepared for fixed pointers and shape (a CUDA graph replays it):
//   D (m x n, ldd) = A (m x k, lda = m) * B (k x n, ldb) [+ C (m x n, ldc)] [+ bias (m)] [relu]
// in cuBLAS column-major terms. FKB's row-major [rows][features] activations are column-major
// features x rows matrices, and a Keras Dense kernel [in][out] row-major is column-major out x in, so a
// Dense layer Y = X W is D = W^T-as-stored * X^T-as-stored with no transposes (DESIGN.md, data layout).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "elem.hpp"
#include "fkb/backend.hpp"
#include "lowering.hpp"

namespace fkb::cuda {

struct LtMatmulSpec {
  Precision precision = Precision::FP32;
  int64_t m = 0, n = 0, k = 0;
  const void* A = nullptr;
  DT adt = DT::F32;
  const void* B = nullptr;
  DT bdt = DT::F32;
  int64_t ldb = 0;
  const void* C = nullptr;  ///< null: beta = 0
  int64_t ldc = 0;
  void* D = nullptr;        ///< f32
  int64_t ldd = 0;
  const float* bias = nullptr;
  LtEpilogue epilogue = LtEpilogue::None;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

class LtMatmul {
 public:
  LtMatmul() = default;
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  /// Build the descriptors and ask the heuristic for an algorithm. Returns false (with the reason in `why`)
  /// when cuBLASLt cannot do this shape/type/alignment/epilogue: the caller then uses the fused GEMM.
  bool prepare(cublasLtHandle_t handle, const LtMatmulSpec& spec, std::string* why = nullptr);
  /// Enqueue on `stream` (also inside a stream capture).
  void enqueue(cublasLtHandle_t handle, cudaStream_t stream) const;

 private:
  bool prepare_or_throw(cublasLtHandle_t handle, const LtMatmulSpec& spec, std::string* why);

  LtMatmulSpec spec_;
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t a_ = nullptr, b_ = nullptr, c_ = nullptr, d_ = nullptr;
  cublasLtMatmulAlgo_t algo_{};
  float alpha_ = 1.0f, beta_ = 0.0f;
};

}  // namespace fkb::cuda
