// Loader tests: every Keras-made fixture and every shared real model loads with the shapes and parameter
// counts Keras reported (tests/fixtures/manifest.json); every bad input gets one clear error.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "test_util.hpp"

using fkb::test::fixture_path;
using fkb::test::manifest;
using nlohmann::json;

namespace {

bool is_model_class(const std::string& c) { return c == "Sequential" || c == "Functional" || c == "Model"; }

fkb::Model load_fixture(const json& f) {
  fkb::Model::LoadOptions o;
  if (!f["config"].is_null()) o.config_path = fixture_path(f["config"].get<std::string>());
  return fkb::Model::load(fixture_path(f["file"].get<std::string>()), o);
}

// Compare the IR with what Keras reported for the model's layers (model.layers order, nested models as one entry).
void expect_matches_keras(const fkb::Model& m, const json& f) {
  EXPECT_EQ(m.param_count(), f["total_params"].get<int64_t>());
  ASSERT_EQ(m.num_inputs(), static_cast<int64_t>(f["inputs"].size()));
  ASSERT_EQ(m.num_outputs(), static_cast<int64_t>(f["outputs"].size()));
  for (size_t i = 0; i < f["inputs"].size(); ++i)
    EXPECT_EQ(m.input_shape(static_cast<int>(i)), f["inputs"][i].get<fkb::Shape>());
  for (size_t i = 0; i < f["outputs"].size(); ++i)
    EXPECT_EQ(m.output_shape(static_cast<int>(i)), f["outputs"][i].get<fkb::Shape>());
  for (const auto& l : f["layers"]) {
    const std::string name = l["name"];
    const std::string cls = l["class_name"];
    if (is_model_class(cls)) {
      int64_t p = 0;
      bool any = false;
      for (const auto& n : m.nodes)
        if (n.name.rfind(name + "/", 0) == 0) {
          p += n.param_count();
          any = true;
        }
      EXPECT_TRUE(any) << "nested model " << name << " has no nodes";
      EXPECT_EQ(p, l["params"].get<int64_t>()) << "nested model " << name;
      continue;
    }
    const fkb::Node* node = nullptr;
    for (const auto& n : m.nodes)
      if (n.name == name) node = &n;
    if (cls == "InputLayer" && !node) continue;  // Sequential inputs may be implicit
    ASSERT_NE(node, nullptr) << "layer " << name << " missing from the IR";
    EXPECT_EQ(node->param_count(), l["params"].get<int64_t>()) << "layer " << name;
    if (l.contains("output_shape") && l["output_shape"].is_array() && !l["output_shape"].empty() &&
        l["output_shape"][0].is_number())
      EXPECT_EQ(node->shape, l["output_shape"].get<fkb::Shape>()) << "layer " << name;
  }
}

class FixtureLoad : public ::testing::TestWithParam<std::string> {};

const json& fixture(const std::string& name) {
  for (const auto& f : manifest()["fixtures"])
    if (f["name"] == name) return f;
  throw std::runtime_error("no fixture " + name);
}

std::vector<std::string> fixture_names(bool errors) {
  std::vector<std::string> out;
  for (const auto& f : manifest()["fixtures"])
    if (f["expect_error"].is_null() != errors) out.push_back(f["name"]);
  return out;
}

}  // namespace

TEST_P(FixtureLoad, ShapesAndParamsMatchKeras) {
  const json& f = fixture(GetParam());
  fkb::Model m = load_fixture(f);
  expect_matches_keras(m, f);
  const bool k3 = f["writer"] == "keras3";
  // Keras 3 .weights.h5 files and to_json() configs record no version; every other file does.
  if (!(k3 && f["format"] == "weights_h5")) EXPECT_FALSE(m.info.keras_version.empty());
  EXPECT_EQ(m.info.keras_major, k3 ? 3 : 2);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureLoad, ::testing::ValuesIn(fixture_names(false)),
                         [](const auto& info) { return info.param; });

