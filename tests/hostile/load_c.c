/* Loads one model through the C API and prints the error as the CLI does ("fkb: error: <message>", exit 1).
 * Used by run_hostile.py: the C entry point must refuse a hostile file with the same message as the CLI.
 * Usage: hostile_load_c MODEL [CONFIG] */
#include <stdio.h>

#include "fkb/fkb.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s MODEL [CONFIG]\n", argv[0]);
    return 2;
  }
  fkb_options o;
  fkb_options_init(&o);
  o.device = "cpu";
  o.verbose = 0;
  if (argc == 3) o.config_path = argv[2];
  fkb_model_t m = NULL;
  if (fkb_load(argv[1], &o, &m) != FKB_OK) {
    fprintf(stderr, "fkb: error: %s\n", fkb_last_error());
    return 1;
  }
  fkb_free(m);
  printf("loaded\n");
  return 0;
}
