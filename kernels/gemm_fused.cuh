// FKB's own GEMM with the bias, an accumulated operand and the activation in its epilogue:
//   D[r][j] = act(sum_k B[r][kk] A[kk][j] + C[r][j] + bias[j])
// A is a Dense kernel [k][m] row-major (f32, bf16 or f16); B, C, D are row-pitched matrices of any DT.
// Each output is summed by one thread in k order with fused multiply-adds: the result of a column does not
// depend on the batch size or its position (the `reproducible` mode), and the host emulator reproduces it.
// Also the fallback when cuBLASLt offers no algorithm for a shape or alignment.
#pragma once

#include <cuda_runtime.h>

#include "elem.hpp"

namespace fkb::cuda {

struct FusedGemmArgs {
  const void* A = nullptr;
  DT adt = DT::F32;
  int64_t m = 0, k = 0;
  const void* B = nullptr;
  DT bdt = DT::F32;
  int64_t ldb = 0;
  const void* C = nullptr;  ///< optional
  DT cdt = DT::F32;
  int64_t ldc = 0;
  void* D = nullptr;
  DT ddt = DT::F32;
  int64_t ldd = 0;
  int64_t rows = 0;             ///< ncol * rows per column
  int64_t rpc = 1;              ///< rows per column (for the per-feature PReLU slope)
  const float* bias = nullptr;  ///< per unit (m) or null
  const float* alpha = nullptr; ///< PReLU slope per feature of a column (rpc * m) or null
  ActParams params;
};

void launch_fused_gemm(const FusedGemmArgs& a, ActKind act, cudaStream_t stream);

}  // namespace fkb::cuda
