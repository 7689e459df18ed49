// fkb::save_keras: FKB-written files reload in FKB with the same predictions, keep Keras' numbers, and are
// exported (with FKB's own predictions) for tests/bridge/keras_check.py, which loads them with real Keras.
#include <gtest/gtest.h>

#include <hdf5.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"
#include "fkb/keras_writer.hpp"
#include "fkb/runtime.hpp"
#include "io/array_io.hpp"
#include "test_util.hpp"

using fkb::test::fixture_path;
using fkb::test::manifest;
using nlohmann::json;

namespace {

fkb::Model load_fixture(const json& f) {
  fkb::Model::LoadOptions o;
  if (!f["config"].is_null()) o.config_path = fixture_path(f["config"].get<std::string>());
  return fkb::Model::load(fixture_path(f["file"].get<std::string>()), o);
}

// Run a model on the fixture's inputs; returns one vector per output.
std::vector<std::vector<float>> predict(const fkb::Model& m, const json& f) {
  const std::string data = fixture_path(f["data"].get<std::string>());
  std::vector<fkb::test::Data> xs;
  for (int i = 0; i < m.num_inputs(); ++i) xs.push_back(fkb::test::read_dataset(data, "input_" + std::to_string(i)));
  const int64_t ncol = xs[0].rows();
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.threads = 1;
  o.verbose = false;
  fkb::Runtime rt(m, o);
  std::vector<const float*> in;
  for (auto& x : xs) in.push_back(x.values.data());
  std::vector<std::vector<float>> ys(m.num_outputs());
  std::vector<float*> out;
  for (int i = 0; i < m.num_outputs(); ++i) {
    ys[i].resize(static_cast<size_t>(ncol * m.output_size(i)));
    out.push_back(ys[i].data());
  }
  rt.predict(in, ncol, out);
  return ys;
}

std::vector<std::string> loadable_fixtures() {
  std::vector<std::string> out;
  for (const auto& f : manifest()["fixtures"])
    if (f["expect_error"].is_null()) out.push_back(f["name"]);
  return out;
}

const json& fixture(const std::string& name) {
  for (const auto& f : manifest()["fixtures"])
    if (f["name"] == name) return f;
  throw std::runtime_error("no fixture " + name);
}

class WriterRoundTrip : public ::testing::TestWithParam<std::string> {};

}  // namespace

