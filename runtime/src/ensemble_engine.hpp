// The engines behind fkb::Ensemble (internal). The CPU engine lives in ensemble.cpp; the CUDA engines in
// kernels/ensemble_plan.cu, reached through the functions below when FKB is built with CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fkb/backend.hpp"
#include "fkb/model.hpp"

namespace fkb {

/// One batched run of all members over a chunk of columns.
struct EnsembleIo {
  const void* x = nullptr;    ///< [ncol][nin]
  void* mean = nullptr;       ///< [ncol][nout]
  void* spread = nullptr;     ///< [ncol][nout] or null
  void* members = nullptr;    ///< member m's first column of this chunk at members + m * member_stride elements
  int64_t member_stride = 0;  ///< elements between two members' blocks (the whole call's ncol * nout)
  DType dtype = DType::F32;   ///< of x, mean, spread, members
};

class EnsembleEngine {
public:
  virtual ~EnsembleEngine() = default;
  /// 1 <= ncol <= max_batch().
  virtual void run(const EnsembleIo& io, int64_t ncol) = 0;
  /// Whether run() may be called from several threads at once; fkb::Ensemble serializes the calls otherwise.
  virtual bool concurrent_runs() const { return false; }
  virtual int64_t max_batch() const = 0;
  virtual std::string device_name() const = 0;
  virtual std::string name() const = 0;
};

namespace cuda {
/// The strided-batched GEMM engine; nullptr (and `why`) when the members' architecture or the precision is
/// outside what it runs (plain chains of Dense/activation layers on rank-1 shapes, fp32 or tf32).
std::unique_ptr<EnsembleEngine> create_batched_ensemble(const std::vector<const Model*>& members,
                                                        const CompileOptions& options, std::string* why);
/// One CUDA plan per member, reduction on the device.
std::unique_ptr<EnsembleEngine> create_per_member_ensemble(const std::vector<const Model*>& members,
                                                           const CompileOptions& options);
}  // namespace cuda

}  // namespace fkb
