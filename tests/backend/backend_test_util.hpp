// Shared helpers of the CUDA backend tests: a zoo of small hand-built models covering every op and the
// lowering's special cases (folding, fusion, in-place concatenation...), fixture cases, data cycling, and
// the CPU backend as the reference (ggml's test-backend-ops: the same op on the backend under test and on
// the CPU).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace fkb::cudatest {

// ---------------------------------------------------------------------------------------------------------------------
// Model builder

class Builder {
 public:
  explicit Builder(uint32_t seed) : rng_(seed) {}

  std::vector<float> random(int64_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng_);
    return v;
  }
  std::vector<float> uniform(int64_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng_);
    return v;
  }

  int input(Shape s) {
    Node n = node("InputLayer", OpKind::Input, {});
    n.shape = std::move(s);
    return add(n, true);
  }

  int dense(int x, int64_t units, ActKind act = ActKind::Linear, ActParams p = {}, bool bias = true) {
    const int64_t in = shape_of(x).back();
    Node n = node("Dense", OpKind::Dense, {x});
    n.units = units;
    n.weights["kernel"] = {{in, units}, random(in * units, 1.0f / std::sqrt(static_cast<float>(in)))};
    if (bias)
      n.weights["bias"] = {{units}, random(units, 0.3f)};
    else
      n.use_bias = false;
    n.activation.kind = act;
    n.activation.params = p;
    if (act == ActKind::PRelu) n.weights["alpha"] = {{units}, uniform(units, 0.05f, 0.5f)};
    return add(n);
  }

  int act(int x, ActKind k, ActParams p = {}) {
    Node n = node("Activation", OpKind::Activation, {x});
    n.activation.kind = k;
    n.activation.params = p;
    return add(n);
  }

  /// PReLU with one slope per element (`full`) or per last-axis channel.
  int prelu(int x, bool full) {
    Node n = node("PReLU", OpKind::Activation, {x});
    n.activation.kind = ActKind::PRelu;
    const Shape& s = shape_of(x);
    if (full)
      n.weights["alpha"] = {s, uniform(shape_size(s), 0.05f, 0.5f)};
    else
      n.weights["alpha"] = {{1, s.back()}, uniform(s.back(), 0.05f, 0.5f)};
    return add(n);
  }

  /// BatchNormalization over Keras `axis` (batch-inclusive: 1 = the first per-column axis, -1 = last).
  int batchnorm(int x, int axis = -1, bool center = true, bool scale = true) {
    Node n = node("BatchNormalization", OpKind::BatchNorm, {x});
    const Shape& s = shape_of(x);
    const int a = axis < 0 ? axis + static_cast<int>(s.size()) : axis - 1;
    const int64_t c = s[static_cast<size_t>(a)];
    n.axis = axis;
    n.epsilon = 1e-3f;
    n.weights["moving_mean"] = {{c}, random(c, 0.5f)};
    n.weights["moving_variance"] = {{c}, uniform(c, 0.3f, 2.0f)};
    if (scale) n.weights["gamma"] = {{c}, uniform(c, 0.5f, 1.5f)};
    if (center) n.weights["beta"] = {{c}, random(c, 0.3f)};
    return add(n);
  }

  int normalization(int x) {
    Node n = node("Normalization", OpKind::Normalization, {x});
    const int64_t c = shape_of(x).back();
    n.weights["mean"] = {{c}, random(c, 2.0f)};
    n.weights["variance"] = {{c}, uniform(c, 0.1f, 4.0f)};
    return add(n);
  }

  int rescaling(int x, float scale, float offset) {
    Node n = node("Rescaling", OpKind::Rescaling, {x});
    n.constants["scale"] = {{1}, {scale}};
    n.constants["offset"] = {{1}, {offset}};
    return add(n);
  }

  int merge(OpKind op, std::vector<int> xs) {
    const char* cls = op == OpKind::Add ? "Add" : op == OpKind::Subtract ? "Subtract" : op == OpKind::Multiply ? "Multiply"
                      : op == OpKind::Average ? "Average" : op == OpKind::Maximum ? "Maximum" : "Minimum";
    return add(node(cls, op, std::move(xs)));
  }

  /// Concatenate along Keras `axis` (-1 = last; 1 = first per-column axis).
  int concat(std::vector<int> xs, int axis = -1) {
    Node n = node("Concatenate", OpKind::Concatenate, std::move(xs));
    n.axis = axis;
    return add(n);
  }

  int conv1d(int x, int64_t filters, int64_t ksize, int64_t stride, int64_t dilation, Padding pad,
             ActKind act = ActKind::Linear, bool bias = true) {
    const int64_t cin = shape_of(x).back();
    Node n = node("Conv1D", OpKind::Conv1D, {x});
    n.units = filters;
    n.kernel_size = ksize;
    n.stride = stride;
    n.dilation = dilation;
    n.padding = pad;
    n.weights["kernel"] = {{ksize, cin, filters},
                           random(ksize * cin * filters, 1.0f / std::sqrt(static_cast<float>(ksize * cin)))};
    if (bias)
      n.weights["bias"] = {{filters}, random(filters, 0.3f)};
    else
      n.use_bias = false;
    n.activation.kind = act;
    return add(n);
  }

  int reshape(int x, Shape target) {
    Node n = node("Reshape", OpKind::Reshape, {x});
    n.target_shape = std::move(target);
    return add(n);
  }
  int flatten(int x) { return add(node("Flatten", OpKind::Flatten, {x})); }
  int dropout(int x) { return add(node("Dropout", OpKind::Dropout, {x})); }

  Model finish(std::vector<int> outputs) {
    m_.outputs = std::move(outputs);
    m_.info.name = "zoo";
    m_.infer_shapes();
    return m_;
  }

  const Shape& shape_of(int i) const { return shapes_[static_cast<size_t>(i)]; }

 private:
  Node node(const char* cls, OpKind op, std::vector<int> inputs) {
    Node n;
    n.name = std::string(cls) + "_" + std::to_string(m_.nodes.size());
    n.keras_class = cls;
    n.op = op;
    n.inputs = std::move(inputs);
    return n;
  }
  int add(const Node& n, bool is_input = false) {
    m_.nodes.push_back(n);
    const int id = static_cast<int>(m_.nodes.size()) - 1;
    if (is_input) m_.inputs.push_back(id);
    // Shapes so far (infer_shapes on a prefix model with this node as the output).
    Model prefix = m_;
    prefix.outputs = {id};
    prefix.infer_shapes();
    shapes_.push_back(prefix.nodes.back().shape);
    return id;
  }

  std::mt19937 rng_;
  Model m_;
  std::vector<Shape> shapes_;
};

