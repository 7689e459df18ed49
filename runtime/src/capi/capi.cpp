// The C API (fkb/fkb.h): a thin shell over fkb::Model and fkb::Runtime.
//
// Every entry point catches everything: our fkb::Error keeps its status, std::bad_alloc becomes
// FKB_ERR_OUT_OF_MEMORY, any other exception FKB_ERR_INTERNAL. The message goes to a thread-local
// string (fkb_last_error). Nothing here aborts or exits: in an MPI climate run that would kill the job
// before it can checkpoint.
#include "fkb/fkb.h"

#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>

#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "capi/capi_internal.hpp"

// The handle. The Runtime is built from `model` and may keep a reference to it, so the Model lives in
// the same heap object and is destroyed after the Runtime (members are destroyed in reverse order).
struct fkb_model_s {
  fkb::Model model;
  std::unique_ptr<fkb::Runtime> runtime;
  int64_t n_in = 0;
  int64_t n_out = 0;
};

namespace {

static_assert(FKB_OK == static_cast<int>(fkb::Status::Ok), "status numbers must match fkb::Status");
static_assert(FKB_ERR_INVALID_ARGUMENT == static_cast<int>(fkb::Status::InvalidArgument), "");
static_assert(FKB_ERR_FILE == static_cast<int>(fkb::Status::FileError), "");
static_assert(FKB_ERR_FORMAT == static_cast<int>(fkb::Status::FormatError), "");
static_assert(FKB_ERR_UNSUPPORTED == static_cast<int>(fkb::Status::Unsupported), "");
static_assert(FKB_ERR_SHAPE_MISMATCH == static_cast<int>(fkb::Status::ShapeMismatch), "");
static_assert(FKB_ERR_NON_FINITE == static_cast<int>(fkb::Status::NonFinite), "");
static_assert(FKB_ERR_CUDA == static_cast<int>(fkb::Status::CudaError), "");
static_assert(FKB_ERR_MPI == static_cast<int>(fkb::Status::MpiError), "");
static_assert(FKB_ERR_OUT_OF_MEMORY == static_cast<int>(fkb::Status::OutOfMemory), "");
static_assert(FKB_ERR_INTERNAL == static_cast<int>(fkb::Status::Internal), "");

using fkb::capi::guarded;
using fkb::capi::invalid;

// DESIGN.md: device is auto | cpu | cuda | cuda:N. Checked here so a typo fails before a large model is read.
void check_device(const std::string& d) {
  if (d == "auto" || d == "cpu" || d == "cuda")
    return;
  if (d.size() > 5 && d.compare(0, 5, "cuda:") == 0 && d.find_first_not_of("0123456789", 5) == std::string::npos &&
      d.size() <= 5 + 9)
    return;
  invalid("unknown device '" + d + "' (expected auto, cpu, cuda or cuda:N)");
}

const char* or_default(const char* s, const char* def) { return (s && *s) ? s : def; }

fkb_model_t load_impl(const char* path, const fkb_options& o) {
  if (!path)
    invalid("fkb_load: path is NULL");
  if (!*path)
    invalid("fkb_load: path is empty");
  fkb::RuntimeOptions ro;
  ro.device = or_default(o.device, "auto");
  ro.precision = or_default(o.precision, "fp32");
  ro.nonfinite = or_default(o.nonfinite, "propagate");
  if (o.max_batch < 0)
    invalid("fkb_load: max_batch must be >= 0 (0 = default), got " + std::to_string(o.max_batch));
  if (o.threads < 0)
    invalid("fkb_load: threads must be >= 0 (0 = OMP_NUM_THREADS, else all cores), got " + std::to_string(o.threads));
  if (o.max_batch > 0)
    ro.max_batch = o.max_batch;
  ro.threads = o.threads;
  ro.reproducible = o.reproducible != 0;
  ro.verbose = o.verbose != 0;
  if (o.nested_threads < 0)
    invalid("fkb_load: nested_threads must be >= 1 (0 = default 1), got " + std::to_string(o.nested_threads));
  ro.nested_threads = o.nested_threads > 0 ? o.nested_threads : 1;
  check_device(ro.device);
  fkb::parse_precision(ro.precision); // throws InvalidArgument naming the accepted values
  fkb::parse_nonfinite_policy(ro.nonfinite);

  fkb::Model::LoadOptions lo;
  if (o.config_path)
    lo.config_path = o.config_path;
  if (o.max_weight_bytes < 0)
    invalid("fkb_load: max_weight_bytes must be >= 0 (0 = default), got " + std::to_string(o.max_weight_bytes));
  lo.limits.max_weight_bytes = static_cast<uint64_t>(o.max_weight_bytes);
  auto h = std::make_unique<fkb_model_s>();
  h->model = fkb::Model::load(path, lo);
  h->runtime = std::make_unique<fkb::Runtime>(h->model, ro);
  if (h->runtime->num_inputs() >= 1)
    h->n_in = h->runtime->n_inputs(0);
  if (h->runtime->num_outputs() >= 1)
    h->n_out = h->runtime->n_outputs(0);
  return h.release();
}

fkb_model_s& deref(fkb_model_t m, const char* fn) {
  if (!m)
    invalid(std::string(fn) + ": model handle is NULL (not loaded, or already freed)");
  return *m;
}

template <class T> void predict_impl(const char* fn, fkb_model_t m, const T* x, int64_t ncol, T* y) {
  fkb_model_s& h = deref(m, fn);
  if (ncol < 0)
    invalid(std::string(fn) + ": ncol must be >= 0, got " + std::to_string(ncol));
  if (h.runtime->num_inputs() != 1 || h.runtime->num_outputs() != 1)
    invalid(std::string(fn) + ": the model has " + std::to_string(h.runtime->num_inputs()) + " inputs and " +
            std::to_string(h.runtime->num_outputs()) +
            " outputs; the C API predicts single-input, single-output models only");
  if (ncol == 0)
    return;
  if (!x)
    invalid(std::string(fn) + ": x is NULL");
  if (!y)
    invalid(std::string(fn) + ": y is NULL");
  h.runtime->predict(x, ncol, y);
}

} // namespace

