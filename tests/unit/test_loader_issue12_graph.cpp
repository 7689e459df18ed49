// Issue 12, the graph reader's kinds, against real Keras: dict inputs/outputs in Keras' flat order (sorted keys)
// and call keyword arguments (kind 1), shared layers counted once (kind 4), merges that broadcast (kind 9) and
// Normalization(invert=True) / axis=None / per-level axes (kind 2, loader side).
//
// Models and expected values are Keras' own: tests/fixtures/cases/<case>/ (copies of ../shared/cases, made by
// their make.py with Keras 3.15 and tf-keras 2.21) and tests/fixtures/cases/graph_variants/ (made by its make.py;
// its cases.json also holds Keras' count_params() and the dict keys of the flat inputs/outputs). A case folder
// not in the repository is read from ../shared/cases; when neither exists the test skips and says so.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "io/array_io.hpp"
#include "loader/keras_config.hpp"
#include "case_fixtures.hpp"
#include "test_util.hpp"

using nlohmann::json;
using fkb::test::case_dir;
using fkb::test::read_json;

namespace {

fkb::io::HostArray npy(const std::string& dir, const std::string& file) {
  fkb::io::HostArray a = fkb::io::read_npy(dir + "/" + file);
  if (a.dtype != fkb::DType::F32) {
    a.f32.assign(a.f64.begin(), a.f64.end());
    a.dtype = fkb::DType::F32;
  }
  return a;
}

// Runs the model on Keras' inputs (in the model's input order) and compares each output with Keras' reference:
// max|y - ref| / max|ref| <= 1e-5 (DESIGN.md's numerical contract).
void expect_predicts(const fkb::Model& m, const std::string& dir, const std::vector<std::string>& xs,
                     const std::vector<std::string>& refs, const std::string& what) {
  ASSERT_EQ(m.num_inputs(), static_cast<int64_t>(xs.size())) << what;
  ASSERT_EQ(m.num_outputs(), static_cast<int64_t>(refs.size())) << what;
  std::vector<fkb::io::HostArray> x;
  std::vector<const float*> xp;
  for (size_t i = 0; i < xs.size(); ++i) {
    x.push_back(npy(dir, xs[i]));
    ASSERT_EQ(x.back().row_size(), m.input_size(static_cast<int>(i))) << what << ": input " << i << " " << xs[i];
  }
  for (const auto& a : x) xp.push_back(a.f32.data());
  const int64_t ncol = x[0].rows();
  std::vector<fkb::io::HostArray> ref;
  std::vector<std::vector<float>> y;
  std::vector<float*> yp;
  for (size_t o = 0; o < refs.size(); ++o) {
    ref.push_back(npy(dir, refs[o]));
    ASSERT_EQ(ref.back().row_size(), m.output_size(static_cast<int>(o))) << what << ": output " << o << " " << refs[o];
    y.emplace_back(ref.back().f32.size());
  }
  for (auto& v : y) yp.push_back(v.data());
  fkb::Runtime rt(m);
  rt.predict(xp, ncol, yp);
  for (size_t o = 0; o < refs.size(); ++o)
    EXPECT_LE(fkb::test::relative_max_error(y[o].data(), ref[o].f32.data(), static_cast<int64_t>(y[o].size())), 1e-5)
        << what << ": output " << o << " vs " << refs[o];
}

std::vector<std::string> strings(const json& j) { return j.get<std::vector<std::string>>(); }

// Every "run" entry of a case folder: loads, predicts as Keras did; `params` (Keras' count_params() per model file)
// checked when given here or in cases.json.
void run_entries(const std::string& dir, const std::map<std::string, int64_t>& params, int* ran,
                 const std::set<std::string>& skip = {}) {
  for (const auto& e : read_json(dir + "/cases.json")) {
    if (e.value("expect", std::string("run")) != "run") continue;
    const std::string file = e["model"];
    if (skip.count(file)) continue;
    SCOPED_TRACE(file);
    fkb::Model m;
    try {
      m = fkb::Model::load(dir + "/" + file);
    } catch (const fkb::Error& err) {
      ADD_FAILURE() << file << ": " << err.what();
      continue;
    }
    expect_predicts(m, dir, strings(e["inputs"]), strings(e["ref"]), file);
    auto p = params.find(file);
    if (p != params.end()) EXPECT_EQ(m.param_count(), p->second) << file;
    if (e.contains("params")) EXPECT_EQ(m.param_count(), e["params"].get<int64_t>()) << file;
    if (e.contains("input_keys")) EXPECT_EQ(m.info.input_keys, strings(e["input_keys"])) << file;
    if (e.contains("output_keys")) EXPECT_EQ(m.info.output_keys, strings(e["output_keys"])) << file;
    ++*ran;
  }
}

int count_shared(const fkb::Model& m) {
  int n = 0;
  for (const auto& node : m.nodes) n += node.shared_from >= 0;
  return n;
}

const fkb::Node& node_named(const fkb::Model& m, const std::string& name) {
  for (const auto& n : m.nodes)
    if (n.name == name) return n;
  throw std::runtime_error("no node named " + name);
}

}  // namespace

