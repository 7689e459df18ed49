// fkb::Runtime: device selection, argument checks, the non-finite policy, and chunking of large calls
// over a backend plan (DESIGN.md "Devices" and "Numerical contract").
#include "fkb/runtime.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

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
  IoBinding io;  // reused by every call: predict allocates nothing

  template <typename T>
  void check_finite(const std::vector<const T*>& x, int64_t col0, int64_t ncol) const {
    for (size_t i = 0; i < x.size(); ++i) {
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
                            std::to_string(i) + " (non-finite policy 'error')");
        }
      }
    }
  }

  template <typename T>
  void run(const std::vector<const T*>& x, int64_t ncol, const std::vector<T*>& y, DType dtype) {
    if (static_cast<int64_t>(x.size()) != model.num_inputs() || static_cast<int64_t>(y.size()) != model.num_outputs())
      throw_error(Status::InvalidArgument, "predict got " + std::to_string(x.size()) + " input and " +
                                               std::to_string(y.size()) + " output array(s); the model has " +
                                               std::to_string(model.num_inputs()) + " input(s) and " +
                                               std::to_string(model.num_outputs()) + " output(s)");
    if (ncol < 0) throw_error(Status::InvalidArgument, "ncol must be >= 0, got " + std::to_string(ncol));
    for (size_t i = 0; i < x.size(); ++i)
      if (!x[i]) throw_error(Status::InvalidArgument, "input " + std::to_string(i) + " is a null pointer");
    for (size_t i = 0; i < y.size(); ++i)
      if (!y[i]) throw_error(Status::InvalidArgument, "output " + std::to_string(i) + " is a null pointer");
    if (ncol == 0) return;
    io.input_dtype = dtype;
    io.output_dtype = dtype;
    int64_t done = 0;
    while (done < ncol) {
      const int64_t chunk = std::min(ncol - done, plan->max_batch());
      if (nonfinite == NonFinitePolicy::Error) check_finite(x, done, chunk);
      for (size_t i = 0; i < x.size(); ++i) io.inputs[i] = x[i] + done * model.input_size(static_cast<int>(i));
      for (size_t i = 0; i < y.size(); ++i) io.outputs[i] = y[i] + done * model.output_size(static_cast<int>(i));
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
    const int ndev = cuda_device_count();
    if (built_with_cuda() && ndev > 0) {
      try {
        m.backend = make_cuda_backend();
        m.plan = m.backend->compile(m.model, co);
        if (options.verbose)
          std::fprintf(stderr, "fkb: device auto -> %s\n", m.plan->device_name().c_str());
      } catch (const Error& e) {
        if (options.verbose)
          std::fprintf(stderr, "fkb: device auto: CUDA failed (%s); falling back to the CPU\n", e.what());
        m.plan.reset();
        m.backend.reset();
      }
    }
    if (!m.plan) {
      m.backend = make_cpu_backend();
      m.plan = m.backend->compile(m.model, co);
      if (options.verbose && !(built_with_cuda() && ndev > 0))
        std::fprintf(stderr, "fkb: device auto -> %s (%s)\n", m.plan->device_name().c_str(),
                     built_with_cuda() ? "no CUDA device found" : "FKB built without CUDA");
    }
  }
  m.io.inputs.assign(static_cast<size_t>(m.model.num_inputs()), nullptr);
  m.io.outputs.assign(static_cast<size_t>(m.model.num_outputs()), nullptr);
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
  // The one-element vectors below would allocate; bind the pointers directly instead.
  if (!x) throw_error(Status::InvalidArgument, "input 0 is a null pointer");
  if (!y) throw_error(Status::InvalidArgument, "output 0 is a null pointer");
  thread_local std::vector<const float*> xs(1);
  thread_local std::vector<float*> ys(1);
  xs[0] = x;
  ys[0] = y;
  impl_->run(xs, ncol, ys, DType::F32);
}

void Runtime::predict(const double* x, int64_t ncol, double* y) {
  require_single(impl_->model);
  if (!x) throw_error(Status::InvalidArgument, "input 0 is a null pointer");
  if (!y) throw_error(Status::InvalidArgument, "output 0 is a null pointer");
  thread_local std::vector<const double*> xs(1);
  thread_local std::vector<double*> ys(1);
  xs[0] = x;
  ys[0] = y;
  impl_->run(xs, ncol, ys, DType::F64);
}

void Runtime::predict(const std::vector<const float*>& x, int64_t ncol, const std::vector<float*>& y) {
  impl_->run(x, ncol, y, DType::F32);
}

void Runtime::predict(const std::vector<const double*>& x, int64_t ncol, const std::vector<double*>& y) {
  impl_->run(x, ncol, y, DType::F64);
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
