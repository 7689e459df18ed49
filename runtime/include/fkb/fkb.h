/* FKB C API: load a Keras model, run batches of columns, from C or (through ISO_C_BINDING) Fortran.
 *
 *   fkb_model_t m = NULL;
 *   fkb_options opts;
 *   fkb_options_init(&opts);
 *   opts.device = "cpu";
 *   if (fkb_load("cbrain.h5", &opts, &m) != FKB_OK) { fprintf(stderr, "%s\n", fkb_last_error()); ... }
 *   fkb_predict_f64(m, x, ncol, y);   // x: [ncol][n_inputs] row-major == Fortran x(n_inputs, ncol)
 *   fkb_free(m);
 *
 * Conventions
 * - Every function that can fail returns an int status: FKB_OK (0) or one of the FKB_ERR_* codes below
 *   (the numbers of fkb::Status in fkb/error.hpp). No C++ exception ever crosses this API, and the
 *   library never calls exit()/abort() on a user error.
 * - fkb_last_error() returns the message of the most recent failed call *on the calling thread*
 *   ("" when the most recent call on this thread succeeded). The pointer stays valid until the next
 *   FKB call on that thread.
 * - Layout: a batch of ncol columns is row-major [ncol][features] (each column contiguous), which is the
 *   Fortran array x(features, ncol). No transposes.
 * - x and y may be host pointers or CUDA device pointers when the model runs on a GPU (the backend
 *   detects which); on the CPU backend they must be host pointers.
 * - A handle serves one caller at a time; separate handles may be used concurrently from separate threads.
 *
 * This header includes only <stddef.h> and <stdint.h>.
 */
#ifndef FKB_FKB_H
#define FKB_FKB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (same numbers as fkb::Status). */
#define FKB_OK 0
#define FKB_ERR_INVALID_ARGUMENT 1 /* a bad argument: null pointer, negative ncol, bad option value */
#define FKB_ERR_FILE 2             /* a file is missing or unreadable */
#define FKB_ERR_FORMAT 3           /* not a Keras model, truncated/corrupted file, invalid config */
#define FKB_ERR_UNSUPPORTED 4      /* a layer, activation or option FKB does not implement */
#define FKB_ERR_SHAPE_MISMATCH 5   /* weights or inputs whose shape disagrees with the model */
#define FKB_ERR_NON_FINITE 6       /* a non-finite input under the "error" policy */
#define FKB_ERR_CUDA 7             /* a CUDA failure, or CUDA requested but not available */
#define FKB_ERR_MPI 8              /* an MPI failure */
#define FKB_ERR_OUT_OF_MEMORY 9    /* an allocation failed */
#define FKB_ERR_INTERNAL 10        /* a bug in FKB (please report it with the message) */

/* A loaded model compiled for one device (model + runtime). Opaque; create with fkb_load*, release
 * with fkb_free. */
typedef struct fkb_model_s* fkb_model_t;

/* Load/compile options. Always initialize with fkb_options_init, then set what you need: fields may be
 * added at the end in later versions. Strings are borrowed for the duration of the fkb_load call only. */
typedef struct fkb_options {
  const char* device;      /* "auto" (default) | "cpu" | "cuda" | "cuda:N"; NULL = "auto" */
  const char* precision;   /* "fp32" (default) | "tf32" | "bf16" | "fp16" (CPU: fp32 only); NULL = "fp32" */
  int64_t max_batch;       /* largest batch compiled for; bigger calls run in chunks. 0 = default (4096) */
  int32_t threads;         /* CPU threads; 0 = all cores */
  const char* config_path; /* Keras JSON/YAML architecture for weights-only files; NULL or "" = none */
  const char* nonfinite;   /* "propagate" (default) | "error"; NULL = "propagate" */
  int32_t reproducible;    /* nonzero: a column's output is bitwise independent of batch size/position */
  int32_t verbose;         /* nonzero (default): print the one-line device notice at load */
} fkb_options;

/* Fill *options with the defaults. Returns FKB_ERR_INVALID_ARGUMENT if options is NULL. */
int fkb_options_init(fkb_options* options);

/* Load a Keras file (.h5, .keras, or weights-only .h5 with options->config_path) and compile it.
 * options may be NULL (defaults). On success *model is a new handle; on failure *model is set to NULL
 * (when model is not NULL) and fkb_last_error() says why (naming the file). */
int fkb_load(const char* path, const fkb_options* options, fkb_model_t* model);

/* The same with the common options as plain arguments (convenient from Fortran): NULL strings and
 * max_batch = 0 / threads = 0 mean the defaults; config_path NULL or "" means none. */
int fkb_load_ex(const char* path, const char* device, const char* precision, int64_t max_batch, int32_t threads,
                const char* config_path, fkb_model_t* model);

/* Run ncol columns of a single-input, single-output model.
 * x: [ncol][n_inputs] and y: [ncol][n_outputs] (Fortran x(n_inputs, ncol), y(n_outputs, ncol)).
 * float or double; the computation runs in the model's precision (fp32 by default) whatever the type.
 * ncol = 0 is a no-op (x and y may then be NULL); ncol < 0 is FKB_ERR_INVALID_ARGUMENT.
 * Batches larger than max_batch are processed in chunks. */
int fkb_predict_f32(fkb_model_t model, const float* x, int64_t ncol, float* y);
int fkb_predict_f64(fkb_model_t model, const double* x, int64_t ncol, double* y);

/* Features per column of the (first) input / output. */
int fkb_n_inputs(fkb_model_t model, int64_t* n);
int fkb_n_outputs(fkb_model_t model, int64_t* n);

/* What runs the model, e.g. "cpu (2 threads)", copied NUL-terminated into buf (truncated to buflen-1). */
int fkb_device_name(fkb_model_t model, char* buf, size_t buflen);

/* Release a model. NULL is allowed (no-op). Returns FKB_OK. */
int fkb_free(fkb_model_t model);

/* The message of the last failed call on this thread; "" if the last call succeeded. Never NULL. */
const char* fkb_last_error(void);

/* Short name of a status code ("ok", "invalid argument", "file error", ...). Never NULL. */
const char* fkb_status_name(int status);

/* FKB's version string, e.g. "0.1.0". Never NULL. */
const char* fkb_version(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FKB_FKB_H */
