// Subcommands of the `fkb` CLI. Each lives in its own cmd_*.cpp and registers itself on the app.
#pragma once

#include <CLI/CLI.hpp>

namespace fkb::cli {

/// Each register_* adds a subcommand; its callback throws fkb::Error on failure (main prints it).
void register_inspect(CLI::App& app);
void register_predict(CLI::App& app);
void register_bench(CLI::App& app);
void register_convert(CLI::App& app);

}  // namespace fkb::cli
