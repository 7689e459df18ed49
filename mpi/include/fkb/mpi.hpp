// The MPI layer (C++): one fkb::mpi::Session per model per communicator.
//
//   fkb::mpi::SessionOptions o;
//   o.mode = "node-aggregate";                          // or "per-rank" (default), "cpu"
//   fkb::mpi::Session s(MPI_COMM_WORLD, "cbrain.h5", o);   // collective over the communicator
//   s.predict(x, ncol, y);      // x: [ncol][n_inputs] (Fortran x(nin, ncol)); ncol may differ per rank, even 0
//   s.print_report();           // collective: min / median / max over ranks of calls, columns, time per phase
//
// Devices (DESIGN.md "MPI"): a rank's device comes from its node-local rank (MPI_Comm_split_type with
// MPI_COMM_TYPE_SHARED), never its global rank: `local_rank % n_gpus`. The FKB_DEVICE environment variable
// overrides SessionOptions::device, which overrides the automatic choice; either may be a comma-separated
// list, entry `local_rank % count` applying ("cuda:0,cuda:0,cuda:1,cpu"). Values: auto | cpu | cuda | cuda:N.
// `auto` on a rank that gets no usable GPU (none on the node, or the CUDA backend fails) runs on the CPU.
// Mode "cpu" puts every rank on the CPU whatever FKB_DEVICE says.
//
// Modes
// - per-rank: every rank runs its own columns on its own device (its own CUDA stream/context, or the CPU).
//   predict() communicates nothing: it is a local call.
// - node-aggregate: the ranks of a node that were assigned the same device form a group (one group per GPU,
//   one per node on the CPU). They write their columns into an MPI-3 shared-memory window
//   (MPI_Win_allocate_shared); the group's leader (its lowest node-local rank) runs all of them as one batch;
//   the others wait and copy their outputs out of the window. No data goes through MPI messages: the column
//   counts (which may differ per rank and per call) are exchanged through the window's control block, and
//   the window grows (collectively, MPI_Win_free + MPI_Win_allocate_shared) when a call needs more room.
//   predict() is collective over the group: every rank of the node calls it, in the same order, with any
//   number of columns (0 included). Arrays must be host memory in this mode. See mpi/src/shared_window.hpp
//   for the synchronization and why it is correct under both MPI-3 memory models.
// - cpu: per-rank, on the CPU.
//
// Errors (all modes): predict() checks its own arguments before any communication. In node-aggregate mode a
// rank whose arguments are bad (null pointer with ncol > 0, ncol < 0, wrong array extents, a non-finite value
// under the "error" policy) contributes no columns, still takes part in the call, and gets the error; the
// other ranks' columns are predicted normally (their outputs are correct, their calls succeed). A failure of
// the leader's predict is written to a status word in the window, so every rank of the group returns that
// error (naming the leader rank) instead of waiting. Construction is collective and all-or-nothing: when any
// rank fails (file, model, device), every rank throws, naming the first failing rank and its message.
//
// Threads: in modes per-rank and cpu, predict() may be called concurrently on one Session from any number of
// threads of a rank (e.g. an OpenMP parallel do over chunks of columns): predict communicates nothing, the
// rank's Runtime is shared (compiled plan read-only, a workspace per call), each call keeps its own pointers
// and statistics (added to the rank's under a lock), and the outputs equal those of the same calls made one
// after another; inside the caller's parallel region a call uses SessionOptions::nested_threads CPU threads.
// In mode node-aggregate (with more than one rank in the group) predict is collective over the node and owns
// the shared window for its duration: a second call on the same rank while one is in flight is REFUSED with
// Status::Unsupported (it does not touch the window and does not take part in the group's batch), never
// computed on corrupted data. Call it from one thread per rank (outside the parallel region, or in
// `!$omp single` / `masked`). Construction, report*(), reset_stats() and destruction must not overlap
// predict() calls; stats() is a reference to counters that concurrent calls update.
//
// Numerics: every mode computes each column with the same backend code as fkb::Runtime. In node-aggregate
// mode the group's batch is the concatenation of the ranks' columns in node-rank order, so on one node it is
// bitwise the single-process batch of all columns. Mixed float/double callers in one group are allowed (the
// window then holds double; the conversions are exact).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "fkb/model.hpp"