// ---- kind 1: dict inputs/outputs, call kwargs ----------------------------------------------------------------------

TEST(LoaderIssue12Graph, DictModelsTakeInputsAndGiveOutputsInKerasFlatOrder) {
  REQUIRE_CASE(dir, "dict_io_and_call_kwargs");
  // x_dict<i> holds input dict_order.json["input_order"][i], keras_y_dict<i> output ["output_order"][i] (the
  // config's order); Keras' flat lists sort the keys (Keras 3.15: model.inputs humid, temp; outputs a_main, hidden,
  // z_aux), and so must FKB.
  const json order = read_json(dir + "/dict_order.json");
  std::map<std::string, std::string> x_of, y_of;
  for (size_t i = 0; i < order["input_order"].size(); ++i)
    x_of[order["input_order"][i]] = "x_dict" + std::to_string(i) + ".npy";
  for (size_t i = 0; i < order["output_order"].size(); ++i)
    y_of[order["output_order"][i]] = "keras_y_dict" + std::to_string(i) + ".npy";
  for (const char* file : {"k3_dict.keras", "k3_dict.h5"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    EXPECT_EQ(m.info.input_keys, (std::vector<std::string>{"humid", "temp"}));
    EXPECT_EQ(m.info.output_keys, (std::vector<std::string>{"a_main", "hidden", "z_aux"}));
    EXPECT_EQ(m.param_count(), 65);  // Keras 3.15 count_params()
    std::vector<std::string> xs, ys;
    for (const auto& k : m.info.input_keys) xs.push_back(x_of.at(k));
    for (const auto& k : m.info.output_keys) ys.push_back(y_of.at(k));
    expect_predicts(m, dir, xs, ys, file);
  }
}

TEST(LoaderIssue12Graph, SummaryNamesDictKeysAndSharedCalls) {
  REQUIRE_CASE(dir, "dict_io_and_call_kwargs");
  const std::string s = fkb::Model::load(dir + "/k3_dict.keras").summary();
  EXPECT_NE(s.find("inputs: 'humid' (3,), 'temp' (4,)"), std::string::npos) << s;
  EXPECT_NE(s.find("outputs: 'a_main' (2,), 'hidden' (6,), 'z_aux' (1,)"), std::string::npos) << s;
  REQUIRE_CASE(shared, "shared_layer_depths");
  const std::string t = fkb::Model::load(shared + "/k3.keras").summary();
  size_t n = 0;
  for (size_t p = t.find(" shared\n"); p != std::string::npos; p = t.find(" shared\n", p + 1)) ++n;
  EXPECT_EQ(n, 2u) << t;  // the 2nd and 3rd calls of 'shared'
  EXPECT_NE(t.find("total params: 81"), std::string::npos) << t;
}

TEST(LoaderIssue12Graph, DictInputOnlyAndDictOutputOnlyModels) {
  REQUIRE_CASE(dir, "dict_io_and_call_kwargs");
  const fkb::Model in = fkb::Model::load(dir + "/k3_dictin.keras");
  EXPECT_EQ(in.info.input_keys, (std::vector<std::string>{"humid", "temp"}));
  EXPECT_TRUE(in.info.output_keys.empty());
  EXPECT_EQ(in.param_count(), 65);
  expect_predicts(in, dir, {"x_dictin0.npy", "x_dictin1.npy"}, {"keras_y_dictin.npy"}, "k3_dictin.keras");
  const fkb::Model out = fkb::Model::load(dir + "/k3_dictout.keras");
  EXPECT_TRUE(out.info.input_keys.empty());
  EXPECT_EQ(out.info.output_keys, (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(out.param_count(), 23);
  expect_predicts(out, dir, {"x_dictout.npy"}, {"keras_y_dictout0.npy", "keras_y_dictout1.npy"}, "k3_dictout.keras");
}

TEST(LoaderIssue12Graph, TrainingFalseCallKwargsLoadInEveryFlavour) {
  REQUIRE_CASE(dir, "dict_io_and_call_kwargs");
  // base(x, training=False) and Dropout(training=False): Keras 3 "kwargs", tf-keras 4th element of the ref.
  for (const char* file : {"tk_training_kw.h5", "k3_training_kw.keras", "k3_training_kw.h5"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    EXPECT_EQ(m.param_count(), 87);
    expect_predicts(m, dir, {"x_tl.npy"}, {"keras_y_tl.npy"}, file);
  }
}

// ---- kind 4: shared layers ----------------------------------------------------------------------------------------

TEST(LoaderIssue12Graph, SharedLayerCalledAtSeveralDepthsCountsOnce) {
  REQUIRE_CASE(dir, "shared_layer_depths");
  for (const char* file : {"tk.h5", "k3.keras", "k3.h5"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    EXPECT_EQ(m.param_count(), 81);  // Keras' count_params(); one node per call: 3 x 42 + 39 would be 165
    int calls = 0, first = -1;
    for (size_t i = 0; i < m.nodes.size(); ++i) {
      const fkb::Node& n = m.nodes[i];
      if (n.keras_class != "Dense" || n.name.rfind("shared", 0) != 0) continue;
      ++calls;
      if (n.shared_from < 0) {
        EXPECT_EQ(first, -1) << "two first calls";
        first = static_cast<int>(i);
      } else {
        EXPECT_EQ(n.shared_from, first) << n.name;
      }
    }
    EXPECT_EQ(calls, 3);
    expect_predicts(m, dir, {"x0.npy", "x1.npy"}, {"keras_y.npy"}, file);
  }
}

TEST(LoaderIssue12Graph, SiameseTowerAndALayerSharedInsideAndOutsideIt) {
  REQUIRE_CASE(dir, "graph_variants");
  for (const char* file : {"tk_siamese.h5", "k3_siamese.h5"}) {
    SCOPED_TRACE(file);
    fkb::Model m;
    try {
      m = fkb::Model::load(dir + "/" + file);
    } catch (const fkb::Error& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    // The tower's second call (2 nodes) and the outer call of its Dense (1): 3 shared calls; Keras counts 33.
    EXPECT_EQ(count_shared(m), 3);
    EXPECT_EQ(m.param_count(), 33);
    for (const auto& n : m.nodes)
      if (n.shared_from >= 0) {
        EXPECT_LT(n.shared_from, &n - m.nodes.data());
        EXPECT_EQ(m.nodes[n.shared_from].shared_from, -1) << n.name;
        EXPECT_EQ(m.nodes[n.shared_from].keras_class, n.keras_class) << n.name;
      }
  }
}

// Keras 3 writes the variables of a layer shared inside and outside a nested model once, under the nested path
// (layers/functional/layers/dense/vars); the outer call's own path (layers/dense) has none, and Keras 3.15 itself
// cannot reload the file. The weight reader (keras_weights.cpp) gives the outer copy the variables of the same-named,
// same-config layer it read under the nested path, and the graph ties the calls.
TEST(LoaderIssue12Graph, SiameseKerasZipWithALayerSharedOutsideTheTower) {
  REQUIRE_CASE(dir, "graph_variants");
  const fkb::Model m = fkb::Model::load(dir + "/k3_siamese.keras");
  EXPECT_EQ(count_shared(m), 3);
  EXPECT_EQ(m.param_count(), 33);
  expect_predicts(m, dir, {"x_k3_siamese0.npy", "x_k3_siamese1.npy"},
                  {"keras_y_k3_siamese0.npy", "keras_y_k3_siamese1.npy"}, "k3_siamese.keras");
}

// ---- kind 9: merges that broadcast --------------------------------------------------------------------------------

TEST(LoaderIssue12Graph, MultiplyBroadcastsAOneFeatureInput) {
  REQUIRE_CASE(dir, "multiply_broadcast");
  for (const char* file : {"model.keras", "model.h5"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    EXPECT_EQ(m.output_shape(0), (fkb::Shape{2}));
    expect_predicts(m, dir, {"in0.npy", "in1.npy"}, {"ref0.npy"}, file);
  }
}

TEST(ModelIRIssue12, MergeShapesBroadcastAsNumPy) {
  // (levels, channels) with (levels, 1), (1, channels), (channels,) and three inputs: shapes Keras 3 gives.
  auto merge = [](fkb::OpKind op, std::vector<fkb::Shape> shapes) {
    fkb::Model m;
    fkb::Node out;
    out.name = "merge";
    out.keras_class = "Add";
    out.op = op;
    for (size_t i = 0; i < shapes.size(); ++i) {
      fkb::Node in;
      in.name = "in" + std::to_string(i);
      in.op = fkb::OpKind::Input;
      in.shape = shapes[i];
      m.nodes.push_back(in);
      m.inputs.push_back(static_cast<int>(i));
      out.inputs.push_back(static_cast<int>(i));
    }
    m.nodes.push_back(out);
    m.outputs = {static_cast<int>(shapes.size())};
    m.infer_shapes();
    return m.output_shape(0);
  };
  using fkb::OpKind;
  using fkb::Shape;
  EXPECT_EQ(merge(OpKind::Multiply, {{2}, {1}}), (Shape{2}));
  EXPECT_EQ(merge(OpKind::Add, {{1}, {2}}), (Shape{2}));
  EXPECT_EQ(merge(OpKind::Subtract, {{5, 3}, {5, 1}}), (Shape{5, 3}));
  EXPECT_EQ(merge(OpKind::Maximum, {{5, 3}, {1, 3}}), (Shape{5, 3}));
  EXPECT_EQ(merge(OpKind::Average, {{5, 1}, {1, 3}}), (Shape{5, 3}));
  EXPECT_EQ(merge(OpKind::Minimum, {{5, 3}, {3}}), (Shape{5, 3}));
  EXPECT_EQ(merge(OpKind::Add, {{3}, {5, 1}}), (Shape{5, 3}));
  EXPECT_EQ(merge(OpKind::Add, {{5, 3}, {5, 1}, {1, 3}}), (Shape{5, 3}));
  try {
    merge(OpKind::Add, {{5, 3}, {4, 1}});
    ADD_FAILURE() << "(5, 3) and (4, 1) do not broadcast";
  } catch (const fkb::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'merge'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(5, 3)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4, 1)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("broadcast"), std::string::npos) << msg;
  }
}

// ---- kind 2 (loader side): Normalization(invert=True), axis=None, per-level axes ---------------------------------

TEST(LoaderIssue12Graph, NormalizationInvertAdaptedGivenAndScalar) {
  REQUIRE_CASE(dir, "normalization_invert");
  // Keras 3.15 / tf-keras 2.21 count_params(): adapted layers count mean, variance and count.
  const std::map<std::string, int64_t> params = {
      {"tk_adapted.h5", 81}, {"k3_adapted.keras", 81}, {"k3_adapted.h5", 81}, {"tk_given.h5", 76},
      {"k3_given.keras", 76}, {"k3_given.h5", 76},     {"tk_scalar.h5", 22},  {"k3_scalar.keras", 22}};
  int ran = 0;
  run_entries(dir, params, &ran);
  EXPECT_EQ(ran, 8);
  for (const char* file : {"tk_given.h5", "k3_adapted.keras"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    const fkb::Node& denorm = node_named(m, "denorm");
    EXPECT_TRUE(denorm.invert);
    EXPECT_EQ(denorm.find("mean")->shape, (fkb::Shape{2}));
    const fkb::Node& scalar = node_named(m, "denorm_scalar");
    EXPECT_TRUE(scalar.invert);
    EXPECT_EQ(scalar.find("mean")->size(), 1);
    EXPECT_FALSE(node_named(m, "norm_in").invert);
  }
}

TEST(LoaderIssue12Graph, NormalizationPerLevelAndScalarInverseOnRank2) {
  REQUIRE_CASE(dir, "graph_variants");
  for (const char* file : {"k3_norm.keras", "k3_norm.h5", "tk_norm.h5"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    // axis=1 on a (4, 2) input: one mean per level, placed on the level axis.
    EXPECT_EQ(node_named(m, "norm_levels").find("mean")->shape, (fkb::Shape{4, 1}));
    EXPECT_EQ(node_named(m, "norm_levels").find("variance")->shape, (fkb::Shape{4, 1}));
    EXPECT_EQ(node_named(m, "denorm_levels").find("mean")->shape, (fkb::Shape{4, 1}));
    EXPECT_TRUE(node_named(m, "denorm_levels").invert);
    const fkb::Node& all = node_named(m, "denorm_all");
    EXPECT_TRUE(all.invert);
    EXPECT_EQ(all.find("mean")->size(), 1);
    EXPECT_EQ(all.shape, (fkb::Shape{4, 3}));
  }
}

TEST(ModelIRIssue12, NormalizationMeanThatDoesNotBroadcastIsRefused) {
  fkb::Model m;
  fkb::Node in;
  in.name = "x";
  in.op = fkb::OpKind::Input;
  in.shape = {4, 3};
  fkb::Node n;
  n.name = "norm";
  n.keras_class = "Normalization";
  n.op = fkb::OpKind::Normalization;
  n.axis = -1;
  n.inputs = {0};
  n.constants["mean"] = fkb::Array{{4}, {1, 2, 3, 4}};
  n.constants["variance"] = fkb::Array{{4}, {1, 1, 1, 1}};
  m.nodes = {in, n};
  m.inputs = {0};
  m.outputs = {1};
  try {
    m.infer_shapes();
    ADD_FAILURE() << "a mean of 4 values on a last axis of 3";
  } catch (const fkb::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'norm'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4,)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4, 3)"), std::string::npos) << msg;
  }
  // The same values on axis 1 (batch-inclusive, the levels axis): placed as (4, 1).
  m.nodes[1].axis = 1;
  m.infer_shapes();
  EXPECT_EQ(m.nodes[1].find("mean")->shape, (fkb::Shape{4, 1}));
  EXPECT_EQ(m.nodes[1].axis, -2);
  m.infer_shapes();  // idempotent
  EXPECT_EQ(m.nodes[1].find("variance")->shape, (fkb::Shape{4, 1}));
}

// ---- the variants folder as a whole ------------------------------------------------------------------------------

TEST(LoaderIssue12Graph, GraphVariantsPredictAsKerasWithKerasParamCountsAndKeys) {
  REQUIRE_CASE(dir, "graph_variants");
  int ran = 0;
  run_entries(dir, {}, &ran, {});
  EXPECT_EQ(ran, 15);
}

// ---- call arguments the graph reader refuses or ignores (configs written here in Keras' formats) -----------------

namespace {

// A Keras 3 Functional: inputs a (3,) and b (3,), one weightless layer `cls` called with `node` (its inbound node).
fkb::Model keras3_model(const std::string& cls, const json& node) {
  auto input = [](const char* name) {
    return json{{"class_name", "InputLayer"}, {"name", name}, {"module", "keras.layers"},
                {"config", {{"name", name}, {"batch_shape", {nullptr, 3}}}}, {"inbound_nodes", json::array()}};
  };
  json layer = {{"class_name", cls}, {"name", "m"}, {"module", "keras.layers"}, {"config", {{"name", "m"}}},
                {"inbound_nodes", json::array({node})}};
  json doc = {{"class_name", "Functional"},
              {"module", "keras.src.models.functional"},
              {"config",
               {{"name", "f"},
                {"layers", {input("a"), input("b"), layer}},
                {"input_layers", {{"a", 0, 0}, {"b", 0, 0}}},
                {"output_layers", {{"m", 0, 0}}}}}};
  fkb::keras::LayerSpec top = fkb::keras::parse_model_config(doc, "mem.keras");
  fkb::Model m;
  fkb::keras::build_graph(top, 3, m, "mem.keras");
  m.infer_shapes();
  return m;
}

json tensor(const char* layer) {
  return {{"class_name", "__keras_tensor__"},
          {"config", {{"shape", {nullptr, 3}}, {"dtype", "float32"}, {"keras_history", {layer, 0, 0}}}}};
}

std::string error_text(const std::function<void()>& f) {
  try {
    f();
  } catch (const fkb::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(LoaderIssue12Graph, CallKwargsMaskAndTrainingAreIgnoredInputsByKeywordAreRead) {
  const fkb::Model m = keras3_model(
      "Add", {{"args", {json::array({tensor("a"), tensor("b")})}}, {"kwargs", {{"mask", tensor("a")}, {"training", false}}}});
  EXPECT_EQ(m.nodes.back().inputs, (std::vector<int>{0, 1}));
  // Dropout()(inputs=x): Keras 3 records no args and the tensor under kwargs["inputs"].
  const fkb::Model k = keras3_model("Dropout", {{"args", json::array()}, {"kwargs", {{"inputs", tensor("b")}}}});
  EXPECT_EQ(k.nodes.back().inputs, (std::vector<int>{1}));
}

TEST(LoaderIssue12Graph, TensorKeywordArgumentsAndConstantsAreRefusedByName) {
  const std::string kw = error_text([] {
    keras3_model("Add", {{"args", {json::array({tensor("a"), tensor("b")})}}, {"kwargs", {{"bias", tensor("a")}}}});
  });
  EXPECT_NE(kw.find("mem.keras"), std::string::npos) << kw;
  EXPECT_NE(kw.find("'m'"), std::string::npos) << kw;
  EXPECT_NE(kw.find("'bias'"), std::string::npos) << kw;
  // tf-keras writes a constant operand of a layer as ["_CONSTANT_VALUE", -1, value, kwargs].
  const std::string cst = error_text([] { keras3_model("Add", json::array({{"a", 0, 0, {}}, {"_CONSTANT_VALUE", -1, 2, {}}})); });
  EXPECT_NE(cst.find("'m'"), std::string::npos) << cst;
  EXPECT_NE(cst.find("_CONSTANT_VALUE"), std::string::npos) << cst;
}

TEST(LoaderIssue12Graph, EveryRunEntryOfTheGraphCasesPredictsAsKeras) {
  // cases.json lists inputs and references in Keras' flat order; each entry must load and match Keras.
  for (const char* name : {"dict_io_and_call_kwargs", "shared_layer_depths", "multiply_broadcast"}) {
    SCOPED_TRACE(name);
    const std::string dir = case_dir(name);
    if (dir.empty()) continue;
    int ran = 0;
    run_entries(dir, {}, &ran);
    EXPECT_GT(ran, 0);
  }
}