// .h5 → FKB → .keras → FKB and .keras → FKB → .h5 → FKB: same graph, same numbers, still Keras' numbers.
TEST_P(WriterRoundTrip, ReloadsWithSamePredictions) {
  const json& f = fixture(GetParam());
  const fkb::Model original = load_fixture(f);
  const auto expected = predict(original, f);
  const std::string dir = fkb::test::temp_dir();
  for (const char* ext : {".keras", ".h5"}) {
    SCOPED_TRACE(ext);
    const std::string path = dir + "/model" + ext;
    fkb::save_keras(original, path);
    const fkb::Model again = fkb::Model::load(path);
    EXPECT_EQ(again.param_count(), original.param_count());
    EXPECT_EQ(again.info.format, std::string(ext) == ".keras" ? "keras" : "h5");
    ASSERT_EQ(again.num_outputs(), original.num_outputs());
    const auto got = predict(again, f);
    const std::string data = fixture_path(f["data"].get<std::string>());
    for (size_t i = 0; i < got.size(); ++i) {
      // Same weights, same ops: FKB reproduces itself to rounding (activations written as separate layers may
      // round differently by one ulp), and Keras' own output within the contract.
      EXPECT_LE(fkb::test::relative_max_error(got[i].data(), expected[i].data(), static_cast<int64_t>(got[i].size())),
                1e-6);
      const auto ref = fkb::test::read_dataset(data, "output_" + std::to_string(i));
      EXPECT_LE(fkb::test::relative_max_error(got[i].data(), ref.values.data(), ref.values.size()), 1e-5);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, WriterRoundTrip, ::testing::ValuesIn(loadable_fixtures()),
                         [](const auto& info) { return info.param; });

TEST(Writer, UnknownExtensionIsRejectedAndWritesNothing) {
  const fkb::Model m = load_fixture(fixture("tk_odd_sizes_h5"));
  const std::string dir = fkb::test::temp_dir();
  try {
    fkb::save_keras(m, dir + "/model.onnx");
    FAIL() << "expected an error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find(".keras"), std::string::npos);
  }
  struct stat st;
  EXPECT_NE(stat((dir + "/model.onnx").c_str(), &st), 0);
}

TEST(Writer, UnwritableDirectoryGivesFileErrorAndNoPartialFile) {
  const fkb::Model m = load_fixture(fixture("tk_odd_sizes_h5"));
  EXPECT_THROW(fkb::save_keras(m, "/nonexistent-dir/model.keras"), fkb::Error);
  EXPECT_THROW(fkb::save_keras(m, "/nonexistent-dir/model.h5"), fkb::Error);
}

TEST(Writer, KerasTwoHardSigmoidKeepsItsFormula) {
  // tf-keras' hard_sigmoid is clip(0.2x+0.5); Keras 3's is relu6(x+3)/6. The written file must keep Keras 2's.
  const json& f = fixture("tk_dense_acts_h5");
  const fkb::Model m = load_fixture(f);
  const std::string path = fkb::test::temp_dir() + "/hs.keras";
  fkb::save_keras(m, path);
  const fkb::Model again = fkb::Model::load(path);
  bool rescaling = false;
  for (const auto& n : again.nodes) rescaling = rescaling || n.op == fkb::OpKind::Rescaling;
  EXPECT_TRUE(rescaling) << "hard_sigmoid (Keras 2) should be written as Rescaling + ReLU";
}

// ---- what the written files say (read back with HDF5, no Keras needed) ------------------------------------------

namespace {

bool has_attr(const std::string& file, const std::string& obj, const std::string& attr) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const bool yes = f >= 0 && H5Aexists_by_name(f, obj.c_str(), attr.c_str(), H5P_DEFAULT) > 0;
  if (f >= 0) H5Fclose(f);
  return yes;
}

// A scalar variable-length string attribute (what the writer writes for model_config).
std::string string_attr(const std::string& file, const std::string& obj, const std::string& attr) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t a = H5Aopen_by_name(f, obj.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT);
  hid_t t = H5Aget_type(a);
  char* p = nullptr;
  H5Aread(a, t, &p);
  std::string s = p ? p : "";
  H5free_memory(p);
  H5Tclose(t);
  H5Aclose(a);
  H5Fclose(f);
  return s;
}

json model_config(const std::string& h5) { return json::parse(string_attr(h5, "/", "model_config")); }

const json& layer_entry(const json& cfg, const std::string& name) {
  for (const auto& l : cfg["config"]["layers"])
    if (l["name"] == name) return l;
  throw std::runtime_error("no layer " + name + " in the written config");
}

struct DatasetType {
  int rank = -1;
  H5T_class_t cls = H5T_NO_CLASS;
  size_t size = 0;
};
DatasetType dataset_type(const std::string& file, const std::string& path) {
  DatasetType r;
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, path.c_str(), H5P_DEFAULT);
  if (d >= 0) {
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    r.rank = H5Sget_simple_extent_ndims(sp);
    r.cls = H5Tget_class(t);
    r.size = H5Tget_size(t);
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
  }
  H5Fclose(f);
  return r;
}

fkb::Array filled(fkb::Shape shape, float seed) {
  fkb::Array a;
  a.shape = shape;
  a.data.resize(static_cast<size_t>(fkb::shape_size(shape)));
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = std::sin(seed + 0.7f * static_cast<float>(i));
  return a;
}

fkb::Node input(const std::string& name, fkb::Shape shape) {
  fkb::Node n;
  n.name = n.keras_class = name;
  n.keras_class = "InputLayer";
  n.op = fkb::OpKind::Input;
  n.shape = shape;
  return n;
}

fkb::Node dense(const std::string& name, int in, int64_t nin, int64_t units, float seed) {
  fkb::Node n;
  n.name = name;
  n.keras_class = "Dense";
  n.op = fkb::OpKind::Dense;
  n.inputs = {in};
  n.units = units;
  n.activation.kind = fkb::ActKind::Tanh;
  n.activation.keras_name = "tanh";
  n.weights["kernel"] = filled({nin, units}, seed);
  n.weights["bias"] = filled({units}, seed + 1);
  return n;
}