class FixtureRejected : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureRejected, UnsupportedLayerNamesLayerAndClass) {
  const json& f = fixture(GetParam());
  try {
    load_fixture(f);
    FAIL() << "expected an error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::Unsupported);
    const std::string msg = e.what();
    const std::string cls = f["expect_error"] == "lambda" ? "Lambda" : "ScaledTanh";
    EXPECT_NE(msg.find(cls), std::string::npos) << msg;
    EXPECT_NE(msg.find("Supported:"), std::string::npos) << msg;
    EXPECT_NE(msg.find(f["file"].get<std::string>()), std::string::npos) << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureRejected, ::testing::ValuesIn(fixture_names(true)),
                         [](const auto& info) { return info.param; });

TEST(SharedModels, LoadWithKerasShapesAndParams) {
  const std::string dir = fkb::test::shared_models_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models is absent: real-model loader tests skipped";
  std::ifstream mf(fixture_path("shared_refs/manifest.json"));
  ASSERT_TRUE(mf.good());
  const json refs = json::parse(mf);
  ASSERT_GE(refs["references"].size(), 3u);
  for (const auto& r : refs["references"]) {
    SCOPED_TRACE(r["model"].get<std::string>());
    fkb::Model m = fkb::Model::load(dir + "/" + r["model"].get<std::string>());
    expect_matches_keras(m, r);
    EXPECT_EQ(m.info.keras_version, r["keras_version_in_file"].get<std::string>());
  }
}

TEST(SharedModels, IconYamlConfigMatchesH5Config) {
  const std::string dir = fkb::test::shared_models_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models is absent";
  fkb::Model a = fkb::Model::load(dir + "/icon-cloudcover/fold_1.h5");
  // The leaky_relu *string* activation is the function (slope 0.2), not the layer default 0.3.
  bool found = false;
  for (const auto& n : a.nodes)
    if (n.activation.kind == fkb::ActKind::LeakyRelu) {
      EXPECT_FLOAT_EQ(n.activation.params.alpha, 0.2f);
      found = true;
    }
  EXPECT_TRUE(found);
}

// ---------------------------------------------------------------------------------------------------------------------
// Bad input: each case gives one clear fkb::Error (and, through the CLI, a message and a non-zero exit).

namespace {

std::string copy_to_temp(const std::string& src, const std::string& name) {
  const std::string dst = fkb::test::temp_dir() + "/" + name;
  std::ifstream in(src, std::ios::binary);
  std::ofstream out(dst, std::ios::binary);
  out << in.rdbuf();
  return dst;
}

void truncate_file(const std::string& path, double fraction) {
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size() * fraction));
}

std::string read_attr(const std::string& path, const char* name) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  hid_t t = H5Aget_type(a);
  std::string out;
  if (H5Tis_variable_str(t) > 0) {
    char* s = nullptr;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Aread(a, mt, &s);
    out = s;
    H5free_memory(s);
    H5Tclose(mt);
  } else {
    std::vector<char> buf(H5Tget_size(t) + 1, 0);
    H5Aread(a, t, buf.data());
    out = buf.data();
  }
  H5Tclose(t);
  H5Aclose(a);
  H5Fclose(f);
  return out;
}

void write_attr(const std::string& path, const char* name, const std::string& value) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Adelete(f, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  const char* p = value.c_str();
  H5Awrite(a, t, &p);
  H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
  H5Fclose(f);
}

// Load must throw fkb::Error with `status` and a message containing every needle.
void expect_load_error(const std::string& path, fkb::Status status, const std::vector<std::string>& needles,
                       const std::string& config = "") {
  fkb::Model::LoadOptions o;
  o.config_path = config;
  try {
    fkb::Model::load(path, o);
    FAIL() << "loading " << path << " should fail";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
  // The CLI gives a message and a non-zero exit, never a crash (exit 1, not a signal).
  std::string out;
  std::string cmd = fkb::test::cli() + " inspect '" + path + "'";
  if (!config.empty()) cmd += " --config '" + config + "'";
  const int rc = fkb::test::run_command(cmd, &out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("fkb: error:"), std::string::npos) << out;
}

}  // namespace

TEST(LoaderErrors, MissingFile) {
  expect_load_error("/nonexistent/model.h5", fkb::Status::FileError, {"/nonexistent/model.h5", "No such file"});
}

