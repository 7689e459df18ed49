// Issue 12, the weight readers' kinds, against real Keras: bfloat16 weights (kind 5), int8-quantized Dense layers
// (kind 6) and Keras 3's other ways to save (kind 7: the unzipped model directory, sharded weights), with the
// loading policy on the new paths (shard names, symbolic links, the weight limit).
//
// Models and expected values are Keras' own: tests/fixtures/cases/{int8_quantized,keras3_save_variants}/ (made by
// their make.py with Keras 3.15) and weight_dtypes/ (a copy of ../shared/cases, read from there when absent).
#include <gtest/gtest.h>

#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "io/array_io.hpp"
#include "loader/h5.hpp"
#include "loader/limits.hpp"
#include "case_fixtures.hpp"
#include "test_util.hpp"

using nlohmann::json;
using fkb::test::read_json;
namespace fs = std::filesystem;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::vector<float> npy(const std::string& path) {
  fkb::io::HostArray a = fkb::io::read_npy(path);
  if (a.dtype != fkb::DType::F32)
    a.f32.assign(a.f64.begin(), a.f64.end());
  return a.f32;
}

// max|y - ref| / max|ref| of the model's predictions on Keras' input.
double predict_error(const fkb::Model& m, const std::string& x_path, const std::string& ref_path) {
  const std::vector<float> x = npy(x_path), ref = npy(ref_path);
  const int64_t ncol = static_cast<int64_t>(x.size()) / m.input_size(0);
  EXPECT_EQ(static_cast<int64_t>(ref.size()), ncol * m.output_size(0)) << ref_path;
  std::vector<float> y(static_cast<size_t>(ncol * m.output_size(0)));
  fkb::Runtime rt(m);
  rt.predict(x.data(), ncol, y.data());
  return fkb::test::relative_max_error(y.data(), ref.data(), static_cast<int64_t>(std::min(y.size(), ref.size())));
}

// The message of the fkb::Error `load` throws, with its status; fails the test when nothing is thrown.
std::string load_error(const std::function<void()>& load, fkb::Status* status = nullptr) {
  try {
    load();
  } catch (const fkb::Error& e) {
    if (status)
      *status = e.status();
    return e.what();
  }
  ADD_FAILURE() << "loaded, but should have been refused";
  return "";
}

const fkb::Node* node_named(const fkb::Model& m, const std::string& name) {
  for (const auto& n : m.nodes)
    if (n.name == name)
      return &n;
  return nullptr;
}

// A copy of a case folder's files (not its subfolders) in a fresh temporary directory.
std::string copy_case(const std::string& dir) {
  const std::string tmp = fkb::test::temp_dir();
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file())
      fs::copy_file(e.path(), tmp + "/" + e.path().filename().string());
  return tmp;
}

} // namespace

// ---- kind 5: float weights of every type Keras writes --------------------------------------------------------------

TEST(LoaderIssue12Weights, EveryFloatTypeKerasWritesLoadsAndPredictsTheStoredWeights) {
  REQUIRE_CASE(dir, "weight_dtypes");
  // float64 / float16 / bfloat16 layers (tf-keras .h5, Keras 3 .keras and .h5). FKB computes in float32: alt_ref is
  // Keras running the stored weights upcast to float32, which FKB must match to 1e-5 (ref, Keras' own low-precision
  // predict, differs by the rounding of its float16/bfloat16 arithmetic).
  int ran = 0;
  for (const auto& e : read_json(dir + "/cases.json")) {
    const std::string file = e["model"];
    SCOPED_TRACE(file);
    fkb::Model m;
    try {
      m = fkb::Model::load(dir + "/" + file);
    } catch (const fkb::Error& err) {
      ADD_FAILURE() << file << ": " << err.what();
      continue;
    }
    EXPECT_LE(
        predict_error(m, dir + "/" + e["inputs"][0].get<std::string>(), dir + "/" + e["alt_ref"][0].get<std::string>()),
        1e-5);
    ++ran;
  }
  EXPECT_EQ(ran, 8);
}

