// The CPU backend: a Program (cpu_program.hpp) run over blocks of columns.
//
// GEMMs: on CPUs with AVX-512, a kernel over weights packed once at compile time with bias + LeakyReLU
// applied in registers (packed_gemm.hpp); elsewhere OpenBLAS' cblas_sgemm followed by one vectorized
// epilogue pass over the output tile while it is still in cache.
//
// Concurrency: a plan is read-only once compiled. Each call takes a workspace (one worker per thread it uses)
// from a small pool (workspace_pool.hpp), so any number of threads may call run() on one plan at once; a
// call made inside the caller's OpenMP parallel region, or while other calls are in flight, uses
// `nested_threads` threads (call_threads.hpp) instead of opening a team of its own.
//
// Threading: the batch is split into column blocks processed by an OpenMP parallel loop, each thread with
// its own worker, and OpenBLAS kept single-threaded (it is the pthread build: letting it also thread
// each GEMM would oversubscribe the cores). With packed weights the threads share one read-only copy of
// the weights, so splitting the columns costs nothing extra. FKB_CPU_THREADING=blas instead runs one block
// at a time and lets OpenBLAS thread each GEMM (OpenBLAS path only), for comparison. All buffers are
// allocated at compile time; run() allocates nothing.
//
// Custom layers (fkb/custom_layer.hpp) run their registered cpu function on the block. An error there is
// collected (exceptions must not leave an OpenMP region) and thrown once the parallel loop is over.
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "cpu/call_threads.hpp"
#include "cpu/cpu_kernels.hpp"
#include "cpu/cpu_program.hpp"
#include "cpu/packed_gemm.hpp"
#include "custom_call.hpp"
#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "workspace_pool.hpp"

