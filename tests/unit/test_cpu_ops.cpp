// CPU backend, one op at a time, on hand-built IR models with hand-computed or double-precision expected
// values.
#include <gtest/gtest.h>

#include <cmath>

#include "cpu/cpu_program.hpp"
#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "test_cpu_util.hpp"

using namespace fkb;
using namespace fkb::cputest;

namespace {

std::vector<float> eye(int64_t n, float v) {
  std::vector<float> w(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) w[i * n + i] = v;
  return w;
}

}  // namespace

TEST(CpuOps, DenseTwiceIdentityPlusBias) {
  Model m;
  m.nodes.push_back(input("x", {4}));
  m.nodes.push_back(dense("d", 0, 4, 4, eye(4, 2.0f), {1, 2, 3, 4}));
  m = finish(m, {0}, {1});
  const std::vector<float> x = {1, 2, 3, 4, -1, -2, -3, -4, 0.5f, 0, 0, 0};
  auto y = run_cpu(m, x, 3);
  const std::vector<float> want = {3, 6, 9, 12, -1, -2, -3, -4, 2, 2, 3, 4};
  ASSERT_EQ(y.size(), want.size());
  for (size_t i = 0; i < y.size(); ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
}

TEST(CpuOps, DenseWithoutBiasAndNonSquare) {
  Model m;
  m.nodes.push_back(input("x", {2}));
  // kernel [[1, 2, 3], [4, 5, 6]]: y = (x0 + 4 x1, 2 x0 + 5 x1, 3 x0 + 6 x1)
  m.nodes.push_back(dense("d", 0, 2, 3, {1, 2, 3, 4, 5, 6}, {}));
  m = finish(m, {0}, {1});
  auto y = run_cpu(m, {1, 1, 2, -1}, 2);
  const std::vector<float> want = {5, 7, 9, -2, -1, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
}

TEST(CpuOps, DensePerLevelOnRank2Input) {
  Model m;
  m.nodes.push_back(input("x", {3, 2}));
  // Keras Dense on (levels, channels) applies the same kernel [[1, 2], [3, 4]] at every level.
  m.nodes.push_back(dense("d", 0, 2, 2, {1, 2, 3, 4}, {10, 20}));
  m = finish(m, {0}, {1});
  EXPECT_EQ(m.output_shape(0), (Shape{3, 2}));
  auto y = run_cpu(m, {1, 0, 0, 1, 1, 1}, 1);
  const std::vector<float> want = {11, 22, 13, 24, 14, 26};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
}

TEST(CpuOps, ReluLayerAfterDenseIsFused) {
  Model m;
  m.nodes.push_back(input("x", {3}));
  m.nodes.push_back(dense("d", 0, 3, 3, eye(3, 2.0f), {0, 0, 0}));
  m.nodes.push_back(activation("r", 1, ActKind::LeakyRelu, ActParams{0.3f}));
  m = finish(m, {0}, {2});
  auto prog = cpu::compile_program(m);
  EXPECT_EQ(prog.steps.size(), 1u);
  auto y = run_cpu(m, {1, -1, 0}, 1);
  EXPECT_FLOAT_EQ(y[0], 2.0f);
  EXPECT_FLOAT_EQ(y[1], -0.6f);
  EXPECT_FLOAT_EQ(y[2], 0.0f);
}

namespace {

// A Conv1D reference in double: Keras channels_last, 'valid' | 'same' | 'causal'.
std::vector<double> conv_ref(const std::vector<float>& x, int64_t steps, int64_t cin, const std::vector<float>& w,
                             const std::vector<float>& b, int64_t k, int64_t filters, int64_t stride, int64_t dil,
                             Padding pad, int64_t* steps_out) {
  const int64_t span = dil * (k - 1) + 1;
  int64_t out, left;
  if (pad == Padding::Valid) {
    out = (steps - span) / stride + 1;
    left = 0;
  } else if (pad == Padding::Causal) {
    out = (steps - 1) / stride + 1;
    left = span - 1;
  } else {
    out = (steps + stride - 1) / stride;
    left = std::max<int64_t>((out - 1) * stride + span - steps, 0) / 2;
  }
  *steps_out = out;
  std::vector<double> y(static_cast<size_t>(out * filters));
  for (int64_t t = 0; t < out; ++t)
    for (int64_t f = 0; f < filters; ++f) {
      double s = b[f];
      for (int64_t j = 0; j < k; ++j) {
        const int64_t src = t * stride + j * dil - left;
        if (src < 0 || src >= steps) continue;
        for (int64_t c = 0; c < cin; ++c) s += x[src * cin + c] * static_cast<double>(w[(j * cin + c) * filters + f]);
      }
      y[t * filters + f] = s;
    }
  return y;
}

}  // namespace

TEST(CpuOps, Conv1DAllPaddings) {
  struct Case {
    Padding pad;
    int64_t k, stride, dil;
  };
  for (Case cs : {Case{Padding::Valid, 3, 1, 1}, Case{Padding::Valid, 2, 2, 1}, Case{Padding::Same, 3, 1, 1},
                  Case{Padding::Same, 4, 2, 1}, Case{Padding::Causal, 3, 1, 2}, Case{Padding::Same, 1, 1, 1}}) {
    const int64_t steps = 9, cin = 3, filters = 4, ncol = 5;
    Model m;
    m.nodes.push_back(input("x", {steps, cin}));
    Node c = op_node("conv", OpKind::Conv1D, {0}, "Conv1D");
    c.units = filters;
    c.kernel_size = cs.k;
    c.stride = cs.stride;
    c.dilation = cs.dil;
    c.padding = cs.pad;
    auto w = random_vec(cs.k * cin * filters, 7);
    auto b = random_vec(filters, 8);
    c.weights["kernel"] = {{cs.k, cin, filters}, w};
    c.weights["bias"] = {{filters}, b};
    m.nodes.push_back(c);
    m = finish(m, {0}, {1});
    auto x = random_vec(ncol * steps * cin, 9);
    auto y = run_cpu(m, x, ncol);
    int64_t out = 0;
    std::vector<double> ref;
    for (int64_t col = 0; col < ncol; ++col) {
      std::vector<float> xc(x.begin() + col * steps * cin, x.begin() + (col + 1) * steps * cin);
      auto r = conv_ref(xc, steps, cin, w, b, cs.k, filters, cs.stride, cs.dil, cs.pad, &out);
      ref.insert(ref.end(), r.begin(), r.end());
    }
    ASSERT_EQ(m.output_shape(0), (Shape{out, filters}));
    ASSERT_EQ(y.size(), ref.size());
    EXPECT_LT(rel_err(y, ref), 1e-6) << "padding " << static_cast<int>(cs.pad) << " k " << cs.k << " stride "
                                     << cs.stride << " dilation " << cs.dil;
  }
}

namespace {

Node batchnorm(const std::string& name, int from, int64_t c, uint32_t seed, float eps = 1e-3f) {
  Node n = op_node(name, OpKind::BatchNorm, {from}, "BatchNormalization");
  n.axis = -1;
  n.epsilon = eps;
  n.weights["gamma"] = {{c}, random_vec(c, seed, 0.5f, 1.5f)};
  n.weights["beta"] = {{c}, random_vec(c, seed + 1, -0.5f, 0.5f)};
  n.weights["moving_mean"] = {{c}, random_vec(c, seed + 2, -0.5f, 0.5f)};
  n.weights["moving_variance"] = {{c}, random_vec(c, seed + 3, 0.5f, 2.0f)};
  return n;
}

// (x - mean) / sqrt(var + eps) * gamma + beta, per channel, in double.
void bn_ref(std::vector<double>& v, const Node& n, int64_t c) {
  const auto& g = n.weights.at("gamma").data;
  const auto& b = n.weights.at("beta").data;
  const auto& mu = n.weights.at("moving_mean").data;
  const auto& var = n.weights.at("moving_variance").data;
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t j = i % static_cast<size_t>(c);
    v[i] = (v[i] - mu[j]) / std::sqrt(static_cast<double>(var[j]) + n.epsilon) * g[j] + b[j];
  }
}

}  // namespace

TEST(CpuOps, BatchNormStandalone) {
  Model m;
  m.nodes.push_back(input("x", {5}));
  m.nodes.push_back(batchnorm("bn", 0, 5, 1));
  m = finish(m, {0}, {1});
  auto x = random_vec(4 * 5, 3, -3, 3);
  auto y = run_cpu(m, x, 4);
  auto ref = to_double(x);
  bn_ref(ref, m.nodes[1], 5);
  EXPECT_LT(rel_err(y, ref), 1e-6);
}

TEST(CpuOps, BatchNormOnFirstAxisOfRank2) {
  // BatchNormalization(axis=1) on a (steps, channels) input normalizes per step.
  Model m;
  m.nodes.push_back(input("x", {3, 2}));
  Node bn = batchnorm("bn", 0, 3, 5);
  bn.axis = 1;  // Keras axis counting the batch: per-column axis 0
  m.nodes.push_back(bn);
  m = finish(m, {0}, {1});
  auto x = random_vec(2 * 6, 4, -2, 2);
  auto y = run_cpu(m, x, 2);
  const Node& n = m.nodes[1];
  std::vector<double> ref(12);
  for (int i = 0; i < 12; ++i) {
    const int s = (i % 6) / 2;
    ref[i] = (x[i] - n.weights.at("moving_mean").data[s]) /
                 std::sqrt(static_cast<double>(n.weights.at("moving_variance").data[s]) + n.epsilon) *
                 n.weights.at("gamma").data[s] +
             n.weights.at("beta").data[s];
  }
  EXPECT_LT(rel_err(y, ref), 1e-6);
}

TEST(CpuOps, BatchNormFoldedIntoDenseEqualsUnfolded) {
  Model m;
  m.nodes.push_back(input("x", {6}));
  auto w = random_vec(6 * 8, 11);
  auto b = random_vec(8, 12);
  m.nodes.push_back(dense("d", 0, 6, 8, w, b));
  m.nodes.push_back(batchnorm("bn", 1, 8, 20));
  m.nodes.push_back(activation("act", 2, ActKind::Tanh));
  m = finish(m, {0}, {3});
  auto folded = cpu::compile_program(m);
  cpu::LowerOptions off;
  off.fold_affine = false;
  off.fuse_activations = false;
  auto unfolded = cpu::compile_program(m, off);
  EXPECT_EQ(folded.steps.size(), 1u) << "BN and the activation should fold into the Dense";
  EXPECT_EQ(unfolded.steps.size(), 3u);

  const int64_t ncol = 50;
  auto x = random_vec(ncol * 6, 13, -2, 2);
  CompileOptions co;
  co.threads = 1;
  std::vector<float> y1(ncol * 8), y2(ncol * 8);
  IoBinding io;
  io.inputs = {x.data()};
  io.outputs = {y1.data()};
  cpu::make_cpu_plan(folded, co)->run(io, ncol);
  io.outputs = {y2.data()};
  cpu::make_cpu_plan(unfolded, co)->run(io, ncol);

  auto ref = dense_ref(to_double(x), ncol, 6, 8, w, b);
  bn_ref(ref, m.nodes[2], 8);
  for (auto& v : ref) v = std::tanh(v);
  EXPECT_LT(rel_err(y1, ref), 1e-6);
  EXPECT_LT(rel_err(y2, ref), 1e-6);
  double diff = 0;
  for (size_t i = 0; i < y1.size(); ++i) diff = std::max(diff, std::fabs(double(y1[i]) - y2[i]));
  EXPECT_LT(diff, 1e-5);
}

TEST(CpuOps, BatchNormAfterNonlinearDenseFoldsIntoNextDense) {
  // ICON-style: Dense(tanh) -> BN -> Dense. BN cannot go into the first Dense (tanh between), so it is
  // folded into the following one.
  Model m;
  m.nodes.push_back(input("x", {4}));
  auto w1 = random_vec(4 * 6, 21), b1 = random_vec(6, 22);
  auto w2 = random_vec(6 * 3, 23), b2 = random_vec(3, 24);
  m.nodes.push_back(dense("d1", 0, 4, 6, w1, b1, ActKind::Tanh));
  m.nodes.push_back(batchnorm("bn", 1, 6, 30));
  m.nodes.push_back(dense("d2", 2, 6, 3, w2, b2));
  m = finish(m, {0}, {3});
  auto prog = cpu::compile_program(m);
  EXPECT_EQ(prog.steps.size(), 2u);
  const int64_t ncol = 33;
  auto x = random_vec(ncol * 4, 25, -2, 2);
  auto y = run_cpu(m, x, ncol);
  auto h = dense_ref(to_double(x), ncol, 4, 6, w1, b1);
  for (auto& v : h) v = std::tanh(v);
  bn_ref(h, m.nodes[2], 6);
  auto ref = dense_ref(h, ncol, 6, 3, w2, b2);
  EXPECT_LT(rel_err(y, ref), 1e-6);
}

TEST(CpuOps, BatchNormNotFoldedWhenDenseOutputHasAnotherReader) {
  Model m;
  m.nodes.push_back(input("x", {3}));
  auto w = random_vec(9, 41), b = random_vec(3, 42);
  m.nodes.push_back(dense("d", 0, 3, 3, w, b));
  m.nodes.push_back(batchnorm("bn", 1, 3, 43));
  m = finish(m, {0}, {2, 1});  // the Dense output is also a model output
  auto prog = cpu::compile_program(m);
  EXPECT_EQ(prog.steps.size(), 2u);
  RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  Runtime rt(m, o);
  auto x = random_vec(2 * 3, 44);
  std::vector<float> ybn(6), yd(6);
  rt.predict(std::vector<const float*>{x.data()}, 2, std::vector<float*>{ybn.data(), yd.data()});
  auto d = dense_ref(to_double(x), 2, 3, 3, w, b);
  auto bn = d;
  bn_ref(bn, m.nodes[2], 3);
  EXPECT_LT(rel_err(yd, d), 1e-6);
  EXPECT_LT(rel_err(ybn, bn), 1e-6);
}

TEST(CpuOps, NormalizationAndRescaling) {
  Model m;
  m.nodes.push_back(input("x", {3}));
  Node nz = op_node("norm", OpKind::Normalization, {0}, "Normalization");
  nz.weights["mean"] = {{1, 3}, {100.0f, -2.0f, 0.5f}};  // Keras keeps a leading batch axis of 1
  nz.weights["variance"] = {{1, 3}, {4.0f, 0.25f, 0.0f}};
  m.nodes.push_back(nz);
  Node rs = op_node("rescale", OpKind::Rescaling, {1}, "Rescaling");
  rs.weights["scale"] = {{}, {0.5f}};
  rs.weights["offset"] = {{3}, {1.0f, 2.0f, 3.0f}};
  m.nodes.push_back(rs);
  m = finish(m, {0}, {2});
  auto y = run_cpu(m, {102, -1.5f, 0.5f, 98, -2, 0.5f + 1e-7f}, 2);
  // (x - mean) / max(sqrt(var), 1e-7), then * 0.5 + offset
  const double want[] = {(2.0 / 2) * 0.5 + 1, (0.5 / 0.5) * 0.5 + 2, 0 * 0.5 + 3,
                         (-2.0 / 2) * 0.5 + 1, 0 * 0.5 + 2, (double(0.5f + 1e-7f) - 0.5) / 1e-7 * 0.5 + 3};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(y[i], want[i], 1e-5 * std::max(1.0, std::fabs(want[i]))) << i;
}

TEST(CpuOps, MergeLayers) {
  struct Case {
    OpKind op;
    const char* cls;
  };
  const std::vector<float> a = {1, -2, 3, 4, 0.5f, -6};
  const std::vector<float> b = {2, 2, -3, 1, 0.25f, 7};
  const std::vector<float> c = {1, 1, 1, -1, -1, -1};
  for (Case cs : {Case{OpKind::Add, "Add"}, Case{OpKind::Subtract, "Subtract"}, Case{OpKind::Multiply, "Multiply"},
                  Case{OpKind::Average, "Average"}, Case{OpKind::Maximum, "Maximum"},
                  Case{OpKind::Minimum, "Minimum"}}) {
    const bool three = cs.op != OpKind::Subtract;
    Model m;
    m.nodes.push_back(input("a", {3}));
    m.nodes.push_back(input("b", {3}));
    m.nodes.push_back(input("c", {3}));
    m.nodes.push_back(op_node("merge", cs.op, three ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 1}, cs.cls));
    m = finish(m, {0, 1, 2}, {3});
    RuntimeOptions o;
    o.device = "cpu";
    o.verbose = false;
    Runtime rt(m, o);
    std::vector<float> y(6);
    rt.predict(std::vector<const float*>{a.data(), b.data(), c.data()}, 2, std::vector<float*>{y.data()});
    for (int i = 0; i < 6; ++i) {
      double want = 0;
      switch (cs.op) {
        case OpKind::Add: want = double(a[i]) + b[i] + c[i]; break;
        case OpKind::Subtract: want = double(a[i]) - b[i]; break;
        case OpKind::Multiply: want = double(a[i]) * b[i] * c[i]; break;
        case OpKind::Average: want = (double(a[i]) + b[i] + c[i]) / 3; break;
        case OpKind::Maximum: want = std::max({a[i], b[i], c[i]}); break;
        case OpKind::Minimum: want = std::min({a[i], b[i], c[i]}); break;
        default: break;
      }
      EXPECT_NEAR(y[i], want, 1e-6) << cs.cls << " element " << i;
    }
  }
}