fkb::Model finish(fkb::Model m, std::vector<int> ins, std::vector<int> outs) {
  m.inputs = std::move(ins);
  m.outputs = std::move(outs);
  m.info.keras_major = 3;
  m.info.name = "hand_built";
  m.infer_shapes();
  return m;
}

// Columns of deterministic inputs for every input of `m`, and its predictions.
std::vector<std::vector<float>> run(const fkb::Model& m, int64_t ncol) {
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.threads = 1;
  o.verbose = false;
  fkb::Runtime rt(m, o);
  std::vector<std::vector<float>> xs(m.num_inputs()), ys(m.num_outputs());
  std::vector<const float*> in;
  std::vector<float*> out;
  for (int i = 0; i < m.num_inputs(); ++i) {
    xs[i] = filled({ncol, m.input_size(i)}, 0.3f * static_cast<float>(i + 1)).data;
    in.push_back(xs[i].data());
  }
  for (int i = 0; i < m.num_outputs(); ++i) {
    ys[i].resize(static_cast<size_t>(ncol * m.output_size(i)));
    out.push_back(ys[i].data());
  }
  rt.predict(in, ncol, out);
  return ys;
}

void expect_same_predictions(const fkb::Model& a, const fkb::Model& b) {
  const auto ya = run(a, 5), yb = run(b, 5);
  ASSERT_EQ(ya.size(), yb.size());
  for (size_t i = 0; i < ya.size(); ++i)
    EXPECT_LE(fkb::test::relative_max_error(yb[i].data(), ya[i].data(), static_cast<int64_t>(ya[i].size())), 1e-6);
}

fkb::SaveOptions flavour(fkb::Flavour f) {
  fkb::SaveOptions o;
  o.flavour = f;
  return o;
}

}  // namespace

// Kind 3: Normalization(axis=None) keeps one mean and variance; Keras' build declares them with shape () and the
// config's axis must say so ([]), or Keras refuses the file ("axis and weight shapes disagree").
TEST(WriterKinds, NormalizationAxisNoneWritesScalarMeanVarianceAndInvert) {
  fkb::Model m;
  m.nodes.push_back(input("x", {4}));
  fkb::Node n;
  n.name = "norm";
  n.keras_class = "Normalization";
  n.op = fkb::OpKind::Normalization;
  n.inputs = {0};
  n.epsilon = 1e-7f;
  n.config_json = R"({"axis": [], "invert": false})";
  n.weights["mean"] = fkb::Array{{1}, {3.0f}};
  n.weights["variance"] = fkb::Array{{1}, {4.0f}};
  n.weights["count"] = fkb::Array{{}, {100.0f}};
  m.nodes.push_back(n);
  m.nodes.push_back(dense("h", 1, 4, 3, 0.5f));
  fkb::Node inv = n;  // an inverted, given (config) scalar de-normalizer on the output
  inv.name = "denorm";
  inv.inputs = {2};
  inv.invert = true;
  inv.weights.clear();
  inv.constants["mean"] = fkb::Array{{}, {250.0f}};
  inv.constants["variance"] = fkb::Array{{}, {400.0f}};
  m.nodes.push_back(inv);
  m = finish(m, {0}, {3});
  const std::string dir = fkb::test::temp_dir();
  for (auto f : {fkb::Flavour::Keras3, fkb::Flavour::TfKeras}) {
    const std::string path = dir + (f == fkb::Flavour::Keras3 ? "/k3.h5" : "/tk.h5");
    fkb::save_keras(m, path, flavour(f));
    const json cfg = model_config(path);
    EXPECT_EQ(layer_entry(cfg, "norm")["config"]["axis"], json::array());
    EXPECT_EQ(layer_entry(cfg, "denorm")["config"]["axis"], json::array());
    EXPECT_EQ(layer_entry(cfg, "denorm")["config"]["invert"], true);
    EXPECT_EQ(layer_entry(cfg, "denorm")["config"]["mean"], 250.0);
    const std::string suffix = f == fkb::Flavour::TfKeras ? ":0" : "";
    EXPECT_EQ(dataset_type(path, "/model_weights/norm/norm/mean" + suffix).rank, 0) << path;
    EXPECT_EQ(dataset_type(path, "/model_weights/norm/norm/variance" + suffix).rank, 0) << path;
    EXPECT_EQ(dataset_type(path, "/model_weights/norm/norm/count" + suffix).cls, H5T_INTEGER) << path;
  }
}

