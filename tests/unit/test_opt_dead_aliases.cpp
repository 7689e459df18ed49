// Optimizer passes `dead_nodes` and `aliases` on hand-made graphs.
#include <gtest/gtest.h>

#include "opt_test_util.hpp"

namespace fkb::opttest {
namespace {

TEST(OptDeadNodes, RemovesWhatNoOutputReadsAndKeepsEveryInput) {
  Builder b(1);
  const int x = b.input({4});
  const int unused_input = b.input({3});
  const int used = b.dense(x, 2);
  const int dead = b.dense(b.dense(x, 5), 6);  // a branch no output depends on
  (void)unused_input;
  (void)dead;
  const Model m = b.finish({used});
  const opt::Optimized o = opt::optimize(m, no_folding());
  EXPECT_EQ(o.model.nodes.size(), 3u);  // two inputs and the used Dense
  EXPECT_EQ(o.model.num_inputs(), 2);
  EXPECT_EQ(o.model.nodes[static_cast<size_t>(o.model.inputs[1])].shape, (Shape{3}));
  EXPECT_EQ(o.model.nodes[static_cast<size_t>(o.model.outputs[0])].name, m.nodes[static_cast<size_t>(used)].name);
  EXPECT_TRUE(has_note(o, "removed Dense_3 (no model output depends on it)"));
  EXPECT_TRUE(has_note(o, "removed Dense_4 (no model output depends on it)"));
}

TEST(OptAliases, DropoutAndLinearActivationGoFlattenBecomesReshape) {
  Builder b(2);
  const int x = b.input({5, 3});
  const int d = b.dense(b.dropout(x), 4);
  const int lin = b.act(d, ActKind::Linear);
  const int f = b.flatten(lin);
  const Model m = b.finish({b.dropout(f)});
  const opt::Optimized o = opt::optimize(m, no_folding());
  EXPECT_EQ(count_op(o.model, OpKind::Dropout), 0);
  EXPECT_EQ(count_op(o.model, OpKind::Activation), 0);
  EXPECT_EQ(count_op(o.model, OpKind::Flatten), 0);
  ASSERT_EQ(o.model.nodes.size(), 3u);  // Input, Dense, Reshape
  const Node& r = o.model.nodes[2];
  EXPECT_EQ(r.op, OpKind::Reshape);
  EXPECT_EQ(r.shape, (Shape{20}));
  EXPECT_EQ(r.target_shape, (Shape{20}));
  EXPECT_EQ(o.model.outputs[0], 2);                   // the output Dropout was replaced by what it read
  EXPECT_EQ(o.model.nodes[1].inputs, (std::vector<int>{0}));  // the Dense reads the input directly
  EXPECT_TRUE(has_note(o, "removed Dropout_1 (identity at inference)"));
}

TEST(OptAliases, AnOutputThatIsADropoutOfTheInputBecomesTheInput) {
  Builder b(3);
  const int x = b.input({6});
  const Model m = b.finish({b.dropout(x)});
  const opt::Optimized o = opt::optimize(m);
  ASSERT_EQ(o.model.nodes.size(), 1u);
  EXPECT_EQ(o.model.outputs[0], o.model.inputs[0]);
}

TEST(OptGraphEdit, ASharedLayerWhoseFirstCallIsRemovedKeepsOneFirstCall) {
  // Three calls of one shared Dense; the first call's result feeds nothing: it is removed, the second call becomes
  // the first one (shared_from -1) and the third points at it, so the layer's weights still count once.
  Builder b(5);
  const int x = b.input({4});
  const int c1 = b.dense(x, 3), c2 = b.dense(x, 3), c3 = b.dense(x, 3);
  (void)c1;
  Model m = b.finish({c2, c3});
  m.nodes[2].weights = m.nodes[1].weights;
  m.nodes[3].weights = m.nodes[1].weights;
  m.nodes[2].shared_from = 1;
  m.nodes[3].shared_from = 1;
  const opt::Optimized o = opt::optimize(m, no_folding());
  ASSERT_EQ(o.model.nodes.size(), 3u);
  EXPECT_EQ(o.model.nodes[1].shared_from, -1);
  EXPECT_EQ(o.model.nodes[2].shared_from, 1);
  EXPECT_EQ(o.model.param_count(), 4 * 3 + 3);
}

TEST(OptPipeline, RunningOnItsOwnOutputChangesNothing) {
  Builder b(4);
  const int x = b.input({6});
  const int h = b.act(b.batchnorm(b.dense(x, 8)), ActKind::Relu);
  const int y = b.merge(OpKind::Add, {b.dense(h, 8), b.dropout(h)});
  const Model m = b.finish({b.concat({b.dense(y, 3), b.dense(y, 2, ActKind::Tanh)})});
  const opt::Optimized once = opt::optimize(m);
  EXPECT_FALSE(once.notes.empty());
  const opt::Optimized twice = opt::optimize(once.model);
  EXPECT_TRUE(twice.notes.empty()) << twice.notes.front();
  ASSERT_EQ(twice.model.nodes.size(), once.model.nodes.size());
  for (size_t i = 0; i < once.model.nodes.size(); ++i) {
    EXPECT_EQ(twice.model.nodes[i].name, once.model.nodes[i].name);
    EXPECT_EQ(twice.model.nodes[i].op, once.model.nodes[i].op);
    EXPECT_EQ(twice.model.nodes[i].activation.kind, once.model.nodes[i].activation.kind);
  }
  EXPECT_EQ(opt::pass_names(), (std::vector<std::string>{"dead_nodes", "aliases", "affine", "fold_affine",
                                                           "fuse_activations", "merge_hints"}));
}

}  // namespace
}  // namespace fkb::opttest