TEST(CpuOps, ConcatenateLastAndFirstAxis) {
  // a: (2, 2), b: (2, 1) concatenated on the last axis -> (2, 3); then with c: (1, 3) on axis 0 -> (3, 3).
  Model m;
  m.nodes.push_back(input("a", {2, 2}));
  m.nodes.push_back(input("b", {2, 1}));
  m.nodes.push_back(input("c", {1, 3}));
  Node cat1 = op_node("cat1", OpKind::Concatenate, {0, 1}, "Concatenate");
  cat1.axis = -1;
  m.nodes.push_back(cat1);
  Node cat2 = op_node("cat2", OpKind::Concatenate, {3, 2}, "Concatenate");
  cat2.axis = 1;  // Keras axis 1 = per-column axis 0
  m.nodes.push_back(cat2);
  m = finish(m, {0, 1, 2}, {4, 3});
  RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  Runtime rt(m, o);
  const std::vector<float> a = {1, 2, 3, 4, 10, 20, 30, 40};
  const std::vector<float> b = {5, 6, 50, 60};
  const std::vector<float> c = {7, 8, 9, 70, 80, 90};
  std::vector<float> y(18), y1(12);
  rt.predict(std::vector<const float*>{a.data(), b.data(), c.data()}, 2, std::vector<float*>{y.data(), y1.data()});
  const std::vector<float> want = {1, 2, 5, 3, 4, 6, 7, 8, 9, 10, 20, 50, 30, 40, 60, 70, 80, 90};
  const std::vector<float> want1 = {1, 2, 5, 3, 4, 6, 10, 20, 50, 30, 40, 60};
  EXPECT_EQ(y, want);
  EXPECT_EQ(y1, want1);
}

