// fkb::Runtime: device selection, argument checks, the non-finite policy, and chunking of large calls
// over a backend plan (DESIGN.md "Devices" and "Numerical contract").
#include "fkb/runtime.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "plugin_loader.hpp"
#include "workspace_pool.hpp"

namespace fkb {

namespace {

struct DeviceRequest {
  bool cpu = false, cuda = false, automatic = false;
  int index = 0;
};

DeviceRequest parse_device(const std::string& d) {
  DeviceRequest r;
  if (d == "cpu") {
    r.cpu = true;
  } else if (d == "auto") {
    r.automatic = true;
  } else if (d == "cuda") {
    r.cuda = true;
  } else if (d.rfind("cuda:", 0) == 0) {
    const std::string n = d.substr(5);
    char* end = nullptr;
    const long v = n.empty() ? -1 : std::strtol(n.c_str(), &end, 10);
    if (n.empty() || !end || *end != 0 || v < 0 || v > 1 << 20)
      throw_error(Status::InvalidArgument, "bad device '" + d + "': the CUDA device index must be a non-negative "
                                                                "integer (cuda:0, cuda:1, ...)");
    r.cuda = true;
    r.index = static_cast<int>(v);
  } else {
    throw_error(Status::InvalidArgument, "unknown device '" + d + "'; accepted values: auto, cpu, cuda, cuda:N");
  }
  return r;
}

template <typename T>
bool is_finite_value(T v) {
  return std::isfinite(v);
}

}  // namespace

struct Runtime::Impl {
  Model model;
  RuntimeOptions options;
  NonFinitePolicy nonfinite = NonFinitePolicy::Propagate;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Plan> plan;
  // Concurrent calls: the plan is shared; each call in flight takes its own IoBinding from this pool (so the
  // steady path allocates nothing), and plans that cannot run concurrently (CUDA) take turns on `serial`.
  WorkspacePool<IoBinding> bindings;
  std::mutex serial;

  std::unique_ptr<IoBinding> make_binding() const {
    auto io = std::make_unique<IoBinding>();
    io->inputs.assign(static_cast<size_t>(model.num_inputs()), nullptr);
    io->outputs.assign(static_cast<size_t>(model.num_outputs()), nullptr);
    return io;
  }

  template <typename T>
  void check_finite(const T* const* x, size_t nx, int64_t col0, int64_t ncol) const {
    for (size_t i = 0; i < nx; ++i) {
      if (!plan->host_readable(x[i]))
        throw_error(Status::Unsupported, "the non-finite policy 'error' checks inputs on the host, but input " +
                                             std::to_string(i) +
                                             " is GPU device memory; use the 'propagate' policy or host arrays");
      const int64_t f = model.input_size(static_cast<int>(i));
      const T* p = x[i] + col0 * f;
      for (int64_t c = 0; c < ncol; ++c) {
        for (int64_t j = 0; j < f; ++j) {
          if (!is_finite_value(p[c * f + j]))
            throw_error(Status::NonFinite,
                        "non-finite input value " + std::to_string(static_cast<double>(p[c * f + j])) + " in column " +
                            std::to_string(col0 + c) + ", feature " + std::to_string(j) + " of input " +
                            std::to_string(i) + " (counted from 0: Fortran x(" + std::to_string(j + 1) + ", " +
                            std::to_string(col0 + c + 1) + "); non-finite policy 'error')");
        }
      }
    }
  }

