// `fkb inspect MODEL [--json] [--config CFG]`: what a Keras file holds and whether FKB can run it.
// A model FKB refuses as Unsupported still gets its whole layer table, each layer FKB cannot run marked with the
// reason, and inspect fails only after printing it (issue 12 kind 10).
// `fkb inspect MODEL --optimized`: the graph the backends lower, after the graph optimizer's passes
// (runtime/src/opt/optimize.hpp), with what each pass folded, fused or removed.
// `fkb inspect ENSEMBLE [--json]` (a directory of Keras files, a list file or a YAML ensemble config): the
// member count, the shared architecture and each member's parameter count.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "fkb/backend.hpp"
#include "fkb/ensemble.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "loader/support_report.hpp"
#include "opt/optimize.hpp"

namespace fkb::cli {

namespace {

struct InspectArgs {
  std::string model;
  std::string config;
  bool json = false;
  bool optimized = false;
};

nlohmann::json shape_json(const Shape& s) { return nlohmann::json(s); }

// The layer table of the single-model output, also used for an ensemble's shared architecture.
void print_layer_table(const Model& m, const std::vector<bool>& ok, const std::vector<std::string>& why) {
  std::printf("%-4s %-34s %-20s %-14s %-18s %10s %12s  %s\n", "#", "layer", "class", "output shape", "activation",
              "params", "FLOPs/col", "runs");
  std::printf("%s\n", std::string(124, '-').c_str());
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    const Node& n = m.nodes[i];
    const bool has_act = n.op == OpKind::Dense || n.op == OpKind::Conv1D || n.op == OpKind::Activation ||
                         n.activation.kind != ActKind::Linear;  // fused by the optimizer (--optimized)
    std::printf("%-4zu %-34s %-20s %-14s %-18s %10lld %12lld  %s\n", i, n.name.c_str(), n.keras_class.c_str(),
                shape_str(n.shape).c_str(), has_act ? n.activation.keras_name.c_str() : "",
                static_cast<long long>(n.param_count()), static_cast<long long>(node_flops(m, n)),
                ok[i] ? "yes" : ("no: " + why[i]).c_str());
  }
  std::printf("%s\n", std::string(124, '-').c_str());
}

void run_inspect_ensemble(const InspectArgs& a) {
  if (!a.config.empty())
    throw_error(Status::InvalidArgument, "--config applies to a single weights-only model, not to an ensemble");
  if (a.optimized)
    throw_error(Status::InvalidArgument, "--optimized applies to a single model, not to an ensemble (inspect a member)");
  const EnsembleSpec spec = read_ensemble_spec(a.model);
  const std::vector<Model> members = load_ensemble_members(spec, a.model);
  check_same_architecture(members, spec.members);  // throws naming the member, layer and shapes
  const Model& m = members[0];
  auto cpu = make_cpu_backend();
  std::vector<std::string> why(m.nodes.size());
  std::vector<bool> ok(m.nodes.size());
  bool all_ok = true;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    ok[i] = cpu->supports(m, m.nodes[i], &why[i]);
    all_ok = all_ok && ok[i];
  }
  int64_t total = 0;
  for (const auto& mm : members) total += mm.param_count();
  std::error_code ec;
  const std::string kind = std::filesystem::is_directory(a.model, ec) ? "directory"
                           : (a.model.size() > 4 && (a.model.rfind(".yaml") == a.model.size() - 5 ||
                                                     a.model.rfind(".yml") == a.model.size() - 4))
                               ? "yaml"
                               : "list";
  const EnsembleOptions& o = spec.options;

  if (a.json) {
    nlohmann::json j;
    j["ensemble"] = a.model;
    j["kind"] = kind;
    j["n_members"] = members.size();
    j["options"] = {{"device", o.device}, {"precision", o.precision}, {"max_batch", o.max_batch},
                    {"threads", o.threads}};
    j["inputs"] = nlohmann::json::array({shape_json(m.input_shape(0))});
    j["outputs"] = nlohmann::json::array({shape_json(m.output_shape(0))});
    j["layers"] = nlohmann::json::array();
    for (size_t i = 0; i < m.nodes.size(); ++i) {
      const Node& n = m.nodes[i];
      j["layers"].push_back({{"name", n.name}, {"class", n.keras_class}, {"op", op_name(n.op)}, {"output_shape", shape_json(n.shape)},
                             {"activation", n.activation.keras_name}, {"params", n.param_count()},
                             {"flops_per_column", node_flops(m, n)}, {"runnable", static_cast<bool>(ok[i])}});
    }
    j["members"] = nlohmann::json::array();
    for (size_t i = 0; i < members.size(); ++i)
      j["members"].push_back({{"file", spec.members[i]}, {"format", members[i].info.format},
                              {"keras_version", members[i].info.keras_version},
                              {"params", members[i].param_count()}});
    j["params_per_member"] = m.param_count();
    j["total_params"] = total;
    j["flops_per_column"] = m.flops_per_column() * static_cast<int64_t>(members.size());
    j["runnable"] = all_ok;
    std::cout << j.dump(1) << "\n";
    return;
  }

