/* FKB MPI layer, C API: one model per communicator, devices by node-local rank, per-rank or node-aggregated
 * batches, per-rank statistics. See fkb/mpi.hpp for the full contract (modes, devices, errors).
 *
 *   fkb_mpi_t s = NULL;
 *   fkb_mpi_options o;
 *   fkb_mpi_options_init(&o);
 *   o.mode = "node-aggregate";
 *   if (fkb_mpi_load("cbrain.h5", MPI_Comm_c2f(MPI_COMM_WORLD), &o, &s) != FKB_OK)   // collective
 *     fprintf(stderr, "%s\n", fkb_mpi_last_error());
 *   fkb_mpi_predict_f64(s, x, ncol, y);   // x: [ncol][n_inputs] == Fortran x(n_inputs, ncol); ncol may be 0
 *   fkb_mpi_report(s);                    // collective: rank 0 prints min / median / max over ranks
 *   fkb_mpi_free(s);                      // collective
 *
 * Conventions (as fkb.h): every function returns FKB_OK (0) or an FKB_ERR_* code of fkb.h; the message of
 * the last failed fkb_mpi_* call on this thread is fkb_mpi_last_error(). Nothing aborts or exits.
 * Communicators are passed as Fortran handles (MPI_Fint, an int in every MPI we know of): from C use
 * MPI_Comm_c2f(comm); from Fortran pass the integer handle (mpi_f08: comm%MPI_VAL). This header does not
 * include <mpi.h>.
 *
 * Collective calls: fkb_mpi_load, fkb_mpi_report*, fkb_mpi_write_report_json and fkb_mpi_free over the
 * communicator; fkb_mpi_predict_* over the node group in mode "node-aggregate" (every rank of the node
 * calls it, in the same order, with any ncol >= 0), local in the other modes. A rank whose arguments are
 * bad gets the error and the others proceed (see fkb/mpi.hpp "Errors"). A NULL handle returns at once
 * (it cannot take part in a collective): never pass one where the other ranks pass a live session.
 *
 * Threads: in modes "per-rank" and "cpu", fkb_mpi_predict_* may be called concurrently on one session from
 * any number of threads of a rank (each on its own columns): nothing is communicated, the compiled model is
 * shared and read-only, each call has its own workspace, and the outputs equal those of the same calls made
 * one after another. In mode "node-aggregate" (several ranks per group) predict is collective over the node:
 * call it from one thread at a time per rank; a second call on a rank while one is in flight is refused with
 * FKB_ERR_UNSUPPORTED (it does not take part and touches nothing), never answered wrongly. Load, report, free
 * and reset_stats must not overlap predict calls.
 */
#ifndef FKB_FKB_MPI_H
#define FKB_FKB_MPI_H

#include <stddef.h>
#include <stdint.h>

#include "fkb/fkb.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A model loaded on every rank of a communicator. Opaque. */
typedef struct fkb_mpi_s* fkb_mpi_t;

/* Options. Initialize with fkb_mpi_options_init; fields may be added at the end later. Strings are borrowed
 * for the duration of fkb_mpi_load only. NULL strings and zero numbers mean the defaults. (module fkb_mpi
 * mirrors this struct as the bind(c) type fkb_mpi_options_c: a new field goes at the end here AND there.) */
typedef struct fkb_mpi_options {
  const char* mode;        /* "per-rank" (default) | "node-aggregate" | "cpu" */
  const char* device;      /* "auto" (default) | "cpu" | "cuda" | "cuda:N" | comma list indexed by node-local
                              rank; the FKB_DEVICE environment variable overrides it (unless use_env = 0) */
  const char* precision;   /* "fp32" (default) | "tf32" | "bf16" | "fp16" */
  int64_t max_batch;       /* plan size of each runtime; 0 = 4096 */
  int32_t threads;         /* CPU threads per runtime; 0 = the node's cores shared among its CPU runtimes */
  const char* config_path; /* Keras JSON/YAML architecture for weights-only files; NULL or "" = none */
  const char* nonfinite;   /* "propagate" (default) | "error" */
  int32_t reproducible;    /* nonzero: passed to the backend */
  int32_t verbose;         /* nonzero (default): rank 0 prints one line describing the device assignment */
  int32_t use_env;         /* nonzero (default): honour FKB_DEVICE */
  int32_t nested_threads;  /* CPU threads one predict uses inside the caller's OpenMP parallel region or while
                              other calls run (per-rank / cpu modes); 0 or 1 (default) = 1 */
} fkb_mpi_options;

