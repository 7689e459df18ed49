// Hand-built IR models and double-precision reference helpers for the CPU backend unit tests.
// The references here are written independently of the runtime (no call into activations.hpp or the CPU
// kernels): plain loops in double precision.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "fkb/model.hpp"
#include "fkb/runtime.hpp"

namespace fkb::cputest {

inline Node input(const std::string& name, Shape s) {
  Node n;
  n.name = name;
  n.keras_class = "InputLayer";
  n.op = OpKind::Input;
  n.shape = std::move(s);
  return n;
}

inline Node dense(const std::string& name, int from, int64_t in, int64_t units, std::vector<float> kernel,
                  std::vector<float> bias, ActKind act = ActKind::Linear, ActParams p = {}) {
  Node n;
  n.name = name;
  n.keras_class = "Dense";
  n.op = OpKind::Dense;
  n.inputs = {from};
  n.units = units;
  n.weights["kernel"] = {{in, units}, std::move(kernel)};
  if (bias.empty()) {
    n.use_bias = false;
  } else {
    n.weights["bias"] = {{units}, std::move(bias)};
  }
  n.activation.kind = act;
  n.activation.params = p;
  return n;
}

inline Node op_node(const std::string& name, OpKind op, std::vector<int> inputs, const std::string& cls) {
  Node n;
  n.name = name;
  n.keras_class = cls;
  n.op = op;
  n.inputs = std::move(inputs);
  return n;
}

inline Node activation(const std::string& name, int from, ActKind k, ActParams p = {}) {
  Node n = op_node(name, OpKind::Activation, {from}, "Activation");
  n.activation.kind = k;
  n.activation.params = p;
  return n;
}

inline std::vector<float> random_vec(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(g);
  return v;
}

inline Model finish(Model m, std::vector<int> inputs, std::vector<int> outputs) {
  m.inputs = std::move(inputs);
  m.outputs = std::move(outputs);
  m.infer_shapes();
  return m;
}

/// y[c][j] = sum_i x[c][i] W[i][j] + b[j] in double.
inline std::vector<double> dense_ref(const std::vector<double>& x, int64_t ncol, int64_t in, int64_t units,
                                     const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<double> y(static_cast<size_t>(ncol * units));
  for (int64_t c = 0; c < ncol; ++c)
    for (int64_t j = 0; j < units; ++j) {
      double s = b.empty() ? 0.0 : b[j];
      for (int64_t i = 0; i < in; ++i) s += x[c * in + i] * static_cast<double>(w[i * units + j]);
      y[c * units + j] = s;
    }
  return y;
}

inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

/// Run a single-input single-output model on the CPU.
inline std::vector<float> run_cpu(const Model& m, const std::vector<float>& x, int64_t ncol, int threads = 1,
                                  int64_t max_batch = 4096) {
  RuntimeOptions o;
  o.device = "cpu";
  o.threads = threads;
  o.max_batch = max_batch;
  o.verbose = false;
  Runtime rt(m, o);
  std::vector<float> y(static_cast<size_t>(ncol * rt.n_outputs()));
  rt.predict(x.data(), ncol, y.data());
  return y;
}

/// max |got - ref| / max |ref| over doubles (the DESIGN.md contract).
inline double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e = std::max(e, std::fabs(static_cast<double>(got[i]) - ref[i]));
    if (std::isnan(got[i]) != std::isnan(ref[i])) e = INFINITY;
    m = std::max(m, std::fabs(ref[i]));
  }
  return m > 0 ? e / m : e;
}

}  // namespace fkb::cputest
