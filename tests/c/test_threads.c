/* One shared handle called from the threads of an OpenMP parallel for (issue 10), through the C API only:
 * fkb_predict_f32 / fkb_predict_f64 on one fkb_model_t and fkb_ensemble_predict_f64 on one fkb_ensemble_t,
 * over chunks of 1, 7, 37, 512 and 3000 columns, several rounds each. Every threaded output must equal, bitwise,
 * the serial result of the same calls on the same chunks, and Keras' outputs within 1e-5 (the inputs tile the
 * fixture's columns, so each column has a Keras reference). fkb_last_error() must stay per thread while
 * threads interleave failing and succeeding calls.
 * Usage: fkb_c_test_threads FIXTURES_DIR   (run with OMP_NUM_THREADS >= 2)
 * FKB_THREADS_QUICK=1 in the environment (ThreadSanitizer builds): one round, at most 300 columns per size. */
#include <hdf5.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fkb/fkb.h"

static int failures = 0;

static void check(int ok, const char* what) {
  printf("%s  %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

/* A float32 dataset of a fixture file; dims[0] x dims[1] (x dims[2]). Exits on error (test setup). */
static float* read_h5(const char* path, const char* name, hsize_t* dims, int* rank) {
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0) {
    fprintf(stderr, "no dataset %s in %s\n", name, path);
    exit(2);
  }
  hid_t sp = H5Dget_space(d);
  *rank = H5Sget_simple_extent_ndims(sp);
  H5Sget_simple_extent_dims(sp, dims, NULL);
  size_t n = 1;
  for (int i = 0; i < *rank; ++i) n *= (size_t)dims[i];
  float* v = malloc(n * sizeof(float));
  if (!v || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
    fprintf(stderr, "cannot read %s from %s\n", name, path);
    exit(2);
  }
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  return v;
}

/* [n][w] from [n0][w] by repeating the rows (columns of the Fortran view). */
static double* tile(const float* v, int64_t n0, int64_t w, int64_t n) {
  double* t = malloc((size_t)(n * w) * sizeof(double));
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < w; ++i) t[j * w + i] = v[(j % n0) * w + i];
  return t;
}

