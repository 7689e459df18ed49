// fkb::mpi::Session: communicators, device assignment, the per-rank and node-aggregate predict paths and
// per-rank statistics. See fkb/mpi.hpp for the contract; the comments here say why it is built this way.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "fkb/backend.hpp"
#include "fkb/mpi.hpp"
#include "fkb/runtime.hpp"
#include "mpi_check.hpp"
#include "shared_window.hpp"

namespace fkb {
namespace mpi {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

// What each rank of a group announces at the start of a node-aggregate call.
struct Entry {
  int64_t ncol;  // columns this rank contributes (0 when its input was bad)
  int32_t f64;   // 1: the caller's arrays are double
  int32_t bad;   // 1: this rank's arguments were rejected (it takes part, contributes nothing)
};

// The control block at the start of the shared window. Every flag is the call number it belongs to (calls are
// collective over the group, so all ranks count the same); flags only grow and are never reset.
struct WindowHeader {
  int64_t done;     // leader: call number whose outputs and status are in the window
  int32_t status;   // fkb::Status of the leader's run for call `done` (0 = ok)
  int32_t leader;   // the leader's rank in the session communicator
  int64_t columns;  // columns the leader ran
  int32_t wake;     // bumped (and futex-woken) by the leader after publishing `done`
  int32_t pad;
  char message[2048 - 32];
};
// One cache line per rank, so ranks announcing themselves do not share lines.
struct alignas(64) RankSlot {
  int64_t arrive;  // call number this rank has announced its Entry for
  int64_t ready;   // call number whose columns this rank has packed
  Entry entry[2];  // by call parity: a fast rank's next announcement never overwrites one still being read
};
static_assert(sizeof(RankSlot) == 64, "RankSlot must fill one cache line");
constexpr size_t kHeaderBytes = 4096;
static_assert(sizeof(WindowHeader) <= 2048, "window header too large");

size_t control_bytes(int group_size) {
  const size_t b = 2048 + sizeof(RankSlot) * static_cast<size_t>(group_size);
  return (b + kHeaderBytes - 1) / kHeaderBytes * kHeaderBytes;
}

constexpr size_t kDeviceChars = 160;

// One rank's line, exchanged with MPI_Allgather as bytes (all ranks run the same binary).
struct PackedRank {
  int32_t rank, node, local_rank, leader;
  int32_t window_model;  // -1 none, else MPI_WIN_MODEL
  int32_t pad;
  int64_t calls, columns, batch_columns, batches;
  double pack, unpack, h2d, compute, d2h, wait, total;
  char device[kDeviceChars];
};

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int usable_cpus() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

int online_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

template <class S, class D> void copy_convert(const S* src, D* dst, int64_t n) {
  if constexpr (std::is_same<S, D>::value) {
    std::memcpy(dst, src, sizeof(S) * static_cast<size_t>(n));
  } else {
    // float -> double is exact; double -> float only ever sees values that came from float (the model
    // computes in float), so it is exact too and mixed callers stay bitwise reproducible.
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<D>(src[i]);
  }
}

template <class T> struct PtrScratch {
  std::vector<const T*> x;
  std::vector<T*> y;
};

// Agree on the outcome of a step every rank did locally: if any rank failed, every rank throws. A failing
// rank throws its own error; the others throw the first failing rank's, naming it. Collective over comm.
void agree(MPI_Comm comm, int rank, const char* what, Status st, const std::string& msg) {
  int mine = st != Status::Ok ? rank : INT_MAX;
  int first = INT_MAX;
  FKB_CHECK_MPI(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == INT_MAX) return;
  struct {
    int32_t status;
    char text[2044];
  } buf{};
  if (rank == first) {
    buf.status = static_cast<int32_t>(st);
    std::strncpy(buf.text, msg.c_str(), sizeof(buf.text) - 1);
  }
  FKB_CHECK_MPI(MPI_Bcast(&buf, static_cast<int>(sizeof(buf)), MPI_BYTE, first, comm));
  if (st != Status::Ok) throw_error(st, msg);
  throw_error(static_cast<Status>(buf.status),
              std::string(what) + " failed on rank " + std::to_string(first) + ": " + buf.text);
}

}  // namespace

struct Session::Impl {
  MPI_Comm comm = MPI_COMM_NULL;        // our duplicate of the caller's communicator
  MPI_Comm node_comm = MPI_COMM_NULL;   // ranks sharing memory with this one (MPI_COMM_TYPE_SHARED)
  MPI_Comm group_comm = MPI_COMM_NULL;  // node-aggregate: node ranks assigned the same device
  int rank = 0, size = 1, local_rank = 0, local_size = 1, node = 0, nodes = 1;
  int group_rank = 0, group_size = 1, leader_rank = 0;
  Mode mode = Mode::PerRank;
  SessionOptions options;
  DeviceChoice choice;
  std::string device_name;  // what runs this rank's columns
  std::string model_name;
  std::vector<int64_t> in_features, out_features;
  std::unique_ptr<Runtime> runtime;  // leaders only
  bool nonfinite_error = false;
  // The non-finite policy 'error' is checked here over the whole call (column numbers of the call, nothing
  // computed before a bad column) in node-aggregate mode and whenever the runtime is on the CPU (host data);
  // a CUDA runtime checks per chunk itself (it can refuse device pointers) and run_runtime renumbers its column.
  bool check_here = false;

