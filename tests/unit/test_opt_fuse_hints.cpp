// Optimizer passes `fuse_activations` and `merge_hints` on hand-made graphs.
#include <gtest/gtest.h>

#include "opt_test_util.hpp"

namespace fkb::opttest {
namespace {

TEST(OptFuseActivations, AnActivationBecomesItsOnlyProducersActivation) {
  Builder b(20);
  const int x = b.input({4});
  const int h = b.act(b.dense(x, 3), ActKind::Relu);
  const Model m = b.finish({b.act(h, ActKind::Tanh)});  // the Dense is relu now: tanh stays separate
  const opt::Optimized o = opt::optimize(m);
  ASSERT_EQ(o.model.nodes.size(), 3u);
  EXPECT_EQ(o.model.nodes[1].name, "Dense_1+Activation_2");
  EXPECT_EQ(o.model.nodes[1].activation.kind, ActKind::Relu);
  EXPECT_EQ(o.model.nodes[2].op, OpKind::Activation);
  EXPECT_EQ(o.model.nodes[2].activation.kind, ActKind::Tanh);
  EXPECT_TRUE(has_note(o, "fused Activation_2 into Dense_1"));

  opt::Options off;
  off.fuse_activations = false;
  EXPECT_EQ(count_op(opt::optimize(m, off).model, OpKind::Activation), 2);
}

TEST(OptFuseActivations, ElementWiseThroughAReshapeButSoftmaxOnlyDirectly) {
  Builder b(21);
  const int x = b.input({5, 3});
  const Model relu = b.finish({b.act(b.flatten(b.dense(x, 2)), ActKind::Relu)});
  const opt::Optimized o = opt::optimize(relu);
  EXPECT_EQ(count_op(o.model, OpKind::Activation), 0);
  EXPECT_EQ(o.model.nodes[1].activation.kind, ActKind::Relu);
  EXPECT_EQ(o.model.nodes[static_cast<size_t>(o.model.outputs[0])].op, OpKind::Reshape);

  Builder c(22);
  const int y = c.input({5, 3});
  // softmax over the 10 flattened values is not a softmax over each row of 2 units
  const Model softmax = c.finish({c.act(c.flatten(c.dense(y, 2)), ActKind::Softmax)});
  EXPECT_EQ(count_op(opt::optimize(softmax).model, OpKind::Activation), 1);
}

TEST(OptFuseActivations, PReluAfterAMergeTakesItsSlopesAlong) {
  Builder b(23);
  const int x1 = b.input({2, 3}), x2 = b.input({2, 3});
  Model m = b.finish({b.prelu(b.merge(OpKind::Add, {x1, x2}), false)});
  m.nodes[3].weights["alpha"].data = {0.1f, 0.2f, 0.3f};
  const opt::Optimized o = opt::optimize(m);
  ASSERT_EQ(o.model.nodes.size(), 3u);
  const Node& add = o.model.nodes[2];
  EXPECT_EQ(add.op, OpKind::Add);
  EXPECT_EQ(add.activation.kind, ActKind::PRelu);
  ASSERT_NE(add.find("alpha"), nullptr);
  EXPECT_EQ(add.find("alpha")->data, (std::vector<float>{0.1f, 0.2f, 0.3f, 0.1f, 0.2f, 0.3f}));
}

TEST(OptFuseActivations, NotWhenTheProducerHasAnotherReader) {
  Builder b(24);
  const int x = b.input({4});
  const int d = b.dense(x, 3);
  const Model m = b.finish({b.act(d, ActKind::Relu), b.dense(d, 2)});
  EXPECT_EQ(count_op(opt::optimize(m).model, OpKind::Activation), 1);
}

TEST(OptMergeHints, AddAccumulatesOntoTheOnlyReaderLinearDense) {
  Builder b(25);
  const int x = b.input({4});
  const int r = b.dense(x, 4, ActKind::Relu);
  const int lin = b.dense(x, 4);
  const Model m = b.finish({b.merge(OpKind::Add, {r, lin, x})});
  const opt::Optimized o = opt::optimize(m);
  const Node* add = find_op(o.model, OpKind::Add);
  ASSERT_NE(add, nullptr);
  EXPECT_EQ(add->accumulate_input, 1);  // the relu Dense cannot: its activation runs before the add

  Builder c(26);
  const int y = c.input({4});
  const int dy = c.dense(y, 4);
  const Model out_too = c.finish({c.merge(OpKind::Add, {y, dy}), dy});  // the Dense is also an output
  EXPECT_EQ(find_op(opt::optimize(out_too).model, OpKind::Add)->accumulate_input, -1);

  Builder e(27);
  const int z = e.input({3, 4}), w = e.input({4});
  const Model bcast = e.finish({e.merge(OpKind::Add, {e.dense(z, 4), w})});  // w broadcasts over the rows
  EXPECT_EQ(find_op(opt::optimize(bcast).model, OpKind::Add)->accumulate_input, -1);
}

TEST(OptMergeHints, ConcatInputsWrittenInPlace) {
  Builder b(28);
  const int x = b.input({3});
  const int a = b.dense(x, 2);
  const int out = b.dense(x, 2);                     // also a model output
  const int reshaped = b.dense(x, 4);
  const int r = b.reshape(reshaped, {4});            // a Reshape result
  const int twice = b.dense(x, 1);
  const Model m = b.finish({b.concat({a, x, out, r, twice, twice}), out, b.concat({a, b.dense(x, 5)})});
  const opt::Optimized o = opt::optimize(m);
  std::vector<const Node*> concats;
  for (const Node& n : o.model.nodes)
    if (n.op == OpKind::Concatenate) concats.push_back(&n);
  ASSERT_EQ(concats.size(), 2u);
  EXPECT_EQ(concats[0]->concat_in_place, (std::vector<uint8_t>{1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(concats[1]->concat_in_place, (std::vector<uint8_t>{0, 1}));  // `a` was claimed by the first

  Builder c(29);
  const int y = c.input({3, 2});
  const Model axis1 = c.finish({c.concat({c.dense(y, 2), c.dense(y, 2)}, 1)});  // along the steps
  EXPECT_TRUE(find_op(opt::optimize(axis1).model, OpKind::Concatenate)->concat_in_place.empty());
}

}  // namespace
}  // namespace fkb::opttest
