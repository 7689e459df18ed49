// The C API of ensembles (fkb_ensemble_*): parity with Keras (tests/fixtures/ensemble8: each member's own
// model.predict, numpy's mean and population standard deviation), float and double, and every error path.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fkb/fkb.h"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;
using fkb::test::relative_max_error;

fkb_ensemble_t sentinel() { return reinterpret_cast<fkb_ensemble_t>(static_cast<uintptr_t>(0x1)); }

TEST(EnsembleCApi, PredictAgreesWithKeras) {
  const std::string d = fixture_path("ensemble8/data.h5");
  const auto x = fkb::test::read_dataset(d, "input");
  const auto members = fkb::test::read_dataset(d, "members");
  const auto mean = fkb::test::read_dataset(d, "mean");
  const auto sd = fkb::test::read_dataset(d, "std");
  for (const char* p : {"ensemble8/members", "ensemble8/members.txt", "ensemble8/ensemble.yaml"}) {
    fkb_ensemble_t e = sentinel();
    ASSERT_EQ(fkb_ensemble_load(fixture_path(p).c_str(), "cpu", nullptr, 0, 0, &e), FKB_OK) << fkb_last_error();
    int64_t nm = 0, nin = 0, nout = 0;
    ASSERT_EQ(fkb_ensemble_n_members(e, &nm), FKB_OK);
    ASSERT_EQ(fkb_ensemble_n_inputs(e, &nin), FKB_OK);
    ASSERT_EQ(fkb_ensemble_n_outputs(e, &nout), FKB_OK);
    EXPECT_EQ(nm, 8);
    EXPECT_EQ(nin, 10);
    EXPECT_EQ(nout, 5);
    char name[128];
    ASSERT_EQ(fkb_ensemble_device_name(e, name, sizeof name), FKB_OK);
    EXPECT_NE(std::string(name).find("cpu-blocked"), std::string::npos) << name;

    const int64_t nc = x.rows(), n = nc * nout;
    std::vector<float> m32(n), s32(n), mem32(nm * n);
    ASSERT_EQ(fkb_ensemble_predict_f32(e, x.values.data(), nc, m32.data(), s32.data(), mem32.data()), FKB_OK)
        << fkb_last_error();
    EXPECT_LE(relative_max_error(m32.data(), mean.values.data(), n), 1e-5) << p;
    EXPECT_LE(relative_max_error(s32.data(), sd.values.data(), n), 1e-5) << p;
    for (int64_t m = 0; m < nm; ++m)
      EXPECT_LE(relative_max_error(mem32.data() + m * n, members.values.data() + m * n, n), 1e-5) << p << " " << m;

    std::vector<double> x64(x.values.begin(), x.values.end()), m64(n), s64(n);
    ASSERT_EQ(fkb_ensemble_predict_f64(e, x64.data(), nc, m64.data(), s64.data(), nullptr), FKB_OK) << fkb_last_error();
    std::vector<float> m64f(m64.begin(), m64.end()), s64f(s64.begin(), s64.end());
    EXPECT_LE(relative_max_error(m64f.data(), mean.values.data(), n), 1e-5) << p;
    EXPECT_LE(relative_max_error(s64f.data(), sd.values.data(), n), 1e-5) << p;
    EXPECT_EQ(fkb_ensemble_free(e), FKB_OK);
  }
}

TEST(EnsembleCApi, Errors) {
  fkb_ensemble_t e = sentinel();
  EXPECT_EQ(fkb_ensemble_load("/nonexistent/ens.yaml", "cpu", nullptr, 0, 0, &e), FKB_ERR_FILE);
  EXPECT_EQ(e, nullptr);
  EXPECT_NE(std::string(fkb_last_error()).find("/nonexistent/ens.yaml"), std::string::npos) << fkb_last_error();
  e = sentinel();
  EXPECT_EQ(fkb_ensemble_load(fixture_path("ensemble_mismatch/members.txt").c_str(), "cpu", nullptr, 0, 0, &e),
            FKB_ERR_SHAPE_MISMATCH);
  EXPECT_EQ(e, nullptr);
  EXPECT_NE(std::string(fkb_last_error()).find("odd_width.keras"), std::string::npos) << fkb_last_error();
  EXPECT_EQ(fkb_ensemble_load(nullptr, "cpu", nullptr, 0, 0, &e), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_load("", "cpu", nullptr, 0, 0, &e), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_load(fixture_path("ensemble8/members").c_str(), "cpu", nullptr, 0, 0, nullptr),
            FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_load(fixture_path("ensemble8/members").c_str(), "cpu", nullptr, -1, 0, &e),
            FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_load(fixture_path("ensemble8/members").c_str(), "cpu", nullptr, 0, -2, &e),
            FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_load(fixture_path("ensemble8/members").c_str(), "tpu", nullptr, 0, 0, &e),
            FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_last_error()).find("tpu"), std::string::npos);
  EXPECT_EQ(fkb_ensemble_load(fixture_path("ensemble8/members").c_str(), "cpu", "fp64", 0, 0, &e),
            FKB_ERR_INVALID_ARGUMENT);

  ASSERT_EQ(fkb_ensemble_load(fixture_path("ensemble8/members").c_str(), "cpu", nullptr, 4, 1, &e), FKB_OK);
  float x[20] = {0}, y[10], s[10];
  int64_t n;
  EXPECT_EQ(fkb_ensemble_predict_f32(nullptr, x, 2, y, s, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_last_error()).find("NULL"), std::string::npos);
  EXPECT_EQ(fkb_ensemble_predict_f32(e, x, -1, y, nullptr, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_predict_f32(e, nullptr, 2, y, nullptr, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_predict_f32(e, x, 2, nullptr, s, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_last_error()).find("mean is NULL"), std::string::npos);
  EXPECT_EQ(fkb_ensemble_predict_f32(e, nullptr, 0, nullptr, nullptr, nullptr), FKB_OK);  // ncol 0: no-op
  EXPECT_STREQ(fkb_last_error(), "");
  EXPECT_EQ(fkb_ensemble_n_members(nullptr, &n), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_n_members(e, nullptr), FKB_ERR_INVALID_ARGUMENT);
  char buf[4];
  EXPECT_EQ(fkb_ensemble_device_name(e, buf, 0), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(fkb_ensemble_device_name(e, buf, sizeof buf), FKB_OK);  // truncated, NUL-terminated
  EXPECT_EQ(std::string(buf), "cpu");
  EXPECT_EQ(fkb_ensemble_free(e), FKB_OK);
  EXPECT_EQ(fkb_ensemble_free(nullptr), FKB_OK);
}

}  // namespace