  SharedWindow window;
  int64_t window_cols = 0;
  std::vector<size_t> in_off, out_off;  // byte offsets of the regions in the window
  int64_t seq = 0;                      // node-aggregate calls so far (the same on every rank of the group)
  SharedWindow::Wait wait_policy = SharedWindow::Wait::Auto;

  WindowHeader* header() const { return reinterpret_cast<WindowHeader*>(window.base()); }
  RankSlot* slot(int r) const { return reinterpret_cast<RankSlot*>(window.base() + 2048) + r; }

  // Threads: per-rank / cpu predict calls may overlap on one rank (the Runtime is shared and takes a workspace
  // per call); each call counts into its own RankStats and adds them here under stats_mu. A node-aggregate
  // call owns the window, seq and wf/wd while `aggregate_busy` is set; a second call meanwhile is refused.
  RankStats stats;
  mutable std::mutex stats_mu;
  std::atomic<bool> aggregate_busy{false};
  std::atomic<int> inject_failures{0};
  PtrScratch<float> wf;  // window pointers of the leader's run (node-aggregate, under aggregate_busy)
  PtrScratch<double> wd;

  template <class T> PtrScratch<T>& wscratch() {
    if constexpr (std::is_same<T, float>::value)
      return wf;
    else
      return wd;
  }

  bool aggregating() const { return mode == Mode::NodeAggregate && group_size > 1; }
  bool leader() const { return mode != Mode::NodeAggregate || group_rank == 0; }

  ~Impl() {
    if (!mpi_running()) return;  // after MPI_Finalize: nothing left to free through MPI
    try {
      window.release();
    } catch (...) {
    }
    for (MPI_Comm* c : {&group_comm, &node_comm, &comm})
      if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }

  void init(MPI_Comm user, const std::function<Model()>& get_model, const SessionOptions& opt);
  void setup_window_layout(int64_t cols);
  void ensure_capacity(int64_t total);
  std::vector<RankReport> gather_ranks(std::string* memory_model) const;

