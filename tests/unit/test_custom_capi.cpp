// Custom layers through the C API (fkb_register_layer / _ex / fkb_unregister_layer): a C callback computing
// ScaledTanh (scale 1.7 passed as user data) run on the fixtures k3_custom_keras / k3_custom_h5 against Keras'
// own outputs, a shape function reading the Keras config, status codes from the callbacks, and the errors.
// Every test unregisters what it registered.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "fkb/fkb.h"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;
using fkb::test::relative_max_error;

int scaled_tanh(const float* x, int64_t ncol, int64_t nin, float* y, int64_t nout, void* user_data) {
  if (nin != nout) return FKB_ERR_SHAPE_MISMATCH;
  const float s = *static_cast<const float*>(user_data);
  for (int64_t i = 0; i < ncol * nin; ++i) y[i] = s * std::tanh(x[i]);
  return 0;
}

int failing(const float*, int64_t, int64_t, float*, int64_t, void*) { return FKB_ERR_NON_FINITE; }
int odd_code(const float*, int64_t, int64_t, float*, int64_t, void*) { return 42; }

int zero_size(int64_t, const char*, int64_t* nout, void*) {
  *nout = 0;
  return 0;
}

fkb_model_t load(const std::string& file, int* rc = nullptr) {
  fkb_options o;
  fkb_options_init(&o);
  o.device = "cpu";
  o.verbose = 0;
  fkb_model_t m = nullptr;
  const int r = fkb_load(fixture_path(file).c_str(), &o, &m);
  if (rc) *rc = r;
  return m;
}

double keras_error(const std::string& file, const std::string& data) {
  const auto x = fkb::test::read_dataset(fixture_path(data), "input_0");
  const auto y = fkb::test::read_dataset(fixture_path(data), "output_0");
  int rc = 0;
  fkb_model_t m = load(file, &rc);
  EXPECT_EQ(rc, FKB_OK) << fkb_last_error();
  if (!m) return 1e30;
  std::vector<double> x64(x.values.begin(), x.values.end()), y64(y.values.size());
  EXPECT_EQ(fkb_predict_f64(m, x64.data(), x.rows(), y64.data()), FKB_OK) << fkb_last_error();
  fkb_free(m);
  std::vector<float> got(y64.begin(), y64.end());
  return relative_max_error(got.data(), y.values.data(), static_cast<int64_t>(got.size()));
}

TEST(CustomCApi, CallbackAgreesWithKeras) {
  static float scale = 1.7f;
  ASSERT_EQ(fkb_register_layer("ScaledTanh", scaled_tanh, 0, &scale), FKB_OK) << fkb_last_error();
  EXPECT_LE(keras_error("k3_custom.keras", "k3_custom_keras.data.h5"), 1e-5);
  EXPECT_LE(keras_error("k3_custom.h5", "k3_custom_h5.data.h5"), 1e-5);
  // Registering twice fails and keeps the first registration.
  EXPECT_EQ(fkb_register_layer("ScaledTanh", scaled_tanh, 0, &scale), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_last_error()).find("already registered"), std::string::npos) << fkb_last_error();
  EXPECT_EQ(fkb_unregister_layer("ScaledTanh"), FKB_OK);
  EXPECT_EQ(fkb_unregister_layer("ScaledTanh"), FKB_ERR_INVALID_ARGUMENT);
  // Nothing registered: the loader's message again.
  int rc = 0;
  EXPECT_EQ(load("k3_custom.keras", &rc), nullptr);
  EXPECT_EQ(rc, FKB_ERR_UNSUPPORTED);
  EXPECT_NE(std::string(fkb_last_error()).find("ScaledTanh"), std::string::npos);
}

// nout = nin only when the layer's Keras config (compact JSON) carries the fixture's scale.
int same_size_if_scaled(int64_t nin, const char* config_json, int64_t* nout, void*) {
  *nout = std::strstr(config_json, "\"scale\":1.7") ? nin : 0;
  return 0;
}

TEST(CustomCApi, ShapeFunctionAndStatusCodes) {
  static float scale = 1.7f;
  // The shape function keeps the size only when the config carries the fixture's scale.
  ASSERT_EQ(fkb_register_layer_ex("fkbtest>ScaledTanh", scaled_tanh, same_size_if_scaled, &scale), FKB_OK);
  EXPECT_LE(keras_error("k3_custom.h5", "k3_custom_h5.data.h5"), 1e-5);
  EXPECT_LE(keras_error("k3_custom.keras", "k3_custom_keras.data.h5"), 1e-5);  // bare name in .keras matches
  EXPECT_EQ(fkb_unregister_layer("fkbtest>ScaledTanh"), FKB_OK);

  // A size of 0 from the shape function: rejected at load, naming the layer.
  ASSERT_EQ(fkb_register_layer_ex("ScaledTanh", scaled_tanh, zero_size, &scale), FKB_OK);
  int rc = 0;
  EXPECT_EQ(load("k3_custom.keras", &rc), nullptr);
  EXPECT_EQ(rc, FKB_ERR_SHAPE_MISMATCH);
  EXPECT_NE(std::string(fkb_last_error()).find("scaled_tanh"), std::string::npos) << fkb_last_error();
  EXPECT_EQ(fkb_unregister_layer("ScaledTanh"), FKB_OK);

  // A fixed n_out that does not fit the next Dense.
  ASSERT_EQ(fkb_register_layer("ScaledTanh", scaled_tanh, 7, &scale), FKB_OK);
  EXPECT_EQ(load("k3_custom.keras", &rc), nullptr);
  EXPECT_EQ(rc, FKB_ERR_SHAPE_MISMATCH);
  EXPECT_EQ(fkb_unregister_layer("ScaledTanh"), FKB_OK);

  // Status codes from the layer function fail predict with that status (unknown codes: internal).
  const auto x = fkb::test::read_dataset(fixture_path("k3_custom_keras.data.h5"), "input_0");
  std::vector<float> y(x.rows() * 2);
  for (auto [fn, want] : {std::pair<fkb_layer_fn, int>{failing, FKB_ERR_NON_FINITE},
                          std::pair<fkb_layer_fn, int>{odd_code, FKB_ERR_INTERNAL}}) {
    ASSERT_EQ(fkb_register_layer("ScaledTanh", fn, 0, nullptr), FKB_OK);
    fkb_model_t m = load("k3_custom.keras", &rc);
    ASSERT_NE(m, nullptr) << fkb_last_error();
    EXPECT_EQ(fkb_predict_f32(m, x.values.data(), x.rows(), y.data()), want);
    EXPECT_NE(std::string(fkb_last_error()).find("scaled_tanh"), std::string::npos) << fkb_last_error();
    EXPECT_NE(std::string(fkb_last_error()).find("returned"), std::string::npos) << fkb_last_error();
    fkb_free(m);
    EXPECT_EQ(fkb_unregister_layer("ScaledTanh"), FKB_OK);
  }
}

TEST(CustomCApi, RegistrationErrors) {
  EXPECT_EQ(fkb_register_layer(nullptr, scaled_tanh, 0, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_register_layer("X", nullptr, 0, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_register_layer("X", scaled_tanh, -3, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_register_layer("", scaled_tanh, 0, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_register_layer("Dense", scaled_tanh, 0, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_last_error()).find("built-in"), std::string::npos);
  EXPECT_EQ(fkb_register_layer_ex("X", scaled_tanh, nullptr, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_unregister_layer(nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_unregister_layer("NeverRegistered"), FKB_ERR_INVALID_ARGUMENT);
}

}  // namespace
