// `fkb`: inspect, predict and benchmark Keras models.
#include <cstdio>
#include <exception>

#include "commands.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"

int main(int argc, char** argv) {
  CLI::App app{"FKB: Fortran-Keras bridge and inference runtime"};
  app.set_version_flag("--version", fkb::version());
  app.require_subcommand(1);
  fkb::cli::register_inspect(app);
  fkb::cli::register_predict(app);
  fkb::cli::register_bench(app);
  fkb::cli::register_convert(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const fkb::Error& e) {
    std::fprintf(stderr, "fkb: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fkb: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
