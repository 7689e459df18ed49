// `fkb inspect` on a model FKB cannot run (issue 12 kind 10): every layer of the Keras model is listed, each layer
// FKB cannot run is marked with its reason in the runs column, and inspect exits non-zero only after printing it
// all (and, for dict models, that inspect and predict state the key order). The model was made with real Keras 3 (tests/fixtures/cases/unsupported_layers/make.py): Input, Dense,
// LayerNormalization, a nested Sequential 'tower' holding Dense and Lambda, Dense head.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;

// The line of `out` whose second column is exactly `layer` ("" when none).
std::string row_of(const std::string& out, const std::string& layer) {
  size_t pos = 0;
  while (pos < out.size()) {
    size_t end = out.find('\n', pos);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(pos, end - pos);
    const size_t a = line.find_first_not_of(' ', line.find(' '));
    if (a != std::string::npos && line.compare(a, layer.size() + 1, layer + " ") == 0) return line;
    pos = end + 1;
  }
  return "";
}

// The layers of the Keras model in model.layers order (nested ones as "outer/inner") and whether FKB runs them.
const std::vector<std::pair<std::string, std::string>> kLayers = {
    {"x", "InputLayer"},          {"dense_in", "Dense"},          {"layer_norm", "LayerNormalization"},
    {"tower", "Sequential"},      {"tower/input_layer", "InputLayer"}, {"tower/tower_dense", "Dense"},
    {"tower/double", "Lambda"},   {"head", "Dense"}};

bool unsupported(const std::string& name) { return name == "layer_norm" || name == "tower/double"; }

