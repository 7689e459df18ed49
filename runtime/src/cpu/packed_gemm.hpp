// A GEMM with weights packed once at compile time and the bias + LeakyReLU epilogue applied in registers,
// for CPUs with AVX-512 or AVX2+FMA (selected at run time; no -march flags). Everywhere else, and when
// FKB_CPU_GEMM=openblas, the CPU backend calls OpenBLAS' cblas_sgemm.
//
// Why: OpenBLAS repacks both operands on every call, which for the short column blocks of climate
// batches (M = 64..1024 rows against 256..768-wide layers) costs 10-30% of the multiply and is
// duplicated by every thread working on its own column block. ONNX Runtime's MLAS prepacks weights the
// same way; see bench/cpu_baseline.py for the comparison.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace fkb::cpu {

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
using AlignedFloats = std::unique_ptr<float[], AlignedFree>;
/// n floats, 64-byte aligned; throws OutOfMemory.
AlignedFloats alloc_aligned_floats(int64_t n);

/// Instruction sets of the packed kernel, in increasing order.
enum class PackedIsa { None, Avx2, Avx512 };

/// Weights W[k][n] (row-major, Keras' kernel layout) as panels of 32 columns: panel p holds
/// W[kk][32p .. 32p+31] for kk = 0..k-1 contiguously, zero-padded past n; plus a zero-padded bias.
struct PackedWeights {
  PackedIsa isa = PackedIsa::None;  ///< the kernel packed_gemm runs for these weights
  int64_t k = 0, n = 0, panels = 0;
  AlignedFloats data;
  AlignedFloats bias;  ///< panels * 32 floats (zeros where the layer has no bias)
};

/// The kernel that plans compiled from now on use: the best the CPU has (AVX-512F, else AVX2 with FMA),
/// capped by FKB_CPU_GEMM (openblas | avx2 | avx512) and by set_packed_gemm_isa_limit().
PackedIsa packed_gemm_isa();
bool packed_gemm_available();  ///< packed_gemm_isa() != None
/// Cap the kernel for plans compiled afterwards (None = OpenBLAS). For tests and measurements: it lets one
/// machine exercise every GEMM path.
void set_packed_gemm_isa_limit(PackedIsa limit);
void set_packed_gemm_enabled(bool enabled);  ///< limit None (false) or Avx512 (true)

/// Pack W[k][n] and its bias (`bias` may be null: zeros) for the kernel packed_gemm_isa() names.
PackedWeights pack_weights(const float* w, int64_t k, int64_t n, const float* bias);

/// What the kernel applies before storing: nothing, + bias, or + bias then LeakyReLU(alpha)
/// (x >= 0 ? x : alpha * x, the formula of activations.hpp).
enum class PackedEpilogue { None, Bias, BiasLeaky };

/// C[i][j] = sum_kk A[i][kk] W[kk][j] (+ epilogue) for i < m, j < n. A has row stride lda, C ldc.
void packed_gemm(const float* a, int64_t lda, int64_t m, const PackedWeights& w, PackedEpilogue epi, float alpha,
                 float* c, int64_t ldc);

}  // namespace fkb::cpu
