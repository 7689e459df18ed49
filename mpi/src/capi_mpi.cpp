// The MPI layer's C API (fkb/fkb_mpi.h): a thin shell over fkb::mpi::Session. Exceptions become status
// codes and a thread-local message, as in runtime/src/capi/capi.cpp; nothing aborts.
#include "fkb/fkb_mpi.h"

#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "fkb/error.hpp"
#include "fkb/mpi.hpp"

static_assert(sizeof(MPI_Fint) == sizeof(int), "fkb_mpi.h passes Fortran communicator handles (MPI_Fint) as int");

struct fkb_mpi_s {
  std::unique_ptr<fkb::mpi::Session> session;
};

namespace {

thread_local std::string t_last_error;

[[noreturn]] void invalid(const std::string& msg) { fkb::throw_error(fkb::Status::InvalidArgument, msg); }

template <class F> int guarded(const char* fn, F&& body) noexcept {
  try {
    t_last_error.clear();
    body();
    return FKB_OK;
  } catch (const fkb::Error& e) {
    try {
      t_last_error = e.what();
    } catch (...) {
    }
    return static_cast<int>(e.status());
  } catch (const std::bad_alloc&) {
    try {
      t_last_error = std::string(fn) + ": out of memory";
    } catch (...) {
    }
    return FKB_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    try {
      t_last_error = std::string(fn) + ": internal error: " + e.what();
    } catch (...) {
    }
    return FKB_ERR_INTERNAL;
  } catch (...) {
    try {
      t_last_error = std::string(fn) + ": internal error: unknown exception";
    } catch (...) {
    }
    return FKB_ERR_INTERNAL;
  }
}

fkb::mpi::Session& deref(fkb_mpi_t s, const char* fn) {
  if (!s || !s->session) invalid(std::string(fn) + ": session handle is NULL (not loaded, or already freed)");
  return *s->session;
}

const char* or_default(const char* s, const char* def) { return (s && *s) ? s : def; }

MPI_Comm to_comm(int fortran_comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized)
    fkb::throw_error(fkb::Status::MpiError, "fkb_mpi_load: MPI is not initialized (call MPI_Init first)");
  return MPI_Comm_f2c(static_cast<MPI_Fint>(fortran_comm));
}

char* dup_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) throw std::bad_alloc();
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

void load_impl(const char* path, int fortran_comm, const fkb_mpi_options& o, fkb_mpi_t* out) {
  if (!out) invalid("fkb_mpi_load: the output handle pointer is NULL");
  if (!path || !*path) invalid("fkb_mpi_load: path is NULL or empty");
  if (o.max_batch < 0)
    invalid("fkb_mpi_load: max_batch must be >= 0 (0 = default), got " + std::to_string(o.max_batch));
  if (o.threads < 0) invalid("fkb_mpi_load: threads must be >= 0, got " + std::to_string(o.threads));
  fkb::mpi::SessionOptions so;
  so.mode = or_default(o.mode, "per-rank");
  so.device = or_default(o.device, "auto");
  so.precision = or_default(o.precision, "fp32");
  so.nonfinite = or_default(o.nonfinite, "propagate");
  if (o.max_batch > 0) so.max_batch = o.max_batch;
  so.threads = o.threads;
  so.config_path = o.config_path ? o.config_path : "";
  so.reproducible = o.reproducible != 0;
  so.verbose = o.verbose != 0;
  so.use_env = o.use_env != 0;
  if (o.nested_threads < 0)
    invalid("fkb_mpi_load: nested_threads must be >= 1 (0 = default 1), got " + std::to_string(o.nested_threads));
  so.nested_threads = o.nested_threads > 0 ? o.nested_threads : 1;
  // Argument errors above are local; a rank with a NULL path would leave the others in the collective, so
  // they are the caller's bug to avoid (documented). Everything below agrees collectively.
  auto h = std::make_unique<fkb_mpi_s>();
  h->session = std::make_unique<fkb::mpi::Session>(to_comm(fortran_comm), std::string(path), so);
  *out = h.release();
}

template <class T> void predict_impl(const char* fn, fkb_mpi_t s, const T* x, int64_t ncol, T* y) {
  deref(s, fn).predict(x, ncol, y);
}

}  // namespace

