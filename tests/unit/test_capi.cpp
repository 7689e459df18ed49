// Unit tests of the C API (fkb/fkb.h): every error path returns its status and a message, nothing throws,
// handles are NULL after a failed load, and predictions match Keras' own outputs (fixtures).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fkb/backend.hpp"
#include "fkb/fkb.h"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;

// A value no real handle has, to check that failed loads reset the output handle to NULL.
fkb_model_t sentinel() { return reinterpret_cast<fkb_model_t>(static_cast<uintptr_t>(0x1)); }

const nlohmann::json& fixture(const std::string& name) {
  for (const auto& e : fkb::test::manifest()["fixtures"])
    if (e["name"] == name)
      return e;
  throw std::runtime_error("no fixture " + name + " in the manifest");
}

std::string model_file(const std::string& name) { return fixture_path(fixture(name)["file"].get<std::string>()); }

std::string last_error() { return fkb_last_error(); }

// Load with quiet defaults on the CPU.
fkb_model_t load_cpu(const std::string& path, int64_t max_batch = 0, const char* config = nullptr) {
  fkb_options o;
  EXPECT_EQ(fkb_options_init(&o), FKB_OK);
  o.device = "cpu";
  o.verbose = 0;
  o.max_batch = max_batch;
  o.config_path = config;
  fkb_model_t m = sentinel();
  int rc = fkb_load(path.c_str(), &o, &m);
  EXPECT_EQ(rc, FKB_OK) << last_error();
  if (rc != FKB_OK) {
    EXPECT_EQ(m, nullptr);
  }
  return rc == FKB_OK ? m : nullptr;
}

// The status and message of a load with one option changed.
int load_with(const std::string& path, fkb_options o, fkb_model_t* m) {
  *m = sentinel();
  return fkb_load(path.c_str(), &o, m);
}

fkb_options quiet_cpu() {
  fkb_options o;
  fkb_options_init(&o);
  o.device = "cpu";
  o.verbose = 0;
  return o;
}

std::string temp_file(const std::string& name, const std::string& content) {
  std::string p = fkb::test::temp_dir() + "/" + name;
  std::ofstream f(p, std::ios::binary);
  f << content;
  return p;
}

} // namespace

