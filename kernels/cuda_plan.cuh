// The CUDA plan: a lowered program (lowering.hpp) with its weights on the device, one arena of activation
// buffers and device staging for the maximum batch, its own streams, and one CUDA graph per distinct
// (batch size, chunk offset, caller dtypes) replayed on every call.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "custom_staging.cuh"
#include "fkb/backend.hpp"
#include "gemm_lt.cuh"
#include "lowering.hpp"
#include "plan_math.hpp"

namespace fkb::cuda {

/// Sets the current device for its lifetime and restores the caller's afterwards (a Fortran/MPI host code
/// may have its own device selected).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

/// Plan-wide tunables; defaults suit an H100, environment variables override them for measurements:
/// FKB_CUDA_MIN_CHUNK, FKB_CUDA_MAX_CHUNKS (pipelining), FKB_CUDA_GRAPHS=0 (launch ops directly; debugging),
/// FKB_CUDA_MAX_BYTES (pretend the device has only this many bytes: exercises the out-of-memory fallback).
struct PlanTunables {
  ChunkPolicy chunks;
  bool use_graphs = true;
  int64_t fake_memory_limit = 0;  ///< 0: none
  size_t workspace_bytes = size_t(32) << 20;
  static PlanTunables from_env();
};

class CudaPlan final : public Plan {
 public:
  CudaPlan(Program program, const CompileOptions& options, int device);
  ~CudaPlan() override;
  CudaPlan(const CudaPlan&) = delete;
  CudaPlan& operator=(const CudaPlan&) = delete;

  void run(const IoBinding& io, int64_t ncol) override;
  int64_t max_batch() const override { return max_batch_; }
  std::string device_name() const override { return device_name_; }
  PhaseTimes last_times() const override { return last_; }
  bool host_readable(const void* p) const override { return classify(p) != Where::Device; }

  const Program& program() const { return prog_; }
  size_t graph_count() const { return graphs_.size(); }

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::vector<std::unique_ptr<LtMatmul>> matmuls;  // kept alive with the graph that replays them
  };
  enum class Where { Device, Pinned, Pageable };

  void release() noexcept;
  void upload_weights();
  void allocate_batch_buffers(int64_t requested);
  bool try_allocate_batch(int64_t batch);
  void free_batch_buffers();
  void ensure_pinned_staging();
  bool input_direct(size_t i, bool f64) const;
  bool output_direct(size_t j, bool f64) const;
  Where classify(const void* p) const;

  Graph& graph_for(const GraphKey& key);
  void record(const GraphKey& key, Graph& g, cudaStream_t stream);
  void record_op(const Op& op, int64_t c0, int64_t nc, Graph& g, cudaStream_t stream);
  void destroy_graphs();

  Program prog_;
  CompileOptions options_;
  PlanTunables tun_;
  int device_ = 0;
  std::string device_name_;
  int64_t max_batch_ = 0;

  cudaStream_t s_h2d_ = nullptr, s_comp_ = nullptr, s_d2h_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;

  void* weights_ = nullptr;          // all blobs, 256-byte aligned each
  int64_t weights_bytes_ = 0;
  std::vector<void*> blob_ptr_;
  void* batch_ = nullptr;            // arena + device staging, sized for max_batch_
  std::vector<char*> root_base_;
  std::vector<char*> in_raw_, out_raw_;  // device staging of the caller's data (8 bytes per element)
  void* pinned_ = nullptr;               // pinned host staging for pageable callers (lazily allocated)
  std::vector<char*> in_pin_, out_pin_;
  bool pinned_tried_ = false;

  static constexpr int kMaxChunks = 16;
  cudaEvent_t ev_start_ = nullptr, ev_comp0_ = nullptr, ev_d2h0_ = nullptr;
  cudaEvent_t ev_h2d_[kMaxChunks] = {}, ev_comp_[kMaxChunks] = {}, ev_d2h_[kMaxChunks] = {};

  std::map<GraphKey, Graph> graphs_;
  std::unique_ptr<CustomStaging> custom_;  // custom layers: host staging / their CUDA functions
  PhaseTimes last_;
};

}  // namespace fkb::cuda