  template <class T>
  void validate(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y, const int64_t* ext) const;
  template <class T>
  void run_runtime(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y, RankStats& st);
  template <class T>
  void predict(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y, const int64_t* ext);
  template <class T>
  void aggregate(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y, bool bad, RankStats& st);
  template <class W> void leader_run(int64_t total, RankStats& st);
};

void Session::Impl::init(MPI_Comm user, const std::function<Model()>& get_model, const SessionOptions& opt) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw_error(Status::MpiError, "fkb::mpi::Session: MPI is not initialized (call MPI_Init first)");
  if (user == MPI_COMM_NULL)
    throw_error(Status::InvalidArgument, "fkb::mpi::Session: the communicator is MPI_COMM_NULL");
  options = opt;
  // A duplicate keeps our traffic apart from the application's, and lets errors return instead of abort.
  FKB_CHECK_MPI(MPI_Comm_dup(user, &comm));
  FKB_CHECK_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  FKB_CHECK_MPI(MPI_Comm_rank(comm, &rank));
  FKB_CHECK_MPI(MPI_Comm_size(comm, &size));
  if (opt.ranks_per_node > 0) {  // emulated nodes (tests): consecutive ranks, always within a real node here
    FKB_CHECK_MPI(MPI_Comm_split(comm, rank / opt.ranks_per_node, rank, &node_comm));
  } else {
    FKB_CHECK_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node_comm));
  }
  FKB_CHECK_MPI(MPI_Comm_set_errhandler(node_comm, MPI_ERRORS_RETURN));
  FKB_CHECK_MPI(MPI_Comm_rank(node_comm, &local_rank));
  FKB_CHECK_MPI(MPI_Comm_size(node_comm, &local_size));
  {  // node index: the rank of this node's first rank among all nodes' first ranks
    MPI_Comm firsts = MPI_COMM_NULL;
    FKB_CHECK_MPI(MPI_Comm_split(comm, local_rank == 0 ? 0 : MPI_UNDEFINED, rank, &firsts));
    int nn[2] = {0, 1};
    if (firsts != MPI_COMM_NULL) {
      MPI_Comm_rank(firsts, &nn[0]);
      MPI_Comm_size(firsts, &nn[1]);
      MPI_Comm_free(&firsts);
    }
    FKB_CHECK_MPI(MPI_Bcast(nn, 2, MPI_INT, 0, node_comm));
    node = nn[0];
    nodes = nn[1];
  }

  // Step 1 (local, then agreed): options and device assignment.
  Status st = Status::Ok;
  std::string msg;
  try {
    mode = parse_mode(opt.mode);
    parse_precision(opt.precision);
    nonfinite_error = parse_nonfinite_policy(opt.nonfinite) == NonFinitePolicy::Error;
    if (opt.max_batch < 1)
      throw_error(Status::InvalidArgument, "max_batch must be >= 1, got " + std::to_string(opt.max_batch));
    if (opt.threads < 0)
      throw_error(Status::InvalidArgument, "threads must be >= 0, got " + std::to_string(opt.threads));
    if (opt.nested_threads < 1)
      throw_error(Status::InvalidArgument, "nested_threads must be >= 1, got " + std::to_string(opt.nested_threads));
    std::string w = opt.wait;
    const char* wenv = opt.use_env ? std::getenv("FKB_MPI_WAIT") : nullptr;
    if (wenv && *wenv) w = wenv;
    if (w == "auto" || w.empty())
      wait_policy = SharedWindow::Wait::Auto;
    else if (w == "spin")
      wait_policy = SharedWindow::Wait::Spin;
    else if (w == "yield")
      wait_policy = SharedWindow::Wait::Yield;
    else if (w == "sleep")
      wait_policy = SharedWindow::Wait::Sleep;
    else
      throw_error(Status::InvalidArgument, "unknown wait policy '" + w + "'" +
                                               (wenv && *wenv ? " (from FKB_MPI_WAIT)" : "") +
                                               "; accepted values: auto, spin, yield, sleep");
    const char* env = opt.use_env ? std::getenv("FKB_DEVICE") : nullptr;
    choice = assign_device(mode, opt.device, env, local_rank, cuda_device_count());
  } catch (const Error& e) {
    st = e.status();
    msg = e.what();
  }
  agree(comm, rank, "fkb::mpi::Session setup", st, msg);

  if (mode == Mode::NodeAggregate) {
    // One group per device on the node (one per GPU; one for all CPU ranks), led by its lowest node rank.
    int color = 0;
    if (choice.device.rfind("cuda:", 0) == 0) color = 1 + std::atoi(choice.device.c_str() + 5);
    FKB_CHECK_MPI(MPI_Comm_split(node_comm, color, local_rank, &group_comm));
    FKB_CHECK_MPI(MPI_Comm_set_errhandler(group_comm, MPI_ERRORS_RETURN));
    FKB_CHECK_MPI(MPI_Comm_rank(group_comm, &group_rank));
    FKB_CHECK_MPI(MPI_Comm_size(group_comm, &group_size));
    leader_rank = rank;
    FKB_CHECK_MPI(MPI_Bcast(&leader_rank, 1, MPI_INT, 0, group_comm));
  } else {
    leader_rank = rank;
  }

  // Default CPU threads: the node's cores shared among the node's CPU runtimes, within this rank's affinity.
  int cpu_runtime = leader() && choice.device == "cpu" ? 1 : 0, cpu_runtimes = 0;
  FKB_CHECK_MPI(MPI_Allreduce(&cpu_runtime, &cpu_runtimes, 1, MPI_INT, MPI_SUM, node_comm));
  const int threads =
      opt.threads > 0 ? opt.threads : std::max(1, std::min(usable_cpus(), online_cpus() / std::max(1, cpu_runtimes)));

  // Step 2 (local, then agreed): the model on every rank (its shapes), a runtime on each leader.
  try {
    Model model = get_model();
    model_name = model.info.path.empty() ? model.info.name : model.info.path;
    const size_t slash = model_name.find_last_of('/');
    if (slash != std::string::npos) model_name = model_name.substr(slash + 1);
    if (model.num_inputs() < 1 || model.num_outputs() < 1)
      throw_error(Status::InvalidArgument, "the model has no inputs or no outputs (was it loaded?)");
    for (int i = 0; i < model.num_inputs(); ++i) in_features.push_back(model.input_size(i));
    for (int i = 0; i < model.num_outputs(); ++i) out_features.push_back(model.output_size(i));
    if (leader()) {
      RuntimeOptions ro;
      ro.device = choice.device;
      ro.precision = opt.precision;
      ro.max_batch = opt.max_batch;
      ro.threads = threads;
      // Node-aggregate: each rank checks its own columns (so the error lands on the rank that owns them).
      ro.nonfinite = mode == Mode::NodeAggregate || ro.device == "cpu" ? "propagate" : opt.nonfinite;
      ro.reproducible = opt.reproducible;
      ro.nested_threads = opt.nested_threads;
      ro.verbose = false;  // one line from rank 0 instead of one per rank
      try {
        runtime = std::make_unique<Runtime>(model, ro);
      } catch (const Error& e) {
        if (!(choice.automatic && choice.device != "cpu")) throw;
        // "auto" and the GPU is not usable: this rank runs on the CPU (DESIGN.md "Devices").
        ro.device = "cpu";
        runtime = std::make_unique<Runtime>(model, ro);
        choice.source += std::string("; CUDA failed (") + e.what() + "), running on the CPU";
      }
      device_name = runtime->device_name();
      if (runtime->backend_name() == "cpu") check_here = nonfinite_error;
    }
  } catch (const Error& e) {
    st = e.status();
    msg = e.what();
  } catch (const std::bad_alloc&) {
    st = Status::OutOfMemory;
    msg = "out of memory while loading the model";
  } catch (const std::exception& e) {
    st = Status::Internal;
    msg = std::string("internal error: ") + e.what();
  }
  agree(comm, rank, "fkb::mpi::Session load", st, msg);

  if (mode == Mode::NodeAggregate) {
    // The group batches columns of one model: every rank must have loaded the same shapes.
    const int64_t nin = static_cast<int64_t>(in_features.size()), nout = static_cast<int64_t>(out_features.size());
    int64_t sig[4] = {nin, nout, 0, 0};
    for (size_t i = 0; i < in_features.size(); ++i) sig[2] = sig[2] * 1000003 + in_features[i];
    for (size_t i = 0; i < out_features.size(); ++i) sig[3] = sig[3] * 1000003 + out_features[i];
    int64_t lo[4], hi[4];
    FKB_CHECK_MPI(MPI_Allreduce(sig, lo, 4, MPI_INT64_T, MPI_MIN, comm));
    FKB_CHECK_MPI(MPI_Allreduce(sig, hi, 4, MPI_INT64_T, MPI_MAX, comm));
    if (std::memcmp(lo, hi, sizeof(lo)) != 0)
      throw_error(Status::ShapeMismatch, "fkb::mpi::Session: node-aggregate mode needs the same model on every rank, "
                                         "but the ranks loaded models with different input/output sizes");
    char buf[kDeviceChars] = {0};
    if (group_rank == 0) std::strncpy(buf, device_name.c_str(), sizeof(buf) - 1);
    FKB_CHECK_MPI(MPI_Bcast(buf, static_cast<int>(sizeof(buf)), MPI_CHAR, 0, group_comm));
    if (group_rank != 0) device_name = buf;
    // "auto" waiting: when the leader computes on the CPU, the waiting ranks' cores are what it computes
    // with, so they sleep as soon as the short spin is over instead of yielding (a yielding rank is still
    // runnable and takes its share of a core from the leader's threads).
    if (wait_policy == SharedWindow::Wait::Auto && device_name.rfind("cpu", 0) == 0)
      wait_policy = SharedWindow::Wait::Sleep;
    if (group_size > 1) setup_window_layout(0);
  }
  wscratch<float>().x.resize(in_features.size());
  wscratch<float>().y.resize(out_features.size());
  wscratch<double>().x.resize(in_features.size());
  wscratch<double>().y.resize(out_features.size());

  if (opt.verbose) {
    std::string model_memory;
    const std::vector<RankReport> all = gather_ranks(&model_memory);
    if (rank == 0) {
      // "4 x cpu (1 thread)" per distinct device, in order of first appearance.
      std::vector<std::pair<std::string, int>> devs;
      for (const auto& r : all) {
        if (!r.leader) continue;
        auto it = std::find_if(devs.begin(), devs.end(), [&](const auto& d) { return d.first == r.device; });
        if (it == devs.end())
          devs.emplace_back(r.device, 1);
        else
          ++it->second;
      }
      std::string d;
      for (const auto& p : devs) d += (d.empty() ? "" : ", ") + std::to_string(p.second) + " x " + p.first;
      std::fprintf(stderr, "fkb_mpi: %s, %d rank(s) on %d node(s), runtimes: %s (rank 0's device: %s, from %s)\n",
                   mode_name(mode), size, nodes, d.c_str(), choice.device.c_str(), choice.source.c_str());
    }
  }
}

