// Ensembles: N Keras models of one architecture (different weights, e.g. different training seeds) run as one
// batched call that returns the ensemble mean and, optionally, each member's output and the spread.
//
//   fkb::Ensemble ens = fkb::Ensemble::load("ensemble.yaml");       // or a directory, or a list file
//   ens.predict(x, ncol, mean);                                      // mean: [ncol][n_outputs]
//   ens.predict(x, ncol, mean, spread, members);                     // spread: [ncol][n_outputs];
//                                                                    // members: [n_members][ncol][n_outputs]
//
// Where the members come from (`path`):
//  - a directory: every regular file in it ending in .keras or .h5, in name order (sub-directories ignored);
//  - a list file (.txt, .lst, .list): one model path per line, relative to the list file; blank lines and
//    lines starting with '#' are skipped;
//  - a YAML config (.yaml, .yml):
//        members: [member_0.keras, member_1.keras]   # paths relative to the YAML file; or a directory / list
//        device: cpu                                   # optional: auto | cpu | cuda | cuda:N
//        precision: fp32                               # optional
//        max_batch: 4096                               # optional
//        threads: 0                                    # optional (CPU)
//    Options given to load() override the file's.
// Members must be single-input, single-output models with identical architecture: the same layers in the
// same order with the same class, activation, output shape and weight shapes (names and weights may
// differ). Otherwise load() throws ShapeMismatch naming the member file, the layer and both shapes.
//
// Statistics: `mean` is the arithmetic mean over members, `spread` the POPULATION standard deviation over
// members, sqrt(sum_m (y_m - mean)^2 / N) (numpy's std with ddof=0), both accumulated in double per
// element and rounded once to the output type.
//
// Engines: on the CPU one blocked loop (for each block of columns, every member's compiled CPU plan runs on
// it, then mean and spread are reduced into the outputs; no allocation in predict). With device cuda, members
// whose layers are plain Dense/activation chains in fp32/tf32 run as one strided-batched GEMM per layer
// (cublasGemmStridedBatchedEx, all members in one call); any other architecture runs one CUDA plan per member
// with the reduction on the device. engine() says which.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "fkb/model.hpp"

namespace fkb {

struct EnsembleOptions {
  std::string device;     ///< "" = the YAML config's, else "auto"; otherwise auto | cpu | cuda | cuda:N
  std::string precision;  ///< "" = the YAML config's, else "fp32"
  int64_t max_batch = 0;  ///< 0 = the YAML config's, else 4096; larger calls are processed in chunks
  int threads = 0;        ///< CPU threads; 0 = the YAML config's, else all cores
  bool verbose = true;    ///< with device auto: print which device and engine were chosen
  int nested_threads = 1; ///< CPU threads per call inside a caller's parallel region / concurrent calls (>= 1)
};

/// The member files an ensemble path names (directory, list file or YAML config), and the options the YAML
/// config sets (fields it does not set keep EnsembleOptions' "unset" values). Throws FileError/FormatError.
struct EnsembleSpec {
  std::vector<std::string> members;  ///< model paths, in member order
  EnsembleOptions options;           ///< from the YAML config (device, precision, max_batch, threads)
};
EnsembleSpec read_ensemble_spec(const std::string& path);

/// Load the members `spec` names, in order; `path` (the ensemble) names it in messages. The weight limit
/// (FKB_MAX_WEIGHT_BYTES, README "Loading policy") holds for the members' weights together. Throws like Model::load.
std::vector<Model> load_ensemble_members(const EnsembleSpec& spec, const std::string& path);

/// Whether `path` names an ensemble rather than one Keras file: a directory, a .yaml/.yml config, or a
/// .txt/.lst/.list list file. Never throws.
bool is_ensemble_path(const std::string& path) noexcept;

/// Check that every member has the architecture of members[0]. `names` (one per member, e.g. file paths) are
/// used in the message. Throws ShapeMismatch naming the member, the layer and both shapes (or the differing
/// class/activation/weight).
void check_same_architecture(const std::vector<Model>& members, const std::vector<std::string>& names);

class Ensemble {
public:
  /// Load the members `path` names and compile them for the device (see the header comment).
  static Ensemble load(const std::string& path, const EnsembleOptions& options = {});
  /// An ensemble of already loaded models. `names` (optional) label the members in messages.
  Ensemble(std::vector<Model> members, const EnsembleOptions& options = {}, std::vector<std::string> names = {});
  ~Ensemble();
  Ensemble(Ensemble&&) noexcept;
  Ensemble& operator=(Ensemble&&) noexcept;
  Ensemble(const Ensemble&) = delete;
  Ensemble& operator=(const Ensemble&) = delete;

  /// x: [ncol][n_inputs()], mean: [ncol][n_outputs()] (required); spread: [ncol][n_outputs()] or nullptr;
  /// members: [n_members()][ncol][n_outputs()] (member m's block first) or nullptr. Host pointers, or device
  /// pointers when the ensemble runs on CUDA. One caller at a time.
  void predict(const float* x, int64_t ncol, float* mean, float* spread = nullptr, float* members = nullptr);
  void predict(const double* x, int64_t ncol, double* mean, double* spread = nullptr, double* members = nullptr);

  int64_t n_members() const;
  int64_t n_inputs() const;
  int64_t n_outputs() const;
  int64_t max_batch() const;
  const Model& member(int i) const;
  /// The member's label (its file path when loaded from files).
  const std::string& member_name(int i) const;
  /// What runs it, e.g. "cpu (2 threads)" or "cuda:0 (NVIDIA H100 ...)".
  std::string device_name() const;
  /// "cpu-blocked", "cuda-batched-gemm" or "cuda-per-member".
  std::string engine() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fkb