namespace fkb {
namespace mpi {

enum class Mode { PerRank, NodeAggregate, Cpu };
/// "per-rank" | "node-aggregate" | "cpu".
const char* mode_name(Mode m);
/// Parse a mode; accepts "per-rank", "per_rank", "node-aggregate", "node_aggregate", "aggregate", "cpu"
/// (case-insensitive). Throws InvalidArgument naming the accepted values.
Mode parse_mode(const std::string& s);

struct SessionOptions {
  std::string mode = "per-rank";        ///< see Mode
  std::string device = "auto";          ///< auto | cpu | cuda | cuda:N, or a comma list indexed by local rank
  std::string precision = "fp32";       ///< fp32 | tf32 | bf16 | fp16 (CPU: fp32 only)
  int64_t max_batch = 4096;             ///< plan size of each runtime (a leader's batch larger than this is chunked)
  int threads = 0;                      ///< CPU threads per runtime; 0 = the cores this rank may use divided among
                                        ///< the node's ranks that run a CPU runtime (at least 1)
  std::string nonfinite = "propagate";  ///< propagate | error
  bool reproducible = false;            ///< passed to the backend
  bool verbose = true;                  ///< rank 0 prints one line describing the device assignment
  bool use_env = true;                  ///< honour the FKB_DEVICE and FKB_MPI_WAIT environment variables
  /// CPU threads one predict() uses when called from inside the caller's OpenMP parallel region or while other
  /// calls run (per-rank / cpu modes): 1 (default) keeps threads x calls at the caller's thread count. >= 1.
  int nested_threads = 1;
  /// How node-aggregate ranks wait for the leader: "auto" (spin 20 us, then yield up to 1 ms, then sleep in
  /// naps of 5 % of the time waited, 50 us .. 1 ms; with a CPU leader, "sleep"), "spin" (lowest latency, burns the cores), "yield", "sleep" (spin
  /// 20 us, then sleep: the waiting ranks' cores go to a CPU leader's threads). FKB_MPI_WAIT overrides it.
  std::string wait = "auto";
  std::string config_path;  ///< Keras architecture file for weights-only .h5 files
  /// Testing only: > 0 treats each run of this many consecutive ranks as one node instead of asking MPI
  /// (MPI_COMM_TYPE_SHARED), to exercise several nodes on one machine. The ranks must share memory.
  int ranks_per_node = 0;
};

/// What one rank did since construction (or reset_stats()). Times are seconds, summed over calls.
struct RankStats {
  int64_t calls = 0;          ///< predict() calls
  int64_t columns = 0;        ///< this rank's own columns, summed over calls
  int64_t batch_columns = 0;  ///< columns this rank's runtime ran (leaders: the whole group's)
  int64_t batches = 0;        ///< runtime predict() calls this rank made (chunks of max_batch count separately)
  double pack = 0;            ///< copying inputs into the shared window (node-aggregate)
  double unpack = 0;          ///< copying outputs out of the shared window (node-aggregate)
  double h2d = 0;             ///< host-to-device copies (reported by the CUDA backend; 0 on the CPU)
  double compute = 0;         ///< the runtime's predict, less h2d and d2h
  double d2h = 0;             ///< device-to-host copies
  double wait = 0;            ///< waiting for the other ranks of the group (allgather, barriers, window growth)
  double total = 0;           ///< wall time inside predict()
};

/// One rank's line of a report.
struct RankReport {
  int rank = 0, node = 0, local_rank = 0;
  bool leader = false;  ///< runs a runtime (always in per-rank/cpu modes)
  std::string device;   ///< what computes this rank's columns, e.g. "cpu (1 thread)" or "cuda:0 (...)"
  RankStats stats;
};

/// The statistics of all ranks of the communicator (every rank gets the same Report).
struct Report {
  std::string mode, model;
  int64_t n_inputs = 0, n_outputs = 0;
  int ranks = 0, nodes = 0, groups = 0;
  std::string memory_model;  ///< "unified" | "separate" (MPI_WIN_MODEL of the shared window; "" when unused)
  std::vector<RankReport> per_rank;

