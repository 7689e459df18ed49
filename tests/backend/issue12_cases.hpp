// Keras-made cases of the issue-12 backend ops (tests/fixtures/make_ops_fixtures.py -> ops_issue12/ops.h5):
// merge layers with broadcasting, Normalization(invert=True) with broadcast mean/variance, Keras 3 int8 Dense.
// Each case is a hand-built IR model of the one layer (shapes set here: the loader's shape inference is not
// under test), Keras' inputs and Keras' own output. Shared by the CPU unit tests and the CUDA host-logic tests.
#pragma once

#include <string>
#include <vector>

#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace fkb::issue12 {

struct OpCase {
  std::string name;  ///< group in ops.h5, e.g. "merge/Add_vec_2_1"
  Model model;
  std::vector<test::Data> x;  ///< Keras' inputs (batch first)
  test::Data y;               ///< Keras' output
};

inline std::string ops_h5() { return test::fixture_path("ops_issue12/ops.h5"); }

inline Shape per_column(const test::Data& d) { return Shape(d.shape.begin() + 1, d.shape.end()); }

inline Node input_node(const std::string& name, Shape s) {
  Node n;
  n.name = name;
  n.keras_class = "InputLayer";
  n.op = OpKind::Input;
  n.shape = std::move(s);
  return n;
}

inline OpKind merge_op(const std::string& cls) {
  if (cls == "Add") return OpKind::Add;
  if (cls == "Subtract") return OpKind::Subtract;
  if (cls == "Multiply") return OpKind::Multiply;
  if (cls == "Average") return OpKind::Average;
  if (cls == "Maximum") return OpKind::Maximum;
  return OpKind::Minimum;
}

/// Every merge case of the fixture (class x shapes; tags and input counts as make_ops_fixtures.py writes them).
inline std::vector<OpCase> merge_cases() {
  const std::vector<std::pair<std::string, int>> tags = {
      {"vec_2_1", 2},   {"vec_1_2", 2},          {"lc_mask_scale", 3}, {"lc_scale_first", 2},
      {"rank_diff", 2}, {"rank_diff_scalar", 2}, {"mid_axis", 2},      {"equal", 3}};
  std::vector<OpCase> out;
  for (const char* cls : {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}) {
    for (const auto& [tag, nin] : tags) {
      if (std::string(cls) == "Subtract" && nin != 2) continue;
      OpCase c;
      c.name = std::string("merge/") + cls + "_" + tag;
      Node m;
      m.name = "m";
      m.keras_class = cls;
      m.op = merge_op(cls);
      for (int i = 0; i < nin; ++i) {
        c.x.push_back(test::read_dataset(ops_h5(), c.name + "/x" + std::to_string(i)));
        c.model.nodes.push_back(input_node("in" + std::to_string(i), per_column(c.x.back())));
        c.model.inputs.push_back(i);
        m.inputs.push_back(i);
      }
      c.y = test::read_dataset(ops_h5(), c.name + "/y");
      m.shape = per_column(c.y);
      c.model.nodes.push_back(m);
      c.model.outputs = {nin};
      out.push_back(std::move(c));
    }
  }
  return out;
}

/// Normalization cases: mean/variance as Keras broadcasts them (batch axis dropped); names ending "_inv" invert.
inline std::vector<OpCase> norm_cases() {
  std::vector<OpCase> out;
  for (const char* tag : {"feat_inv", "feat_fwd", "scalar_inv", "scalar_fwd", "scalar_lc_inv", "scalar_lc_fwd",
                          "levels_inv", "levels_fwd", "channels_lc_inv", "channels_lc_fwd", "both_axes_inv",
                          "adapted_inv"}) {
    OpCase c;
    c.name = std::string("norm/") + tag;
    c.x.push_back(test::read_dataset(ops_h5(), c.name + "/x0"));
    c.y = test::read_dataset(ops_h5(), c.name + "/y");
    Node n;
    n.name = "n";
    n.keras_class = "Normalization";
    n.op = OpKind::Normalization;
    n.inputs = {0};
    n.shape = per_column(c.y);
    n.invert = std::string(tag).find("_inv") != std::string::npos;
    for (const char* role : {"mean", "variance"}) {
      test::Data d = test::read_dataset(ops_h5(), c.name + "/" + role);
      n.constants[role] = Array{d.shape, d.values};
    }
    c.model.nodes.push_back(input_node("x", per_column(c.x[0])));
    c.model.nodes.push_back(n);
    c.model.inputs = {0};
    c.model.outputs = {1};
    out.push_back(std::move(c));
  }
  return out;
}

/// Keras 3 int8 Dense cases (model.quantize("int8")): kernel (int8 values as float32), kernel_scale, bias.
inline std::vector<OpCase> int8_cases() {
  struct Spec {
    const char* tag;
    ActKind act;
    bool bias;
  };
  std::vector<OpCase> out;
  for (const Spec& sp : {Spec{"relu_6_4", ActKind::Relu, true}, Spec{"linear_nobias_33_7", ActKind::Linear, false},
                         Spec{"tanh_levels_5x8_6", ActKind::Tanh, true}, Spec{"wide_1500_3", ActKind::Linear, true}}) {
    OpCase c;
    c.name = std::string("int8/") + sp.tag;
    c.x.push_back(test::read_dataset(ops_h5(), c.name + "/x0"));
    c.y = test::read_dataset(ops_h5(), c.name + "/y");
    Node n;
    n.name = "d";
    n.keras_class = "Dense";
    n.op = OpKind::Dense;
    n.inputs = {0};
    n.shape = per_column(c.y);
    n.units = n.shape.back();
    n.quantized_int8 = true;
    n.activation.kind = sp.act;
    n.activation.keras_name = sp.act == ActKind::Relu ? "relu" : (sp.act == ActKind::Tanh ? "tanh" : "linear");
    n.use_bias = sp.bias;
    for (const char* role : {"kernel", "kernel_scale", "bias"}) {
      if (!sp.bias && std::string(role) == "bias") continue;
      test::Data d = test::read_dataset(ops_h5(), c.name + "/" + role);
      n.weights[role] = Array{d.shape, d.values};
    }
    c.model.nodes.push_back(input_node("x", per_column(c.x[0])));
    c.model.nodes.push_back(n);
    c.model.inputs = {0};
    c.model.outputs = {1};
    out.push_back(std::move(c));
  }
  return out;
}

/// Run a case on a device through the public Runtime; returns output 0.
inline std::vector<float> run_case(const OpCase& c, const std::string& device = "cpu", int threads = 1) {
  RuntimeOptions o;
  o.device = device;
  o.threads = threads;
  o.verbose = false;
  Runtime rt(c.model, o);
  std::vector<const float*> xs;
  for (const auto& d : c.x) xs.push_back(d.values.data());
  std::vector<float> y(c.y.values.size());
  rt.predict(xs, c.x[0].rows(), {y.data()});
  return y;
}

}  // namespace fkb::issue12
