// The CUDA backend: device selection, lowering, plan construction; the entry points of cuda_entry.hpp.
#include <cstdio>
#include <memory>
#include <string>

#include "cuda_check.hpp"
#include "cuda_entry.hpp"
#include "cuda_plan.cuh"
#include "fkb/error.hpp"
#include "lowering.hpp"
#include "nvtx.hpp"
#include "plan_math.hpp"

namespace fkb::cuda {

namespace {

class CudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }

  bool supports(const Model& /*model*/, const Node& node, std::string* why) const override {
    return cuda_supports(node, why);
  }

  std::unique_ptr<Plan> compile(const Model& model, const CompileOptions& options) const override {
    NvtxRange range("fkb::cuda::compile");
    const int n = device_count();
    if (n == 0)
      throw_error(Status::CudaError, "the CUDA backend needs a CUDA device, and none is usable on this machine "
                                     "(no device, or no driver); use device 'cpu' or 'auto'");
    if (options.device_index < 0 || options.device_index >= n)
      throw_error(Status::CudaError, "CUDA device index " + std::to_string(options.device_index) +
                                         " is out of range: this machine has " + std::to_string(n) +
                                         " CUDA device(s) (indices 0.." + std::to_string(n - 1) + ")");
    if (options.max_batch < 1)
      throw_error(Status::InvalidArgument, "max_batch must be at least 1 (got " + std::to_string(options.max_batch) + ")");
    for (const Node& node : model.nodes) {
      std::string why;
      if (!supports(model, node, &why)) throw_error(Status::Unsupported, "layer '" + node.name + "': " + why);
    }
    LowerOptions lo;
    lo.precision = options.precision;
    // reproducible: the fused GEMM sums each output in a fixed order whatever the batch (no split-K, no
    // batch-size-dependent algorithm choice). FKB_CUDA_GEMM=fused selects it for measurements too.
    lo.engine = (options.reproducible || env_string("FKB_CUDA_GEMM") == "fused") ? GemmEngine::Fused : GemmEngine::Lt;
    lo.relu_epilogue = env_string("FKB_CUDA_RELU_EPILOGUE") == "1";
    Program program = lower_model(model, lo);
    if (options.verbose && env_string("FKB_CUDA_VERBOSE") == "1")
      for (const auto& note : program.notes) std::fprintf(stderr, "fkb: cuda: %s\n", note.c_str());
    return std::make_unique<CudaPlan>(std::move(program), options, options.device_index);
  }
};

}  // namespace

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> create_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace fkb::cuda

// Device memory helpers for the GPU tests (tests/backend), which are not linked against the CUDA runtime:
// they find these through weak references and skip when FKB was built without CUDA. Return 0 on success.
extern "C" {
int fkb_cuda_test_malloc(void** p, size_t bytes) { return cudaMalloc(p, bytes) == cudaSuccess ? 0 : 1; }
int fkb_cuda_test_malloc_managed(void** p, size_t bytes) {
  return cudaMallocManaged(p, bytes) == cudaSuccess ? 0 : 1;
}
int fkb_cuda_test_host_alloc(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, 0) == cudaSuccess ? 0 : 1; }
int fkb_cuda_test_free(void* p) { return cudaFree(p) == cudaSuccess ? 0 : 1; }
int fkb_cuda_test_free_host(void* p) { return cudaFreeHost(p) == cudaSuccess ? 0 : 1; }
int fkb_cuda_test_memcpy(void* dst, const void* src, size_t bytes) {
  return cudaMemcpy(dst, src, bytes, cudaMemcpyDefault) == cudaSuccess ? 0 : 1;
}
}