  /// Table of min / median / max over ranks (counts, and milliseconds per call for each phase).
  std::string text() const;
  /// The same as JSON: {"mode", "ranks", ..., "summary": {metric: {min, median, max}}, "per_rank": [...]}.
  std::string json() const;
};

class Session;
namespace detail {
/// Test hook: the next `n` runtime calls of this rank (a leader) throw fkb::Error(Internal), to test that a
/// leader's failure reaches every rank of its group. Not for production use.
void inject_leader_failures(Session& s, int n);
}  // namespace detail

class Session {
public:
  /// Load a Keras file on every rank of `comm` and set up devices and windows. Collective over `comm`.
  Session(MPI_Comm comm, const std::string& path, const SessionOptions& options = {});
  /// The same from a model already loaded on every rank.
  Session(MPI_Comm comm, const Model& model, const SessionOptions& options = {});
  /// Collective over the communicator while MPI is initialized (frees the window and the communicators);
  /// after MPI_Finalize it only releases memory.
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Single-input, single-output models. x: [ncol][n_inputs()], y: [ncol][n_outputs()]; host or (per-rank
  /// mode on a GPU) device pointers. Collective over the node group in node-aggregate mode.
  void predict(const float* x, int64_t ncol, float* y);
  void predict(const double* x, int64_t ncol, double* y);
  /// Any number of inputs and outputs (Keras order), each [ncol][features].
  void predict(const std::vector<const float*>& x, int64_t ncol, const std::vector<float*>& y);
  void predict(const std::vector<const double*>& x, int64_t ncol, const std::vector<double*>& y);
  /// Single input/output with the caller's array extents, checked on this rank (the Fortran path):
  /// x holds x_ncol columns of x_features values, y likewise; both must match the model and each other.
  void predict_checked(const float* x, int64_t x_features, int64_t x_ncol, float* y, int64_t y_features,
                       int64_t y_ncol);
  void predict_checked(const double* x, int64_t x_features, int64_t x_ncol, double* y, int64_t y_features,
                       int64_t y_ncol);

  Mode mode() const;
  int rank() const;  ///< in the session's communicator
  int size() const;
  int node() const;  ///< node index, 0 .. nodes()-1
  int nodes() const;
  int local_rank() const;  ///< rank on the node (MPI_COMM_TYPE_SHARED)
  int local_size() const;
  /// Whether this rank runs a runtime: always in per-rank/cpu modes; the group leader in node-aggregate.
  bool is_leader() const;
  int group_size() const;  ///< ranks sharing this rank's runtime (1 in per-rank/cpu modes)
  /// The device this rank was assigned: "cpu" or "cuda:N" (before any CPU fallback).
  std::string assigned_device() const;
  /// What computes this rank's columns (the leader's runtime in node-aggregate mode), e.g. "cpu (1 thread)".
  std::string device_name() const;
  int64_t num_inputs() const;
  int64_t num_outputs() const;
  int64_t n_inputs(int i = 0) const;
  int64_t n_outputs(int i = 0) const;
  /// Columns the shared window holds now (0 when there is none).
  int64_t window_columns() const;

  const RankStats& stats() const;  ///< this rank's (local)
  void reset_stats();              ///< local
  /// Gather every rank's statistics. Collective over the communicator.
  Report report() const;
  /// report().text() printed by rank 0 to `out`. Collective.
  void print_report(std::FILE* out = stdout) const;
  /// report().json() written by rank 0 to `path`; every rank throws if rank 0 could not write it. Collective.
  void write_report_json(const std::string& path) const;

  struct Impl;

private:
  friend void detail::inject_leader_failures(Session& s, int n);
  std::unique_ptr<Impl> impl_;
};

/// How a rank's device is chosen (exposed for tests). `env` is FKB_DEVICE's value (nullptr or "" = unset).
struct DeviceChoice {
  std::string device;      ///< "cpu" or "cuda:N"
  bool automatic = false;  ///< chosen by "auto": may fall back to the CPU if the CUDA backend fails
  std::string source;      ///< why: "mode cpu", "FKB_DEVICE", "option", with the rule applied
};
DeviceChoice assign_device(Mode mode, const std::string& option_device, const char* env, int local_rank, int n_gpus);

}  // namespace mpi
}  // namespace fkb
