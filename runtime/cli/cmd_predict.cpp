// Placeholder until the CPU engine lands: the subcommand exists and says it is unavailable.
#include "commands.hpp"
#include "fkb/error.hpp"

namespace fkb::cli {
void register_predict(CLI::App& app) {
  auto* sub = app.add_subcommand("predict", "(not available in this build)");
  sub->allow_extras();
  sub->callback([] { throw_error(Status::Unsupported, "'fkb predict' is not available in this build"); });
}
}  // namespace fkb::cli