TEST(CpuOps, FlattenReshapeDropoutAreIdentities) {
  Model m;
  m.nodes.push_back(input("x", {2, 3}));
  m.nodes.push_back(op_node("drop", OpKind::Dropout, {0}, "Dropout"));
  m.nodes.push_back(op_node("flat", OpKind::Flatten, {1}, "Flatten"));
  Node r = op_node("reshape", OpKind::Reshape, {2}, "Reshape");
  r.target_shape = {3, -1};
  m.nodes.push_back(r);
  m = finish(m, {0}, {3});
  EXPECT_TRUE(cpu::compile_program(m).steps.empty());
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  EXPECT_EQ(run_cpu(m, x, 2), x);
}

TEST(CpuOps, SoftmaxLayerAndPReLU) {
  Model m;
  m.nodes.push_back(input("x", {2, 3}));
  Node pr = activation("prelu", 0, ActKind::PRelu);
  pr.keras_class = "PReLU";
  pr.weights["alpha"] = {{1, 3}, {0.1f, 0.2f, 0.3f}};  // shared over the first axis
  m.nodes.push_back(pr);
  Node sm = activation("softmax", 1, ActKind::Softmax);
  sm.keras_class = "Softmax";
  m.nodes.push_back(sm);
  m = finish(m, {0}, {2, 1});
  RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  Runtime rt(m, o);
  const std::vector<float> x = {1, -1, 2, -3, 0, -2};
  std::vector<float> ys(6), yp(6);
  rt.predict(std::vector<const float*>{x.data()}, 1, std::vector<float*>{ys.data(), yp.data()});
  const double p[] = {1, -0.2, 2, -0.3, 0, -0.6};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(yp[i], p[i], 1e-7) << i;
  for (int r = 0; r < 2; ++r) {
    double s = 0;
    for (int j = 0; j < 3; ++j) s += std::exp(p[r * 3 + j]);
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(ys[r * 3 + j], std::exp(p[r * 3 + j]) / s, 1e-6) << r << "," << j;
  }
}