TEST(CApi, VersionAndStatusNames) {
  ASSERT_NE(fkb_version(), nullptr);
  EXPECT_STREQ(fkb_version(), fkb::version());
  EXPECT_STREQ(fkb_status_name(FKB_OK), "ok");
  EXPECT_STREQ(fkb_status_name(FKB_ERR_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STREQ(fkb_status_name(FKB_ERR_FILE), "file error");
  EXPECT_STREQ(fkb_status_name(FKB_ERR_INTERNAL), "internal error");
  EXPECT_STREQ(fkb_status_name(-1), "unknown status");
  EXPECT_STREQ(fkb_status_name(11), "unknown status");
  // The numbers are fkb::Status's (also checked at compile time in capi.cpp).
  EXPECT_EQ(FKB_ERR_SHAPE_MISMATCH, static_cast<int>(fkb::Status::ShapeMismatch));
  EXPECT_EQ(FKB_ERR_CUDA, static_cast<int>(fkb::Status::CudaError));
}

TEST(CApi, OptionsInit) {
  EXPECT_EQ(fkb_options_init(nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("options is NULL"), std::string::npos) << last_error();
  fkb_options o;
  std::memset(&o, 0x5a, sizeof(o));
  ASSERT_EQ(fkb_options_init(&o), FKB_OK);
  EXPECT_EQ(last_error(), "");
  EXPECT_STREQ(o.device, "auto");
  EXPECT_STREQ(o.precision, "fp32");
  EXPECT_STREQ(o.nonfinite, "propagate");
  EXPECT_EQ(o.max_batch, 0);
  EXPECT_EQ(o.threads, 0);
  EXPECT_EQ(o.config_path, nullptr);
  EXPECT_EQ(o.reproducible, 0);
  EXPECT_EQ(o.verbose, 1);
}

TEST(CApi, LoadNullAndEmptyArguments) {
  fkb_options o = quiet_cpu();
  fkb_model_t m = sentinel();
  EXPECT_EQ(fkb_load(nullptr, &o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("path is NULL"), std::string::npos) << last_error();

  m = sentinel();
  EXPECT_EQ(fkb_load("", &o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("path is empty"), std::string::npos) << last_error();

  EXPECT_EQ(fkb_load(model_file("k3_dense_chain_keras").c_str(), &o, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("handle pointer is NULL"), std::string::npos) << last_error();

  m = sentinel();
  EXPECT_EQ(fkb_load_ex(nullptr, "cpu", "fp32", 0, 0, nullptr, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_EQ(fkb_load_ex("x.h5", "cpu", "fp32", 0, 0, nullptr, nullptr), FKB_ERR_INVALID_ARGUMENT);
}

TEST(CApi, LoadMissingFile) {
  fkb_model_t m = sentinel();
  const std::string path = "/nonexistent/dir/model_does_not_exist.h5";
  int rc = load_with(path, quiet_cpu(), &m);
  EXPECT_EQ(rc, FKB_ERR_FILE) << last_error();
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find(path), std::string::npos) << "message should name the file: " << last_error();
}

TEST(CApi, LoadNotAKerasFile) {
  std::string p = temp_file("garbage.h5", "this is not an HDF5 file\n");
  fkb_model_t m = sentinel();
  int rc = load_with(p, quiet_cpu(), &m);
  EXPECT_EQ(rc, FKB_ERR_FORMAT) << last_error();
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("garbage.h5"), std::string::npos) << last_error();
}

TEST(CApi, LoadBadOptionValues) {
  const std::string path = model_file("k3_dense_chain_keras");
  fkb_model_t m;

  fkb_options o = quiet_cpu();
  o.precision = "fp33";
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("fp33"), std::string::npos) << last_error();

  o = quiet_cpu();
  o.device = "tpu";
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("'tpu'"), std::string::npos) << last_error();

  for (const char* d : {"cuda:", "cuda:x", "cuda:-1", "CPU", "cpu "}) {
    o = quiet_cpu();
    o.device = d;
    EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT) << d;
    EXPECT_EQ(m, nullptr);
  }

  o = quiet_cpu();
  o.max_batch = -1;
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("max_batch"), std::string::npos) << last_error();

  o = quiet_cpu();
  o.threads = -2;
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("threads"), std::string::npos) << last_error();

  o = quiet_cpu();
  o.nonfinite = "ignore";
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);

  // fkb_load_ex checks the same values.
  m = sentinel();
  EXPECT_EQ(fkb_load_ex(path.c_str(), "cpu", "double", 0, 0, nullptr, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("double"), std::string::npos) << last_error();
}

TEST(CApi, CudaWithoutDevice) {
  if (fkb::cuda_device_count() > 0)
    GTEST_SKIP() << "a CUDA device is present";
  fkb_options o = quiet_cpu();
  o.device = "cuda";
  fkb_model_t m;
  EXPECT_EQ(load_with(model_file("k3_dense_chain_keras"), o, &m), FKB_ERR_CUDA) << last_error();
  EXPECT_EQ(m, nullptr);
  EXPECT_FALSE(last_error().empty());
}

TEST(CApi, WeightsOnlyNeedsConfig) {
  const auto& e = fixture("k3_weights_weights_json");
  fkb_model_t m;
  EXPECT_NE(load_with(fixture_path(e["file"]), quiet_cpu(), &m), FKB_OK);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("config"), std::string::npos) << last_error();
}

