// The CUDA backend plugin's one entry point (runtime/src/backend_plugin.hpp): the table libfkb uses after
// dlopen("libfkb_cuda.so"). Everything else of kernels/ is reached through it.
#include <cuda_runtime.h>

#include "backend_plugin.hpp"
#include "cuda_entry.hpp"

namespace {

// Device memory helpers of the GPU tests (libfkb's fkb_cuda_test_* forward here). Static, so that no call
// of the plugin's own can bind to libfkb's forwarders of the same name.
int test_malloc(void** p, size_t bytes) { return cudaMalloc(p, bytes) == cudaSuccess ? 0 : 1; }
int test_malloc_managed(void** p, size_t bytes) { return cudaMallocManaged(p, bytes) == cudaSuccess ? 0 : 1; }
int test_host_alloc(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, 0) == cudaSuccess ? 0 : 1; }
int test_free(void* p) { return cudaFree(p) == cudaSuccess ? 0 : 1; }
int test_free_host(void* p) { return cudaFreeHost(p) == cudaSuccess ? 0 : 1; }
int test_memcpy(void* dst, const void* src, size_t bytes) {
  return cudaMemcpy(dst, src, bytes, cudaMemcpyDefault) == cudaSuccess ? 0 : 1;
}

const fkb::CudaPluginV1 kTable = {
    fkb::kCudaPluginAbi,
    sizeof(fkb::CudaPluginV1),
    FKB_VERSION,
    &fkb::cuda::device_count,
    &fkb::cuda::create_backend,
    &fkb::cuda::create_batched_ensemble,
    &fkb::cuda::create_per_member_ensemble,
    &test_malloc,
    &test_malloc_managed,
    &test_host_alloc,
    &test_free,
    &test_free_host,
    &test_memcpy,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const fkb::CudaPluginV1* fkb_cuda_plugin_v1() { return &kTable; }
