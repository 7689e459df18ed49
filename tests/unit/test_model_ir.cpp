// Unit tests of the model IR on hand-built graphs.
#include <gtest/gtest.h>

#include "fkb/error.hpp"
#include "fkb/model.hpp"

namespace {

fkb::Node input(const std::string& name, fkb::Shape s) {
  fkb::Node n;
  n.name = name;
  n.keras_class = "InputLayer";
  n.op = fkb::OpKind::Input;
  n.shape = std::move(s);
  return n;
}

fkb::Node dense(const std::string& name, int from, int64_t in, int64_t units) {
  fkb::Node n;
  n.name = name;
  n.keras_class = "Dense";
  n.op = fkb::OpKind::Dense;
  n.inputs = {from};
  n.units = units;
  n.weights["kernel"] = {{in, units}, std::vector<float>(in * units, 0.5f)};
  n.weights["bias"] = {{units}, std::vector<float>(units, 0.0f)};
  return n;
}

}  // namespace

TEST(ModelIR, DenseShapesParamsAndFlops) {
  fkb::Model m;
  m.nodes.push_back(input("x", {5}));
  m.nodes.push_back(dense("d1", 0, 5, 3));
  m.nodes.push_back(dense("d2", 1, 3, 1));
  m.inputs = {0};
  m.outputs = {2};
  m.infer_shapes();
  EXPECT_EQ(m.output_shape(0), (fkb::Shape{1}));
  EXPECT_EQ(m.param_count(), 5 * 3 + 3 + 3 * 1 + 1);
  EXPECT_EQ(m.flops_per_column(), 2 * 5 * 3 + 3 + 2 * 3 * 1 + 1);
}

TEST(ModelIR, KernelShapeMismatchNamesLayerAndShapes) {
  fkb::Model m;
  m.nodes.push_back(input("x", {4}));
  m.nodes.push_back(dense("d1", 0, 5, 3));  // kernel says 5 inputs, the input has 4
  m.inputs = {0};
  m.outputs = {1};
  try {
    m.infer_shapes();
    FAIL() << "expected a shape error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::ShapeMismatch);
    std::string msg = e.what();
    EXPECT_NE(msg.find("d1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(5, 3)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("(4, 3)"), std::string::npos) << msg;
  }
}

TEST(ModelIR, ConcatenateAndReshape) {
  fkb::Model m;
  m.nodes.push_back(input("a", {6}));
  m.nodes.push_back(input("b", {3}));
  fkb::Node c;
  c.name = "cat";
  c.keras_class = "Concatenate";
  c.op = fkb::OpKind::Concatenate;
  c.inputs = {0, 1};
  c.axis = -1;
  m.nodes.push_back(c);
  fkb::Node r;
  r.name = "r";
  r.keras_class = "Reshape";
  r.op = fkb::OpKind::Reshape;
  r.inputs = {2};
  r.target_shape = {-1, 3};
  m.nodes.push_back(r);
  m.inputs = {0, 1};
  m.outputs = {3};
  m.infer_shapes();
  EXPECT_EQ(m.nodes[2].shape, (fkb::Shape{9}));
  EXPECT_EQ(m.nodes[3].shape, (fkb::Shape{3, 3}));
}