void Session::Impl::setup_window_layout(int64_t cols) {
  size_t off = control_bytes(group_size);
  in_off.clear();
  out_off.clear();
  // Every region has room for double, so a change of the callers' type never forces a regrow.
  for (int64_t f : in_features) {
    in_off.push_back(off);
    off += static_cast<size_t>(round_up(cols * f * 8, 64));
  }
  for (int64_t f : out_features) {
    out_off.push_back(off);
    off += static_cast<size_t>(round_up(cols * f * 8, 64));
  }
  window.allocate(group_comm, off);
  window_cols = cols;
  if (group_rank == 0) {
    // A fresh control block: flags at 0 are below every call number (calls count from 1).
    std::memset(window.base(), 0, control_bytes(group_size));
    header()->leader = rank;
  }
  window.handover(group_comm);
}

void Session::Impl::ensure_capacity(int64_t total) {
  if (total <= window_cols) return;
  // Every rank computes the same size from the same announced counts, so this collective needs no extra
  // agreement. Doubling keeps regrowth rare when counts creep up.
  setup_window_layout(round_up(std::max(total, 2 * window_cols), 64));
}

template <class T>
void Session::Impl::validate(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y,
                             const int64_t* ext) const {
  // Built only on the error paths: a good call allocates nothing here.
  auto who = [this] { return "fkb_mpi predict (rank " + std::to_string(rank) + "): "; };
  if (x.size() != in_features.size() || y.size() != out_features.size())
    throw_error(Status::InvalidArgument, who() + "got " + std::to_string(x.size()) + " input and " +
                                             std::to_string(y.size()) + " output array(s); the model has " +
                                             std::to_string(in_features.size()) + " input(s) and " +
                                             std::to_string(out_features.size()) + " output(s)");
  if (ext) {  // x_features, x_ncol, y_features, y_ncol
    if (ext[0] != in_features[0])
      throw_error(Status::ShapeMismatch, who() + "x has " + std::to_string(ext[0]) +
                                             " values per column (size(x,1)) but the model takes " +
                                             std::to_string(in_features[0]) + " inputs per column");
    if (ext[2] != out_features[0])
      throw_error(Status::ShapeMismatch, who() + "y has " + std::to_string(ext[2]) +
                                             " values per column (size(y,1)) but the model gives " +
                                             std::to_string(out_features[0]) + " outputs per column");
    if (ext[1] != ext[3])
      throw_error(Status::ShapeMismatch,
                  who() + "x has " + std::to_string(ext[1]) + " columns but y has " + std::to_string(ext[3]));
  }
  if (ncol < 0) throw_error(Status::InvalidArgument, who() + "ncol must be >= 0, got " + std::to_string(ncol));
  if (ncol == 0) return;
  for (size_t i = 0; i < x.size(); ++i)
    if (!x[i]) throw_error(Status::InvalidArgument, who() + "input " + std::to_string(i) + " (x) is a null pointer");
  for (size_t i = 0; i < y.size(); ++i)
    if (!y[i]) throw_error(Status::InvalidArgument, who() + "output " + std::to_string(i) + " (y) is a null pointer");
  if (nonfinite_error && (mode == Mode::NodeAggregate || check_here)) {  // its runtime propagates (see init)
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t f = in_features[i];
      for (int64_t k = 0; k < ncol * f; ++k)
        if (!std::isfinite(x[i][k]))
          throw_error(Status::NonFinite, who() + "non-finite input value " +
                                             std::to_string(static_cast<double>(x[i][k])) + " in column " +
                                             std::to_string(k / f) + ", feature " + std::to_string(k % f) +
                                             " of input " + std::to_string(i) + " (counted from 0: Fortran x(" +
                                             std::to_string(k % f + 1) + ", " + std::to_string(k / f + 1) +
                                             "); non-finite policy 'error')");
    }
  }
}

