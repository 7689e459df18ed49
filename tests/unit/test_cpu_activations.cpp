// Every activation of the CPU backend against an independent double-precision formula written here from
// Keras' definitions (keras/src/activations/activations.py; tf_keras/activations.py for hard_sigmoid).
// The formulas deliberately do not call activations.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "cpu/cpu_program.hpp"
#include "test_cpu_util.hpp"

using namespace fkb;
using namespace fkb::cputest;

namespace {

struct ActCase {
  const char* name;
  ActKind kind;
  ActParams params;
  std::function<double(double)> ref;
};

double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double softplus_d(double x) { return std::log1p(std::exp(x)); }
double clip(double v, double lo, double hi) { return std::min(std::max(v, lo), hi); }

std::vector<ActCase> cases() {
  const double selu_a = 1.6732632423543772848170429916717;
  const double selu_s = 1.0507009873554804934193349852946;
  ActParams relu6;
  relu6.max_value = 6.0f;
  ActParams leaky{0.3f};
  ActParams relu_full;  // relu(x, negative_slope=0.1, max_value=4, threshold=0.5)
  relu_full.alpha = 0.1f;
  relu_full.max_value = 4.0f;
  relu_full.threshold = 0.5f;
  ActParams elu{1.0f};
  ActParams elu2{0.5f};
  return {
      {"linear", ActKind::Linear, {}, [](double x) { return x; }},
      {"relu", ActKind::Relu, {}, [](double x) { return x > 0 ? x : 0.0; }},
      {"relu6", ActKind::Relu, relu6, [](double x) { return clip(x, 0, 6); }},
      {"relu_slope_max_threshold", ActKind::Relu, relu_full,
       [](double x) {
         // Keras: x * (x > threshold), clipped to [0, max_value], minus negative_slope * relu(threshold - x)
         double y = x > 0.5 ? x : 0.0;
         y = clip(y, 0, 4);
         return y - 0.1 * std::max(0.5 - x, 0.0);
       }},
      {"leaky_relu", ActKind::LeakyRelu, leaky, [](double x) { return x >= 0 ? x : 0.3 * x; }},
      {"elu", ActKind::Elu, elu, [](double x) { return x > 0 ? x : std::exp(x) - 1; }},
      {"elu_alpha_0.5", ActKind::Elu, elu2, [](double x) { return x > 0 ? x : 0.5 * (std::exp(x) - 1); }},
      {"selu", ActKind::Selu, {},
       [=](double x) { return x > 0 ? selu_s * x : selu_s * selu_a * (std::exp(x) - 1); }},
      {"gelu", ActKind::Gelu, {}, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
      {"gelu_tanh", ActKind::GeluTanh, {},
       [](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }},
      {"sigmoid", ActKind::Sigmoid, {}, sigmoid_d},
      {"hard_sigmoid_keras2", ActKind::HardSigmoidK2, {}, [](double x) { return clip(0.2 * x + 0.5, 0, 1); }},
      {"hard_sigmoid_keras3", ActKind::HardSigmoidK3, {}, [](double x) { return clip(x + 3, 0, 6) / 6; }},
      {"hard_silu", ActKind::HardSilu, {}, [](double x) { return x * clip(x + 3, 0, 6) / 6; }},
      {"tanh", ActKind::Tanh, {}, [](double x) { return std::tanh(x); }},
      {"softplus", ActKind::Softplus, {}, softplus_d},
      {"softsign", ActKind::Softsign, {}, [](double x) { return x / (1 + std::fabs(x)); }},
      {"swish", ActKind::Swish, {}, [](double x) { return x * sigmoid_d(x); }},
      {"mish", ActKind::Mish, {}, [](double x) { return x * std::tanh(softplus_d(x)); }},
      {"exponential", ActKind::Exponential, {}, [](double x) { return std::exp(x); }},
  };
}

// Inputs over [-7, 7], with the kinks of every function (0, 0.5, +-2.5, +-3, 4, 6) replacing the first
// grid points; 4 columns of 29 features.
std::vector<float> grid() {
  std::vector<float> x;
  for (int i = 0; i < 116; ++i) x.push_back(-7.0f + 14.0f * static_cast<float>(i) / 115.0f);
  x[0] = -3.0f;
  x[1] = 0.0f;
  x[2] = 0.5f;
  x[3] = 3.0f;
  x[4] = 4.0f;
  x[5] = 6.0f;
  x[6] = -2.5f;
  x[7] = 2.5f;
  return x;
}

void expect_close(const std::vector<float>& y, const std::vector<float>& x, const ActCase& c, const char* how) {
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = c.ref(static_cast<double>(x[i]));
    EXPECT_NEAR(y[i], want, 1e-6 + 2e-6 * std::fabs(want)) << c.name << " (" << how << ") at x = " << x[i];
  }
}

}  // namespace

TEST(CpuActivations, AsDenseActivation) {
  const auto x = grid();
  for (const auto& c : cases()) {
    Model m;
    m.nodes.push_back(input("x", {29}));
    std::vector<float> w(29 * 29, 0.0f);
    for (int i = 0; i < 29; ++i) w[i * 29 + i] = 1.0f;
    m.nodes.push_back(dense("d", 0, 29, 29, w, std::vector<float>(29, 0.0f), c.kind, c.params));
    m = finish(m, {0}, {1});
    expect_close(run_cpu(m, x, 4), x, c, "Dense activation");
  }
}

TEST(CpuActivations, AsStandaloneActivationLayer) {
  // An Activation layer right after the input has nothing to fuse into: the unfused element-wise step runs.
  const auto x = grid();
  for (const auto& c : cases()) {
    if (c.kind == ActKind::Linear) continue;
    Model m;
    m.nodes.push_back(input("x", {29}));
    m.nodes.push_back(activation("a", 0, c.kind, c.params));
    m = finish(m, {0}, {1});
    ASSERT_EQ(cpu::compile_program(m).steps.size(), 1u);
    EXPECT_EQ(cpu::compile_program(m).steps[0].kind, cpu::StepKind::Act);
    expect_close(run_cpu(m, x, 4), x, c, "Activation layer");
  }
}

TEST(CpuActivations, SoftmaxRowsOfDenseOutput) {
  Model m;
  m.nodes.push_back(input("x", {5}));
  std::vector<float> w(25, 0.0f);
  for (int i = 0; i < 5; ++i) w[i * 5 + i] = 1.0f;
  m.nodes.push_back(dense("d", 0, 5, 5, w, {0, 0, 0, 0, 0}, ActKind::Softmax));
  m = finish(m, {0}, {1});
  const std::vector<float> x = {1, 2, 3, 4, 5, -50, 0, 50, 100, 80, 0, 0, 0, 0, 0};
  auto y = run_cpu(m, x, 3);
  for (int c = 0; c < 3; ++c) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < 5; ++j) mx = std::max(mx, double(x[c * 5 + j]));
    for (int j = 0; j < 5; ++j) s += std::exp(x[c * 5 + j] - mx);
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(y[c * 5 + j], std::exp(x[c * 5 + j] - mx) / s, 1e-7) << c << "," << j;
  }
}

TEST(CpuActivations, NaNPropagatesThroughRelu) {
  Model m;
  m.nodes.push_back(input("x", {2}));
  m.nodes.push_back(activation("r", 0, ActKind::Relu));
  m = finish(m, {0}, {1});
  auto y = run_cpu(m, {NAN, -1.0f}, 1);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], 0.0f);
}
