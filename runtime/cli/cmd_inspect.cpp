#include "commands.hpp"
#include "fkb/error.hpp"
namespace fkb::cli {
void register_inspect(CLI::App& app) {
  auto* sub = app.add_subcommand("inspect", "(under construction)");
  sub->allow_extras();
  sub->callback([] { throw_error(Status::Unsupported, "under construction"); });
}
}  // namespace fkb::cli