template <class T>
void Session::Impl::run_runtime(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y,
                                RankStats& st) {
  // Chunks of max_batch here rather than inside Runtime, so every chunk's phase times are counted. The chunk
  // pointers are this call's own (calls may overlap in per-rank mode).
  std::vector<const T*> xs(x.size());
  std::vector<T*> ys(y.size());
  const int64_t mb = runtime->max_batch();
  for (int64_t done = 0; done < ncol;) {
    const int64_t chunk = std::min(mb, ncol - done);
    for (size_t i = 0; i < x.size(); ++i) xs[i] = x[i] + done * in_features[i];
    for (size_t i = 0; i < y.size(); ++i) ys[i] = y[i] + done * out_features[i];
    int pending = inject_failures.load();
    while (pending > 0 && !inject_failures.compare_exchange_weak(pending, pending - 1)) {
    }
    if (pending > 0) throw_error(Status::Internal, "injected failure (fkb::mpi::detail::inject_leader_failures)");
    const auto t = Clock::now();
    try {
      runtime->predict(xs, chunk, ys);
    } catch (const Error& e) {
      // The runtime numbers columns within the chunk; say the call's column.
      const std::string msg = e.what(), key = " in column ";
      const size_t at = msg.find(key);
      if (e.status() != Status::NonFinite || done == 0 || at == std::string::npos) throw;
      size_t end = at + key.size();
      while (end < msg.size() && std::isdigit(static_cast<unsigned char>(msg[end]))) ++end;
      const int64_t col = std::stoll(msg.substr(at + key.size(), end - at - key.size())) + done;
      throw_error(Status::NonFinite, msg.substr(0, at + key.size()) + std::to_string(col) + msg.substr(end));
    }
    const double w = since(t);
    // The backend's last call's transfer times: with overlapping calls (per-rank mode, several threads) they
    // may be another call's, so h2d/d2h are then approximate (on the CPU both are 0 and compute is exact).
    const PhaseTimes pt = runtime->last_times();
    st.h2d += pt.h2d;
    st.d2h += pt.d2h;
    st.compute += std::max(0.0, w - pt.h2d - pt.d2h);
    ++st.batches;
    done += chunk;
  }
  st.batch_columns += ncol;
}

template <class W> void Session::Impl::leader_run(int64_t total, RankStats& st) {
  PtrScratch<W>& s = wscratch<W>();
  for (size_t i = 0; i < in_features.size(); ++i) s.x[i] = reinterpret_cast<const W*>(window.base() + in_off[i]);
  for (size_t i = 0; i < out_features.size(); ++i) s.y[i] = reinterpret_cast<W*>(window.base() + out_off[i]);
  run_runtime<W>(s.x, total, s.y, st);
}

