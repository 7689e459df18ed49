// cuBLASLt matmuls (gemm_lt.cuh). Precision: fp32 is CUBLAS_COMPUTE_32F (never TF32: cuBLASLt uses TF32
// only when asked with CUBLAS_COMPUTE_32F_FAST_TF32); tf32 is CUBLAS_COMPUTE_32F_FAST_TF32; bf16/fp16 take
// A and B in the half type, accumulate in fp32 (CUBLAS_COMPUTE_32F) and write fp32 C/D.
#include "cuda_check.hpp"
#include "gemm_lt.cuh"
#include "plan_math.hpp"

#include <string>

namespace fkb::cuda {

namespace {

cudaDataType_t cuda_type(DT t) {
  switch (t) {
    case DT::F32: return CUDA_R_32F;
    case DT::BF16: return CUDA_R_16BF;
    case DT::F16: return CUDA_R_16F;
    case DT::F64: return CUDA_R_64F;
  }
  return CUDA_R_32F;
}

template <class T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  FKB_CHECK_CUBLAS(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)));
}

template <class T>
void set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const T& v) {
  FKB_CHECK_CUBLAS(cublasLtMatmulPreferenceSetAttribute(p, attr, &v, sizeof(v)));
}

struct PrefGuard {
  cublasLtMatmulPreference_t p = nullptr;
  ~PrefGuard() {
    if (p) cublasLtMatmulPreferenceDestroy(p);
  }
};

}  // namespace

LtMatmul::~LtMatmul() {
  if (a_) cublasLtMatrixLayoutDestroy(a_);
  if (b_) cublasLtMatrixLayoutDestroy(b_);
  if (c_) cublasLtMatrixLayoutDestroy(c_);
  if (d_) cublasLtMatrixLayoutDestroy(d_);
  if (op_) cublasLtMatmulDescDestroy(op_);
}

bool LtMatmul::prepare(cublasLtHandle_t handle, const LtMatmulSpec& s, std::string* why) {
  // Any failure to describe the matmul or to find an algorithm for it means "use the fused GEMM", never a
  // failed plan: the fused kernel computes the same thing for every type, layout and alignment.
  try {
    return prepare_or_throw(handle, s, why);
  } catch (const Error& e) {
    if (why) *why = e.what();
    return false;
  }
}

bool LtMatmul::prepare_or_throw(cublasLtHandle_t handle, const LtMatmulSpec& s, std::string* why) {
  spec_ = s;
  const cublasComputeType_t compute =
      s.precision == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  FKB_CHECK_CUBLAS(cublasLtMatmulDescCreate(&op_, compute, CUDA_R_32F));
  const cublasOperation_t no = CUBLAS_OP_N;
  set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSA, no);
  set_desc(op_, CUBLASLT_MATMUL_DESC_TRANSB, no);
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  switch (s.epilogue) {
    case LtEpilogue::None: epi = CUBLASLT_EPILOGUE_DEFAULT; break;
    case LtEpilogue::Bias: epi = CUBLASLT_EPILOGUE_BIAS; break;
    case LtEpilogue::Relu: epi = CUBLASLT_EPILOGUE_RELU; break;
    case LtEpilogue::ReluBias: epi = CUBLASLT_EPILOGUE_RELU_BIAS; break;
  }
  set_desc(op_, CUBLASLT_MATMUL_DESC_EPILOGUE, epi);
  if (s.epilogue == LtEpilogue::Bias || s.epilogue == LtEpilogue::ReluBias) {
    set_desc(op_, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(s.bias));
    const int32_t bias_type = CUDA_R_32F;
    set_desc(op_, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bias_type);
  }
  FKB_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&a_, cuda_type(s.adt), static_cast<uint64_t>(s.m),
                                              static_cast<uint64_t>(s.k), s.m));
  FKB_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&b_, cuda_type(s.bdt), static_cast<uint64_t>(s.k),
                                              static_cast<uint64_t>(s.n), s.ldb));
  FKB_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&d_, CUDA_R_32F, static_cast<uint64_t>(s.m),
                                              static_cast<uint64_t>(s.n), s.ldd));
  const bool in_place = s.C && s.C == s.D;
  if (s.C && !in_place)
    FKB_CHECK_CUBLAS(cublasLtMatrixLayoutCreate(&c_, CUDA_R_32F, static_cast<uint64_t>(s.m),
                                                static_cast<uint64_t>(s.n), s.ldc));
  beta_ = s.C ? 1.0f : 0.0f;

  PrefGuard pref;
  FKB_CHECK_CUBLAS(cublasLtMatmulPreferenceCreate(&pref.p));
  const uint64_t ws = s.workspace_bytes;
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, ws);
  // The heuristic assumes 256-byte aligned operands unless told: chunk and slice offsets are not.
  const uint32_t al_a = alignment_of(reinterpret_cast<uintptr_t>(s.A));
  const uint32_t al_b = alignment_of(reinterpret_cast<uintptr_t>(s.B));
  const uint32_t al_c = alignment_of(reinterpret_cast<uintptr_t>(s.C ? s.C : s.D));
  const uint32_t al_d = alignment_of(reinterpret_cast<uintptr_t>(s.D));
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al_a);
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al_b);
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al_c);
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al_d);

  cublasLtMatmulHeuristicResult_t results[4] = {};
  int returned = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, op_, a_, b_, c_ ? c_ : d_, d_, pref.p, 4, results,
                                                           &returned);
  if (st != CUBLAS_STATUS_SUCCESS || returned == 0) {
    if (why) *why = std::string("cublasLtMatmulAlgoGetHeuristic: ") + cublasGetStatusString(st) + ", " +
                    std::to_string(returned) + " algorithm(s)";
    return false;
  }
  for (int i = 0; i < returned; ++i) {
    if (results[i].state == CUBLAS_STATUS_SUCCESS) {
      algo_ = results[i].algo;
      return true;
    }
  }
  if (why) *why = "no usable algorithm among the heuristic's results";
  return false;
}

void LtMatmul::enqueue(cublasLtHandle_t handle, cudaStream_t stream) const {
  const void* C = spec_.C ? spec_.C : spec_.D;
  FKB_CHECK_CUBLAS(cublasLtMatmul(handle, op_, &alpha_, spec_.A, a_, spec_.B, b_, &beta_, C, c_ ? c_ : d_, spec_.D,
                                  d_, &algo_, spec_.workspace, spec_.workspace_bytes, stream));
}

}  // namespace fkb::cuda
