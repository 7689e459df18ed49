// The backend interface: one per device kind (CPU, CUDA). A backend compiles a Model into a Plan for a
// maximum batch and a precision; a Plan runs batches. Backends know nothing about file formats.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fkb/model.hpp"

namespace fkb {

enum class Precision { FP32, TF32, BF16, FP16 };
const char* precision_name(Precision p);
/// Parse "fp32" | "tf32" | "bf16" | "fp16"; throws InvalidArgument naming the accepted values.
Precision parse_precision(const std::string& s);

/// What to do with NaN/Inf inputs (DESIGN.md: numerical contract).
enum class NonFinitePolicy { Propagate, Error };
NonFinitePolicy parse_nonfinite_policy(const std::string& s);

enum class DType { F32, F64 };

struct CompileOptions {
  Precision precision = Precision::FP32;
  int64_t max_batch = 4096;   ///< largest ncol one run() call receives
  int threads = 0;            ///< CPU threads; 0 = OpenMP's default (OMP_NUM_THREADS when set, else all cores)
  int device_index = 0;       ///< CUDA device ordinal
  bool reproducible = false;  ///< bitwise identical per column regardless of batch size/position
  bool verbose = false;       ///< print notices (fallbacks) to stderr
  int nested_threads = 1;     ///< CPU threads per call inside a caller's parallel region / concurrent calls
};

/// The buffers of one run: one pointer per model input/output, each [ncol][features] row-major.
/// Pointers may be host or device memory (the CUDA backend detects which; the CPU backend takes host only).
struct IoBinding {
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
  DType input_dtype = DType::F32;
  DType output_dtype = DType::F32;
};

/// Per-phase times of the last run, in seconds (0 where a phase does not apply).
struct PhaseTimes {
  double h2d = 0, compute = 0, d2h = 0, total = 0;
};

class Plan {
 public:
  virtual ~Plan() = default;
  /// Run `ncol` columns (1 <= ncol <= max_batch(); 0 is a no-op). Thread-safe only when concurrent_runs().
  virtual void run(const IoBinding& io, int64_t ncol) = 0;
  /// Whether run() may be called from several threads at once (the CPU plan: each call takes its own
  /// workspace). fkb::Runtime serializes the calls of plans that return false (CUDA: one stream, one graph).
  virtual bool concurrent_runs() const { return false; }
  virtual int64_t max_batch() const = 0;
  virtual std::string device_name() const = 0;  ///< "cpu" or "cuda:0 (NVIDIA H100 ...)"
  virtual PhaseTimes last_times() const { return {}; }
  /// Whether the host can read memory at `p` (false for GPU device memory). Host-only checks (the
  /// non-finite `error` policy) use it to refuse device pointers instead of reading them.
  virtual bool host_readable(const void* /*p*/) const { return true; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  ///< "cpu" or "cuda"
  /// Whether the backend can execute this node; `why` gets a reason when it cannot.
  virtual bool supports(const Model& model, const Node& node, std::string* why) const = 0;
  /// Compile a plan. Throws fkb::Error (Unsupported naming the layer, OutOfMemory, CudaError ...).
  virtual std::unique_ptr<Plan> compile(const Model& model, const CompileOptions& options) const = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
/// The CUDA backend; throws CudaError "FKB was built without CUDA" when not built with it.
std::unique_ptr<Backend> make_cuda_backend();
/// Number of usable CUDA devices (0 when not built with CUDA or none present). Never throws.
int cuda_device_count() noexcept;
bool built_with_cuda() noexcept;

}  // namespace fkb
