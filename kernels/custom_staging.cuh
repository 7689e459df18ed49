// Custom layers (fkb/custom_layer.hpp) in the CUDA plan that have no CUDA function: their data is staged
// through pinned host memory inside the plan's stream order, so CUDA graphs stay enabled:
//
//   cudaMemcpyAsync D2H (inputs)  ->  cudaLaunchHostFunc (the layer's cpu function)  ->  cudaMemcpyAsync H2D
//
// All three are captured into the plan's graph (memcpy nodes and a host node). The host function must not
// call CUDA; it calls only the user's cpu function. Its errors are collected and thrown by rethrow() once the
// plan's streams are synchronized at the end of run().
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "custom_call.hpp"
#include "lowering.hpp"

namespace fkb::cuda {

class CustomStaging {
public:
  /// Pinned buffers for every custom op of `p` without a CUDA function, for `max_batch` columns.
  CustomStaging(const Program& p, int64_t max_batch);
  ~CustomStaging();
  CustomStaging(const CustomStaging&) = delete;
  CustomStaging& operator=(const CustomStaging&) = delete;

  /// Enqueue custom op `oi` of `p` for columns [c0, c0 + nc) on `stream` (host staging, or the layer's CUDA
  /// function when it has one).
  void enqueue(const Program& p, size_t oi, char* const* roots, int64_t c0, int64_t nc, cudaStream_t stream);
  /// Throw the first error a staged host call recorded (call after the stream has been synchronized).
  void rethrow() { errors_.rethrow(); }

  struct HostCall {
    const CustomCall* call = nullptr;
    std::vector<const float*> ins;  // pinned
    float* out = nullptr;           // pinned
    int64_t ncol = 0;
    ErrorSink* errors = nullptr;
  };

private:
  struct OpBuffers {
    std::vector<float*> ins;  // pinned, max_batch columns each
    float* out = nullptr;
  };
  std::vector<void*> pinned_;
  std::map<size_t, OpBuffers> buffers_;  // by op index
  // One record per (op, first column, columns): a captured graph replays its host node with the same record.
  std::map<std::tuple<size_t, int64_t, int64_t>, std::unique_ptr<HostCall>> calls_;
  ErrorSink errors_;
};

}  // namespace fkb::cuda
