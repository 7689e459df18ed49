// The C API of ensembles (fkb.h, fkb_ensemble_*): a thin shell over fkb::Ensemble.
#include <cstring>
#include <memory>
#include <string>

#include "capi/capi_internal.hpp"
#include "fkb/ensemble.hpp"
#include "fkb/fkb.h"

struct fkb_ensemble_s {
  std::unique_ptr<fkb::Ensemble> ensemble;
};

namespace {

using fkb::capi::guarded;
using fkb::capi::invalid;

fkb::Ensemble& deref(fkb_ensemble_t e, const char* fn) {
  if (!e || !e->ensemble) invalid(std::string(fn) + ": ensemble handle is NULL (not loaded, or already freed)");
  return *e->ensemble;
}

template <class T>
void predict_impl(const char* fn, fkb_ensemble_t e, const T* x, int64_t ncol, T* mean, T* spread, T* members) {
  fkb::Ensemble& ens = deref(e, fn);
  if (ncol < 0) invalid(std::string(fn) + ": ncol must be >= 0, got " + std::to_string(ncol));
  if (ncol == 0) return;
  if (!x) invalid(std::string(fn) + ": x is NULL");
  if (!mean) invalid(std::string(fn) + ": mean is NULL (spread and members may be NULL, mean may not)");
  ens.predict(x, ncol, mean, spread, members);
}

fkb_ensemble_t ensemble_load_impl(const char* path, const char* device, const char* precision, int64_t max_batch,
                                  int32_t threads, int32_t verbose, int32_t nested_threads) {
  if (!path) invalid("fkb_ensemble_load: path is NULL");
  if (!*path) invalid("fkb_ensemble_load: path is empty");
  if (max_batch < 0)
    invalid("fkb_ensemble_load: max_batch must be >= 0 (0 = default), got " + std::to_string(max_batch));
  if (threads < 0) invalid("fkb_ensemble_load: threads must be >= 0 (0 = OMP_NUM_THREADS, else all cores), got " + std::to_string(threads));
  if (nested_threads < 0)
    invalid("fkb_ensemble_load: nested_threads must be >= 1 (0 = default 1), got " + std::to_string(nested_threads));
  fkb::EnsembleOptions o;
  o.device = device ? device : "";
  o.precision = precision ? precision : "";
  o.max_batch = max_batch;
  o.threads = threads;
  o.verbose = verbose != 0;
  o.nested_threads = nested_threads > 0 ? nested_threads : 1;
  auto h = std::make_unique<fkb_ensemble_s>();
  h->ensemble = std::make_unique<fkb::Ensemble>(fkb::Ensemble::load(path, o));
  return h.release();
}
}  // namespace

extern "C" {

int fkb_ensemble_load(const char* path, const char* device, const char* precision, int64_t max_batch, int32_t threads,
                      fkb_ensemble_t* ensemble) {
  if (ensemble) *ensemble = nullptr;
  return guarded("fkb_ensemble_load", [&] {
    if (!ensemble) invalid("fkb_ensemble_load: the output handle pointer is NULL");
    *ensemble = ensemble_load_impl(path, device, precision, max_batch, threads, 1, 1);
  });
}

int fkb_ensemble_load_ex(const char* path, const char* device, const char* precision, int64_t max_batch,
                         int32_t threads, int32_t verbose, int32_t nested_threads, fkb_ensemble_t* ensemble) {
  if (ensemble) *ensemble = nullptr;
  return guarded("fkb_ensemble_load", [&] {
    if (!ensemble) invalid("fkb_ensemble_load: the output handle pointer is NULL");
    *ensemble = ensemble_load_impl(path, device, precision, max_batch, threads, verbose, nested_threads);
  });
}

int fkb_ensemble_predict_f32(fkb_ensemble_t e, const float* x, int64_t ncol, float* mean, float* spread,
                             float* members) {
  return guarded("fkb_ensemble_predict_f32",
                 [&] { predict_impl("fkb_ensemble_predict_f32", e, x, ncol, mean, spread, members); });
}

int fkb_ensemble_predict_f64(fkb_ensemble_t e, const double* x, int64_t ncol, double* mean, double* spread,
                             double* members) {
  return guarded("fkb_ensemble_predict_f64",
                 [&] { predict_impl("fkb_ensemble_predict_f64", e, x, ncol, mean, spread, members); });
}

int fkb_ensemble_n_members(fkb_ensemble_t e, int64_t* n) {
  return guarded("fkb_ensemble_n_members", [&] {
    fkb::Ensemble& ens = deref(e, "fkb_ensemble_n_members");
    if (!n) invalid("fkb_ensemble_n_members: n is NULL");
    *n = ens.n_members();
  });
}

int fkb_ensemble_n_inputs(fkb_ensemble_t e, int64_t* n) {
  return guarded("fkb_ensemble_n_inputs", [&] {
    fkb::Ensemble& ens = deref(e, "fkb_ensemble_n_inputs");
    if (!n) invalid("fkb_ensemble_n_inputs: n is NULL");
    *n = ens.n_inputs();
  });
}

int fkb_ensemble_n_outputs(fkb_ensemble_t e, int64_t* n) {
  return guarded("fkb_ensemble_n_outputs", [&] {
    fkb::Ensemble& ens = deref(e, "fkb_ensemble_n_outputs");
    if (!n) invalid("fkb_ensemble_n_outputs: n is NULL");
    *n = ens.n_outputs();
  });
}

int fkb_ensemble_device_name(fkb_ensemble_t e, char* buf, size_t buflen) {
  return guarded("fkb_ensemble_device_name", [&] {
    fkb::Ensemble& ens = deref(e, "fkb_ensemble_device_name");
    if (!buf) invalid("fkb_ensemble_device_name: buf is NULL");
    if (buflen == 0) invalid("fkb_ensemble_device_name: buflen is 0");
    const std::string s = ens.device_name() + ", " + ens.engine();
    const size_t n = s.size() < buflen - 1 ? s.size() : buflen - 1;
    std::memcpy(buf, s.data(), n);
    buf[n] = '\0';
  });
}

int fkb_ensemble_free(fkb_ensemble_t e) {
  return guarded("fkb_ensemble_free", [&] { delete e; });
}

}  // extern "C"
