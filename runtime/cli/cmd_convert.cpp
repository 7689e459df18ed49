// `fkb convert IN OUT [--config CFG] [--flavour keras3|tf-keras]`: rewrite a Keras file as .keras (Keras 3 zip) or
// legacy .h5, for Keras 3 or tf-keras.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "fkb/keras_writer.hpp"
#include "fkb/model.hpp"

namespace fkb::cli {

void register_convert(CLI::App& app) {
  struct Args {
    std::string in, out, config, flavour = "source";
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("convert", "Rewrite a Keras model as .keras or .h5 (by OUT's extension)");
  sub->add_option("input", a->in, "Keras file to read (.h5, .keras, or weights-only .h5 with --config)")->required();
  sub->add_option("output", a->out, "file to write: NAME.keras or NAME.h5")->required();
  sub->add_option("--config", a->config, "architecture JSON/YAML for a weights-only input");
  sub->add_option("--flavour,--flavor", a->flavour,
                  "Keras the file is for: keras3 (.keras or .h5), tf-keras (.h5; tf-keras 2.x / Keras 2, also read by "
                  "Keras 3), or source (default: tf-keras for a .h5 from a Keras 2 / tf-keras file, else keras3)");
  sub->callback([a] {
    Model::LoadOptions lo;
    lo.config_path = a->config;
    SaveOptions so;
    so.flavour = parse_flavour(a->flavour);  // before loading: a typo fails fast
    const Model m = Model::load(a->in, lo);
    const Flavour f = resolve_flavour(m, a->out, so.flavour);
    save_keras(m, a->out, so);
    std::printf("wrote %s for %s (%lld parameters, %zu layers)\n", a->out.c_str(),
                f == Flavour::TfKeras ? "tf-keras" : "Keras 3", static_cast<long long>(m.param_count()),
                m.nodes.size());
  });
}

}  // namespace fkb::cli