namespace fkb {
namespace cpu {
namespace {

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

Buffer alloc_floats(int64_t n) {
  const size_t bytes = ((static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p)
    throw_error(Status::OutOfMemory, "CPU backend: cannot allocate a workspace of " + std::to_string(bytes) + " bytes");
  return Buffer(static_cast<float*>(p));
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int64_t env_int(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  return (end && *end == 0 && v > 0) ? v : fallback;
}

// OpenBLAS' thread count is process-wide; set it under a lock so concurrent plans do not race on it.
void set_blas_threads(int n) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (openblas_get_num_threads() != n) openblas_set_num_threads(n);
}

enum class Threading { Blocks, Blas };

class CpuPlan final : public CpuBlockPlan {
 public:
  /// `first_workspace`: make the first call's workspace now (block drivers that bring their own workers pass false).
  CpuPlan(Program prog, const CompileOptions& opt, bool first_workspace = true)
      : prog_(std::move(prog)),
        max_batch_(opt.max_batch),
        nested_threads_(std::max(opt.nested_threads, 1)),
        reproducible_(opt.reproducible) {
    threads_ = opt.threads > 0 ? opt.threads : omp_get_max_threads();
    if (threads_ < 1) threads_ = 1;
    const char* mode = std::getenv("FKB_CPU_THREADING");
    threading_ = (mode && std::string(mode) == "blas") ? Threading::Blas : Threading::Blocks;

    // Block size. OpenBLAS repacks the weights on every call, about K*N cycles against M*K*N/32 for the
    // multiply, so its blocks need >= ~256 columns; the widest activation tile of a block (block x widest
    // layer) should stay within about twice the per-core L2 so the epilogue and the next layer find it in
    // L2/L3. The packed kernel was measured insensitive to the block size between 64 and 1024 columns on
    // cbrain and climsim, so both paths share this choice. FKB_CPU_BLOCK overrides it.
    int64_t widest = 1;
    for (auto f : prog_.slot_features) widest = std::max(widest, f);
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 <= 0) l2 = 1 << 20;
    int64_t block = (2 * l2) / (static_cast<int64_t>(sizeof(float)) * widest);
    block = std::clamp<int64_t>(block / 16 * 16, widest > 8192 ? 16 : 256, 1024);
    block_ = env_int("FKB_CPU_BLOCK", block);
    if (threading_ == Threading::Blas) block_ *= threads_;
    block_ = std::min(block_, std::max<int64_t>(max_batch_, 1));
    nworkers_ = threading_ == Threading::Blas ? 1 : threads_;

    // Slot offsets (floats) inside one worker's workspace.
    slot_off_.resize(prog_.slot_features.size());
    int64_t off = 0;
    for (size_t s = 0; s < prog_.slot_features.size(); ++s) {
      slot_off_[s] = off;
      off += round_up(prog_.slot_features[s] * block_, 16);
    }
    in_off_.resize(prog_.inputs.size());
    for (size_t i = 0; i < prog_.inputs.size(); ++i) {
      in_off_[i] = off;
      off += round_up(prog_.values[prog_.inputs[i]].features * block_, 16);
    }
    scratch_off_ = off;
    off += round_up(prog_.scratch_per_col * block_, 16);
    worker_floats_ = off;
    // Weights packed once for the AVX-512 kernel, with the epilogue it can apply in registers.
    use_packed_ = packed_gemm_available();
    if (use_packed_) {
      packed_.resize(prog_.steps.size());
      packed_epi_.assign(prog_.steps.size(), PackedEpilogue::None);
      for (size_t i = 0; i < prog_.steps.size(); ++i) {
        const Step& s = prog_.steps[i];
        if (s.kind != StepKind::Gemm && s.kind != StepKind::Conv1D) continue;
        const Epilogue& e = s.epi;
        const bool fusable = e.alpha.empty() && e.softmax_len == 0 &&
                             (e.act == ActKind::Linear || e.act == ActKind::LeakyRelu);
        packed_[i] = pack_weights(s.w.data(), s.k, s.n, fusable && !e.bias.empty() ? e.bias.data() : nullptr);
        if (fusable)
          packed_epi_[i] = e.act == ActKind::LeakyRelu ? PackedEpilogue::BiasLeaky
                           : e.bias.empty()            ? PackedEpilogue::None
                                                       : PackedEpilogue::Bias;
      }
    }
    // An output produced by a step can be written straight into the caller's float32 buffer.
    redirect_.assign(prog_.outputs.size(), false);
    for (size_t i = 0; i < prog_.outputs.size(); ++i) {
      const int v = prog_.outputs[i];
      bool first = true;
      for (size_t j = 0; j < i; ++j) first = first && prog_.outputs[j] != v;
      redirect_[i] = first && prog_.values[v].input < 0;
    }
    max_in_ = 1;
    for (const auto& s : prog_.steps) max_in_ = std::max(max_in_, s.in.size());
    // The workspace of the first call is made now: a caller that never overlaps calls allocates nothing later.
    if (first_workspace) pool_.add(make_workspace(nworkers_));
  }

  void run(const IoBinding& io, int64_t ncol) override {
    // Per-call time for last_times(): on the CPU everything is compute (no transfers).
    struct Timer {
      PhaseTimes& t;
      std::mutex& mu;
      std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
      ~Timer() {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::lock_guard<std::mutex> lock(mu);
        t.compute = t.total = s;
      }
    } timer{last_, last_mu_};
    run_checked(io, ncol);
  }

  bool concurrent_runs() const override { return true; }

  PhaseTimes last_times() const override {
    std::lock_guard<std::mutex> lock(last_mu_);
    return last_;
  }

  void run_checked(const IoBinding& io, int64_t ncol) const {
    if (ncol < 0) throw_error(Status::InvalidArgument, "ncol must be >= 0, got " + std::to_string(ncol));
    if (ncol == 0) return;
    if (ncol > max_batch_)
      throw_error(Status::InvalidArgument, "CPU plan: ncol " + std::to_string(ncol) + " exceeds the plan's max_batch " +
                                               std::to_string(max_batch_));
    if (io.inputs.size() != prog_.inputs.size() || io.outputs.size() != prog_.outputs.size())
      throw_error(Status::InvalidArgument, "CPU plan: got " + std::to_string(io.inputs.size()) + " input(s) and " +
                                               std::to_string(io.outputs.size()) + " output(s), the model has " +
                                               std::to_string(prog_.inputs.size()) + " and " +
                                               std::to_string(prog_.outputs.size()));
    for (auto p : io.inputs)
      if (!p) throw_error(Status::InvalidArgument, "CPU plan: null input pointer");
    for (auto p : io.outputs)
      if (!p) throw_error(Status::InvalidArgument, "CPU plan: null output pointer");

    const CallScope scope;
    const int call_threads = scope.threads(threads_, nested_threads_);
    if (threading_ == Threading::Blas) {
      auto ws = acquire(1);
      Worker& wk = *ws->workers[0];
      set_blas_threads(call_threads);
      for (int64_t c0 = 0; c0 < ncol && !ws->errors.failed(); c0 += block_)
        ws->errors.set(run_io_block(wk, io, c0, std::min(block_, ncol - c0)));
      ws->errors.rethrow();
      return;
    }
    set_blas_threads(1);
    // Enough blocks to keep every thread busy, none larger than the cache-sized block. With packed weights
    // a block costs no per-call packing, so aim for ~4 blocks per thread, handed out dynamically: a thread
    // that is descheduled (a shared node) or slower does not hold the others at the end of the call.
    // OpenBLAS repacks per call, so there one block per thread is the floor. The split depends on the plan's
    // threads, never on how many threads this call gets, so results do not depend on concurrency.
    int64_t bs = block_;
    if (threads_ > 1 && ncol < bs * threads_ * (use_packed_ ? 4 : 1)) {
      bs = use_packed_ ? round_up((ncol + 4 * threads_ - 1) / (4 * threads_), 12)
                       : round_up((ncol + threads_ - 1) / threads_, 8);
      bs = std::clamp<int64_t>(bs, use_packed_ ? 24 : 8, block_);
    }
    const int64_t nblocks = (ncol + bs - 1) / bs;
    // A thread only pays off with enough work to hide waking it (microseconds on an idle node, a scheduler
    // tick on a busy one): at least ~2 MFLOP, some 20 us of one core, per thread.
    const int64_t work_threads = std::max<int64_t>(1, ncol * std::max<int64_t>(prog_.flops_per_col, 1) / 2000000);
    const int nt = static_cast<int>(std::min<int64_t>({call_threads, nblocks, work_threads}));
    auto ws = acquire(nt);
    ErrorSink& errors = ws->errors;
    if (nt <= 1) {
      Worker& wk = *ws->workers[0];
      for (int64_t b = 0; b < nblocks && !errors.failed(); ++b)
        errors.set(run_io_block(wk, io, b * bs, std::min(bs, ncol - b * bs)));
      errors.rethrow();
      return;
    }
#pragma omp parallel num_threads(nt)
    {
      Worker& wk = *ws->workers[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < nblocks; ++b)
        if (!errors.failed()) errors.set(run_io_block(wk, io, b * bs, std::min(bs, ncol - b * bs)));
    }
    errors.rethrow();
  }

  // CpuBlockPlan
  int64_t block_size() const override { return block_; }
  int threads() const override { return threads_; }
  std::unique_ptr<BlockWorker> make_worker() const override { return make_one_worker(); }
  void begin_parallel_blocks() const override { set_blas_threads(1); }
  std::exception_ptr run_block(BlockWorker& worker, const float* const* x, float* const* y,
                               int64_t b) const noexcept override {
    Worker& wk = static_cast<Worker&>(worker);
    for (size_t i = 0; i < prog_.inputs.size(); ++i) wk.xs[i] = x[i];
    for (size_t i = 0; i < prog_.outputs.size(); ++i) wk.ys[i] = redirect_[i] ? y[i] : nullptr;
    std::exception_ptr err = execute(wk, b);
    for (size_t i = 0; i < prog_.outputs.size(); ++i)
      if (!redirect_[i]) {
        const int v = prog_.outputs[i];
        std::memcpy(y[i], wk.vp[v], sizeof(float) * static_cast<size_t>(b * prog_.values[v].features));
      }
    return err;
  }

  int64_t max_batch() const override { return max_batch_; }
  std::string device_name() const override {
    return "cpu (" + std::to_string(threads_) + (threads_ == 1 ? " thread)" : " threads)");
  }

  /// Workspaces made so far (tests: concurrent calls grow the pool, serial calls do not).
  size_t workspaces() const { return pool_.created(); }

 private:
  struct Worker final : BlockWorker {
    Buffer mem;
    std::vector<float*> vp;          // pointer of each value for the current block
    std::vector<const float*> ins;   // inputs of a merge/concat/custom step
    std::vector<const float*> xs;    // the block's model inputs (float32)
    std::vector<float*> ys;          // the block's model outputs written in place (nullptr: kept in a slot)
  };
  // What one call holds: a worker per thread it uses, and the first error a block raised.
  struct Workspace {
    std::vector<std::unique_ptr<Worker>> workers;
    ErrorSink errors;
  };

  std::unique_ptr<Worker> make_one_worker() const {
    auto wk = std::make_unique<Worker>();
    wk->mem = alloc_floats(worker_floats_);
    wk->vp.assign(prog_.values.size(), nullptr);
    wk->ins.resize(max_in_);
    wk->xs.resize(prog_.inputs.size());
    wk->ys.resize(prog_.outputs.size());
    return wk;
  }

  std::unique_ptr<Workspace> make_workspace(int nworkers) const {
    auto ws = std::make_unique<Workspace>();
    for (int w = 0; w < nworkers; ++w) ws->workers.push_back(make_one_worker());
    return ws;
  }

  // A workspace with at least `nworkers` workers, for the duration of one call.
  WorkspacePool<Workspace>::Lease acquire(int nworkers) const {
    const size_t need = static_cast<size_t>(std::max(nworkers, 1));
    return pool_.acquire([need](const Workspace& w) { return w.workers.size() >= need; },
                         [&] { return make_workspace(static_cast<int>(need)); });
  }

  // out[rows][n] = a[rows][k] W, then the step's epilogue over the b columns of `fout` features each.
  void gemm(size_t si, const Step& s, const float* a, int64_t rows, float* out, int64_t b, int64_t fout) const {
    if (use_packed_) {
      const PackedEpilogue pe = packed_epi_[si];
      packed_gemm(a, s.k, rows, packed_[si], pe, s.epi.params.alpha, out, s.n);
      const bool fused = pe != PackedEpilogue::None || s.epi.is_identity();
      if (!fused) apply_epilogue(s.epi, out, b, fout);
      return;
    }
    if (reproducible_) {
      // OpenBLAS picks kernels and summation splits by matrix size, so a column's result would depend on the
      // batch. Reproducible mode sums each output in one fixed order instead (the packed kernels already do).
      for (int64_t i = 0; i < rows; ++i) {
        const float* ar = a + i * s.k;
        float* o = out + i * s.n;
        for (int64_t j = 0; j < s.n; ++j) o[j] = 0.0f;
        for (int64_t kk = 0; kk < s.k; ++kk) {
          const float av = ar[kk];
          const float* wr = s.w.data() + kk * s.n;
          for (int64_t j = 0; j < s.n; ++j) o[j] = std::fma(av, wr[j], o[j]);
        }
      }
      if (!s.epi.is_identity()) apply_epilogue(s.epi, out, b, fout);
      return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(s.n),
                static_cast<int>(s.k), 1.0f, a, static_cast<int>(s.k), s.w.data(), static_cast<int>(s.n), 0.0f, out,
                static_cast<int>(s.n));
    if (!s.epi.is_identity()) apply_epilogue(s.epi, out, b, fout);
  }

  std::exception_ptr run_io_block(Worker& wk, const IoBinding& io, int64_t col0, int64_t b) const noexcept {
    float* mem = wk.mem.get();
    for (size_t i = 0; i < prog_.inputs.size(); ++i) {
      const int64_t f = prog_.values[prog_.inputs[i]].features;
      if (io.input_dtype == DType::F32) {
        wk.xs[i] = static_cast<const float*>(io.inputs[i]) + col0 * f;
      } else {
        convert_f64_to_f32(static_cast<const double*>(io.inputs[i]) + col0 * f, mem + in_off_[i], b * f);
        wk.xs[i] = mem + in_off_[i];
      }
    }
    for (size_t i = 0; i < prog_.outputs.size(); ++i)
      wk.ys[i] = io.output_dtype == DType::F32 && redirect_[i]
                     ? static_cast<float*>(io.outputs[i]) + col0 * prog_.values[prog_.outputs[i]].features
                     : nullptr;
    std::exception_ptr err = execute(wk, b);
    for (size_t i = 0; i < prog_.outputs.size(); ++i) {
      const int v = prog_.outputs[i];
      const int64_t f = prog_.values[v].features;
      if (io.output_dtype == DType::F64)
        convert_f32_to_f64(wk.vp[v], static_cast<double*>(io.outputs[i]) + col0 * f, b * f);
      else if (!wk.ys[i])
        std::memcpy(static_cast<float*>(io.outputs[i]) + col0 * f, wk.vp[v], sizeof(float) * static_cast<size_t>(b * f));
    }
    return err;
  }

  // Run every step on a block of b columns whose model inputs are wk.xs (float32) and whose in-place outputs
  // are wk.ys (nullptr: the output stays in its slot, wk.vp[value]). Returns a custom layer's error.
  std::exception_ptr execute(Worker& wk, int64_t b) const noexcept {
    float* mem = wk.mem.get();
    auto& vp = wk.vp;
    std::exception_ptr err;
    for (size_t v = 0; v < prog_.values.size(); ++v)
      if (prog_.values[v].slot >= 0) vp[v] = mem + slot_off_[prog_.values[v].slot];
    for (size_t i = 0; i < prog_.inputs.size(); ++i) vp[prog_.inputs[i]] = const_cast<float*>(wk.xs[i]);
    for (size_t i = 0; i < prog_.outputs.size(); ++i)
      if (wk.ys[i]) vp[prog_.outputs[i]] = wk.ys[i];

    for (size_t si = 0; si < prog_.steps.size(); ++si) {
      const Step& s = prog_.steps[si];
      float* out = vp[s.out];
      const int64_t fout = prog_.values[s.out].features;
      switch (s.kind) {
        case StepKind::Gemm: gemm(si, s, vp[s.in[0]], b * s.rows_per_col, out, b, fout); break;
        case StepKind::Conv1D: {
          const float* a = vp[s.in[0]];
          const bool direct = s.ksize == 1 && s.stride == 1 && s.pad_left == 0 && s.steps_out == s.steps_in;
          if (!direct) {
            float* scratch = mem + scratch_off_;
            im2col_1d(s, a, scratch, b);
            a = scratch;
          }
          gemm(si, s, a, b * s.steps_out, out, b, fout);
          break;
        }
        case StepKind::Affine: apply_affine(s, vp[s.in[0]], out, b, fout); break;
        case StepKind::Int8Gemm: apply_int8_gemm(s, vp[s.in[0]], out, b, mem + scratch_off_); break;
        case StepKind::Act: apply_activation(s, vp[s.in[0]], out, b, fout); break;
        case StepKind::Merge:
        case StepKind::Concat:
        case StepKind::Custom: {
          const float** in = wk.ins.data();
          for (size_t i = 0; i < s.in.size(); ++i) in[i] = vp[s.in[i]];
          if (s.kind == StepKind::Merge)
            apply_merge(s, in, static_cast<int>(s.in.size()), out, b, fout);
          else if (s.kind == StepKind::Concat)
            apply_concat(s, in, out, b);
          else if (!err)
            err = s.custom->run_cpu(in, b, out);
          break;
        }
      }
    }
    return err;
  }

  Program prog_;
  int64_t max_batch_;
  int nested_threads_ = 1;
  int threads_ = 1;
  int nworkers_ = 1;
  Threading threading_ = Threading::Blocks;
  int64_t block_ = 256;
  std::vector<int64_t> slot_off_, in_off_;
  int64_t scratch_off_ = 0;
  int64_t worker_floats_ = 0;
  size_t max_in_ = 1;
  mutable WorkspacePool<Workspace> pool_;
  std::vector<bool> redirect_;
  bool use_packed_ = false;
  bool reproducible_ = false;  ///< fixed summation order per output even without the packed kernels
  std::vector<PackedWeights> packed_;
  std::vector<PackedEpilogue> packed_epi_;
  mutable std::mutex last_mu_;
  PhaseTimes last_;
};

void check_compile_options(const CompileOptions& options) {
  if (options.precision != Precision::FP32)
    throw_error(Status::Unsupported, std::string("the CPU backend does not support precision '") +
                                         precision_name(options.precision) + "'; accepted values: fp32");
  if (options.max_batch < 1)
    throw_error(Status::InvalidArgument, "max_batch must be >= 1, got " + std::to_string(options.max_batch));
  if (options.threads < 0)
    throw_error(Status::InvalidArgument, "threads must be >= 0 (0 = OMP_NUM_THREADS, else all cores), got " + std::to_string(options.threads));
}

void check_model(const Model& model) {
  for (const auto& n : model.nodes) {
    std::string why;
    if (!cpu_supports(n, &why)) throw_error(Status::Unsupported, "layer '" + n.name + "': " + why);
  }
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  bool supports(const Model&, const Node& node, std::string* why) const override { return cpu_supports(node, why); }

  std::unique_ptr<Plan> compile(const Model& model, const CompileOptions& options) const override {
    check_compile_options(options);
    check_model(model);
    return make_cpu_plan(compile_program(model), options);
  }
};

}  // namespace

std::unique_ptr<Plan> make_cpu_plan(Program program, const CompileOptions& options) {
  if (options.precision != Precision::FP32)
    throw_error(Status::Unsupported, std::string("the CPU backend does not support precision '") +
                                         precision_name(options.precision) + "'; accepted values: fp32");
  return std::make_unique<CpuPlan>(std::move(program), options);
}

std::unique_ptr<CpuBlockPlan> make_cpu_block_plan(const Model& model, const CompileOptions& options) {
  check_compile_options(options);
  check_model(model);
  return std::make_unique<CpuPlan>(compile_program(model), options, /*first_workspace=*/false);
}

}  // namespace cpu

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<cpu::CpuBackend>(); }

}  // namespace fkb