static double rel_err_d(const double* y, const double* ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (isnan(y[i])) return INFINITY;
    num = fmax(num, fabs(y[i] - ref[i]));
    den = fmax(den, fabs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

static double rel_err_f(const float* y, const double* ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (isnan(y[i])) return INFINITY;
    num = fmax(num, fabs((double)y[i] - ref[i]));
    den = fmax(den, fabs(ref[i]));
  }
  return den > 0 ? num / den : num;
}

static const int64_t chunks[] = {1, 7, 37, 512, 3000};
enum { NCHUNK_SIZES = 5, NTOTAL = 6000 };
static int ROUNDS = 3;
static int64_t max_cols = NTOTAL;

static int64_t columns_for(int64_t cs) {
  int64_t n = 2 * cs > 1000 ? 2 * cs : 1000;
  n = n < NTOTAL ? n : NTOTAL;
  return n < max_cols ? n : max_cols;
}

static void model_tests(const char* dir) {
  char path[4096], what[256];
  hsize_t dx[3], dy[3];
  int rx, ry;
  snprintf(path, sizeof path, "%s/k3_cbrain_keras.data.h5", dir);
  float* x0 = read_h5(path, "input_0", dx, &rx);
  float* y0 = read_h5(path, "output_0", dy, &ry);
  const int64_t n0 = (int64_t)dx[0], nin = (int64_t)dx[1], nout = (int64_t)dy[1];
  double* x = tile(x0, n0, nin, NTOTAL);
  double* yref = tile(y0, n0, nout, NTOTAL);
  float* x4 = malloc((size_t)(NTOTAL * nin) * sizeof(float));
  for (int64_t i = 0; i < NTOTAL * nin; ++i) x4[i] = (float)x[i];

  fkb_model_t m = NULL;
  fkb_options o;
  fkb_options_init(&o);
  o.device = "cpu";
  o.verbose = 0;
  snprintf(path, sizeof path, "%s/k3_cbrain.keras", dir);
  int st = fkb_load(path, &o, &m);
  check(st == FKB_OK, st == FKB_OK ? "load k3_cbrain.keras" : fkb_last_error());
  if (st != FKB_OK) return;
  int64_t k = 0;
  fkb_input_count(m, &k);
  check(k == 1, "fkb_input_count == 1");
  fkb_output_count(m, &k);
  check(k == 1, "fkb_output_count == 1");

  double* ys = malloc((size_t)(NTOTAL * nout) * sizeof(double));
  double* yp = malloc((size_t)(NTOTAL * nout) * sizeof(double));
  float* ys4 = malloc((size_t)(NTOTAL * nout) * sizeof(float));
  float* yp4 = malloc((size_t)(NTOTAL * nout) * sizeof(float));
  for (int ic = 0; ic < NCHUNK_SIZES; ++ic) {
    const int64_t cs = chunks[ic], n = columns_for(cs), nc = (n + cs - 1) / cs;
    int bad = 0;
    for (int64_t c = 0; c < nc; ++c) { /* serial */
      const int64_t lo = c * cs, cnt = (lo + cs <= n ? cs : n - lo);
      bad += fkb_predict_f64(m, x + lo * nin, cnt, ys + lo * nout) != FKB_OK;
      bad += fkb_predict_f32(m, x4 + lo * nin, cnt, ys4 + lo * nout) != FKB_OK;
    }
    snprintf(what, sizeof what, "chunk %lld: serial f64 vs Keras, rel err %.2e", (long long)cs,
             rel_err_d(ys, yref, n * nout));
    check(bad == 0 && rel_err_d(ys, yref, n * nout) <= 1e-5, what);
    for (int r = 0; r < ROUNDS; ++r) {
      memset(yp, 0, (size_t)(n * nout) * sizeof(double));
      memset(yp4, 0, (size_t)(n * nout) * sizeof(float));
      bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t lo = c * cs, cnt = (lo + cs <= n ? cs : n - lo);
        bad += fkb_predict_f64(m, x + lo * nin, cnt, yp + lo * nout) != FKB_OK;
        bad += fkb_predict_f32(m, x4 + lo * nin, cnt, yp4 + lo * nout) != FKB_OK;
      }
      snprintf(what, sizeof what, "chunk %lld, %lld columns, round %d: threaded f64 and f32 == serial bitwise",
               (long long)cs, (long long)n, r + 1);
      check(bad == 0 && memcmp(yp, ys, (size_t)(n * nout) * sizeof(double)) == 0 &&
                memcmp(yp4, ys4, (size_t)(n * nout) * sizeof(float)) == 0,
            what);
    }
    snprintf(what, sizeof what, "chunk %lld: threaded f32 vs Keras, rel err %.2e", (long long)cs,
             rel_err_f(yp4, yref, n * nout));
    check(rel_err_f(yp4, yref, n * nout) <= 1e-5, what);
  }

  /* fkb_last_error is per thread: odd calls fail (ncol < 0), even ones succeed, interleaved across threads. */
  int wrong = 0;
#pragma omp parallel for schedule(static, 1) reduction(+ : wrong)
  for (int c = 0; c < 400; ++c) {
    if (c % 2) {
      const int s = fkb_predict_f64(m, x, -c, yp + (int64_t)c * nout);
      char expect[64];
      snprintf(expect, sizeof expect, "got %d", -c);
      const char* msg = fkb_last_error();
      const size_t lm = strlen(msg), le = strlen(expect);
      wrong += s != FKB_ERR_INVALID_ARGUMENT || lm < le || strcmp(msg + lm - le, expect) != 0;
    } else {
      const int s = fkb_predict_f64(m, x, 1, yp + (int64_t)c * nout); /* its own slot: no two threads write one */
      wrong += s != FKB_OK || fkb_last_error()[0] != '\0';
    }
  }
  check(wrong == 0, "fkb_last_error() is each thread's own while calls interleave");

  fkb_free(m);
  free(x0);
  free(y0);
  free(x);
  free(yref);
  free(x4);
  free(ys);
  free(yp);
  free(ys4);
  free(yp4);
}

