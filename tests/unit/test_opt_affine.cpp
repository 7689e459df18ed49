// Optimizer pass `affine` (BatchNormalization, Rescaling, Normalization -> Affine; PReLU slopes per element) and
// pass `fold_affine`, on hand-made graphs with hand-checkable numbers (expected values from Keras' formulas).
#include <gtest/gtest.h>

#include <cmath>

#include "fkb/error.hpp"

#include "opt_test_util.hpp"

namespace fkb::opttest {
namespace {

// x (2) -> Dense(2, kernel [[1, 2], [3, 4]], bias [0.5, -1]) -> BatchNormalization
Model dense_then_bn(ActKind dense_act, bool then_dense) {
  Builder b(10);
  const int x = b.input({2});
  const int d = b.dense(x, 2, dense_act);
  const int bn = b.batchnorm(d);
  Model m = b.finish({then_dense ? b.dense(bn, 1) : bn});
  Node& dn = m.nodes[1];
  dn.weights["kernel"].data = {1, 2, 3, 4};
  dn.weights["bias"].data = {0.5f, -1};
  Node& bnn = m.nodes[2];
  bnn.epsilon = 1e-3f;
  bnn.weights["gamma"].data = {2, 0.5f};
  bnn.weights["beta"].data = {0.25f, -0.75f};
  bnn.weights["moving_mean"].data = {1, -2};
  bnn.weights["moving_variance"].data = {3, 0.5f};
  if (then_dense) {
    m.nodes[3].weights["kernel"].data = {1.5f, -2};
    m.nodes[3].weights["bias"].data = {0.125f};
  }
  return m;
}

// Keras: inv = gamma / sqrt(var + eps); y = x * inv + (beta - mean * inv)
float bn_inv(int c) {
  const float gamma[] = {2, 0.5f}, var[] = {3, 0.5f};
  return gamma[c] / std::sqrt(var[c] + 1e-3f);
}
float bn_shift(int c) {
  const float beta[] = {0.25f, -0.75f}, mean[] = {1, -2};
  return beta[c] - mean[c] * bn_inv(c);
}

TEST(OptAffine, BatchNormBecomesAffineWithKerasScaleAndShift) {
  const opt::Optimized o = opt::optimize(dense_then_bn(ActKind::Linear, false), no_folding());
  const Node* a = find_op(o.model, OpKind::Affine);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->affine_of, OpKind::BatchNorm);
  EXPECT_FALSE(a->subtract_first);
  EXPECT_EQ(count_op(o.model, OpKind::BatchNorm), 0);
  for (int c = 0; c < 2; ++c) {
    EXPECT_FLOAT_EQ(a->find("scale")->data[c], bn_inv(c));
    EXPECT_FLOAT_EQ(a->find("shift")->data[c], bn_shift(c));
  }
}

TEST(OptAffine, RescalingScalarsAndNormalizationAreExpandedPerElement) {
  Builder b(11);
  const int x = b.input({3, 2});
  const int r = b.rescaling(x, 0.5f, 0.1f);
  const int n = b.normalization(r);
  Model m = b.finish({n});
  m.nodes[2].weights["mean"].data = {1, 2};
  m.nodes[2].weights["variance"].data = {4, 1e-20f};  // sqrt below Keras' epsilon 1e-7: the divisor is 1e-7
  const opt::Optimized o = opt::optimize(m, no_folding());
  ASSERT_EQ(count_op(o.model, OpKind::Affine), 2);
  const Node& rs = o.model.nodes[1];
  EXPECT_EQ(rs.affine_of, OpKind::Rescaling);
  EXPECT_EQ(rs.find("scale")->data, std::vector<float>(6, 0.5f));
  EXPECT_EQ(rs.find("shift")->data, std::vector<float>(6, 0.1f));
  const Node& nz = o.model.nodes[2];
  EXPECT_EQ(nz.affine_of, OpKind::Normalization);
  EXPECT_TRUE(nz.subtract_first);  // (x - mean) / d
  EXPECT_EQ(nz.find("shift")->data, (std::vector<float>{1, 2, 1, 2, 1, 2}));
  EXPECT_FLOAT_EQ(nz.find("scale")->data[0], 0.5f);
  EXPECT_FLOAT_EQ(nz.find("scale")->data[1], 1e7f);
}

TEST(OptAffine, PReluSlopesPerChannelBecomeOnePerElement) {
  Builder b(12);
  const int x = b.input({4, 3});
  Model m = b.finish({b.prelu(x, false)});
  m.nodes[1].weights["alpha"].data = {0.1f, 0.2f, 0.3f};
  const opt::Optimized o = opt::optimize(m);
  const Array* alpha = o.model.nodes[1].find("alpha");
  ASSERT_NE(alpha, nullptr);
  ASSERT_EQ(alpha->size(), 12);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(alpha->data[i], 0.1f * static_cast<float>(i % 3 + 1));
}

TEST(OptFoldAffine, BatchNormFoldsIntoTheLinearDenseBeforeIt) {
  const opt::Optimized o = opt::optimize(dense_then_bn(ActKind::Linear, false));
  EXPECT_EQ(count_op(o.model, OpKind::Affine), 0);
  ASSERT_EQ(o.model.nodes.size(), 2u);
  const Node& d = o.model.nodes[1];
  EXPECT_EQ(d.name, "Dense_1+BatchNormalization_2");
  EXPECT_TRUE(has_note(o, "folded BatchNormalization_2 into Dense_1"));
  // (x W + b) * s + t == x (W s) + (b s + t)
  const float w[] = {1, 2, 3, 4}, bias[] = {0.5f, -1};
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 2; ++j) EXPECT_FLOAT_EQ(d.find("kernel")->data[k * 2 + j], w[k * 2 + j] * bn_inv(j));
  for (int j = 0; j < 2; ++j) EXPECT_FLOAT_EQ(d.find("bias")->data[j], bias[j] * bn_inv(j) + bn_shift(j));
  EXPECT_EQ(o.model.outputs[0], 1);
}

