// fkb::save_keras: FKB-written files reload in FKB with the same predictions, keep Keras' numbers, and are
// exported (with FKB's own predictions) for tests/bridge/keras_check.py, which loads them with real Keras.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sys/stat.h>

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

// Writes every fixture as .keras and .h5 plus FKB's predictions into $FKB_BRIDGE_EXPORT for the Keras check.
TEST(WriterExport, ForKerasCheck) {
  const char* dir = std::getenv("FKB_BRIDGE_EXPORT");
  if (!dir || !*dir) GTEST_SKIP() << "FKB_BRIDGE_EXPORT not set (set by the bridge CTest fixture)";
  mkdir(dir, 0755);
  for (const auto& name : loadable_fixtures()) {
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
}