TEST(CpuOps, InputThatIsAlsoAnOutputIsCopied) {
  Model m;
  m.nodes.push_back(input("x", {2}));
  m.nodes.push_back(dense("d", 0, 2, 2, eye(2, 3.0f), {}));
  m = finish(m, {0}, {1, 0, 1});
  RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  Runtime rt(m, o);
  const std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> a(4), b(4), c(4);
  rt.predict(std::vector<const float*>{x.data()}, 2, std::vector<float*>{a.data(), b.data(), c.data()});
  EXPECT_EQ(a, (std::vector<float>{3, 6, 9, 12}));
  EXPECT_EQ(b, x);
  EXPECT_EQ(c, a);
}

TEST(CpuOps, CustomLayerIsUnsupportedNamingTheLayer) {
  // Shape inference may already refuse an unregistered custom class; either way the error names the layer
  // and its class, and the CPU backend never runs it.
  try {
    Model m;
    m.nodes.push_back(input("x", {2}));
    Node c = op_node("my_layer", OpKind::Custom, {0}, "MyCustomLayer");
    m.nodes.push_back(c);
    m = finish(m, {0}, {1});
    run_cpu(m, {1, 2}, 1);
    FAIL() << "expected Unsupported";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::Unsupported);
    EXPECT_NE(std::string(e.what()).find("my_layer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("MyCustomLayer"), std::string::npos) << e.what();
  }
  Node c = op_node("my_layer", OpKind::Custom, {0}, "MyCustomLayer");
  std::string why;
  EXPECT_FALSE(cpu::cpu_supports(c, &why));
  EXPECT_NE(why.find("MyCustomLayer"), std::string::npos) << why;
}