static void ensemble_tests(const char* dir) {
  char path[4096], what[256];
  hsize_t dx[3], dm[3], dsd[3];
  int rx, rm, rs;
  snprintf(path, sizeof path, "%s/ensemble8/data.h5", dir);
  float* x0 = read_h5(path, "input", dx, &rx);
  float* m0 = read_h5(path, "mean", dm, &rm);
  float* s0 = read_h5(path, "std", dsd, &rs);
  const int64_t n0 = (int64_t)dx[0], nin = (int64_t)dx[1], nout = (int64_t)dm[1];
  const int64_t ntot = 2000;
  double* x = tile(x0, n0, nin, ntot);
  double* mref = tile(m0, n0, nout, ntot);
  double* sref = tile(s0, n0, nout, ntot);

  fkb_ensemble_t e = NULL;
  snprintf(path, sizeof path, "%s/ensemble8/members", dir);
  int st = fkb_ensemble_load_ex(path, "cpu", NULL, 0, 0, 0, 1, &e);
  check(st == FKB_OK, st == FKB_OK ? "ensemble load (fkb_ensemble_load_ex, verbose 0)" : fkb_last_error());
  if (st != FKB_OK) return;
  double* ms = malloc((size_t)(ntot * nout) * sizeof(double));
  double* ss = malloc((size_t)(ntot * nout) * sizeof(double));
  double* mp = malloc((size_t)(ntot * nout) * sizeof(double));
  double* sp = malloc((size_t)(ntot * nout) * sizeof(double));
  for (int ic = 0; ic < 4; ++ic) {
    const int64_t cs = chunks[ic], n0 = (2 * cs > 600 ? 2 * cs : 600), n = n0 < max_cols ? n0 : max_cols,
                  nc = (n + cs - 1) / cs;
    int bad = 0;
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t lo = c * cs, cnt = (lo + cs <= n ? cs : n - lo);
      bad += fkb_ensemble_predict_f64(e, x + lo * nin, cnt, ms + lo * nout, ss + lo * nout, NULL) != FKB_OK;
    }
    for (int r = 0; r < ROUNDS; ++r) {
      memset(mp, 0, (size_t)(n * nout) * sizeof(double));
      memset(sp, 0, (size_t)(n * nout) * sizeof(double));
#pragma omp parallel for schedule(dynamic) reduction(+ : bad)
      for (int64_t c = 0; c < nc; ++c) {
        const int64_t lo = c * cs, cnt = (lo + cs <= n ? cs : n - lo);
        bad += fkb_ensemble_predict_f64(e, x + lo * nin, cnt, mp + lo * nout, sp + lo * nout, NULL) != FKB_OK;
      }
      snprintf(what, sizeof what, "ensemble chunk %lld, round %d: threaded mean and spread == serial bitwise",
               (long long)cs, r + 1);
      check(bad == 0 && memcmp(mp, ms, (size_t)(n * nout) * sizeof(double)) == 0 &&
                memcmp(sp, ss, (size_t)(n * nout) * sizeof(double)) == 0,
            what);
    }
    const double err = fmax(rel_err_d(mp, mref, n * nout), rel_err_d(sp, sref, n * nout));
    snprintf(what, sizeof what, "ensemble chunk %lld: threaded mean, spread vs Keras, rel err %.2e", (long long)cs, err);
    check(err <= 1e-5, what);
  }
  fkb_ensemble_free(e);
  free(x0);
  free(m0);
  free(s0);
  free(x);
  free(mref);
  free(sref);
  free(ms);
  free(ss);
  free(mp);
  free(sp);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
    return 2;
  }
  const char* quick = getenv("FKB_THREADS_QUICK");
  if (quick && *quick) {
    ROUNDS = 1;
    max_cols = 300;
  }
  printf("OpenMP threads: %d\n", omp_get_max_threads());
  check(omp_get_max_threads() >= 2, "the test runs with at least 2 OpenMP threads");
  model_tests(argv[1]);
  ensemble_tests(argv[1]);
  if (failures) {
    printf("FAILED: %d check(s)\n", failures);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