// Kind 4: a layer called twice is one layer with two inbound nodes and one set of weights.
TEST(WriterKinds, SharedLayerIsOneLayerWithSeveralInboundNodes) {
  fkb::Model m;
  m.nodes.push_back(input("left", {5}));
  m.nodes.push_back(input("right", {5}));
  m.nodes.push_back(dense("tower", 0, 5, 4, 0.1f));
  fkb::Node again = dense("tower", 1, 5, 4, 0.1f);
  again.shared_from = 2;
  m.nodes.push_back(again);
  fkb::Node sub;
  sub.name = "diff";
  sub.keras_class = "Subtract";
  sub.op = fkb::OpKind::Subtract;
  sub.inputs = {2, 3};
  m.nodes.push_back(sub);
  m = finish(m, {0, 1}, {4});
  const std::string dir = fkb::test::temp_dir();
  for (auto f : {fkb::Flavour::Keras3, fkb::Flavour::TfKeras}) {
    const std::string path = dir + (f == fkb::Flavour::Keras3 ? "/k3.h5" : "/tk.h5");
    fkb::save_keras(m, path, flavour(f));
    const json cfg = model_config(path);
    int towers = 0;
    for (const auto& l : cfg["config"]["layers"]) towers += l["class_name"] == "Dense";
    EXPECT_EQ(towers, 1) << path;
    const json& t = layer_entry(cfg, "tower");
    ASSERT_EQ(t["inbound_nodes"].size(), 2u) << path;
    // diff takes tower's first and second call: keras_history [tower, 0, 0] and [tower, 1, 0].
    const json& d = layer_entry(cfg, "diff")["inbound_nodes"][0];
    if (f == fkb::Flavour::TfKeras) {
      EXPECT_EQ(d[1][1], 1);
    } else {
      EXPECT_EQ(d["args"][0][1]["config"]["keras_history"][1], 1);
    }
    EXPECT_FALSE(has_attr(path, "/model_weights/tower_1", "weight_names"));
    const fkb::Model again_loaded = fkb::Model::load(path);
    expect_same_predictions(m, again_loaded);
  }
}

// Kind 8: layer names over HDF5's 64 KiB header limit are split into layer_names0, layer_names1, ... as Keras does.
TEST(WriterKinds, LongLayerNamesAreChunkedAsKerasDoes) {
  fkb::Model m;
  m.nodes.push_back(input("x", {3}));
  for (int i = 0; i < 12; ++i)
    m.nodes.push_back(dense("layer" + std::to_string(10 + i) + "_" + std::string(6000, 'n'), i, 3, 3, 0.2f * i));
  m = finish(m, {0}, {12});
  const std::string dir = fkb::test::temp_dir();
  for (auto f : {fkb::Flavour::Keras3, fkb::Flavour::TfKeras}) {
    const std::string path = dir + (f == fkb::Flavour::Keras3 ? "/k3.h5" : "/tk.h5");
    fkb::save_keras(m, path, flavour(f));
    EXPECT_FALSE(has_attr(path, "/model_weights", "layer_names"));
    EXPECT_TRUE(has_attr(path, "/model_weights", "layer_names0"));
    EXPECT_TRUE(has_attr(path, "/model_weights", "layer_names1"));
    EXPECT_FALSE(has_attr(path, "/model_weights", "layer_names2"));
    expect_same_predictions(m, fkb::Model::load(path));
  }
}

