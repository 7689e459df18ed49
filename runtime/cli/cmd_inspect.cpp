// `fkb inspect MODEL [--json] [--config CFG]`: what a Keras file holds and whether FKB can run it.
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"

namespace fkb::cli {

namespace {

struct InspectArgs {
  std::string model;
  std::string config;
  bool json = false;
};

nlohmann::json shape_json(const Shape& s) { return nlohmann::json(s); }

void run_inspect(const InspectArgs& a) {
  Model::LoadOptions lo;
  lo.config_path = a.config;
  const Model m = Model::load(a.model, lo);
  auto cpu = make_cpu_backend();

  std::vector<std::string> why(m.nodes.size());
  std::vector<bool> ok(m.nodes.size());
  bool all_ok = true;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    ok[i] = cpu->supports(m, m.nodes[i], &why[i]);
    all_ok = all_ok && ok[i];
  }

  if (a.json) {
    nlohmann::json j;
    j["file"] = m.info.path;
    j["format"] = m.info.format;
    j["keras_version"] = m.info.keras_version;
    j["backend"] = m.info.backend;
    j["model_class"] = m.info.model_class;
    j["name"] = m.info.name;
    j["inputs"] = nlohmann::json::array();
    for (int i = 0; i < m.num_inputs(); ++i) j["inputs"].push_back(shape_json(m.input_shape(i)));
    j["outputs"] = nlohmann::json::array();
    for (int i = 0; i < m.num_outputs(); ++i) j["outputs"].push_back(shape_json(m.output_shape(i)));
    j["layers"] = nlohmann::json::array();
    for (size_t i = 0; i < m.nodes.size(); ++i) {
      const Node& n = m.nodes[i];
      nlohmann::json l;
      l["name"] = n.name;
      l["class"] = n.keras_class;
      l["op"] = op_name(n.op);
      l["inputs"] = nlohmann::json::array();
      for (int in : n.inputs) l["inputs"].push_back(m.nodes[in].name);
      l["output_shape"] = shape_json(n.shape);
      l["activation"] = n.activation.keras_name;
      l["params"] = n.param_count();
      l["flops_per_column"] = node_flops(m, n);
      l["runnable"] = static_cast<bool>(ok[i]);
      if (!ok[i]) l["reason"] = why[i];
      j["layers"].push_back(l);
    }
    j["total_params"] = m.param_count();
    j["flops_per_column"] = m.flops_per_column();
    j["runnable"] = all_ok;
    j["cuda"] = {{"built", built_with_cuda()}, {"devices", cuda_device_count()}};
    std::cout << j.dump(1) << "\n";
    return;
  }

  std::printf("file:          %s\n", m.info.path.c_str());
  std::printf("format:        %s  (Keras %s%s%s)\n", m.info.format.c_str(),
              m.info.keras_version.empty() ? "version not recorded" : m.info.keras_version.c_str(),
              m.info.backend.empty() ? "" : ", backend ", m.info.backend.c_str());
  std::printf("model:         %s \"%s\"\n\n", m.info.model_class.c_str(), m.info.name.c_str());
  std::printf("%-4s %-34s %-20s %-14s %-18s %10s %12s  %s\n", "#", "layer", "class", "output shape", "activation",
              "params", "FLOPs/col", "runs");
  std::printf("%s\n", std::string(124, '-').c_str());
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const Node& n = m.nodes[i];
    const bool has_act = n.op == OpKind::Dense || n.op == OpKind::Conv1D || n.op == OpKind::Activation;
    std::printf("%-4zu %-34s %-20s %-14s %-18s %10lld %12lld  %s\n", i, n.name.c_str(), n.keras_class.c_str(),
                shape_str(n.shape).c_str(), has_act ? n.activation.keras_name.c_str() : "",
                static_cast<long long>(n.param_count()), static_cast<long long>(node_flops(m, n)),
                ok[i] ? "yes" : ("no: " + why[i]).c_str());
  }
  std::printf("%s\n", std::string(124, '-').c_str());
  std::printf("inputs:        ");
  for (int i = 0; i < m.num_inputs(); ++i) std::printf("%s%s", i ? ", " : "", shape_str(m.input_shape(i)).c_str());
  std::printf("\noutputs:       ");
  for (int i = 0; i < m.num_outputs(); ++i) std::printf("%s%s", i ? ", " : "", shape_str(m.output_shape(i)).c_str());
  std::printf("\ntotal params:  %lld\n", static_cast<long long>(m.param_count()));
  std::printf("FLOPs/column:  %lld\n", static_cast<long long>(m.flops_per_column()));
  std::printf("runnable:      %s\n", all_ok ? "yes (every layer runs on the CPU backend)" : "no (see the layers above)");
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  auto* sub = app.add_subcommand("inspect", "Show a Keras model's layers, shapes, parameters and FLOPs");
  sub->add_option("model", args->model, "Keras file (.h5 or .keras)")->required();
  sub->add_option("--config", args->config, "architecture JSON/YAML for a weights-only file");
  sub->add_flag("--json", args->json, "print JSON instead of a table");
  sub->callback([args] { run_inspect(*args); });
}

}  // namespace fkb::cli