template <class T>
void Session::Impl::aggregate(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y, bool bad,
                              RankStats& rs) {
  const int64_t call = ++seq;
  const int p = static_cast<int>(call & 1);
  // 1. Announce this rank's count (and whether its input was bad, and its type); wait for every rank's.
  RankSlot* const mine = slot(group_rank);
  mine->entry[p] = Entry{bad ? 0 : ncol, std::is_same<T, double>::value ? 1 : 0, bad ? 1 : 0};
  window.publish(&mine->arrive, call);
  rs.wait += window.wait_until(
      [&] {
        for (int r = 0; r < group_size; ++r)
          if (SharedWindow::read_flag(&slot(r)->arrive) < call) return false;
        return true;
      },
      wait_policy);
  int64_t total = 0, displ = 0;
  bool f64 = false;
  for (int r = 0; r < group_size; ++r) {
    const Entry e = slot(r)->entry[p];
    if (r == group_rank) displ = total;
    total += e.ncol;
    if (e.ncol > 0 && e.f64) f64 = true;
  }
  if (total == 0) return;  // every rank read the same counts: all skip the batch together
  if (total > window_cols) {
    auto t = Clock::now();
    ensure_capacity(total);  // collective; the new control block starts at 0, below `call`
    rs.wait += since(t);
  }

  // 2. Pack this rank's columns at its displacement (node-rank order), then say so.
  auto t = Clock::now();
  const size_t wsize = f64 ? sizeof(double) : sizeof(float);
  if (ncol > 0 && !bad) {
    for (size_t i = 0; i < x.size(); ++i) {
      char* dst = window.base() + in_off[i] + static_cast<size_t>(displ * in_features[i]) * wsize;
      if (f64)
        copy_convert(x[i], reinterpret_cast<double*>(dst), ncol * in_features[i]);
      else
        copy_convert(x[i], reinterpret_cast<float*>(dst), ncol * in_features[i]);
    }
  }
  rs.pack += since(t);
  window.publish(&slot(group_rank)->ready, call);  // not `mine`: the window may have been reallocated

  // 3. The leader waits for every rank's columns, runs the group's batch, and publishes its verdict.
  WindowHeader* h = header();
  if (group_rank == 0) {
    rs.wait += window.wait_until(
        [&] {
          for (int r = 1; r < group_size; ++r)
            if (SharedWindow::read_flag(&slot(r)->ready) < call) return false;
          return true;
        },
        SharedWindow::Wait::Yield);  // the packers are quick: no sleeping here
    Status st = Status::Ok;
    std::string msg;
    try {
      if (f64)
        leader_run<double>(total, rs);
      else
        leader_run<float>(total, rs);
    } catch (const Error& e) {
      st = e.status();
      msg = e.what();
    } catch (const std::bad_alloc&) {
      st = Status::OutOfMemory;
      msg = "out of memory";
    } catch (const std::exception& e) {
      st = Status::Internal;
      msg = std::string("internal error: ") + e.what();
    }
    h->status = static_cast<int32_t>(st);
    h->leader = rank;
    h->columns = total;
    std::memset(h->message, 0, sizeof(h->message));
    std::strncpy(h->message, msg.c_str(), sizeof(h->message) - 1);
    window.publish(&h->done, call);
    SharedWindow::wake_all(&h->wake);
  } else {
    rs.wait += window.wait_until([&] { return SharedWindow::read_flag(&h->done) >= call; }, wait_policy, &h->wake);
  }

  // 4. Everyone reads the verdict, then its own outputs.
  const int32_t status = h->status;
  if (bad) return;  // the caller throws this rank's own error
  if (status != 0)
    throw_error(static_cast<Status>(status),
                "fkb_mpi predict (rank " + std::to_string(rank) + "): node-aggregate: the group leader (rank " +
                    std::to_string(h->leader) + ", " + device_name + ") failed on the group's " +
                    std::to_string(h->columns) + " columns: " + std::string(h->message));
  t = Clock::now();
  for (size_t i = 0; i < y.size() && ncol > 0; ++i) {
    const char* src = window.base() + out_off[i] + static_cast<size_t>(displ * out_features[i]) * wsize;
    if (f64)
      copy_convert(reinterpret_cast<const double*>(src), y[i], ncol * out_features[i]);
    else
      copy_convert(reinterpret_cast<const float*>(src), y[i], ncol * out_features[i]);
  }
  rs.unpack += since(t);
}