TEST(LoaderErrors, NotHdf5OrZip) {
  const std::string p = fkb::test::temp_dir() + "/notes.h5";
  std::ofstream(p) << "this is a text file, not a model\n";
  expect_load_error(p, fkb::Status::FormatError, {p, "neither an HDF5"});
}

TEST(LoaderErrors, EmptyFile) {
  const std::string p = fkb::test::temp_dir() + "/empty.keras";
  std::ofstream(p).close();
  expect_load_error(p, fkb::Status::FormatError, {p, "empty"});
}

TEST(LoaderErrors, TruncatedH5) {
  for (double frac : {0.05, 0.5, 0.9}) {
    const std::string p = copy_to_temp(fixture_path("tk_cbrain.h5"), "trunc.h5");
    truncate_file(p, frac);
    expect_load_error(p, fkb::Status::FormatError, {p});
  }
}

TEST(LoaderErrors, TruncatedKerasZip) {
  for (double frac : {0.1, 0.6, 0.98}) {
    const std::string p = copy_to_temp(fixture_path("k3_cbrain.keras"), "trunc.keras");
    truncate_file(p, frac);
    expect_load_error(p, fkb::Status::FormatError, {p});
  }
}

TEST(LoaderErrors, CorruptedKerasZipData) {
  const std::string p = copy_to_temp(fixture_path("k3_odd_sizes.keras"), "corrupt.keras");
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const auto size = static_cast<long>(f.tellg());
  // Flip bytes inside the stored weights file: the CRC check or HDF5 must notice.
  for (long off = size / 3; off < size / 3 + 64; ++off) {
    f.seekp(off);
    f.put(static_cast<char>(0x5a));
  }
  f.close();
  expect_load_error(p, fkb::Status::FormatError, {p});
}

TEST(LoaderErrors, ConfigNotJson) {
  const std::string p = copy_to_temp(fixture_path("tk_odd_sizes.h5"), "badjson.h5");
  write_attr(p, "model_config", "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [");
  expect_load_error(p, fkb::Status::FormatError, {p, "not valid JSON"});
}

TEST(LoaderErrors, WeightShapeDisagreesWithConfig) {
  const std::string p = copy_to_temp(fixture_path("tk_odd_sizes.h5"), "badshape.h5");
  std::string cfg = read_attr(p, "model_config");
  json j = json::parse(cfg);
  std::string changed;
  for (auto& l : j["config"]["layers"])
    if (l["class_name"] == "Dense" && changed.empty()) {
      l["config"]["units"] = l["config"]["units"].get<int>() + 2;
      changed = l["config"]["name"];
    }
  ASSERT_FALSE(changed.empty());
  write_attr(p, "model_config", j.dump());
  expect_load_error(p, fkb::Status::ShapeMismatch, {p, changed, "kernel"});
}

TEST(LoaderErrors, UnknownLayerClass) {
  const std::string p = copy_to_temp(fixture_path("tk_odd_sizes.h5"), "unknown.h5");
  json j = json::parse(read_attr(p, "model_config"));
  std::string changed;
  for (auto& l : j["config"]["layers"])
    if (l["class_name"] == "Dense" && changed.empty()) {
      l["class_name"] = "FancyDense";
      changed = l["config"]["name"];
    }
  write_attr(p, "model_config", j.dump());
  expect_load_error(p, fkb::Status::Unsupported, {changed, "FancyDense", "Supported:", "Dense"});
}

TEST(LoaderErrors, LambdaLayer) {
  expect_load_error(fixture_path("tk_lambda.h5"), fkb::Status::Unsupported, {"Lambda", "Python code"});
}

TEST(LoaderErrors, CustomLayer) {
  expect_load_error(fixture_path("k3_custom.keras"), fkb::Status::Unsupported, {"ScaledTanh"});
  expect_load_error(fixture_path("k3_custom.h5"), fkb::Status::Unsupported, {"ScaledTanh", "custom"});
}

TEST(LoaderErrors, WeightsOnlyWithoutConfig) {
  expect_load_error(fixture_path("tk_weights_weights.h5"), fkb::Status::FormatError, {"weights only", "--config"});
  expect_load_error(fixture_path("k3_weights.weights.h5"), fkb::Status::FormatError, {"weights only", "--config"});
}

