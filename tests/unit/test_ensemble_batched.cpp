// The CUDA batched-ensemble engine's program (kernels/ensemble_lowering.hpp) without a GPU: the lowering of
// 8 Keras members into stacked layers, the cublasGemmStridedBatchedEx geometry of every layer, and a host
// emulation that runs those exact strides with column-major indexing, against Keras' outputs of every
// member, numpy's mean and population standard deviation (tests/fixtures/ensemble8).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../../kernels/ensemble_lowering.hpp"
#include "fkb/model.hpp"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;
using fkb::test::relative_max_error;

std::vector<fkb::Model> members() {
  std::vector<fkb::Model> ms;
  for (int m = 0; m < 8; ++m)
    ms.push_back(
        fkb::Model::load(fixture_path("ensemble8/members/member_0" + std::to_string(m) + (m < 6 ? ".keras" : ".h5"))));
  return ms;
}

std::vector<const fkb::Model*> ptrs(const std::vector<fkb::Model>& ms) {
  std::vector<const fkb::Model*> p;
  for (const auto& m : ms) p.push_back(&m);
  return p;
}

TEST(EnsembleBatched, LoweringAndGemmGeometry) {
  const auto ms = members();
  fkb::cuda::BatchedEnsembleProgram p;
  std::string why;
  ASSERT_TRUE(fkb::cuda::lower_batched_ensemble(ptrs(ms), fkb::Precision::FP32, &p, &why)) << why;
  ASSERT_EQ(p.layers.size(), 3u);  // Dense+LeakyReLU, Dense(tanh), Dense
  EXPECT_EQ(p.members, 8);
  EXPECT_EQ(p.layers[0].acts.size(), 1u);
  EXPECT_EQ(p.layers[0].acts[0].first, fkb::ActKind::LeakyRelu);
  EXPECT_FLOAT_EQ(p.layers[0].acts[0].second.alpha, 0.3f);
  EXPECT_EQ(p.layers[1].acts[0].first, fkb::ActKind::Tanh);
  EXPECT_TRUE(p.layers[2].acts.empty());
  // Member 5's kernel of layer 1 sits at 5 * k * n in the stacked weights.
  const fkb::cuda::BatchedLayer& L = p.layers[1];
  const fkb::Array* k5 = nullptr;
  int dense = 0;
  for (const auto& n : ms[5].nodes)
    if (n.op == fkb::OpKind::Dense && dense++ == 1) k5 = n.find("kernel");
  ASSERT_NE(k5, nullptr);
  for (int64_t i = 0; i < L.k * L.n; ++i) ASSERT_EQ(p.weights[1][static_cast<size_t>(5 * L.k * L.n + i)], k5->data[i]);

  const auto g0 = fkb::cuda::layer_gemm(p, 0, 53), g1 = fkb::cuda::layer_gemm(p, 1, 53);
  EXPECT_EQ(g0.stride_b, 0);  // the input is shared by all members
  EXPECT_EQ(g0.m, 24);
  EXPECT_EQ(g0.k, 10);
  EXPECT_EQ(g0.ldb, 10);
  EXPECT_EQ(g1.stride_b, 53 * 24);
  EXPECT_EQ(g1.stride_c, 53 * 24);
  EXPECT_EQ(g1.batch, 8);
}

TEST(EnsembleBatched, EmulatedRunAgreesWithKeras) {
  const auto ms = members();
  fkb::cuda::BatchedEnsembleProgram p;
  std::string why;
  ASSERT_TRUE(fkb::cuda::lower_batched_ensemble(ptrs(ms), fkb::Precision::TF32, &p, &why)) << why;
  const std::string d = fixture_path("ensemble8/data.h5");
  const auto x = fkb::test::read_dataset(d, "input");
  const auto ref_members = fkb::test::read_dataset(d, "members");
  const auto ref_mean = fkb::test::read_dataset(d, "mean");
  const auto ref_std = fkb::test::read_dataset(d, "std");
  const int64_t nc = x.rows(), n = nc * p.nout;
  std::vector<float> mean(n), spread(n), mem(8 * n);
  fkb::cuda::emulate_batched_ensemble(p, x.values.data(), nc, mean.data(), spread.data(), mem.data());
  for (int m = 0; m < 8; ++m)
    EXPECT_LE(relative_max_error(mem.data() + m * n, ref_members.values.data() + m * n, n), 1e-5) << "member " << m;
  EXPECT_LE(relative_max_error(mean.data(), ref_mean.values.data(), n), 1e-5);
  EXPECT_LE(relative_max_error(spread.data(), ref_std.values.data(), n), 1e-5);
  // A chunk of 7 columns (other strides) gives those columns' results.
  std::vector<float> mean7(7 * p.nout);
  fkb::cuda::emulate_batched_ensemble(p, x.values.data() + 20 * p.nin, 7, mean7.data(), nullptr, nullptr);
  EXPECT_LE(relative_max_error(mean7.data(), ref_mean.values.data() + 20 * p.nout, 7 * p.nout), 1e-5);
}

TEST(EnsembleBatched, OtherArchitecturesFallBack) {
  std::string why;
  fkb::cuda::BatchedEnsembleProgram p;
  const auto conv = fkb::Model::load(fixture_path("k3_conv1d.keras"));
  EXPECT_FALSE(fkb::cuda::lower_batched_ensemble({&conv, &conv}, fkb::Precision::FP32, &p, &why));
  EXPECT_FALSE(why.empty());
  const auto bn = fkb::Model::load(fixture_path("k3_batchnorm.keras"));
  EXPECT_FALSE(fkb::cuda::lower_batched_ensemble({&bn}, fkb::Precision::FP32, &p, &why));
  EXPECT_NE(why.find("BatchNormalization"), std::string::npos) << why;
  const auto ms = members();
  EXPECT_FALSE(fkb::cuda::lower_batched_ensemble(ptrs(ms), fkb::Precision::BF16, &p, &why));
  EXPECT_NE(why.find("bf16"), std::string::npos) << why;
}

}  // namespace