  std::printf("ensemble:      %s  (%s)\n", a.model.c_str(), kind.c_str());
  std::printf("members:       %zu\n", members.size());
  if (kind == "yaml")
    std::printf("settings:      device %s, precision %s, max_batch %s, threads %s\n",
                o.device.empty() ? "(default)" : o.device.c_str(), o.precision.empty() ? "(default)" : o.precision.c_str(),
                o.max_batch ? std::to_string(o.max_batch).c_str() : "(default)",
                o.threads ? std::to_string(o.threads).c_str() : "(default)");
  std::printf("architecture:  shared by all members (layer names of member 0: %s)\n\n", spec.members[0].c_str());
  print_layer_table(m, ok, why);
  std::printf("inputs:        %s\noutputs:       %s\n", shape_str(m.input_shape(0)).c_str(),
              shape_str(m.output_shape(0)).c_str());
  std::printf("FLOPs/column:  %lld per member, %lld for the ensemble\n\n", static_cast<long long>(m.flops_per_column()),
              static_cast<long long>(m.flops_per_column() * static_cast<int64_t>(members.size())));
  std::printf("%-4s %-60s %-8s %-10s %12s\n", "#", "member", "format", "Keras", "params");
  std::printf("%s\n", std::string(98, '-').c_str());
  for (size_t i = 0; i < members.size(); ++i)
    std::printf("%-4zu %-60s %-8s %-10s %12lld\n", i, spec.members[i].c_str(), members[i].info.format.c_str(),
                members[i].info.keras_version.empty() ? "-" : members[i].info.keras_version.c_str(),
                static_cast<long long>(members[i].param_count()));
  std::printf("%s\n", std::string(98, '-').c_str());
  std::printf("total params:  %lld (%lld per member)\n", static_cast<long long>(total),
              static_cast<long long>(m.param_count()));
  std::printf("runnable:      %s\n", all_ok ? "yes (every layer runs on the CPU backend)" : "no (see the layers above)");
}

// "humid, temp" for dict models' keys (Keras' flat order: sorted keys).
std::string keys_str(const std::vector<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k;
  return s;
}

// Model::load refused the model as Unsupported: list every layer of its config, mark those FKB cannot run, then
// fail with a summary. When the config itself cannot be read, the loader's own error stands.
void run_inspect_unsupported(const InspectArgs& a, const Error& load_error) {
  Model::LoadOptions lo;
  lo.config_path = a.config;
  std::vector<loader::LayerSupport> layers;
  try {
    layers = loader::support_report(a.model, lo);
  } catch (const std::exception&) {
    throw load_error;
  }
  std::string bad;
  int n_bad = 0;
  for (const auto& l : layers)
    if (!l.ok) bad += std::string(n_bad++ ? ", " : "") + "'" + l.path + "' (" + l.cls + ")";
  const std::string msg = load_error.what();
  const size_t sup = msg.find(". Supported: ");
  const std::string supported = sup == std::string::npos ? "" : msg.substr(sup + 2);
  // The load failed for a reason no single layer's class explains (e.g. how layers are connected): say it.
  const std::string summary =
      n_bad ? "'" + a.model + "': " + std::to_string(n_bad) + " of " + std::to_string(layers.size()) +
                  " layers cannot be run by FKB: " + bad
            : msg;

  if (a.json) {
    nlohmann::json j;
    j["file"] = a.model;
    j["runnable"] = false;
    j["error"] = msg;
    j["layers"] = nlohmann::json::array();
    for (const auto& l : layers) {
      nlohmann::json e = {{"name", l.path}, {"class", l.cls}, {"runnable", l.ok}};
      if (!l.ok) e["reason"] = l.reason;
      j["layers"].push_back(e);
    }
    std::cout << j.dump(1) << "\n";
  } else {
    std::printf("file:          %s\n", a.model.c_str());
    std::printf("model:         not loadable: %d of %zu layers cannot run (marked below)\n\n", n_bad, layers.size());
    std::printf("%-4s %-34s %-20s  %s\n", "#", "layer", "class", "runs");
    std::printf("%s\n", std::string(124, '-').c_str());
    for (size_t i = 0; i < layers.size(); ++i)
      std::printf("%-4zu %-34s %-20s  %s\n", i, layers[i].path.c_str(), layers[i].cls.c_str(),
                  layers[i].ok ? "yes" : ("no: " + layers[i].reason).c_str());
    std::printf("%s\n", std::string(124, '-').c_str());
    if (n_bad == 0) std::printf("load error:    %s\n", msg.c_str());
    if (!supported.empty()) std::printf("supported:     %s\n", supported.substr(11).c_str());
    std::printf("runnable:      no\n");
  }
  std::fflush(stdout);
  throw Error(Status::Unsupported, summary);
}