// ---------------------------------------------------------------------------------------------------------------------
// The zoo: one small model per op and per lowering special case.

struct ZooCase {
  std::string name;
  std::function<Model()> make;
};

inline std::vector<ZooCase> zoo() {
  std::vector<ZooCase> z;
  auto add = [&](std::string name, std::function<Model()> f) { z.push_back({std::move(name), std::move(f)}); };

  // Dense with every element-wise activation fused (post-kernel or epilogue).
  const std::vector<std::pair<const char*, ActKind>> acts = {
      {"linear", ActKind::Linear},        {"relu", ActKind::Relu},           {"leaky", ActKind::LeakyRelu},
      {"elu", ActKind::Elu},              {"selu", ActKind::Selu},           {"gelu", ActKind::Gelu},
      {"gelu_tanh", ActKind::GeluTanh},   {"sigmoid", ActKind::Sigmoid},     {"hard_sigmoid_k2", ActKind::HardSigmoidK2},
      {"hard_sigmoid_k3", ActKind::HardSigmoidK3}, {"hard_silu", ActKind::HardSilu}, {"tanh", ActKind::Tanh},
      {"softplus", ActKind::Softplus},    {"softsign", ActKind::Softsign},   {"swish", ActKind::Swish},
      {"mish", ActKind::Mish},            {"exponential", ActKind::Exponential}, {"softmax", ActKind::Softmax},
      {"prelu", ActKind::PRelu}};
  for (const auto& a : acts) {
    const ActKind k = a.second;
    add(std::string("dense_") + a.first, [k] {
      Builder b(11);
      const int x = b.input({9});
      ActParams p;
      if (k == ActKind::LeakyRelu) p.alpha = 0.3f;
      if (k == ActKind::Elu) p.alpha = 0.7f;
      return b.finish({b.dense(b.dense(x, 33, k, p), 5)});
    });
    add(std::string("act_layer_") + a.first, [k] {  // a standalone element-wise kernel on a model input
      Builder b(12);
      const int x = b.input({4, 6});
      ActParams p;
      if (k == ActKind::LeakyRelu) p.alpha = 0.2f;
      if (k == ActKind::Elu) p.alpha = 1.0f;
      return b.finish({k == ActKind::PRelu ? b.prelu(x, false) : b.act(x, k, p)});
    });
  }
  add("relu_params", [] {
    Builder b(13);
    const int x = b.input({8});
    ActParams p;
    p.alpha = 0.05f;
    p.max_value = 1.0f;
    p.threshold = 0.1f;
    ActParams r6;
    r6.max_value = 6.0f;
    return b.finish({b.dense(b.dense(b.dense(x, 16, ActKind::Relu, p), 16, ActKind::Relu, r6), 3)});
  });
  add("prelu_full_rank2", [] {
    Builder b(14);
    const int x = b.input({5, 3});
    return b.finish({b.prelu(b.dense(x, 4), true)});
  });
  add("softmax_rank2_layer", [] {
    Builder b(15);
    const int x = b.input({6, 7});
    return b.finish({b.act(b.dense(x, 9), ActKind::Softmax)});
  });
  // Activations and affine layers behind a Flatten: element-wise ones fuse/fold through it (same data), a softmax
  // normalizes over the flattened axis (all 10 values), never over the Dense's rows of 2 units.
  add("softmax_after_flatten", [] {
    Builder b(18);
    const int x = b.input({5, 3});
    return b.finish({b.act(b.flatten(b.dense(x, 2)), ActKind::Softmax)});
  });
  add("relu_rescaling_after_flatten", [] {
    Builder b(19);
    const int x = b.input({5, 3});
    return b.finish({b.act(b.rescaling(b.flatten(b.dense(x, 2)), 0.5f, -0.25f), ActKind::Relu)});
  });
  add("dense_no_bias_rank2", [] {
    Builder b(16);
    const int x = b.input({30, 3});
    return b.finish({b.flatten(b.dense(b.dense(x, 5, ActKind::Tanh, {}, false), 2))});
  });
  add("dense_width1_width257", [] {
    Builder b(17);
    const int x = b.input({1});
    return b.finish({b.dense(b.dense(b.dense(x, 3, ActKind::Tanh), 257, ActKind::Relu), 1)});
  });
  // BatchNorm: folded into the producer, into the consumer, standalone (after a non-linear Dense), and over a
  // non-last axis.
  add("bn_fold_producer", [] {
    Builder b(21);
    const int x = b.input({6});
    return b.finish({b.dense(b.batchnorm(b.batchnorm(b.dense(x, 8)), -1, false, false), 3)});
  });
  add("bn_fold_consumer", [] {
    Builder b(22);
    const int x = b.input({6});
    return b.finish({b.dense(b.batchnorm(b.dense(x, 8, ActKind::Relu)), 3)});
  });
  add("bn_standalone_output", [] {
    Builder b(23);
    const int x = b.input({6});
    return b.finish({b.batchnorm(b.dense(x, 8, ActKind::Tanh), -1, true, false)});
  });
  add("bn_axis_steps", [] {
    Builder b(24);
    const int x = b.input({5, 4});
    return b.finish({b.flatten(b.batchnorm(b.dense(x, 3, ActKind::Elu), 1))});
  });
  add("normalization_rescaling", [] {
    Builder b(25);
    const int x = b.input({6});
    const int h = b.dense(b.normalization(x), 5, ActKind::Tanh);
    return b.finish({b.rescaling(b.dense(b.rescaling(h, 0.5f, 0.1f), 4), 2.0f, -1.0f)});
  });
  // Merges
  for (OpKind op : {OpKind::Add, OpKind::Subtract, OpKind::Multiply, OpKind::Average, OpKind::Maximum, OpKind::Minimum}) {
    add(std::string("merge_") + op_name(op), [op] {
      Builder b(31);
      const int x1 = b.input({7}), x2 = b.input({7});
      if (op == OpKind::Subtract) return b.finish({b.merge(op, {x1, x2})});
      const int x3 = b.input({7});
      return b.finish({b.merge(op, {x1, x2, x3})});
    });
  }
  add("merge_add_ten_inputs", [] {  // more operands than one element-wise kernel takes
    Builder b(32);
    std::vector<int> xs;
    const int x = b.input({5});
    for (int i = 0; i < 10; ++i) xs.push_back(b.dense(x, 4, ActKind::Tanh));
    std::vector<int> avg = xs;
    return b.finish({b.merge(OpKind::Add, xs), b.merge(OpKind::Average, avg)});
  });
  // Add fusion into the GEMM (beta = 1)
  add("add_fused_residual", [] {
    Builder b(33);
    const int x = b.input({16});
    const int h1 = b.dense(x, 16, ActKind::Relu);
    const int s = b.act(b.merge(OpKind::Add, {x, b.dense(h1, 16)}), ActKind::LeakyRelu, ActParams{0.2f});
    const int s2 = b.merge(OpKind::Add, {h1, b.dense(s, 16)});
    return b.finish({b.dense(s2, 4)});
  });
  add("add_fused_three_operands", [] {
    Builder b(34);
    const int x = b.input({12});
    const int a = b.dense(x, 8, ActKind::Tanh), c = b.dense(x, 8, ActKind::Sigmoid);
    return b.finish({b.merge(OpKind::Add, {a, c, b.dense(x, 8)})});
  });
  add("add_fused_later_operand", [] {  // the GEMM's accumulated operand is computed after the GEMM
    Builder b(35);
    const int x = b.input({10});
    const int d = b.dense(x, 6);
    const int later = b.dense(b.dense(x, 7, ActKind::Relu), 6, ActKind::Tanh);
    return b.finish({b.merge(OpKind::Add, {later, d})});
  });
  // Concatenate
  add("concat_slices", [] {  // ClimSim head: both Dense outputs written into their slice of the output
    Builder b(41);
    const int x = b.dense(b.input({12}), 32, ActKind::LeakyRelu, ActParams{0.15f});
    return b.finish({b.concat({b.dense(x, 20), b.dense(x, 8, ActKind::Relu)})});
  });
  add("concat_slice_read_elsewhere", [] {  // a slice also read by a later Dense (strided GEMM operand)
    Builder b(42);
    const int x = b.input({9});
    const int a = b.dense(x, 6, ActKind::Tanh), c = b.dense(x, 5);
    const int cat = b.concat({a, c});
    return b.finish({b.dense(b.merge(OpKind::Multiply, {b.dense(cat, 4), b.dense(a, 4)}), 3)});
  });
  add("concat_input_and_dense", [] {  // a model input cannot be a slice: copied
    Builder b(43);
    const int x = b.input({6});
    return b.finish({b.dense(b.concat({b.dense(x, 8, ActKind::Relu), x}), 3)});
  });
  add("concat_rank2_steps_axis", [] {  // along the first per-column axis: remapped copies
    Builder b(44);
    const int x = b.input({4, 3});
    const int a = b.dense(x, 5), c = b.dense(b.reshape(b.input({6}), {2, 3}), 5, ActKind::Tanh);
    return b.finish({b.flatten(b.concat({a, c}, 1))});
  });
  add("concat_rank2_last_axis", [] {
    Builder b(45);
    const int x = b.input({4, 3});
    return b.finish({b.dense(b.concat({b.dense(x, 5, ActKind::Relu), b.dense(x, 2), x}), 3)});
  });
  add("concat_nested_and_reshaped", [] {
    Builder b(46);
    const int x = b.input({8});
    const int a = b.dense(x, 4), c = b.dense(x, 6, ActKind::Elu), d = b.dense(x, 2);
    const int inner = b.concat({a, c});
    const int r = b.reshape(d, {2, 1});  // d is read through a Reshape: stays dense
    return b.finish({b.concat({inner, b.flatten(r), b.dense(x, 3, ActKind::Softmax)}), b.dense(inner, 2)});
  });
  // Conv1D
  for (int variant = 0; variant < 6; ++variant) {
    add("conv1d_" + std::to_string(variant), [variant] {
      Builder b(51 + static_cast<uint32_t>(variant));
      int x = b.reshape(b.input({90}), {30, 3});
      switch (variant) {
        case 0: x = b.conv1d(x, 4, 3, 1, 1, Padding::Valid, ActKind::Relu); break;
        case 1: x = b.conv1d(x, 5, 3, 1, 1, Padding::Same, ActKind::Tanh); break;
        case 2: x = b.conv1d(x, 4, 3, 1, 1, Padding::Causal); break;
        case 3: x = b.conv1d(x, 6, 3, 2, 1, Padding::Valid); break;
        case 4: x = b.conv1d(x, 4, 2, 1, 2, Padding::Causal, ActKind::Elu); break;
        case 5: x = b.conv1d(b.conv1d(x, 3, 1, 1, 1, Padding::Same), 3, 3, 2, 1, Padding::Same, ActKind::Linear, false);
      }
      return b.finish({b.dense(b.flatten(x), 7)});
    });
  }
  // Graph structure
  add("multi_io", [] {
    Builder b(61);
    const int i1 = b.input({5}), i2 = b.input({11});
    const int h = b.dense(b.concat({b.dense(i1, 8, ActKind::Relu), b.dense(i2, 8, ActKind::Tanh)}), 16, ActKind::Relu);
    return b.finish({b.dense(h, 3), b.dense(h, 1, ActKind::Sigmoid)});
  });
  add("identity_and_dropout", [] {
    Builder b(62);
    const int x = b.input({5});
    return b.finish({b.dropout(x), b.dense(b.dropout(b.dense(x, 4, ActKind::Relu)), 2)});
  });
  add("mlp_cbrain_like", [] {
    Builder b(63);
    int x = b.input({94});
    for (int i = 0; i < 4; ++i) x = b.act(b.dense(x, 64), ActKind::LeakyRelu, ActParams{0.3f});
    return b.finish({b.dense(x, 65)});
  });
  return z;
}