TEST(CApi, NullHandleEverywhere) {
  float xf[4] = {0}, yf[4] = {0};
  double xd[4] = {0}, yd[4] = {0};
  int64_t n = 7;
  char buf[16];
  EXPECT_EQ(fkb_predict_f32(nullptr, xf, 1, yf), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("fkb_predict_f32"), std::string::npos) << last_error();
  EXPECT_NE(last_error().find("NULL"), std::string::npos) << last_error();
  EXPECT_EQ(fkb_predict_f64(nullptr, xd, 1, yd), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("fkb_predict_f64"), std::string::npos) << last_error();
  EXPECT_EQ(fkb_n_inputs(nullptr, &n), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_n_outputs(nullptr, &n), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(n, 7);
  EXPECT_EQ(fkb_device_name(nullptr, buf, sizeof(buf)), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_free(nullptr), FKB_OK);
  EXPECT_EQ(last_error(), "");
}

TEST(CApi, ModelQueriesAndBadArguments) {
  fkb_model_t m = load_cpu(model_file("k3_cbrain_keras"));
  ASSERT_NE(m, nullptr);
  int64_t nin = 0, nout = 0;
  ASSERT_EQ(fkb_n_inputs(m, &nin), FKB_OK);
  ASSERT_EQ(fkb_n_outputs(m, &nout), FKB_OK);
  EXPECT_EQ(nin, 94);
  EXPECT_EQ(nout, 65);
  EXPECT_EQ(fkb_n_inputs(m, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_n_outputs(m, nullptr), FKB_ERR_INVALID_ARGUMENT);

  char buf[256];
  ASSERT_EQ(fkb_device_name(m, buf, sizeof(buf)), FKB_OK);
  EXPECT_EQ(std::string(buf).rfind("cpu", 0), 0u) << buf;
  char small[3] = {'x', 'x', 'x'};
  ASSERT_EQ(fkb_device_name(m, small, sizeof(small)), FKB_OK);
  EXPECT_STREQ(small, "cp"); // truncated, NUL-terminated
  EXPECT_EQ(fkb_device_name(m, nullptr, 10), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_device_name(m, buf, 0), FKB_ERR_INVALID_ARGUMENT);

  std::vector<float> x(static_cast<size_t>(nin) * 2, 0.5f), y(static_cast<size_t>(nout) * 2, -1.0f);
  EXPECT_EQ(fkb_predict_f32(m, nullptr, 2, y.data()), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("x is NULL"), std::string::npos) << last_error();
  EXPECT_EQ(fkb_predict_f32(m, x.data(), 2, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("y is NULL"), std::string::npos) << last_error();
  EXPECT_EQ(fkb_predict_f32(m, x.data(), -1, y.data()), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("ncol"), std::string::npos) << last_error();
  EXPECT_EQ(y[0], -1.0f); // untouched by failed calls
  // ncol = 0: a no-op, NULL allowed.
  EXPECT_EQ(fkb_predict_f32(m, nullptr, 0, nullptr), FKB_OK);
  EXPECT_EQ(fkb_predict_f64(m, nullptr, 0, nullptr), FKB_OK);
  EXPECT_EQ(last_error(), "");
  EXPECT_EQ(fkb_free(m), FKB_OK);
}

TEST(CApi, MultiInputModelIsRejectedByPredict) {
  fkb_model_t m = load_cpu(model_file("k3_multi_io_keras"));
  ASSERT_NE(m, nullptr);
  std::vector<float> x(64, 0.f), y(64, 0.f);
  EXPECT_EQ(fkb_predict_f32(m, x.data(), 1, y.data()), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("single-input"), std::string::npos) << last_error();
  fkb_free(m);
}

TEST(CApi, LastErrorIsThreadLocalAndClearedOnSuccess) {
  EXPECT_EQ(fkb_n_inputs(nullptr, nullptr), FKB_ERR_INVALID_ARGUMENT);
  const std::string mine = last_error();
  EXPECT_FALSE(mine.empty());
  std::string other = "unset";
  std::thread t([&] { other = fkb_last_error(); });
  t.join();
  EXPECT_EQ(other, "");          // the other thread has had no failure
  EXPECT_EQ(last_error(), mine); // this thread's message is untouched by the other thread
  fkb_options o;
  EXPECT_EQ(fkb_options_init(&o), FKB_OK);
  EXPECT_EQ(last_error(), "");
}

// Predictions through the C API agree with Keras' own model.predict (fixtures), float and double,
// whole batch and in chunks smaller than the batch.
class CApiParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CApiParity, MatchesKeras) {
  const auto& e = fixture(GetParam());
  const std::string data = fixture_path(e["data"]);
  const auto xin = fkb::test::read_dataset(data, "input_0");
  const auto ref = fkb::test::read_dataset(data, "output_0");
  const int64_t ncol = xin.rows();
  ASSERT_GT(ncol, 1);
  std::string cfg = e["config"].is_null() ? "" : fixture_path(e["config"]);

  for (int64_t max_batch : {int64_t(0), int64_t(8)}) {
    fkb_model_t m = load_cpu(fixture_path(e["file"]), max_batch, cfg.empty() ? nullptr : cfg.c_str());
    ASSERT_NE(m, nullptr);
    int64_t nin = 0, nout = 0;
    fkb_n_inputs(m, &nin);
    fkb_n_outputs(m, &nout);
    ASSERT_EQ(nin, xin.row_size());
    ASSERT_EQ(nout, ref.row_size());

    std::vector<float> yf(ref.values.size(), NAN);
    ASSERT_EQ(fkb_predict_f32(m, xin.values.data(), ncol, yf.data()), FKB_OK) << last_error();
    EXPECT_LE(fkb::test::relative_max_error(yf.data(), ref.values.data(), ref.values.size()), 1e-5)
        << "float, max_batch " << max_batch;

    std::vector<double> xd(xin.values.begin(), xin.values.end()), yd(ref.values.size(), NAN);
    ASSERT_EQ(fkb_predict_f64(m, xd.data(), ncol, yd.data()), FKB_OK) << last_error();
    std::vector<float> ydf(yd.begin(), yd.end());
    EXPECT_LE(fkb::test::relative_max_error(ydf.data(), ref.values.data(), ref.values.size()), 1e-5)
        << "double, max_batch " << max_batch;
    EXPECT_EQ(fkb_free(m), FKB_OK);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CApiParity,
                         ::testing::Values("k3_cbrain_keras", "tk_cbrain_h5", "k3_climsim_keras", "tk_odd_sizes_h5",
                                           "k3_weights_weights_json"));

TEST(CApi, LoadExAndNullOptionsUseDefaults) {
  const std::string path = model_file("k3_dense_chain_keras");
  fkb_model_t m = sentinel();
  ASSERT_EQ(fkb_load_ex(path.c_str(), "cpu", nullptr, 0, 1, "", &m), FKB_OK) << last_error();
  ASSERT_NE(m, nullptr);
  int64_t nin = 0;
  EXPECT_EQ(fkb_n_inputs(m, &nin), FKB_OK);
  EXPECT_EQ(nin, 5);
  fkb_free(m);
  m = sentinel();
  ASSERT_EQ(fkb_load(path.c_str(), nullptr, &m), FKB_OK) << last_error(); // device auto
  ASSERT_NE(m, nullptr);
  fkb_free(m);
}

// fkb_options.max_weight_bytes (README "Loading policy"): over the limit the load is refused before any weight is
// allocated, with the limit in the message; the option wins over FKB_MAX_WEIGHT_BYTES; < 0 is invalid.
TEST(CApi, MaxWeightBytesLimitsTheLoad) {
  const std::string path = model_file("k3_dense_chain_keras");
  fkb_model_t m = load_cpu(path);
  ASSERT_NE(m, nullptr);
  int64_t nin = 0;
  ASSERT_EQ(fkb_n_inputs(m, &nin), FKB_OK);
  fkb_free(m);

  fkb_options o = quiet_cpu();
  o.max_weight_bytes = 100;
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_FORMAT);
  EXPECT_EQ(m, nullptr);
  EXPECT_NE(last_error().find("over the limit of 100 bytes"), std::string::npos) << last_error();
  EXPECT_NE(last_error().find(path), std::string::npos) << last_error();

  o.max_weight_bytes = -1;
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("max_weight_bytes"), std::string::npos) << last_error();

  ::setenv("FKB_MAX_WEIGHT_BYTES", "100", 1);
  o.max_weight_bytes = 0;
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_FORMAT);
  EXPECT_NE(last_error().find("over the limit of 100 bytes"), std::string::npos) << last_error();
  o.max_weight_bytes = int64_t{1} << 30;  // the option wins over the environment
  EXPECT_EQ(load_with(path, o, &m), FKB_OK) << last_error();
  fkb_free(m);
  ::setenv("FKB_MAX_WEIGHT_BYTES", "lots", 1);
  o.max_weight_bytes = 0;
  EXPECT_EQ(load_with(path, o, &m), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("FKB_MAX_WEIGHT_BYTES='lots' is not a byte count"), std::string::npos) << last_error();
  ::unsetenv("FKB_MAX_WEIGHT_BYTES");
}