TEST(LoaderIssue12Weights, Bfloat16KernelsAreTheUpperHalvesOfFloat32) {
  REQUIRE_CASE(dir, "weight_dtypes");
  // The .keras (dtype="bfloat16" attribute on each dataset) and the legacy .h5 (no attribute; the layer's policy
  // says bfloat16) hold the same weights; each value has a zero lower half, and the two files agree exactly.
  const fkb::Model k = fkb::Model::load(dir + "/k3_bfloat16.keras");
  const fkb::Model h = fkb::Model::load(dir + "/k3_bfloat16.h5");
  ASSERT_EQ(k.nodes.size(), h.nodes.size());
  int checked = 0;
  for (size_t i = 0; i < k.nodes.size(); ++i) {
    for (const auto& [role, a] : k.nodes[i].weights) {
      const fkb::Array& b = h.nodes[i].weights.at(role);
      ASSERT_EQ(a.shape, b.shape) << k.nodes[i].name << " " << role;
      bool nonzero = false;
      for (size_t j = 0; j < a.data.size(); ++j) {
        uint32_t bits;
        std::memcpy(&bits, &a.data[j], sizeof bits);
        EXPECT_EQ(bits & 0xffffu, 0u) << k.nodes[i].name << " " << role << "[" << j << "]";
        EXPECT_EQ(a.data[j], b.data[j]);
        nonzero = nonzero || a.data[j] != 0.0f;
      }
      if (role == "kernel")
        EXPECT_TRUE(nonzero) << k.nodes[i].name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4);
}

TEST(LoaderIssue12Weights, Bfloat16BitPatternsWidenExactlyAndUnmarkedOpaqueIsRefused) {
  // An HDF5 file written as h5py writes ml_dtypes.bfloat16: a 2-byte opaque type, raw little-endian bytes.
  const std::string tmp = fkb::test::temp_dir();
  const std::string path = tmp + "/bf16.h5";
  const uint16_t bits[] = {0x3f80, 0xc000, 0x0001, 0x7f7f, 0x8000, 0x3eaa, 0xff80, 0x7fc0};
  const float want[] = {1.0f, -2.0f, 9.18354961579912e-41f, 3.3895313892515355e38f, -0.0f, 0.33203125f, -INFINITY, NAN};
  {
    std::lock_guard<std::recursive_mutex> g(fkb::h5::lock());
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t t = H5Tcreate(H5T_OPAQUE, 2);
    hsize_t n = 8;
    hid_t s = H5Screate_simple(1, &n, nullptr);
    unsigned char raw[16];
    for (int i = 0; i < 8; ++i) {
      raw[2 * i] = static_cast<unsigned char>(bits[i] & 0xff);
      raw[2 * i + 1] = static_cast<unsigned char>(bits[i] >> 8);
    }
    for (const char* name : {"marked", "unmarked"}) {
      hid_t d = H5Dcreate2(f, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw);
      if (std::string(name) == "marked")
        fkb::h5::write_attr_string(d, "dtype", "bfloat16", "test");
      H5Dclose(d);
    }
    hid_t t3 = H5Tcreate(H5T_OPAQUE, 3);
    hid_t d3 = H5Dcreate2(f, "three_bytes", t3, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<unsigned char> raw3(24, 0);
    H5Dwrite(d3, t3, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw3.data());
    H5Dclose(d3);
    H5Tclose(t3);
    H5Sclose(s);
    H5Tclose(t);
    H5Fclose(f);
  }
  std::lock_guard<std::recursive_mutex> g(fkb::h5::lock());
  fkb::h5::QuietErrors quiet;
  fkb::h5::File file = fkb::h5::File::open(path);
  fkb::loader::WeightBudget budget(1 << 20, path);
  for (bool by_attr : {true, false}) {
    const fkb::Array a = fkb::h5::read_array(file.id(), by_attr ? "marked" : "unmarked", "bf16.h5", budget, nullptr,
                                             /*layer_bfloat16=*/!by_attr);
    ASSERT_EQ(a.data.size(), 8u);
    for (int i = 0; i < 8; ++i) {
      if (std::isnan(want[i])) {
        EXPECT_TRUE(std::isnan(a.data[i]));
        continue;
      }
      EXPECT_EQ(a.data[i], want[i]) << i;
      EXPECT_EQ(std::signbit(a.data[i]), std::signbit(want[i])) << i;
    }
  }
  const std::string unmarked = load_error([&] { fkb::h5::read_array(file.id(), "unmarked", "bf16.h5", budget); });
  EXPECT_NE(unmarked.find("weight 'unmarked'"), std::string::npos) << unmarked;
  EXPECT_NE(unmarked.find("not marked as bfloat16"), std::string::npos) << unmarked;
  EXPECT_NE(unmarked.find("FKB reads float16, float32, float64, bfloat16"), std::string::npos) << unmarked;
  const std::string three =
      load_error([&] { fkb::h5::read_array(file.id(), "three_bytes", "bf16.h5", budget, nullptr, true); });
  EXPECT_NE(three.find("opaque 3-byte"), std::string::npos) << three;
  // The weight limit counts a bfloat16 value as the float32 it becomes.
  fkb::loader::WeightBudget small(8 * 4 - 1, path);
  const std::string over = load_error([&] { fkb::h5::read_array(file.id(), "marked", "bf16.h5", small); });
  EXPECT_NE(over.find("over the limit"), std::string::npos) << over;
}

// ---- kind 6: int8-quantized Dense ----------------------------------------------------------------------------------

TEST(LoaderIssue12Weights, Int8DenseLoadsItsInt8KernelAndScalesIntoTheIR) {
  REQUIRE_CASE(dir, "int8_quantized");
  const std::string h5 = dir + "/k3_int8.h5";
  for (const std::string file : {"k3_int8.keras", "k3_int8.h5"}) {
    SCOPED_TRACE(file);
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    const std::map<std::string, std::pair<int64_t, int64_t>> dense = {
        {"d1", {6, 16}}, {"d2_nobias", {16, 8}}, {"d3", {8, 3}}};
    for (const auto& [name, dims] : dense) {
      SCOPED_TRACE(name);
      const fkb::Node* n = node_named(m, name);
      ASSERT_NE(n, nullptr);
      EXPECT_TRUE(n->quantized_int8);
      const fkb::Array& k = n->weights.at("kernel");
      const fkb::Array& s = n->weights.at("kernel_scale");
      EXPECT_EQ(k.shape, (std::vector<int64_t>{dims.first, dims.second}));
      EXPECT_EQ(s.shape, (std::vector<int64_t>{dims.second}));
      EXPECT_EQ(n->weights.count("bias"), name == "d2_nobias" ? 0u : 1u);
      // The kernel is the file's int8 values (Keras 3's legacy .h5 of a functional model:
      // model_weights/<layer>/<layer>/).
      const std::string base = "model_weights/" + name + "/" + name + "/";
      const fkb::test::Data fk = fkb::test::read_dataset(h5, base + "kernel");
      const fkb::test::Data fs_ = fkb::test::read_dataset(h5, base + "kernel_scale");
      ASSERT_EQ(fk.values.size(), k.data.size());
      for (size_t i = 0; i < k.data.size(); ++i) {
        EXPECT_EQ(k.data[i], fk.values[i]) << i;
        EXPECT_EQ(k.data[i], std::nearbyint(k.data[i]));
        EXPECT_LE(std::fabs(k.data[i]), 127.0f);
      }
      EXPECT_EQ(s.data, fs_.values);
      if (name != "d2_nobias")
        EXPECT_EQ(n->weights.at("bias").data, fkb::test::read_dataset(h5, base + "bias").values);
    }
    // Keras counts the int8 kernel, the bias and the scale: 6*16+16+16 + 16*8+8 + 8*3+3+3.
    EXPECT_EQ(m.param_count(), 128 + 136 + 30);
  }
}

TEST(LoaderIssue12Weights, Int8DensePredictsAsKerasQuantizedModel) {
  REQUIRE_CASE(dir, "int8_quantized");
  for (const std::string file : {"k3_int8.keras", "k3_int8.h5"}) {
    const fkb::Model m = fkb::Model::load(dir + "/" + file);
    EXPECT_LE(predict_error(m, dir + "/x.npy", dir + "/keras_y.npy"), 1e-5) << file;
  }
}

TEST(LoaderIssue12Weights, QuantizedLayersFkbCannotRunAreRefusedNamingTheLayerAndTheQuantization) {
  REQUIRE_CASE(dir, "int8_quantized");
  const std::map<std::string, std::vector<std::string>> cases = {
      {"k3_int8_einsum.keras", {"layer 'einsum' (EinsumDense)", "model.quantize(\"int8\")", "int8-quantized Dense"}},
      {"k3_int4.keras", {"layer 'd4' (Dense)", "model.quantize(\"int4\")", "not int4 quantization"}},
      {"k3_int8_weight_only.keras", {"layer 'd_wo' (Dense)", "activation_quantizer: null", "AbsMaxQuantizer"}}};
  for (const auto& [file, parts] : cases) {
    fkb::Status st = fkb::Status::Ok;
    const std::string msg = load_error([&] { fkb::Model::load(dir + "/" + file); }, &st);
    EXPECT_EQ(st, fkb::Status::Unsupported) << file << ": " << msg;
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << file << ": " << msg;
    EXPECT_EQ(msg.find("the file holds"), std::string::npos) << msg; // not blamed on the file
  }
}

// ---- kind 7: the unzipped model directory and sharded weights ------------------------------------------------------

TEST(LoaderIssue12Weights, UnzippedModelDirectoryPredictsAsKeras) {
  REQUIRE_CASE(dir, "keras3_save_variants");
  const fkb::Model m = fkb::Model::load(dir + "/model_dir");
  EXPECT_EQ(m.info.format, "keras_dir");
  EXPECT_EQ(m.info.keras_major, 3);
  EXPECT_EQ(m.param_count(), 107); // Keras' count_params(): 5*8+8 + 4*8 + 8*3+3
  EXPECT_LE(predict_error(m, dir + "/x.npy", dir + "/keras_y.npy"), 1e-5);
}

TEST(LoaderIssue12Weights, ShardedWeightsWithTheirConfigPredictAsKeras) {
  REQUIRE_CASE(dir, "keras3_save_variants");
  // d1's kernel and bias are in two different shards (make.py asserts a split).
  fkb::Model::LoadOptions o;
  o.config_path = dir + "/sharded_config.json";
  const fkb::Model m = fkb::Model::load(dir + "/sharded.weights.json", o);
  EXPECT_EQ(m.info.format, "weights_json");
  EXPECT_EQ(m.param_count(), 107);
  EXPECT_LE(predict_error(m, dir + "/x.npy", dir + "/keras_y.npy"), 1e-5);
  // Without the architecture: asks for it, and no longer says the file is not a Keras file.
  const std::string msg = load_error([&] { fkb::Model::load(dir + "/sharded.weights.json"); });
  EXPECT_NE(msg.find("holds sharded weights only"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--config"), std::string::npos) << msg;
  // A model config given as the model: says what it is.
  const std::string cfg = load_error([&] { fkb::Model::load(dir + "/sharded_config.json"); });
  EXPECT_NE(cfg.find("not Keras sharded weights"), std::string::npos) << cfg;
}

TEST(LoaderIssue12Weights, ShardNamesThatLeaveTheDirectoryAreRefused) {
  REQUIRE_CASE(dir, "keras3_save_variants");
  const std::string tmp = copy_case(dir);
  fkb::Model::LoadOptions o;
  o.config_path = tmp + "/sharded_config.json";
  const json index = read_json(tmp + "/sharded.weights.json");
  const std::string outside = fkb::test::temp_dir();
  fs::copy_file(tmp + "/sharded_00002.weights.h5", outside + "/evil.weights.h5");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"../" + fs::path(outside).filename().string() + "/evil.weights.h5", "a path with directories"},
      {outside + "/evil.weights.h5", "an absolute path"},
      {"..", "not a file name"},
      {"sub/sharded_00002.weights.h5", "a path with directories"}};
  for (const auto& [name, why] : bad) {
    json j = index;
    j["weight_map"]["/layers/dense_1/vars"] = name;
    write_text(tmp + "/evil.weights.json", j.dump());
    fkb::Status st = fkb::Status::Ok;
    const std::string msg = load_error([&] { fkb::Model::load(tmp + "/evil.weights.json", o); }, &st);
    EXPECT_EQ(st, fkb::Status::FormatError) << msg;
    EXPECT_NE(msg.find(why), std::string::npos) << name << ": " << msg;
    EXPECT_NE(msg.find("/layers/dense_1/vars"), std::string::npos) << msg;
    EXPECT_NE(msg.find("FKB reads only shard files in the directory of the .weights.json"), std::string::npos) << msg;
  }
  // In a list too.
  json j = index;
  j["weight_map"]["/layers/dense/vars"] = json::array({"sharded_00000.weights.h5", "/etc/passwd"});
  write_text(tmp + "/evil.weights.json", j.dump());
  EXPECT_NE(load_error([&] { fkb::Model::load(tmp + "/evil.weights.json", o); }).find("an absolute path"),
            std::string::npos);
  // A shard that is a symbolic link (to a file outside) is refused, wherever it points.
  fs::remove(tmp + "/sharded_00002.weights.h5");
  fs::create_symlink(outside + "/evil.weights.h5", tmp + "/sharded_00002.weights.h5");
  const std::string link = load_error([&] { fkb::Model::load(tmp + "/sharded.weights.json", o); });
  EXPECT_NE(link.find("sharded_00002.weights.h5' is a symbolic link"), std::string::npos) << link;
  // A shard that is missing: named.
  fs::remove(tmp + "/sharded_00002.weights.h5");
  fkb::Status st = fkb::Status::Ok;
  const std::string missing = load_error([&] { fkb::Model::load(tmp + "/sharded.weights.json", o); }, &st);
  EXPECT_EQ(st, fkb::Status::FileError);
  EXPECT_NE(missing.find("sharded_00002.weights.h5"), std::string::npos) << missing;
  fs::remove_all(tmp);
  fs::remove_all(outside);
}

TEST(LoaderIssue12Weights, ShardsCountTogetherAgainstTheWeightLimit) {
  REQUIRE_CASE(dir, "keras3_save_variants");
  // 107 float32 weights = 428 bytes in three shards: a limit of 400 is met in the last shard.
  fkb::Model::LoadOptions o;
  o.config_path = dir + "/sharded_config.json";
  o.limits.max_weight_bytes = 400;
  const std::string msg = load_error([&] { fkb::Model::load(dir + "/sharded.weights.json", o); });
  EXPECT_NE(msg.find("over the limit of 400 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("shard 'sharded_00002.weights.h5'"), std::string::npos) << msg;
  o.limits.max_weight_bytes = 428;
  EXPECT_NO_THROW(fkb::Model::load(dir + "/sharded.weights.json", o));
}

TEST(LoaderIssue12Weights, ModelDirectoryReadsOnlyItsOwnFilesAndNoLinks) {
  REQUIRE_CASE(dir, "keras3_save_variants");
  const std::string outside = fkb::test::temp_dir();
  fs::copy_file(dir + "/model_dir/model.weights.h5", outside + "/model.weights.h5");
  for (const std::string linked : {"model.weights.h5", "config.json", "metadata.json"}) {
    const std::string tmp = copy_case(dir + "/model_dir");
    fs::copy_file(tmp + "/" + linked, outside + "/" + linked, fs::copy_options::overwrite_existing);
    fs::remove(tmp + "/" + linked);
    fs::create_symlink(outside + "/" + linked, tmp + "/" + linked);
    fkb::Status st = fkb::Status::Ok;
    const std::string msg = load_error([&] { fkb::Model::load(tmp); }, &st);
    EXPECT_EQ(st, fkb::Status::FormatError) << msg;
    EXPECT_NE(msg.find("'" + linked + "' in the model directory is a symbolic link"), std::string::npos) << msg;
    fs::remove_all(tmp);
  }
  // Files Keras does not write there are not read: a stray file changes nothing.
  {
    const std::string tmp = copy_case(dir + "/model_dir");
    write_text(tmp + "/notes.txt", "not a model file");
    fs::create_symlink("/etc/passwd", tmp + "/stray_link");
    EXPECT_LE(predict_error(fkb::Model::load(tmp), dir + "/x.npy", dir + "/keras_y.npy"), 1e-5);
    // The weight limit holds.
    fkb::Model::LoadOptions o;
    o.limits.max_weight_bytes = 400;
    const std::string msg = load_error([&] { fkb::Model::load(tmp, o); });
    EXPECT_NE(msg.find("over the limit of 400 bytes"), std::string::npos) << msg;
    // weights_format="npz": named.
    fs::rename(tmp + "/model.weights.h5", tmp + "/model.weights.npz");
    const std::string npz = load_error([&] { fkb::Model::load(tmp); });
    EXPECT_NE(npz.find("model.weights.npz"), std::string::npos) << npz;
    fs::remove_all(tmp);
  }
  // A TensorFlow SavedModel is called one only when it is one.
  {
    const std::string tmp = fkb::test::temp_dir();
    write_text(tmp + "/saved_model.pb", "x");
    const std::string msg = load_error([&] { fkb::Model::load(tmp); });
    EXPECT_NE(msg.find("TensorFlow SavedModel directory (saved_model.pb)"), std::string::npos) << msg;
    fs::remove(tmp + "/saved_model.pb");
    const std::string empty = load_error([&] { fkb::Model::load(tmp); });
    EXPECT_NE(empty.find("without config.json"), std::string::npos) << empty;
    EXPECT_EQ(empty.find("SavedModel"), std::string::npos) << empty;
    fs::remove_all(tmp);
  }
  fs::remove_all(outside);
}