extern "C" {

int fkb_options_init(fkb_options* options) {
  return guarded("fkb_options_init", [&] {
    if (!options)
      invalid("fkb_options_init: options is NULL");
    std::memset(options, 0, sizeof(*options));
    options->device = "auto";
    options->precision = "fp32";
    options->max_batch = 0;
    options->threads = 0;
    options->config_path = nullptr;
    options->nonfinite = "propagate";
    options->reproducible = 0;
    options->verbose = 1;
    options->nested_threads = 1;
    options->max_weight_bytes = 0;
  });
}

int fkb_load(const char* path, const fkb_options* options, fkb_model_t* model) {
  if (model)
    *model = nullptr;
  return guarded("fkb_load", [&] {
    if (!model)
      invalid("fkb_load: the output handle pointer is NULL");
    fkb_options o;
    if (options) {
      o = *options;
    } else {
      fkb_options_init(&o);
    }
    *model = load_impl(path, o);
  });
}

int fkb_load_ex(const char* path, const char* device, const char* precision, int64_t max_batch, int32_t threads,
                const char* config_path, fkb_model_t* model) {
  if (model)
    *model = nullptr;
  return guarded("fkb_load", [&] {
    if (!model)
      invalid("fkb_load: the output handle pointer is NULL");
    fkb_options o;
    fkb_options_init(&o);
    o.device = device;
    o.precision = precision;
    o.max_batch = max_batch;
    o.threads = threads;
    o.config_path = config_path;
    *model = load_impl(path, o);
  });
}

int fkb_predict_f32(fkb_model_t model, const float* x, int64_t ncol, float* y) {
  return guarded("fkb_predict_f32", [&] { predict_impl("fkb_predict_f32", model, x, ncol, y); });
}

int fkb_predict_f64(fkb_model_t model, const double* x, int64_t ncol, double* y) {
  return guarded("fkb_predict_f64", [&] { predict_impl("fkb_predict_f64", model, x, ncol, y); });
}

int fkb_n_inputs(fkb_model_t model, int64_t* n) {
  return guarded("fkb_n_inputs", [&] {
    fkb_model_s& h = deref(model, "fkb_n_inputs");
    if (!n)
      invalid("fkb_n_inputs: n is NULL");
    *n = h.n_in;
  });
}

int fkb_n_outputs(fkb_model_t model, int64_t* n) {
  return guarded("fkb_n_outputs", [&] {
    fkb_model_s& h = deref(model, "fkb_n_outputs");
    if (!n)
      invalid("fkb_n_outputs: n is NULL");
    *n = h.n_out;
  });
}

int fkb_input_count(fkb_model_t model, int64_t* n) {
  return guarded("fkb_input_count", [&] {
    fkb_model_s& h = deref(model, "fkb_input_count");
    if (!n)
      invalid("fkb_input_count: n is NULL");
    *n = h.runtime->num_inputs();
  });
}

int fkb_output_count(fkb_model_t model, int64_t* n) {
  return guarded("fkb_output_count", [&] {
    fkb_model_s& h = deref(model, "fkb_output_count");
    if (!n)
      invalid("fkb_output_count: n is NULL");
    *n = h.runtime->num_outputs();
  });
}

int fkb_device_name(fkb_model_t model, char* buf, size_t buflen) {
  return guarded("fkb_device_name", [&] {
    fkb_model_s& h = deref(model, "fkb_device_name");
    if (!buf)
      invalid("fkb_device_name: buf is NULL");
    if (buflen == 0)
      invalid("fkb_device_name: buflen is 0");
    std::string s = h.runtime->device_name();
    size_t n = s.size() < buflen - 1 ? s.size() : buflen - 1;
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
  });
}

int fkb_free(fkb_model_t model) {
  return guarded("fkb_free", [&] { delete model; });
}

const char* fkb_last_error(void) { return fkb::capi::last_error().c_str(); }

const char* fkb_status_name(int status) {
  if (status < FKB_OK || status > FKB_ERR_INTERNAL)
    return "unknown status";
  return fkb::status_name(static_cast<fkb::Status>(status));
}

const char* fkb_version(void) { return fkb::version(); }

} // extern "C"