/* This rank's statistics since load or the last fkb_mpi_reset_stats (times in seconds, summed over calls). */
typedef struct fkb_mpi_stats {
  int64_t calls;         /* predict calls */
  int64_t columns;       /* this rank's own columns */
  int64_t batch_columns; /* columns this rank's runtime ran (a node-aggregate leader: the group's) */
  int64_t batches;       /* runtime calls (chunks of max_batch) */
  double pack, unpack;   /* copies into / out of the shared window (node-aggregate) */
  double h2d, compute, d2h;
  double wait;  /* waiting for the group (allgather, barriers, window growth) */
  double total; /* wall time inside predict */
} fkb_mpi_stats;

int fkb_mpi_options_init(fkb_mpi_options* options);

/* Load `path` on every rank of the communicator `fortran_comm` and set up devices and shared windows.
 * Collective. All-or-nothing: if any rank fails, every rank returns an error naming the first failing rank,
 * and *session is NULL. options may be NULL (defaults). */
int fkb_mpi_load(const char* path, int fortran_comm, const fkb_mpi_options* options, fkb_mpi_t* session);

/* The same with the common options as plain arguments (for Fortran): NULL or "" strings and zero numbers
 * mean the defaults. */
int fkb_mpi_load_ex(const char* path, int fortran_comm, const char* mode, const char* device, const char* precision,
                    int64_t max_batch, int32_t threads, const char* config_path, fkb_mpi_t* session);

/* Predict ncol columns of a single-input, single-output model: x [ncol][n_inputs], y [ncol][n_outputs].
 * ncol = 0 is allowed (x and y may then be NULL) and, in node-aggregate mode, still takes part. */
int fkb_mpi_predict_f32(fkb_mpi_t session, const float* x, int64_t ncol, float* y);
int fkb_mpi_predict_f64(fkb_mpi_t session, const double* x, int64_t ncol, double* y);

/* The same with the caller's array extents, checked on this rank before any communication: x holds x_ncol
 * columns of x_features values, y holds y_ncol columns of y_features values (Fortran: size(x,1), size(x,2),
 * size(y,1), size(y,2)). A mismatch is FKB_ERR_SHAPE_MISMATCH on this rank only. */
int fkb_mpi_predict_checked_f32(fkb_mpi_t session, const float* x, int64_t x_features, int64_t x_ncol, float* y,
                                int64_t y_features, int64_t y_ncol);
int fkb_mpi_predict_checked_f64(fkb_mpi_t session, const double* x, int64_t x_features, int64_t x_ncol, double* y,
                                int64_t y_features, int64_t y_ncol);

/* The number of input / output TENSORS of the model (fkb_mpi_predict_* and module fkb_mpi need 1 and 1). */
int fkb_mpi_input_count(fkb_mpi_t session, int64_t* n);
int fkb_mpi_output_count(fkb_mpi_t session, int64_t* n);
/* Features per column of the (first) input / output. */
int fkb_mpi_n_inputs(fkb_mpi_t session, int64_t* n);
int fkb_mpi_n_outputs(fkb_mpi_t session, int64_t* n);
/* What computes this rank's columns, e.g. "cpu (1 thread)" (node-aggregate: the leader's runtime). */
int fkb_mpi_device_name(fkb_mpi_t session, char* buf, size_t buflen);
/* Whether this rank runs a runtime (always, except non-leaders in node-aggregate mode). */
int fkb_mpi_is_leader(fkb_mpi_t session, int32_t* leader);
/* This rank's node-local rank and the number of ranks sharing its runtime (1 unless node-aggregate). */
int fkb_mpi_local_rank(fkb_mpi_t session, int32_t* local_rank);
int fkb_mpi_group_size(fkb_mpi_t session, int32_t* group_size);

/* This rank's statistics (local) and their reset (local). */
int fkb_mpi_get_stats(fkb_mpi_t session, fkb_mpi_stats* stats);
int fkb_mpi_reset_stats(fkb_mpi_t session);

/* Collective: rank 0 prints the table (min / median / max over ranks) to stdout. */
int fkb_mpi_report(fkb_mpi_t session);
/* Collective: the table / the JSON report as a NUL-terminated string allocated for the caller (every rank
 * gets it); release it with fkb_mpi_free_string. */
int fkb_mpi_report_text(fkb_mpi_t session, char** text);
int fkb_mpi_report_json(fkb_mpi_t session, char** json);
/* Collective: rank 0 writes the JSON report to `path`; every rank returns FKB_ERR_FILE if it could not. */
int fkb_mpi_write_report_json(fkb_mpi_t session, const char* path);
void fkb_mpi_free_string(char* s);

/* Collective while MPI is initialized (frees the shared window and communicators); after MPI_Finalize it only
 * releases memory. NULL is allowed (no-op). */
int fkb_mpi_free(fkb_mpi_t session);

/* The message of the last failed fkb_mpi_* call on this thread; "" after a success. Never NULL. */
const char* fkb_mpi_last_error(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FKB_FKB_MPI_H */