  template <typename T>
  void run(const T* const* x, size_t nx, int64_t ncol, T* const* y, size_t ny, DType dtype) {
    if (static_cast<int64_t>(nx) != model.num_inputs() || static_cast<int64_t>(ny) != model.num_outputs())
      throw_error(Status::InvalidArgument, "predict got " + std::to_string(nx) + " input and " +
                                               std::to_string(ny) + " output array(s); the model has " +
                                               std::to_string(model.num_inputs()) + " input(s) and " +
                                               std::to_string(model.num_outputs()) + " output(s)");
    if (ncol < 0) throw_error(Status::InvalidArgument, "ncol must be >= 0, got " + std::to_string(ncol));
    if (ncol == 0) return;  // a rank or chunk with no columns: nothing to read or write (pointers may be null)
    for (size_t i = 0; i < nx; ++i)
      if (!x[i]) throw_error(Status::InvalidArgument, "input " + std::to_string(i) + " is a null pointer");
    for (size_t i = 0; i < ny; ++i)
      if (!y[i]) throw_error(Status::InvalidArgument, "output " + std::to_string(i) + " is a null pointer");
    auto lease = bindings.acquire([](const IoBinding&) { return true; }, [&] { return make_binding(); });
    IoBinding& io = *lease;
    std::unique_lock<std::mutex> turn(serial, std::defer_lock);
    if (!plan->concurrent_runs()) turn.lock();
    io.input_dtype = dtype;
    io.output_dtype = dtype;
    // The whole call is checked before any chunk runs: an error leaves the outputs untouched.
    if (nonfinite == NonFinitePolicy::Error) check_finite(x, nx, 0, ncol);
    int64_t done = 0;
    while (done < ncol) {
      const int64_t chunk = std::min(ncol - done, plan->max_batch());
      for (size_t i = 0; i < nx; ++i) io.inputs[i] = x[i] + done * model.input_size(static_cast<int>(i));
      for (size_t i = 0; i < ny; ++i) io.outputs[i] = y[i] + done * model.output_size(static_cast<int>(i));
      plan->run(io, chunk);
      done += chunk;
    }
  }
};

Runtime::Runtime(const Model& model, const RuntimeOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.model = model;
  m.options = options;
  m.nonfinite = parse_nonfinite_policy(options.nonfinite);
  if (m.model.num_inputs() == 0 || m.model.num_outputs() == 0)
    throw_error(Status::InvalidArgument, "the model has no inputs or no outputs (was it loaded?)");
  CompileOptions co;
  co.precision = parse_precision(options.precision);
  co.max_batch = options.max_batch;
  co.threads = options.threads;
  co.reproducible = options.reproducible;
  co.verbose = options.verbose;
  if (options.nested_threads < 1)
    throw_error(Status::InvalidArgument, "nested_threads must be >= 1, got " + std::to_string(options.nested_threads));
  co.nested_threads = options.nested_threads;
  if (options.max_batch < 1)
    throw_error(Status::InvalidArgument, "max_batch must be >= 1, got " + std::to_string(options.max_batch));
  const DeviceRequest dev = parse_device(options.device);
  co.device_index = dev.index;

  if (dev.cpu) {
    m.backend = make_cpu_backend();
    m.plan = m.backend->compile(m.model, co);
  } else if (dev.cuda) {
    m.backend = make_cuda_backend();
    m.plan = m.backend->compile(m.model, co);
  } else {
    const int ndev = cuda_device_count();  // loads the CUDA plugin (plugin_loader.cpp) when built with CUDA
    // Why auto runs on the CPU in a CUDA build (plugin or libraries missing, no device, CUDA failed): in the
    // one-line device notice (verbose, the default); a quiet run prints nothing.
    std::string fallback;
    if (built_with_cuda() && ndev > 0) {
      try {
        m.backend = make_cuda_backend();
        m.plan = m.backend->compile(m.model, co);
        if (options.verbose)
          std::fprintf(stderr, "fkb: device auto -> %s\n", m.plan->device_name().c_str());
      } catch (const Error& e) {
        if (options.verbose)
          std::fprintf(stderr, "fkb: device auto: CUDA failed (%s); falling back to the CPU\n", e.what());
        fallback = std::string("CUDA failed: ") + e.what();
        m.plan.reset();
        m.backend.reset();
      }
    } else if (built_with_cuda()) {
      fallback = plugin::cuda_unavailable_reason();
    }
    if (!m.plan) {
      // tf32/bf16/fp16 are GPU modes; auto on a host without a usable GPU runs the CPU in fp32 (at least as
      // accurate as what was asked for) and says so, rather than failing on a CPU-only partition.
      const Precision asked = co.precision;
      if (asked != Precision::FP32) {
        co.precision = Precision::FP32;
        if (options.verbose)
          std::fprintf(stderr, "fkb: device auto -> cpu: precision '%s' applies to CUDA devices only; the CPU runs fp32\n",
                       precision_name(asked));
      }
      m.backend = make_cpu_backend();
      m.plan = m.backend->compile(m.model, co);
      if (options.verbose && !(built_with_cuda() && ndev > 0))
        std::fprintf(stderr, "fkb: device auto -> %s (%s)\n", m.plan->device_name().c_str(),
                     built_with_cuda() ? fallback.c_str() : "FKB built without CUDA");
    }
  }
  m.bindings.add(m.make_binding());
}

Runtime::~Runtime() = default;
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;

namespace {
void require_single(const Model& m) {
  if (m.num_inputs() != 1 || m.num_outputs() != 1)
    throw_error(Status::InvalidArgument, "this predict() overload takes one input and one output array, but the model "
                                         "has " + std::to_string(m.num_inputs()) + " input(s) and " +
                                         std::to_string(m.num_outputs()) + " output(s); use the vector overload");
}
}  // namespace

void Runtime::predict(const float* x, int64_t ncol, float* y) {
  require_single(impl_->model);
  impl_->run(&x, 1, ncol, &y, 1, DType::F32);
}

void Runtime::predict(const double* x, int64_t ncol, double* y) {
  require_single(impl_->model);
  impl_->run(&x, 1, ncol, &y, 1, DType::F64);
}

void Runtime::predict(const std::vector<const float*>& x, int64_t ncol, const std::vector<float*>& y) {
  impl_->run(x.data(), x.size(), ncol, y.data(), y.size(), DType::F32);
}

void Runtime::predict(const std::vector<const double*>& x, int64_t ncol, const std::vector<double*>& y) {
  impl_->run(x.data(), x.size(), ncol, y.data(), y.size(), DType::F64);
}

int64_t Runtime::num_inputs() const { return impl_->model.num_inputs(); }
int64_t Runtime::num_outputs() const { return impl_->model.num_outputs(); }
int64_t Runtime::n_inputs(int i) const { return impl_->model.input_size(i); }
int64_t Runtime::n_outputs(int i) const { return impl_->model.output_size(i); }
std::string Runtime::device_name() const { return impl_->plan->device_name(); }
std::string Runtime::backend_name() const { return impl_->backend->name(); }
int64_t Runtime::max_batch() const { return impl_->plan->max_batch(); }
PhaseTimes Runtime::last_times() const { return impl_->plan->last_times(); }
const Model& Runtime::model() const { return impl_->model; }

}  // namespace fkb