extern "C" {

int fkb_mpi_options_init(fkb_mpi_options* options) {
  return guarded("fkb_mpi_options_init", [&] {
    if (!options) invalid("fkb_mpi_options_init: options is NULL");
    std::memset(options, 0, sizeof(*options));
    options->mode = "per-rank";
    options->device = "auto";
    options->precision = "fp32";
    options->nonfinite = "propagate";
    options->verbose = 1;
    options->use_env = 1;
    options->nested_threads = 1;
  });
}

int fkb_mpi_load(const char* path, int fortran_comm, const fkb_mpi_options* options, fkb_mpi_t* session) {
  if (session) *session = nullptr;
  return guarded("fkb_mpi_load", [&] {
    fkb_mpi_options o;
    if (options) {
      o = *options;
    } else {
      fkb_mpi_options_init(&o);
    }
    load_impl(path, fortran_comm, o, session);
  });
}

int fkb_mpi_load_ex(const char* path, int fortran_comm, const char* mode, const char* device, const char* precision,
                    int64_t max_batch, int32_t threads, const char* config_path, fkb_mpi_t* session) {
  if (session) *session = nullptr;
  return guarded("fkb_mpi_load", [&] {
    fkb_mpi_options o;
    fkb_mpi_options_init(&o);
    o.mode = mode;
    o.device = device;
    o.precision = precision;
    o.max_batch = max_batch;
    o.threads = threads;
    o.config_path = config_path;
    load_impl(path, fortran_comm, o, session);
  });
}

int fkb_mpi_predict_f32(fkb_mpi_t session, const float* x, int64_t ncol, float* y) {
  return guarded("fkb_mpi_predict_f32", [&] { predict_impl("fkb_mpi_predict_f32", session, x, ncol, y); });
}

int fkb_mpi_predict_f64(fkb_mpi_t session, const double* x, int64_t ncol, double* y) {
  return guarded("fkb_mpi_predict_f64", [&] { predict_impl("fkb_mpi_predict_f64", session, x, ncol, y); });
}

int fkb_mpi_predict_checked_f32(fkb_mpi_t session, const float* x, int64_t x_features, int64_t x_ncol, float* y,
                                int64_t y_features, int64_t y_ncol) {
  return guarded("fkb_mpi_predict_f32", [&] {
    deref(session, "fkb_mpi_predict_f32").predict_checked(x, x_features, x_ncol, y, y_features, y_ncol);
  });
}

int fkb_mpi_predict_checked_f64(fkb_mpi_t session, const double* x, int64_t x_features, int64_t x_ncol, double* y,
                                int64_t y_features, int64_t y_ncol) {
  return guarded("fkb_mpi_predict_f64", [&] {
    deref(session, "fkb_mpi_predict_f64").predict_checked(x, x_features, x_ncol, y, y_features, y_ncol);
  });
}

int fkb_mpi_input_count(fkb_mpi_t session, int64_t* n) {
  return guarded("fkb_mpi_input_count", [&] {
    auto& s = deref(session, "fkb_mpi_input_count");
    if (!n) invalid("fkb_mpi_input_count: n is NULL");
    *n = s.num_inputs();
  });
}

int fkb_mpi_output_count(fkb_mpi_t session, int64_t* n) {
  return guarded("fkb_mpi_output_count", [&] {
    auto& s = deref(session, "fkb_mpi_output_count");
    if (!n) invalid("fkb_mpi_output_count: n is NULL");
    *n = s.num_outputs();
  });
}

int fkb_mpi_n_inputs(fkb_mpi_t session, int64_t* n) {
  return guarded("fkb_mpi_n_inputs", [&] {
    auto& s = deref(session, "fkb_mpi_n_inputs");
    if (!n) invalid("fkb_mpi_n_inputs: n is NULL");
    *n = s.n_inputs(0);
  });
}

int fkb_mpi_n_outputs(fkb_mpi_t session, int64_t* n) {
  return guarded("fkb_mpi_n_outputs", [&] {
    auto& s = deref(session, "fkb_mpi_n_outputs");
    if (!n) invalid("fkb_mpi_n_outputs: n is NULL");
    *n = s.n_outputs(0);
  });
}

int fkb_mpi_device_name(fkb_mpi_t session, char* buf, size_t buflen) {
  return guarded("fkb_mpi_device_name", [&] {
    auto& s = deref(session, "fkb_mpi_device_name");
    if (!buf || buflen == 0) invalid("fkb_mpi_device_name: buf is NULL or buflen is 0");
    const std::string d = s.device_name();
    const size_t n = std::min(d.size(), buflen - 1);
    std::memcpy(buf, d.data(), n);
    buf[n] = 0;
  });
}

int fkb_mpi_is_leader(fkb_mpi_t session, int32_t* leader) {
  return guarded("fkb_mpi_is_leader", [&] {
    auto& s = deref(session, "fkb_mpi_is_leader");
    if (!leader) invalid("fkb_mpi_is_leader: leader is NULL");
    *leader = s.is_leader() ? 1 : 0;
  });
}

int fkb_mpi_local_rank(fkb_mpi_t session, int32_t* local_rank) {
  return guarded("fkb_mpi_local_rank", [&] {
    auto& s = deref(session, "fkb_mpi_local_rank");
    if (!local_rank) invalid("fkb_mpi_local_rank: local_rank is NULL");
    *local_rank = s.local_rank();
  });
}

int fkb_mpi_group_size(fkb_mpi_t session, int32_t* group_size) {
  return guarded("fkb_mpi_group_size", [&] {
    auto& s = deref(session, "fkb_mpi_group_size");
    if (!group_size) invalid("fkb_mpi_group_size: group_size is NULL");
    *group_size = s.group_size();
  });
}

int fkb_mpi_get_stats(fkb_mpi_t session, fkb_mpi_stats* stats) {
  return guarded("fkb_mpi_get_stats", [&] {
    auto& s = deref(session, "fkb_mpi_get_stats");
    if (!stats) invalid("fkb_mpi_get_stats: stats is NULL");
    const fkb::mpi::RankStats& r = s.stats();
    stats->calls = r.calls;
    stats->columns = r.columns;
    stats->batch_columns = r.batch_columns;
    stats->batches = r.batches;
    stats->pack = r.pack;
    stats->unpack = r.unpack;
    stats->h2d = r.h2d;
    stats->compute = r.compute;
    stats->d2h = r.d2h;
    stats->wait = r.wait;
    stats->total = r.total;
  });
}

int fkb_mpi_reset_stats(fkb_mpi_t session) {
  return guarded("fkb_mpi_reset_stats", [&] { deref(session, "fkb_mpi_reset_stats").reset_stats(); });
}

int fkb_mpi_report(fkb_mpi_t session) {
  return guarded("fkb_mpi_report", [&] { deref(session, "fkb_mpi_report").print_report(stdout); });
}

int fkb_mpi_report_text(fkb_mpi_t session, char** text) {
  if (text) *text = nullptr;
  return guarded("fkb_mpi_report_text", [&] {
    auto& s = deref(session, "fkb_mpi_report_text");
    const std::string t = s.report().text();  // collective: before any local argument error can return
    if (!text) invalid("fkb_mpi_report_text: text is NULL");
    *text = dup_string(t);
  });
}

int fkb_mpi_report_json(fkb_mpi_t session, char** json) {
  if (json) *json = nullptr;
  return guarded("fkb_mpi_report_json", [&] {
    auto& s = deref(session, "fkb_mpi_report_json");
    const std::string j = s.report().json();
    if (!json) invalid("fkb_mpi_report_json: json is NULL");
    *json = dup_string(j);
  });
}

int fkb_mpi_write_report_json(fkb_mpi_t session, const char* path) {
  return guarded("fkb_mpi_write_report_json", [&] {
    auto& s = deref(session, "fkb_mpi_write_report_json");
    s.write_report_json(path ? path : "");
  });
}

void fkb_mpi_free_string(char* s) { std::free(s); }

int fkb_mpi_free(fkb_mpi_t session) {
  return guarded("fkb_mpi_free", [&] { delete session; });
}

const char* fkb_mpi_last_error(void) { return t_last_error.c_str(); }

}  // extern "C"