// Kind 3: dtype policies stay; a float16 layer's variables are stored as float16.
TEST(WriterKinds, DtypePoliciesAndVariableDtypesAreKept) {
  fkb::Model m;
  m.nodes.push_back(input("x", {4}));
  m.nodes.push_back(dense("half", 0, 4, 3, 0.4f));
  m.nodes.back().config_json = R"({"dtype": "float16"})";
  m.nodes.push_back(dense("mixed", 1, 3, 2, 0.6f));
  m.nodes.back().config_json = R"({"dtype": {"class_name": "Policy", "config": {"name": "mixed_float16"}}})";
  m = finish(m, {0}, {2});
  const std::string dir = fkb::test::temp_dir();
  fkb::save_keras(m, dir + "/k3.h5", flavour(fkb::Flavour::Keras3));
  json cfg = model_config(dir + "/k3.h5");
  EXPECT_EQ(layer_entry(cfg, "half")["config"]["dtype"]["config"]["name"], "float16");
  EXPECT_EQ(layer_entry(cfg, "mixed")["config"]["dtype"]["class_name"], "DTypePolicy");
  EXPECT_EQ(layer_entry(cfg, "mixed")["config"]["dtype"]["config"]["name"], "mixed_float16");
  const DatasetType k = dataset_type(dir + "/k3.h5", "/model_weights/half/half/kernel");
  EXPECT_EQ(k.cls, H5T_FLOAT);
  EXPECT_EQ(k.size, 2u);
  EXPECT_EQ(dataset_type(dir + "/k3.h5", "/model_weights/mixed/mixed/kernel").size, 4u);  // mixed: float32 variables
  fkb::save_keras(m, dir + "/tk.h5", flavour(fkb::Flavour::TfKeras));
  cfg = model_config(dir + "/tk.h5");
  EXPECT_EQ(layer_entry(cfg, "mixed")["config"]["dtype"], "mixed_float16");  // a policy name both Kerases read
  EXPECT_EQ(string_attr(dir + "/tk.h5", "/", "keras_version").substr(0, 2), "2.");
}

// Kind 1: dict inputs/outputs are written back as dicts with the same keys.
TEST(WriterKinds, DictInputAndOutputKeysAreWritten) {
  fkb::Model m;
  m.nodes.push_back(input("v_in", {2}));
  m.nodes.push_back(dense("t_out", 0, 2, 3, 0.3f));
  m = finish(m, {0}, {1});
  m.info.input_keys = {"meridional"};
  m.info.output_keys = {"tendency"};
  const std::string path = fkb::test::temp_dir() + "/dict.h5";
  fkb::save_keras(m, path, flavour(fkb::Flavour::Keras3));
  const json cfg = model_config(path);
  EXPECT_EQ(cfg["config"]["input_layers"], json({{"meridional", {"v_in", 0, 0}}}));
  EXPECT_EQ(cfg["config"]["output_layers"], json({{"tendency", {"t_out", 0, 0}}}));
}

// The flavour flag: names, the source's default, and tf-keras refused for a .keras file (nothing written).
TEST(WriterKinds, FlavourIsChosenAndCheckedBeforeWriting) {
  EXPECT_EQ(fkb::parse_flavour("keras3"), fkb::Flavour::Keras3);
  EXPECT_EQ(fkb::parse_flavour("tf-keras"), fkb::Flavour::TfKeras);
  try {
    fkb::parse_flavour("keras4");
    FAIL() << "expected an error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("tf-keras"), std::string::npos) << e.what();
  }
  const fkb::Model tk = load_fixture(fixture("tk_odd_sizes_h5"));
  EXPECT_EQ(fkb::resolve_flavour(tk, "m.h5", fkb::Flavour::Source), fkb::Flavour::TfKeras);
  EXPECT_EQ(fkb::resolve_flavour(tk, "m.keras", fkb::Flavour::Source), fkb::Flavour::Keras3);
  const std::string path = fkb::test::temp_dir() + "/tk.keras";
  EXPECT_THROW(fkb::save_keras(tk, path, flavour(fkb::Flavour::TfKeras)), fkb::Error);
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0);
  // Written for tf-keras by default: Keras 2 spelling of the config.
  const std::string h5 = fkb::test::temp_dir() + "/tk.h5";
  fkb::save_keras(tk, h5);
  const json cfg = model_config(h5);
  EXPECT_TRUE(cfg["config"]["layers"][0]["config"].contains("batch_input_shape"));
  EXPECT_TRUE(cfg["config"]["layers"][1]["inbound_nodes"][0].is_array());
}

