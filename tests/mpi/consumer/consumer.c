/* consumer MODEL: every rank predicts 3 + rank columns in node-aggregate mode, then with per-rank mode, and
 * checks the two agree within 1e-5 (the batches differ, so not bitwise); prints PASS on rank 0. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "fkb/fkb_mpi.h"

static int run(const char* path, const char* mode, int ncol, const float* x, float* y) {
  fkb_mpi_options o;
  fkb_mpi_options_init(&o);
  o.mode = mode;
  o.threads = 1;
  o.verbose = 0;
  fkb_mpi_t s = NULL;
  int st = fkb_mpi_load(path, MPI_Comm_c2f(MPI_COMM_WORLD), &o, &s);
  if (st == FKB_OK) st = fkb_mpi_predict_f32(s, x, ncol, y);
  if (st != FKB_OK) fprintf(stderr, "%s: %s\n", mode, fkb_mpi_last_error());
  if (st == FKB_OK) st = fkb_mpi_report(s);
  fkb_mpi_free(s);
  return st;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, bad = 0, allbad = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int ncol = 3 + rank, nin = 94, nout = 65;
  float* x = malloc(sizeof(float) * nin * ncol);
  float* a = malloc(sizeof(float) * nout * ncol);
  float* b = malloc(sizeof(float) * nout * ncol);
  for (int i = 0; i < nin * ncol; ++i) x[i] = (float)sin(0.1 * i + rank);
  bad |= run(argv[1], "node-aggregate", ncol, x, a) != FKB_OK;
  bad |= run(argv[1], "per-rank", ncol, x, b) != FKB_OK;
  double err = 0, mx = 0;
  for (int i = 0; i < nout * ncol && !bad; ++i) {
    err = fmax(err, fabs((double)a[i] - b[i]));
    mx = fmax(mx, fabs((double)b[i]));
  }
  if (!(err <= 1e-5 * mx)) bad = 1;
  MPI_Allreduce(&bad, &allbad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) printf("%s\n", allbad ? "FAIL" : "PASS");
  free(x);
  free(a);
  free(b);
  MPI_Finalize();
  return allbad;
}