template <class T>
void Session::Impl::predict(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y,
                            const int64_t* ext) {
  const auto t0 = Clock::now();
  // Node-aggregate: one call at a time per rank. A second call while one is in flight (another thread) would
  // overwrite this rank's slot and columns in the shared window, so it is refused before it touches the
  // window or takes part in the group's call.
  struct Busy {
    std::atomic<bool>* flag = nullptr;
    ~Busy() {
      if (flag) flag->store(false, std::memory_order_release);
    }
  } busy;
  if (aggregating()) {
    bool expected = false;
    if (!aggregate_busy.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
      throw_error(Status::Unsupported,
                  "fkb_mpi predict (rank " + std::to_string(rank) +
                      "): mode node-aggregate: another predict call of this model is in flight on this rank (from "
                      "another thread). Node-aggregate calls are collective over the node and must come from one "
                      "thread at a time per rank (call predict outside the OpenMP parallel region, or inside "
                      "!$omp single / masked), or use mode 'per-rank' or 'cpu', which take concurrent calls. This "
                      "call was refused and did not take part in the group's batch.");
    busy.flag = &aggregate_busy;
  }
  RankStats d;  // this call's statistics, added to the rank's at the end (calls may overlap in per-rank mode)
  d.calls = 1;
  auto commit = [&] {
    d.total += since(t0);
    std::lock_guard<std::mutex> lock(stats_mu);
    stats.calls += d.calls;
    stats.columns += d.columns;
    stats.batch_columns += d.batch_columns;
    stats.batches += d.batches;
    stats.pack += d.pack;
    stats.unpack += d.unpack;
    stats.h2d += d.h2d;
    stats.compute += d.compute;
    stats.d2h += d.d2h;
    stats.wait += d.wait;
    stats.total += d.total;
  };
  // Local checks before any communication: a bad rank must neither hang nor poison the others.
  std::optional<Error> local_error;
  try {
    validate(x, ncol, y, ext);
  } catch (const Error& e) {
    local_error = e;
  }
  const bool bad = local_error.has_value();
  if (!aggregating()) {
    if (bad) {
      commit();
      throw *local_error;
    }
    try {
      if (ncol > 0) run_runtime<T>(x, ncol, y, d);
    } catch (...) {
      commit();
      throw;
    }
  } else {
    try {
      aggregate<T>(x, ncol, y, bad, d);
    } catch (...) {
      commit();
      throw;
    }
    if (bad) {
      commit();
      throw *local_error;
    }
  }
  d.columns += ncol;
  commit();
}

std::vector<RankReport> Session::Impl::gather_ranks(std::string* memory_model) const {
  PackedRank me{};
  me.rank = rank;
  me.node = node;
  me.local_rank = local_rank;
  me.leader = leader() ? 1 : 0;
  const std::string wm = window.memory_model();
  me.window_model = wm == "unified" ? 1 : wm == "separate" ? 2 : wm.empty() ? 0 : 3;
  RankStats snap;
  {
    std::lock_guard<std::mutex> lock(stats_mu);
    snap = stats;
  }
  me.calls = snap.calls;
  me.columns = snap.columns;
  me.batch_columns = snap.batch_columns;
  me.batches = snap.batches;
  me.pack = snap.pack;
  me.unpack = snap.unpack;
  me.h2d = snap.h2d;
  me.compute = snap.compute;
  me.d2h = snap.d2h;
  me.wait = snap.wait;
  me.total = snap.total;
  std::strncpy(me.device, device_name.c_str(), sizeof(me.device) - 1);
  std::vector<PackedRank> all(static_cast<size_t>(size));
  FKB_CHECK_MPI(MPI_Allgather(&me, static_cast<int>(sizeof(PackedRank)), MPI_BYTE, all.data(),
                              static_cast<int>(sizeof(PackedRank)), MPI_BYTE, comm));
  std::vector<RankReport> out;
  int worst = 0;
  for (const PackedRank& p : all) {
    RankReport r;
    r.rank = p.rank;
    r.node = p.node;
    r.local_rank = p.local_rank;
    r.leader = p.leader != 0;
    r.device = std::string(p.device, strnlen(p.device, sizeof(p.device)));
    r.stats.calls = p.calls;
    r.stats.columns = p.columns;
    r.stats.batch_columns = p.batch_columns;
    r.stats.batches = p.batches;
    r.stats.pack = p.pack;
    r.stats.unpack = p.unpack;
    r.stats.h2d = p.h2d;
    r.stats.compute = p.compute;
    r.stats.d2h = p.d2h;
    r.stats.wait = p.wait;
    r.stats.total = p.total;
    out.push_back(r);
    worst = std::max(worst, static_cast<int>(p.window_model));
  }
  if (memory_model) *memory_model = worst == 0 ? "" : worst == 1 ? "unified" : worst == 2 ? "separate" : "unknown";
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Session

Session::Session(MPI_Comm comm, const std::string& path, const SessionOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->init(
      comm,
      [&] {
        Model::LoadOptions lo;
        lo.config_path = options.config_path;
        return Model::load(path, lo);
      },
      options);
}

Session::Session(MPI_Comm comm, const Model& model, const SessionOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->init(
      comm, [&] { return model; }, options);
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

void Session::predict(const float* x, int64_t ncol, float* y) {
  const size_t nx = impl_->in_features.size(), ny = impl_->out_features.size();
  if (nx != 1 || ny != 1)
    throw_error(Status::InvalidArgument, "this predict() overload takes one input and one output array, but the model "
                                         "has " +
                                             std::to_string(nx) + " input(s) and " + std::to_string(ny) +
                                             " output(s); use the vector overload");
  // The call's own pointer vectors: calls may overlap (per-rank mode).
  const std::vector<const float*> xs(1, x);
  const std::vector<float*> ys(1, y);
  impl_->predict<float>(xs, ncol, ys, nullptr);
}

void Session::predict(const double* x, int64_t ncol, double* y) {
  const size_t nx = impl_->in_features.size(), ny = impl_->out_features.size();
  if (nx != 1 || ny != 1)
    throw_error(Status::InvalidArgument, "this predict() overload takes one input and one output array, but the model "
                                         "has " +
                                             std::to_string(nx) + " input(s) and " + std::to_string(ny) +
                                             " output(s); use the vector overload");
  // The call's own pointer vectors: calls may overlap (per-rank mode).
  const std::vector<const double*> xs(1, x);
  const std::vector<double*> ys(1, y);
  impl_->predict<double>(xs, ncol, ys, nullptr);
}

void Session::predict(const std::vector<const float*>& x, int64_t ncol, const std::vector<float*>& y) {
  impl_->predict<float>(x, ncol, y, nullptr);
}

void Session::predict(const std::vector<const double*>& x, int64_t ncol, const std::vector<double*>& y) {
  impl_->predict<double>(x, ncol, y, nullptr);
}

void Session::predict_checked(const float* x, int64_t x_features, int64_t x_ncol, float* y, int64_t y_features,
                              int64_t y_ncol) {
  const int64_t ext[4] = {x_features, x_ncol, y_features, y_ncol};
  const std::vector<const float*> xs(1, x);
  const std::vector<float*> ys(1, y);
  if (impl_->in_features.size() != 1 || impl_->out_features.size() != 1) {
    impl_->predict<float>(xs, x_ncol, ys, nullptr);  // rejected locally (arity), still takes part
    return;
  }
  impl_->predict<float>(xs, x_ncol, ys, ext);
}

void Session::predict_checked(const double* x, int64_t x_features, int64_t x_ncol, double* y, int64_t y_features,
                              int64_t y_ncol) {
  const int64_t ext[4] = {x_features, x_ncol, y_features, y_ncol};
  const std::vector<const double*> xs(1, x);
  const std::vector<double*> ys(1, y);
  if (impl_->in_features.size() != 1 || impl_->out_features.size() != 1) {
    impl_->predict<double>(xs, x_ncol, ys, nullptr);  // rejected locally (arity), still takes part
    return;
  }
  impl_->predict<double>(xs, x_ncol, ys, ext);
}

Mode Session::mode() const { return impl_->mode; }
int Session::rank() const { return impl_->rank; }
int Session::size() const { return impl_->size; }
int Session::node() const { return impl_->node; }
int Session::nodes() const { return impl_->nodes; }
int Session::local_rank() const { return impl_->local_rank; }
int Session::local_size() const { return impl_->local_size; }
bool Session::is_leader() const { return impl_->leader(); }
int Session::group_size() const { return impl_->group_size; }
std::string Session::assigned_device() const { return impl_->choice.device; }
std::string Session::device_name() const { return impl_->device_name; }
int64_t Session::num_inputs() const { return static_cast<int64_t>(impl_->in_features.size()); }
int64_t Session::num_outputs() const { return static_cast<int64_t>(impl_->out_features.size()); }
int64_t Session::n_inputs(int i) const { return impl_->in_features.at(static_cast<size_t>(i)); }
int64_t Session::n_outputs(int i) const { return impl_->out_features.at(static_cast<size_t>(i)); }
int64_t Session::window_columns() const { return impl_->window_cols; }
const RankStats& Session::stats() const { return impl_->stats; }
void Session::reset_stats() {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  impl_->stats = RankStats{};
}

Report Session::report() const {
  Report r;
  r.mode = mode_name(impl_->mode);
  r.model = impl_->model_name;
  r.n_inputs = impl_->in_features.empty() ? 0 : impl_->in_features[0];
  r.n_outputs = impl_->out_features.empty() ? 0 : impl_->out_features[0];
  r.ranks = impl_->size;
  r.nodes = impl_->nodes;
  r.per_rank = impl_->gather_ranks(&r.memory_model);
  r.groups = static_cast<int>(
      std::count_if(r.per_rank.begin(), r.per_rank.end(), [](const RankReport& x) { return x.leader; }));
  return r;
}

void Session::print_report(std::FILE* out) const {
  const Report r = report();
  if (impl_->rank == 0) {
    const std::string t = r.text();
    std::fputs(t.c_str(), out ? out : stdout);
    std::fflush(out ? out : stdout);
  }
}

void Session::write_report_json(const std::string& path) const {
  const Report r = report();
  Status st = Status::Ok;
  std::string msg;
  if (impl_->rank == 0) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    const std::string j = r.json();
    if (!f || std::fwrite(j.data(), 1, j.size(), f) != j.size() || std::fputc('\n', f) == EOF) {
      st = Status::FileError;
      msg = "cannot write the report to '" + path + "': " + std::strerror(errno);
    }
    if (f && std::fclose(f) != 0 && st == Status::Ok) {
      st = Status::FileError;
      msg = "cannot write the report to '" + path + "': " + std::strerror(errno);
    }
  }
  agree(impl_->comm, impl_->rank, "fkb::mpi::Session::write_report_json", st, msg);
}

namespace detail {
void inject_leader_failures(Session& s, int n) {
  // Only ranks that run a runtime fail; the others learn of it through the window's status word.
  s.impl_->inject_failures = n;
}
}  // namespace detail

}  // namespace mpi
}  // namespace fkb