// Kind 6: an int8 Dense is written quantized for Keras 3 and refused, naming the layer, for tf-keras.
TEST(WriterKinds, Int8DenseWrittenQuantizedForKeras3OnlyWithItsName) {
  fkb::Model m;
  m.nodes.push_back(input("x", {4}));
  fkb::Node q = dense("q1", 0, 4, 3, 0.2f);
  q.quantized_int8 = true;
  for (auto& v : q.weights["kernel"].data) v = std::round(v * 100.0f);
  q.weights["kernel_scale"] = fkb::Array{{3}, {100.0f, 90.0f, 80.0f}};
  m.nodes.push_back(q);
  m.inputs = {0};
  m.outputs = {1};
  m.nodes[1].shape = {3};
  const std::string dir = fkb::test::temp_dir();
  try {
    fkb::save_keras(m, dir + "/q.h5", flavour(fkb::Flavour::TfKeras));
    FAIL() << "expected an error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::Unsupported);
    EXPECT_NE(std::string(e.what()).find("'q1'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("keras3"), std::string::npos) << e.what();
  }
  fkb::save_keras(m, dir + "/q.h5", flavour(fkb::Flavour::Keras3));
  const json cfg = model_config(dir + "/q.h5");
  EXPECT_EQ(layer_entry(cfg, "q1")["config"]["dtype"]["class_name"], "QuantizedDTypePolicy");
  EXPECT_EQ(dataset_type(dir + "/q.h5", "/model_weights/q1/q1/kernel").cls, H5T_INTEGER);
  EXPECT_EQ(dataset_type(dir + "/q.h5", "/model_weights/q1/q1/kernel").size, 1u);
}

// Kind 11b: a registered custom layer is written back with its config and the name Keras registered it under.
TEST(WriterKinds, CustomLayerKeepsConfigAndRegisteredName) {
  fkb::CustomLayer l;
  l.output_shape = [](const std::vector<fkb::Shape>& in, const std::string&) { return in.at(0); };
  l.cpu = [](const fkb::CustomLayerInfo&, const float* const*, int64_t, float*) {};
  fkb::register_custom_layer("fkbtest>ScaledTanh", l);
  const fkb::Model m = fkb::Model::load(fixture_path("k3_custom.keras"));
  const std::string path = fkb::test::temp_dir() + "/custom.h5";
  fkb::save_keras(m, path);
  fkb::unregister_custom_layer("fkbtest>ScaledTanh");
  const json cfg = model_config(path);
  const json& e = layer_entry(cfg, "scaled_tanh");
  EXPECT_EQ(e["class_name"], "ScaledTanh");
  EXPECT_EQ(e["registered_name"], "fkbtest>ScaledTanh");
  EXPECT_EQ(e["config"]["scale"], 1.7);
}

// Writes every fixture as .keras and .h5 plus FKB's predictions into $FKB_BRIDGE_EXPORT for the Keras check.
// ScaledTanh of the k3_custom fixtures (tests/fixtures/make_fixtures.py, registered in Keras as fkbtest>ScaledTanh):
// y = scale * tanh(x), scale read from the layer's config.
namespace {
fkb::CustomLayer scaled_tanh() {
  fkb::CustomLayer l;
  l.output_shape = [](const std::vector<fkb::Shape>& in, const std::string&) { return in.at(0); };
  l.prepare = [](const fkb::CustomLayerInfo& info) {
    return std::make_shared<float>(json::parse(info.config_json).at("scale").get<float>());
  };
  l.cpu = [](const fkb::CustomLayerInfo& info, const float* const* x, int64_t ncol, float* y) {
    const float s = *static_cast<const float*>(info.state);
    for (int64_t i = 0; i < ncol * info.input_sizes[0]; ++i) y[i] = s * std::tanh(x[0][i]);
  };
  return l;
}
}  // namespace

TEST(WriterExport, ForKerasCheck) {
  const char* dir = std::getenv("FKB_BRIDGE_EXPORT");
  if (!dir || !*dir) GTEST_SKIP() << "FKB_BRIDGE_EXPORT not set (set by the bridge CTest fixture)";
  mkdir(dir, 0755);
  std::vector<std::string> names = loadable_fixtures();
  // Custom-layer fixtures load once their class is registered (kind 11b: written back with the user's class).
  fkb::register_custom_layer("fkbtest>ScaledTanh", scaled_tanh());
  for (const auto& f : manifest()["fixtures"])
    if (f.value("custom_class", json()).is_string() && f["custom_class"] == "ScaledTanh") names.push_back(f["name"]);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    const json& f = fixture(name);
    const fkb::Model m = load_fixture(f);
    fkb::save_keras(m, std::string(dir) + "/" + name + ".keras");
    fkb::save_keras(m, std::string(dir) + "/" + name + ".h5");
    const auto ys = predict(m, f);
    const auto ref = fkb::test::read_dataset(fixture_path(f["data"].get<std::string>()), "input_0");
    for (size_t i = 0; i < ys.size(); ++i) {
      std::vector<int64_t> shape = {ref.rows()};
      for (auto d : m.output_shape(static_cast<int>(i))) shape.push_back(d);
      fkb::io::write_npy(std::string(dir) + "/" + name + ".out" + std::to_string(i) + ".npy", ys[i].data(), shape);
    }
  }
  fkb::unregister_custom_layer("fkbtest>ScaledTanh");
}

// Converts every model of tests/fixtures/cases/*/cases.json that must run (Keras' bug-report cases and
// writer_variants) to .keras and .h5 (the source's flavour) into $FKB_BRIDGE_EXPORT/cases/, and lists them with their
// inputs, Keras' outputs and FKB's refusal, if any, in cases_plan.json for keras_check.py --cases. A model FKB refuses
// is listed with its error (the Keras check fails it) rather than failing here, so every other model is still checked.
TEST(WriterExport, CasesForKerasCheck) {
  const char* env = std::getenv("FKB_BRIDGE_EXPORT");
  if (!env || !*env) GTEST_SKIP() << "FKB_BRIDGE_EXPORT not set (set by the bridge CTest fixture)";
  const std::string dir = std::string(env) + "/cases";
  mkdir(env, 0755);
  mkdir(dir.c_str(), 0755);
  const std::string root = fixture_path("cases");
  std::string listing;
  ASSERT_EQ(fkb::test::run_command("ls -1 '" + root + "'", &listing), 0) << listing;
  json plan = json::array();
  std::istringstream folders(listing);
  for (std::string folder; std::getline(folders, folder);) {
    std::ifstream in(root + "/" + folder + "/cases.json");
    if (!in) continue;
    const json cases = json::parse(in);
    for (const auto& c : cases) {
      if (c.value("expect", std::string("run")) != "run") continue;
      const std::string model = c["model"];
      const std::string stem = folder + "__" + model.substr(0, model.rfind('.')) + "_" +
                               model.substr(model.rfind('.') + 1);
      json e = {{"name", stem}, {"source", root + "/" + folder + "/" + model}, {"error", nullptr}};
      for (const char* k : {"inputs", "ref"}) {
        e[k] = json::array();
        for (const auto& p : c[k]) e[k].push_back(root + "/" + folder + "/" + p.get<std::string>());
      }
      try {
        fkb::Model::LoadOptions o;
        if (c.contains("config")) o.config_path = root + "/" + folder + "/" + c["config"].get<std::string>();
        const fkb::Model m = fkb::Model::load(root + "/" + folder + "/" + model, o);
        e["keras_major"] = m.info.keras_major;
        e["input_keys"] = m.info.input_keys;
        e["output_keys"] = m.info.output_keys;
        e["files"] = json::array();
        for (const char* ext : {".keras", ".h5"}) {
          fkb::save_keras(m, dir + "/" + stem + ext);
          e["files"].push_back(dir + "/" + stem + ext);
        }
      } catch (const std::exception& ex) {
        e["error"] = ex.what();
      }
      plan.push_back(e);
    }
  }
  EXPECT_FALSE(plan.empty()) << "no cases under " << root;
  std::ofstream(std::string(env) + "/cases_plan.json") << plan.dump(1);
}
