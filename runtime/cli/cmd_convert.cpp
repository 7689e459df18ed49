// `fkb convert IN OUT [--config CFG]`: rewrite a Keras file as .keras (Keras 3 zip) or legacy .h5.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "fkb/keras_writer.hpp"
#include "fkb/model.hpp"

namespace fkb::cli {

void register_convert(CLI::App& app) {
  struct Args {
    std::string in, out, config;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("convert", "Rewrite a Keras model as .keras or .h5 (by OUT's extension)");
  sub->add_option("input", a->in, "Keras file to read (.h5, .keras, or weights-only .h5 with --config)")->required();
  sub->add_option("output", a->out, "file to write: NAME.keras or NAME.h5")->required();
  sub->add_option("--config", a->config, "architecture JSON/YAML for a weights-only input");
  sub->callback([a] {
    Model::LoadOptions lo;
    lo.config_path = a->config;
    const Model m = Model::load(a->in, lo);
    save_keras(m, a->out);
    std::printf("wrote %s (%lld parameters, %zu layers)\n", a->out.c_str(), static_cast<long long>(m.param_count()),
                m.nodes.size());
  });
}

}  // namespace fkb::cli