void run_inspect(const InspectArgs& a) {
  if (is_ensemble_path(a.model)) {
    run_inspect_ensemble(a);
    return;
  }
  Model::LoadOptions lo;
  lo.config_path = a.config;
  Model loaded;
  try {
    loaded = Model::load(a.model, lo);
  } catch (const Error& e) {
    if (e.status() != Status::Unsupported) throw;
    run_inspect_unsupported(a, e);
  }
  opt::Optimized optimized;
  if (a.optimized) {
    optimized = opt::optimize(loaded);
    loaded = optimized.model;
  }
  const Model& m = loaded;
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
    if (!m.info.input_keys.empty()) j["input_keys"] = m.info.input_keys;
    if (!m.info.output_keys.empty()) j["output_keys"] = m.info.output_keys;
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
      if (n.accumulate_input >= 0) l["accumulate_input"] = n.accumulate_input;
      if (!n.concat_in_place.empty()) l["concat_in_place"] = n.concat_in_place;
      j["layers"].push_back(l);
    }
    if (a.optimized) j["optimizer"] = {{"passes", opt::pass_names()}, {"notes", optimized.notes}};
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
  print_layer_table(m, ok, why);
  std::printf("inputs:        ");
  for (int i = 0; i < m.num_inputs(); ++i) std::printf("%s%s", i ? ", " : "", shape_str(m.input_shape(i)).c_str());
  std::printf("\noutputs:       ");
  for (int i = 0; i < m.num_outputs(); ++i) std::printf("%s%s", i ? ", " : "", shape_str(m.output_shape(i)).c_str());
  std::printf("\n");
  // Dict models: the files given to predict follow Keras' flat order, which sorts the dict keys.
  if (!m.info.input_keys.empty())
    std::printf("inputs (dict, Keras' flat order = sorted keys): %s\n", keys_str(m.info.input_keys).c_str());
  if (!m.info.output_keys.empty())
    std::printf("outputs (dict, Keras' flat order = sorted keys): %s\n", keys_str(m.info.output_keys).c_str());
  std::printf("total params:  %lld\n", static_cast<long long>(m.param_count()));
  std::printf("FLOPs/column:  %lld\n", static_cast<long long>(m.flops_per_column()));
  std::printf("runnable:      %s\n", all_ok ? "yes (every layer runs on the CPU backend)" : "no (see the layers above)");
  if (a.optimized) {
    std::string passes;
    for (const auto& p : opt::pass_names()) passes += (passes.empty() ? "" : ", ") + p;
    std::printf("optimized:     the graph every backend lowers, after the passes %s\n", passes.c_str());
    for (const auto& note : optimized.notes) std::printf("  %s\n", note.c_str());
    if (optimized.notes.empty()) std::printf("  (nothing to fold, fuse or remove)\n");
  }
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  auto* sub = app.add_subcommand("inspect", "Show a Keras model's layers, shapes, parameters and FLOPs");
  sub->add_option("model", args->model,
                  "Keras file (.h5 or .keras), or an ensemble: a directory of Keras files, a list file "
                  "(.txt/.lst/.list) or a YAML config (.yaml/.yml)")
      ->required();
  sub->add_option("--config", args->config, "architecture JSON/YAML for a weights-only file");
  sub->add_flag("--json", args->json, "print JSON instead of a table");
  sub->add_flag("--optimized", args->optimized,
                "show the graph after the optimizer's passes (aliases removed, BatchNormalization/Rescaling folded, "
                "activations fused): what the CPU and CUDA backends lower");
  sub->callback([args] { run_inspect(*args); });
}

}  // namespace fkb::cli