TEST(LoaderErrors, ConfigFileMissingOrInvalid) {
  expect_load_error(fixture_path("tk_weights_weights.h5"), fkb::Status::FileError, {"/nonexistent/arch.json"},
                    "/nonexistent/arch.json");
  const std::string bad = fkb::test::temp_dir() + "/arch.yaml";
  std::ofstream(bad) << "class_name: [unclosed\n";
  expect_load_error(fixture_path("tk_weights_weights.h5"), fkb::Status::FormatError, {"YAML"}, bad);
}

TEST(LoaderErrors, WeightsOnlyConfigOfOtherModel) {
  // The architecture of another model: the weight shapes disagree and the message says which layer.
  const std::string other = fkb::test::temp_dir() + "/other.json";
  {
    // Build a to_json-style document from another fixture's model_config.
    std::ofstream(other) << read_attr(fixture_path("tk_odd_sizes.h5"), "model_config");
  }
  fkb::Model::LoadOptions o;
  o.config_path = other;
  EXPECT_THROW(fkb::Model::load(fixture_path("tk_weights_weights.h5"), o), fkb::Error);
}

// ---------------------------------------------------------------------------------------------------------------------
// `fkb inspect --json` reports Keras' shapes and parameter counts for every fixture and every shared model.

namespace {

json inspect_json(const std::string& model, const std::string& config = "") {
  std::string out;
  std::string cmd = fkb::test::cli() + " inspect --json '" + model + "'";
  if (!config.empty()) cmd += " --config '" + config + "'";
  const int rc = fkb::test::run_command(cmd + " 2>/dev/null", &out);
  EXPECT_EQ(rc, 0) << out;
  return json::parse(out);
}

void expect_inspect_matches(const json& j, const json& ref) {
  EXPECT_EQ(j["total_params"].get<int64_t>(), ref["total_params"].get<int64_t>());
  EXPECT_EQ(j["inputs"], ref["inputs"]);
  EXPECT_EQ(j["outputs"], ref["outputs"]);
  EXPECT_TRUE(j["runnable"].get<bool>());
  EXPECT_GT(j["flops_per_column"].get<int64_t>(), 0);
  int64_t sum = 0;
  for (const auto& l : j["layers"]) sum += l["params"].get<int64_t>();
  EXPECT_EQ(sum, ref["total_params"].get<int64_t>());
}

}  // namespace

TEST(InspectCli, EveryFixture) {
  for (const auto& f : manifest()["fixtures"]) {
    if (!f["expect_error"].is_null()) continue;
    SCOPED_TRACE(f["name"].get<std::string>());
    const std::string cfg = f["config"].is_null() ? "" : fixture_path(f["config"].get<std::string>());
    const json j = inspect_json(fixture_path(f["file"].get<std::string>()), cfg);
    expect_inspect_matches(j, f);
    EXPECT_EQ(j["format"], f["format"]);
  }
}

TEST(InspectCli, EverySharedModel) {
  const std::string dir = fkb::test::shared_models_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models is absent: skipped";
  std::ifstream mf(fixture_path("shared_refs/manifest.json"));
  const json refs = json::parse(mf);
  for (const auto& r : refs["references"]) {
    SCOPED_TRACE(r["model"].get<std::string>());
    const json j = inspect_json(dir + "/" + r["model"].get<std::string>());
    expect_inspect_matches(j, r);
    EXPECT_EQ(j["keras_version"], r["keras_version_in_file"]);
  }
}

TEST(InspectCli, CbrainFlopsMatchBenchmarkSpec) {
  // BENCHMARKS.md: cbrain is 1.13 M FLOP per column (2 x 565,248 multiply-adds).
  const json j = inspect_json(fixture_path("tk_cbrain.h5"));
  const double mflop = j["flops_per_column"].get<double>() / 1e6;
  EXPECT_NEAR(mflop, 1.13, 0.01);
}

TEST(InspectCli, TableNamesEveryLayer) {
  std::string out;
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect '" + fixture_path("tk_nested.h5") + "'", &out), 0);
  for (const char* name : {"inner_seq/dense", "mid_func/add", "concatenate", "dense_3", "total params:  167"})
    EXPECT_NE(out.find(name), std::string::npos) << out;
}