/// Random inputs for a model: [ncol][features] per input, normal(0, 1.5), seeded.
inline std::vector<std::vector<float>> random_inputs(const Model& m, int64_t ncol, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.5f);
  std::vector<std::vector<float>> xs;
  for (int i = 0; i < m.num_inputs(); ++i) {
    std::vector<float> x(static_cast<size_t>(ncol * m.input_size(i)));
    for (auto& v : x) v = d(g);
    xs.push_back(std::move(x));
  }
  return xs;
}

inline std::vector<const float*> ptrs(const std::vector<std::vector<float>>& v) {
  std::vector<const float*> p;
  for (const auto& x : v) p.push_back(x.data());
  return p;
}

/// Run on the CPU backend (the reference).
inline std::vector<std::vector<float>> run_cpu(const Model& m, const std::vector<std::vector<float>>& xs, int64_t ncol) {
  RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  o.threads = 2;
  o.max_batch = std::max<int64_t>(ncol, 1);
  Runtime rt(m, o);
  std::vector<std::vector<float>> ys;
  std::vector<float*> yp;
  for (int j = 0; j < m.num_outputs(); ++j) ys.emplace_back(static_cast<size_t>(ncol * m.output_size(j)), NAN);
  for (auto& y : ys) yp.push_back(y.data());
  rt.predict(ptrs(xs), ncol, yp);
  return ys;
}

