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
 * - Threads: fkb_predict_f32/f64 and fkb_ensemble_predict_f32/f64 may be called concurrently on ONE handle
 *   from any number of threads (e.g. the threads of an OpenMP parallel for, each on its own columns): the
 *   compiled model is shared and read-only, each call takes its own workspace, and the outputs are the same
 *   as those of the same calls made one after another. Inside the caller's parallel region a call uses
 *   options.nested_threads CPU threads (default 1), so the cores are not oversubscribed. Loading, freeing and
 *   custom-layer (un)registration must not overlap calls on the handle they affect. The queries
 *   (fkb_n_inputs, fkb_device_name, ...) are read-only and safe from any thread.
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
 * added at the end in later versions. Strings are borrowed for the duration of the fkb_load call only.
 * (module fkb mirrors this struct field for field as a bind(c) type, fkb_options_c in fortran/fkb.f90: a new
 * field goes at the end here AND there.) */
typedef struct fkb_options {
  const char* device;      /* "auto" (default) | "cpu" | "cuda" | "cuda:N"; NULL = "auto" */
  const char* precision;   /* "fp32" (default) | "tf32" | "bf16" | "fp16" (CPU: fp32 only); NULL = "fp32" */
  int64_t max_batch;       /* largest batch compiled for; bigger calls run in chunks. 0 = default (4096) */
  int32_t threads;         /* CPU threads; 0 = OMP_NUM_THREADS when set, else all cores */
  const char* config_path; /* Keras JSON/YAML architecture for weights-only files; NULL or "" = none */
  const char* nonfinite;   /* "propagate" (default) | "error"; NULL = "propagate" */
  int32_t reproducible;    /* nonzero: a column's output is bitwise independent of batch size/position */
  int32_t verbose;         /* nonzero (default): print the one-line device notice at load */
  int32_t nested_threads;  /* CPU threads one predict call uses inside the caller's OpenMP parallel region or
                              while other FKB calls run concurrently; default 1 (no oversubscription); >= 1 */
  int64_t max_weight_bytes; /* the largest sum of the model's weights (bytes, as float32) the loader accepts before
                               allocating; 0 = default: FKB_MAX_WEIGHT_BYTES when set, else 16 GiB (README "Loading
                               policy"). A larger model is refused with FKB_ERR_FORMAT naming the limit; < 0 is
                               FKB_ERR_INVALID_ARGUMENT */
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

/* The number of input / output TENSORS of the model (Keras order); fkb_predict_* needs 1 and 1 (models with
 * several inputs or outputs run from C++, fkb::Runtime's vector overloads). Not to be confused with
 * fkb_n_inputs / fkb_n_outputs, the features per column of the first input / output. */
int fkb_input_count(fkb_model_t model, int64_t* n);
int fkb_output_count(fkb_model_t model, int64_t* n);

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

/* ---------------------------------------------------------------------------------------------------------------
 * Ensembles: N Keras models of one architecture (different weights) run in one batched call that returns the
 * ensemble mean and, optionally, the spread and every member's output (fkb/ensemble.hpp).
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct fkb_ensemble_s* fkb_ensemble_t;

/* Load an ensemble. path: a directory (every *.keras / *.h5 file in it, in name order), a list file
 * (.txt, .lst or .list: one model path per line, relative to the list file; '#' comments and blank lines
 * skipped) or a YAML config (.yaml / .yml: `members: [paths relative to the YAML]`, optional `device`,
 * `precision`, `max_batch`, `threads`). device / precision NULL or "" and max_batch / threads 0 take the YAML's
 * values, else the defaults ("auto", "fp32", 4096, all cores). Members must be single-input, single-output
 * models of identical architecture; otherwise FKB_ERR_SHAPE_MISMATCH names the member file, the layer and both
 * shapes. *ensemble is NULL after a failure. */
int fkb_ensemble_load(const char* path, const char* device, const char* precision, int64_t max_batch,
                      int32_t threads, fkb_ensemble_t* ensemble);

/* The same with the remaining fkb::EnsembleOptions: verbose nonzero prints the one-line device/engine notice
 * with device auto (fkb_ensemble_load: on); nested_threads = CPU threads one predict call uses inside the
 * caller's OpenMP parallel region or while other calls run (0 = the default, 1). */
int fkb_ensemble_load_ex(const char* path, const char* device, const char* precision, int64_t max_batch,
                         int32_t threads, int32_t verbose, int32_t nested_threads, fkb_ensemble_t* ensemble);

/* Run all members on ncol columns. x: [ncol][n_inputs] (Fortran x(n_inputs, ncol)).
 * mean: [ncol][n_outputs], required. spread: [ncol][n_outputs] or NULL: the POPULATION standard deviation over
 * members, sqrt(sum (y_m - mean)^2 / n_members). members: [n_members][ncol][n_outputs] or NULL (Fortran
 * members(n_outputs, ncol, n_members)). ncol = 0 is a no-op. Host pointers, or device pointers on CUDA. */
int fkb_ensemble_predict_f32(fkb_ensemble_t ensemble, const float* x, int64_t ncol, float* mean, float* spread,
                             float* members);
int fkb_ensemble_predict_f64(fkb_ensemble_t ensemble, const double* x, int64_t ncol, double* mean, double* spread,
                             double* members);

int fkb_ensemble_n_members(fkb_ensemble_t ensemble, int64_t* n);
int fkb_ensemble_n_inputs(fkb_ensemble_t ensemble, int64_t* n);
int fkb_ensemble_n_outputs(fkb_ensemble_t ensemble, int64_t* n);
/* e.g. "cpu (2 threads), cpu-blocked" or "cuda:0 (NVIDIA H100 ...), cuda-batched-gemm". */
int fkb_ensemble_device_name(fkb_ensemble_t ensemble, char* buf, size_t buflen);
/* NULL is allowed (no-op). */
int fkb_ensemble_free(fkb_ensemble_t ensemble);

/* ---------------------------------------------------------------------------------------------------------------
 * Custom layers from C or Fortran: a Keras layer class FKB does not know, computed by a callback on the host
 * (fkb/custom_layer.hpp has the C++ registry, with config access, weights and CUDA functions).
 * ------------------------------------------------------------------------------------------------------------- */

/* The layer: y = f(x) for ncol columns, x [ncol][nin] and y [ncol][nout] float32 (Fortran x(nin, ncol),
 * y(nout, ncol)); nin is the flattened size of the layer's single input. Return 0 on success; any other value
 * fails the predict call (a value 1..10 becomes that FKB status, others FKB_ERR_INTERNAL) with a message
 * naming the layer. Called on blocks of columns, one call at a time (calls are serialized), on the host (the
 * CUDA backend stages the layer's data through host memory). */
typedef int (*fkb_layer_fn)(const float* x, int64_t ncol, int64_t nin, float* y, int64_t nout, void* user_data);

/* The output size from the input size and the layer's Keras config (JSON text): set *nout (>= 1), return 0. */
typedef int (*fkb_shape_fn)(int64_t nin, const char* config_json, int64_t* nout, void* user_data);

/* Register `fn` for a Keras class name ("Name" matches "Name" and any "package>Name"; "package>Name" matches
 * itself and the bare "Name" of .keras files). n_out > 0: the output has n_out values per column; n_out = 0:
 * the output has the input's shape. Register before loading the models that use the class. Fails with
 * FKB_ERR_INVALID_ARGUMENT when the class is already registered (fkb_unregister_layer it first), is a built-in
 * Keras class, or fn is NULL. user_data is passed to every call (may be NULL). */
int fkb_register_layer(const char* class_name, fkb_layer_fn fn, int64_t n_out, void* user_data);
/* The same with a shape function instead of a fixed size. */
int fkb_register_layer_ex(const char* class_name, fkb_layer_fn fn, fkb_shape_fn shape_fn, void* user_data);
/* Remove a registration (the exact name given at registration). FKB_ERR_INVALID_ARGUMENT when not registered.
 * Models already loaded keep the layer. */
int fkb_unregister_layer(const char* class_name);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FKB_FKB_H */