TEST(InspectUnsupported, ListsEveryLayerMarksEachUnsupportedOneAndFailsAtTheEnd) {
  for (const char* file : {"k3.keras", "k3.h5"}) {
    const std::string path = fixture_path(std::string("cases/unsupported_layers/") + file);
    std::string out;
    const int rc = fkb::test::run_command(fkb::test::cli() + " inspect " + path, &out);
    EXPECT_NE(rc, 0) << file << "\n" << out;
    size_t last_row = 0;
    for (const auto& [name, cls] : kLayers) {
      const std::string row = row_of(out, name);
      ASSERT_FALSE(row.empty()) << file << ": no row for layer '" << name << "'\n" << out;
      EXPECT_NE(row.find(cls), std::string::npos) << row;
      if (unsupported(name)) {
        EXPECT_NE(row.find("no: "), std::string::npos) << row;
        EXPECT_NE(row.find("'" + cls + "'"), std::string::npos) << "the reason names the class: " << row;
      } else {
        EXPECT_NE(row.find(" yes"), std::string::npos) << row;
        EXPECT_EQ(row.find("no: "), std::string::npos) << row;
      }
      last_row = std::max(last_row, out.find(row));
    }
    EXPECT_NE(row_of(out, "tower/double").find("Python code"), std::string::npos) << "Lambda's hint\n" << out;
    // The error comes after the whole table and names both layers.
    const size_t err = out.find("fkb: error:");
    ASSERT_NE(err, std::string::npos) << out;
    EXPECT_GT(err, last_row) << out;
    const std::string msg = out.substr(err);
    EXPECT_NE(msg.find("2 of 8 layers"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'layer_norm' (LayerNormalization)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'tower/double' (Lambda)"), std::string::npos) << msg;
    EXPECT_NE(out.find("runnable:      no"), std::string::npos) << out;
  }
}

TEST(InspectUnsupported, JsonListsEveryLayerWithReasons) {
  const std::string path = fixture_path("cases/unsupported_layers/k3.keras");
  std::string out;
  // stdout only (run_command merges stderr, where the final error goes): the JSON document alone.
  EXPECT_NE(fkb::test::run_command("{ " + fkb::test::cli() + " inspect --json " + path + " 2>/dev/null; }", &out), 0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["runnable"], false);
  ASSERT_EQ(j["layers"].size(), kLayers.size()) << out;
  for (size_t i = 0; i < kLayers.size(); ++i) {
    const auto& l = j["layers"][i];
    EXPECT_EQ(l["name"], kLayers[i].first);
    EXPECT_EQ(l["class"], kLayers[i].second);
    EXPECT_EQ(l["runnable"], !unsupported(kLayers[i].first)) << l.dump();
    EXPECT_EQ(l.contains("reason"), unsupported(kLayers[i].first)) << l.dump();
  }
  EXPECT_NE(j["error"].get<std::string>().find("layer_norm"), std::string::npos);
}

TEST(InspectUnsupported, PredictStillRefusesAndLoadableModelsKeepTheirOutput) {
  const std::string dir = fkb::test::temp_dir();
  std::string out;
  EXPECT_NE(fkb::test::run_command(fkb::test::cli() + " predict " +
                                       fixture_path("cases/unsupported_layers/k3.keras") + " -i " +
                                       fixture_path("cases/unsupported_layers/x.npy") + " -o " + dir + "/y.npy",
                                   &out),
            0);
  EXPECT_NE(out.find("layer_norm"), std::string::npos) << out;
  // A model FKB runs: the usual table, exit 0.
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect " + fixture_path("k3_dense_chain.keras"), &out), 0)
      << out;
  EXPECT_NE(out.find("runnable:      yes"), std::string::npos) << out;
  EXPECT_NE(out.find("total params:"), std::string::npos) << out;
}

// Issue 12 kind 1, the CLI side: a dict-input/-output Keras 3 model (cases/dict_io_and_call_kwargs/k3_dict.keras,
// inputs {temp, humid}, outputs {z_aux, a_main, hidden}) is read in Keras' flat order, which sorts the keys
// (keras.tree.flatten; run_cases.py checks inspect's keys against the model loaded in Keras). inspect says that
// order; predict names the keys when the --input count is wrong, and labels each output with its key.
TEST(InspectDictModel, StatesKeyOrderAndPredictNamesIt) {
  const std::string path = fixture_path("cases/dict_io_and_call_kwargs/k3_dict.keras");
  std::string out;
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect " + path, &out), 0) << out;
  EXPECT_NE(out.find("inputs (dict, Keras' flat order = sorted keys): humid, temp\n"), std::string::npos) << out;
  EXPECT_NE(out.find("outputs (dict, Keras' flat order = sorted keys): a_main, hidden, z_aux\n"), std::string::npos)
      << out;
  ASSERT_EQ(fkb::test::run_command("{ " + fkb::test::cli() + " inspect --json " + path + " 2>/dev/null; }", &out), 0);
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["input_keys"], (std::vector<std::string>{"humid", "temp"}));
  EXPECT_EQ(j["output_keys"], (std::vector<std::string>{"a_main", "hidden", "z_aux"}));

  const std::string dir = fkb::test::temp_dir();
  const std::string humid = fixture_path("cases/dict_io_and_call_kwargs/x_dict1.npy");
  EXPECT_NE(fkb::test::run_command(fkb::test::cli() + " predict " + path + " -i " + humid + " -o " + dir + "/y", &out),
            0);
  EXPECT_NE(out.find("2 dict inputs but 1 --input"), std::string::npos) << out;
  EXPECT_NE(out.find("sorted keys): humid, temp"), std::string::npos) << out;
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " predict " + path + " -i " + humid + " -i " +
                                       fixture_path("cases/dict_io_and_call_kwargs/x_dict0.npy") + " -o " + dir +
                                       "/y --device cpu",
                                   &out),
            0)
      << out;
  EXPECT_NE(out.find("output 0 'main' (dict key 'a_main')"), std::string::npos) << out;
  EXPECT_NE(out.find("output 2 'aux' (dict key 'z_aux')"), std::string::npos) << out;
}

}  // namespace
