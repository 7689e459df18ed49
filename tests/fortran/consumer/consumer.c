/* A C program using the installed FKB C API: predicts a fixture and compares with Keras' outputs.
 * Usage: consumer_c DATA_FILE (written by fkb_fixture_export). */
#include <fkb/fkb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 2)
    return 2;
  FILE* f = fopen(argv[1], "r");
  if (!f)
    return 2;
  char model[4096], config[4096];
  long nin, nout, ncol;
  if (!fgets(model, sizeof model, f) || !fgets(config, sizeof config, f))
    return 2;
  model[strcspn(model, "\n")] = 0;
  config[strcspn(config, "\n")] = 0;
  if (fscanf(f, "%ld %ld %ld", &nin, &nout, &ncol) != 3)
    return 2;
  float* x = malloc(sizeof(float) * nin * ncol);
  float* ref = malloc(sizeof(float) * nout * ncol);
  double* xd = malloc(sizeof(double) * nin * ncol);
  double* y = malloc(sizeof(double) * nout * ncol);
  for (long i = 0; i < nin * ncol; ++i) {
    if (fscanf(f, "%f", &x[i]) != 1)
      return 2;
    xd[i] = x[i];
  }
  for (long i = 0; i < nout * ncol; ++i)
    if (fscanf(f, "%f", &ref[i]) != 1)
      return 2;
  fclose(f);

  fkb_options o;
  fkb_options_init(&o);
  o.device = "cpu";
  if (strcmp(config, "-") != 0)
    o.config_path = config;
  fkb_model_t m = NULL;
  if (fkb_load(model, &o, &m) != FKB_OK) {
    fprintf(stderr, "load failed: %s\n", fkb_last_error());
    return 1;
  }
  int64_t n = 0;
  fkb_n_inputs(m, &n);
  if (n != nin) {
    fprintf(stderr, "n_inputs %lld, expected %ld\n", (long long)n, nin);
    return 1;
  }
  if (fkb_predict_f64(m, xd, ncol, y) != FKB_OK) {
    fprintf(stderr, "predict failed: %s\n", fkb_last_error());
    return 1;
  }
  double err = 0, mx = 0;
  for (long i = 0; i < nout * ncol; ++i) {
    err = fmax(err, fabs(y[i] - ref[i]));
    mx = fmax(mx, fabs(ref[i]));
  }
  fkb_free(m);
  printf("consumer_c: fkb %s, %ld columns, relative max error %.2e\n", fkb_version(), ncol, err / mx);
  free(x);
  free(ref);
  free(xd);
  free(y);
  return err / mx <= 1e-5 ? 0 : 1;
}