TEST(OptFoldAffine, BatchNormAfterANonLinearDenseFoldsIntoTheDenseAfterIt) {
  const opt::Optimized o = opt::optimize(dense_then_bn(ActKind::Relu, true));
  EXPECT_EQ(count_op(o.model, OpKind::Affine), 0);
  ASSERT_EQ(o.model.nodes.size(), 3u);
  const Node& d = o.model.nodes[2];
  EXPECT_EQ(d.name, "BatchNormalization_2+Dense_3");
  EXPECT_TRUE(has_note(o, "folded BatchNormalization_2 into Dense_3"));
  // (x s + t) W + b == x (s W) + (t W + b)
  const float w2[] = {1.5f, -2};
  for (int k = 0; k < 2; ++k) EXPECT_FLOAT_EQ(d.find("kernel")->data[k], w2[k] * bn_inv(k));
  EXPECT_NEAR(d.find("bias")->data[0], 0.125f + bn_shift(0) * w2[0] + bn_shift(1) * w2[1], 1e-6);
  EXPECT_EQ(d.inputs, (std::vector<int>{1}));
}

TEST(OptFoldAffine, NormalizationIsNeverFoldedAndASecondReaderBlocksFolding) {
  Builder b(13);
  const int x = b.input({4});
  const int d = b.dense(x, 3);
  const int n = b.normalization(d);
  const Model m = b.finish({b.dense(n, 2)});
  const opt::Optimized o = opt::optimize(m);
  EXPECT_EQ(count_op(o.model, OpKind::Affine), 1);

  Builder c(14);
  const int y = c.input({4});
  const int dy = c.dense(y, 3);
  const Model two_readers = c.finish({c.batchnorm(dy), dy});  // the Dense is also an output
  const opt::Optimized p = opt::optimize(two_readers);
  EXPECT_EQ(count_op(p.model, OpKind::Affine), 1);
  EXPECT_TRUE(p.notes.empty());
}

TEST(OptFoldAffine, FoldsThroughAFlattenOnlyWhenTheScaleRepeatsWithTheUnits) {
  Builder b(15);
  const int x = b.input({5, 3});
  const Model scalar = b.finish({b.rescaling(b.flatten(b.dense(x, 2)), 2.0f, 1.0f)});
  const opt::Optimized o = opt::optimize(scalar);
  EXPECT_EQ(count_op(o.model, OpKind::Affine), 0);
  EXPECT_EQ(o.model.nodes.back().op, OpKind::Reshape);

  Builder c(16);
  const int y = c.input({5, 3});
  const Model per_feature = c.finish({c.batchnorm(c.flatten(c.dense(y, 2)))});  // 10 different scales
  EXPECT_EQ(count_op(opt::optimize(per_feature).model, OpKind::Affine), 1);
}

TEST(OptChecks, AnInt8DenseMustHoldInt8ValuesAndOneScalePerUnit) {
  Builder b(17);
  const int x = b.input({3});
  Model m = b.finish({b.dense(x, 2)});
  Node& d = m.nodes[1];
  d.quantized_int8 = true;
  d.weights["kernel"].data = {1, -128, 127, 0, 5, -7};
  d.weights["kernel_scale"] = {{2}, {0.5f, 0.25f}};
  EXPECT_NO_THROW(opt::optimize(m));
  d.weights["kernel"].data[2] = 127.5f;
  try {
    opt::optimize(m);
    FAIL() << "a kernel value of 127.5 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 'Dense_1' (Dense): int8 kernel holds 127.5"), std::string::npos)
        << e.what();
  }
  d.weights["kernel"].data[2] = 1;
  d.weights["kernel_scale"] = {{1}, {0.5f}};
  EXPECT_THROW(opt::optimize(m), Error);
}

}  // namespace
}  // namespace fkb::opttest
