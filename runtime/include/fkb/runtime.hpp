// The public C++ API: load a model, make a Runtime on a device, predict batches of columns.
//
//   fkb::Model model = fkb::Model::load("cbrain.h5");
//   fkb::Runtime rt(model, {"auto", "fp32", 4096});
//   rt.predict(x, ncol, y);   // x: [ncol][n_inputs] row-major (Fortran x(nin, ncol)), y: [ncol][n_outputs]
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"

namespace fkb {

struct RuntimeOptions {
  std::string device = "auto";     ///< "auto" | "cpu" | "cuda" | "cuda:N"
  std::string precision = "fp32";  ///< "fp32" | "tf32" | "bf16" | "fp16" (CPU: fp32 only)
  int64_t max_batch = 4096;        ///< plan size; larger calls are processed in chunks of this size
  int threads = 0;                 ///< CPU threads (0 = OpenMP's default: OMP_NUM_THREADS when set, else all cores)
  std::string nonfinite = "propagate";  ///< "propagate" | "error"
  bool reproducible = false;
  bool verbose = true;             ///< print the one-line device notice at construction
  /// CPU threads one predict() call uses when it is made from inside the caller's OpenMP parallel region, or
  /// while other FKB calls are in flight in the process (a caller that threads its own columns): 1 (default)
  /// keeps threads x calls at the caller's thread count instead of oversubscribing the cores. >= 1.
  int nested_threads = 1;
};

/// A model compiled for one device.
///
/// Threads: predict() may be called on one Runtime from any number of threads at once (an OpenMP
/// `parallel do` over chunks of columns, std::threads), and every call gives bitwise the result it gives
/// alone. The compiled plan is shared and read-only; each call in flight takes its own workspace from a
/// small pool (allocated once, when calls first overlap; the steady path allocates nothing). On the CPU a
/// call made inside the caller's OpenMP parallel region, or while other FKB calls run, uses
/// `nested_threads` threads (default 1), so the caller's threads x FKB's threads never oversubscribe the
/// cores. On CUDA the calls of one Runtime take turns (one stream, one CUDA graph). Separate Runtimes are
/// independent. Loading, constructing and destroying a Runtime are not concurrent with its own predict().
class Runtime {
 public:
  Runtime(const Model& model, const RuntimeOptions& options = {});
  ~Runtime();
  Runtime(Runtime&&) noexcept;
  Runtime& operator=(Runtime&&) noexcept;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// Single-input, single-output models. x: [ncol][n_inputs()], y: [ncol][n_outputs()].
  void predict(const float* x, int64_t ncol, float* y);
  void predict(const double* x, int64_t ncol, double* y);
  /// Any number of inputs/outputs (Keras order). Throws InvalidArgument when the counts differ.
  void predict(const std::vector<const float*>& x, int64_t ncol, const std::vector<float*>& y);
  void predict(const std::vector<const double*>& x, int64_t ncol, const std::vector<double*>& y);

  int64_t num_inputs() const;
  int64_t num_outputs() const;
  int64_t n_inputs(int i = 0) const;   ///< features per column of input i
  int64_t n_outputs(int i = 0) const;  ///< features per column of output i
  std::string device_name() const;     ///< what runs it, e.g. "cpu (2 threads)" or "cuda:0 (...)"
  std::string backend_name() const;    ///< "cpu" | "cuda"
  int64_t max_batch() const;
  PhaseTimes last_times() const;
  const Model& model() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// FKB's version string ("0.1.0").
const char* version();

}  // namespace fkb