/// Fixture cases of tests/fixtures/manifest.json that load (expect_error null).
struct FixtureCase {
  std::string name, model, config, data;
};

inline void PrintTo(const FixtureCase& c, std::ostream* os) { *os << c.name; }

/// Error bound of the bf16/fp16 modes on a fixture (max-abs error over max-abs reference). 2e-2 everywhere
/// except two fixtures where half precision cannot meet it whatever the engine does, so their error is only
/// recorded (and checked against a sanity bound): the ReLU-family models use ReLU with a threshold, a
/// discontinuous function (a value rounded across the threshold jumps by the threshold), and the Dense
/// chain stacks eleven different activations with weights at twice the Glorot scale (about 2e-2 in bf16).
inline bool precision_exempt(const std::string& fixture) {
  return fixture.find("relu_family") != std::string::npos || fixture.find("dense_chain") != std::string::npos;
}
inline double half_precision_bound(const std::string& fixture) { return precision_exempt(fixture) ? 0.25 : 2e-2; }
/// The same for tf32 (1e-3), whose GEMM operands keep 10 mantissa bits like fp16.
inline double tf32_bound(const std::string& fixture) { return precision_exempt(fixture) ? 0.25 : 1e-3; }

inline std::vector<FixtureCase> fixture_cases() {
  std::vector<FixtureCase> out;
  for (const auto& f : test::manifest()["fixtures"]) {
    if (!f["expect_error"].is_null()) continue;
    FixtureCase c;
    c.name = f["name"].get<std::string>();
    c.model = test::fixture_path(f["file"].get<std::string>());
    if (f.contains("config") && !f["config"].is_null()) c.config = test::fixture_path(f["config"].get<std::string>());
    c.data = test::fixture_path(f["data"].get<std::string>());
    out.push_back(c);
  }
  return out;
}

inline Model load_fixture(const FixtureCase& c) {
  Model::LoadOptions lo;
  lo.config_path = c.config;
  return Model::load(c.model, lo);
}

/// Rows of `d` cycled to `ncol` rows.
inline std::vector<float> cycle_rows(const test::Data& d, int64_t ncol) {
  const int64_t w = d.row_size();
  std::vector<float> out(static_cast<size_t>(ncol * w));
  for (int64_t c = 0; c < ncol; ++c)
    std::copy(d.values.begin() + (c % d.rows()) * w, d.values.begin() + (c % d.rows() + 1) * w, out.begin() + c * w);
  return out;
}

inline std::string sanitize(std::string s) {
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

}  // namespace fkb::cudatest
