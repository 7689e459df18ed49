// fkb::mpi::Session under mpirun (1, 2 and 4 ranks; one node): every mode gives each rank the single-process
// output for its columns — bitwise (same CPU backend, one thread) — and Keras' reference within 1e-5; uneven
// and changing column counts, zero columns, window growth, chunking, mixed float/double callers; bad input on
// one rank is an error on that rank only; a leader failure reaches every rank; statistics and reports.
//
// "Single-process output" is what one process computes for the same batch: in node-aggregate mode the
// leader's batch is the node's columns in node-rank order (on one node: the global batch), in per-rank and
// cpu modes the rank's own columns. (The CPU backend's GEMMs are not batch-size invariant — OpenBLAS takes
// other paths for small M — so bitwise equality holds against the batch actually run; against any other
// batch composition the tests check the numerical contract, 1e-5.)
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mpi_test_util.hpp"

using fkb::Error;
using fkb::Model;
using fkb::Status;
using fkb::mpi::Session;
using namespace fkb::test::mpi;

namespace {

const char* kModes[] = {"per-rank", "node-aggregate", "cpu"};

bool aggregate(const std::string& mode) { return mode == "node-aggregate"; }

// The expected output of this rank's columns: see the file comment. `counts` are the columns each rank
// actually contributes (0 for a rank whose input is rejected).
std::vector<float> expected_for_rank(const std::string& mode, const Model& m, const std::vector<float>& global_x,
                                     const std::vector<int64_t>& counts, int rank, int64_t max_batch) {
  const int64_t nin = m.input_size(0), nout = m.output_size(0);
  const auto d = offsets(counts);
  if (aggregate(mode)) {
    // Concatenate the contributing ranks' columns (global order already is node-rank order on one node).
    std::vector<float> x;
    std::vector<int64_t> pos(counts.size());
    int64_t total = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      pos[r] = total;
      x.insert(x.end(), global_x.begin() + d[r] * nin, global_x.begin() + (d[r] + counts[r]) * nin);
      total += counts[r];
    }
    const std::vector<float> y = reference(m, x.data(), total, max_batch);
    const size_t r = static_cast<size_t>(rank);
    return std::vector<float>(y.begin() + pos[r] * nout, y.begin() + (pos[r] + counts[r]) * nout);
  }
  return reference(m, global_x.data() + d[static_cast<size_t>(rank)] * nin, counts[static_cast<size_t>(rank)],
                   max_batch);
}

double rel_error(const std::vector<float>& got, const float* ref, int64_t n, double refmax) {
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(got[static_cast<size_t>(i)]) - ref[i]);
    e = std::isnan(d) ? INFINITY : std::max(e, d);
  }
  return refmax > 0 ? e / refmax : e;
}

class ModeTest : public ::testing::TestWithParam<const char*> {};

// ---------------------------------------------------------------------------------------------------------------
// Keras fixtures: 37 columns split unevenly over the ranks.

TEST_P(ModeTest, KerasFixturesBitwiseAndWithinContract) {
  const std::string mode = GetParam();
  const int rank = world_rank(), size = world_size();
  for (const std::string name : {"k3_cbrain_keras", "tk_climsim_h5", "k3_conv1d_keras", "k3_dense_chain_keras",
                                 "tk_odd_sizes_h5", "k3_batchnorm_keras"}) {
    SCOPED_TRACE(name + " mode " + mode);
    const nlohmann::json* fx = nullptr;
    for (const auto& f : fkb::test::manifest()["fixtures"])
      if (f["name"] == name) fx = &f;
    ASSERT_NE(fx, nullptr);  // same on every rank: no rank is left in a collective
    const std::string path = fkb::test::fixture_path((*fx)["file"].get<std::string>());
    const auto xin = fkb::test::read_dataset(fkb::test::fixture_path((*fx)["data"].get<std::string>()), "input_0");
    const auto yref = fkb::test::read_dataset(fkb::test::fixture_path((*fx)["data"].get<std::string>()), "output_0");
    const Model model = Model::load(path);
    const int64_t nin = model.input_size(0), nout = model.output_size(0), n = xin.rows();
    ASSERT_EQ(nin, xin.row_size());
    const auto counts = uneven_split(n, size);
    const auto d = offsets(counts);
    const int64_t mine = counts[static_cast<size_t>(rank)];
    double refmax = 0;
    for (float v : yref.values) refmax = std::max(refmax, static_cast<double>(std::fabs(v)));

    Session s(MPI_COMM_WORLD, path, test_options(mode));
    const std::vector<float> expect = expected_for_rank(mode, model, xin.values, counts, rank, 4096);

    // float
    std::vector<float> y(static_cast<size_t>(mine * nout), -7.0f);
    s.predict(xin.values.data() + d[static_cast<size_t>(rank)] * nin, mine, y.data());
    EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), mine * nout)) << "rank " << rank;
    const double err = rel_error(y, yref.values.data() + d[static_cast<size_t>(rank)] * nout, mine * nout, refmax);
    EXPECT_LE(err, 1e-5) << "rank " << rank << " vs Keras";

    // double
    std::vector<double> xd(xin.values.begin() + d[static_cast<size_t>(rank)] * nin,
                           xin.values.begin() + d[static_cast<size_t>(rank) + 1] * nin);
    std::vector<double> yd(static_cast<size_t>(mine * nout), -7.0);
    s.predict(xd.data(), mine, yd.data());
    EXPECT_TRUE(bitwise_equal(yd.data(), expect.data(), mine * nout)) << "rank " << rank << " (double)";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Counts that differ per rank and per call: zeros, growth of the shared window, batches above max_batch.

TEST_P(ModeTest, ChangingCountsBitwise) {
  const std::string mode = GetParam();
  const int rank = world_rank(), size = world_size();
  const std::string path = fkb::test::fixture_path("k3_cbrain.keras");
  const Model model = Model::load(path);
  const int64_t nin = model.input_size(0), nout = model.output_size(0);
  const int64_t max_batch = 64;  // forces the leader to chunk the bigger batches
  Session s(MPI_COMM_WORLD, path, test_options(mode, max_batch));

  // Per call: a rule giving each rank's count (rank, size) -> ncol.
  const std::vector<std::vector<int64_t>> plans = [&] {
    std::vector<std::vector<int64_t>> p;
    auto make = [&](auto f) {
      std::vector<int64_t> c;
      for (int r = 0; r < size; ++r) c.push_back(f(r));
      p.push_back(c);
    };
    make([](int r) { return int64_t(3 + 5 * r); });               // small, uneven
    make([](int r) { return int64_t(r % 2 ? 0 : 11); });          // zeros on odd ranks
    make([](int r) { return int64_t(40 + 17 * r); });             // the window grows
    make([](int) { return int64_t(0); });                         // nobody has columns
    make([](int r) { return int64_t(r == 0 ? 150 : 1); });        // one rank above max_batch
    make([&](int r) { return int64_t(r == size - 1 ? 0 : 2); });  // last rank empty
    make([](int r) { return int64_t(7 + r); });                   // smaller again: no regrowth
    return p;
  }();
  int64_t prev_window = s.window_columns();
  for (size_t call = 0; call < plans.size(); ++call) {
    SCOPED_TRACE("call " + std::to_string(call) + " mode " + mode);
    const auto& counts = plans[call];
    const auto d = offsets(counts);
    const int64_t total = d.back(), mine = counts[static_cast<size_t>(rank)];
    const auto gx = random_batch(total, nin, 1000u + static_cast<uint32_t>(call));
    const auto expect = expected_for_rank(mode, model, gx, counts, rank, max_batch);
    const float* x = mine > 0 ? gx.data() + d[static_cast<size_t>(rank)] * nin : nullptr;
    // Alternate the callers' type; in call 5 ranks mix float and double in one aggregated batch.
    const bool use_double = call % 2 == 1 || (call == 5 && rank % 2 == 1);
    if (use_double) {
      std::vector<double> xd(x, x + mine * nin), yd(static_cast<size_t>(mine * nout), -1.0);
      s.predict(mine > 0 ? xd.data() : nullptr, mine, mine > 0 ? yd.data() : nullptr);
      EXPECT_TRUE(bitwise_equal(yd.data(), expect.data(), mine * nout)) << "rank " << rank;
    } else {
      std::vector<float> y(static_cast<size_t>(mine * nout), -1.0f);
      s.predict(x, mine, mine > 0 ? y.data() : nullptr);
      EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), mine * nout)) << "rank " << rank;
    }
    if (aggregate(mode) && size > 1) {
      EXPECT_GE(s.window_columns(), total);
      if (total <= prev_window) EXPECT_EQ(s.window_columns(), prev_window) << "the window must not grow needlessly";
      prev_window = s.window_columns();
    } else {
      EXPECT_EQ(s.window_columns(), 0) << "no shared window outside node-aggregate";
    }
  }
  EXPECT_EQ(s.stats().calls, static_cast<int64_t>(plans.size()));
  int64_t own = 0;
  for (const auto& c : plans) own += c[static_cast<size_t>(rank)];
  EXPECT_EQ(s.stats().columns, own);
}

TEST_P(ModeTest, ZeroColumnsWithNullPointers) {
  const std::string mode = GetParam();
  Session s(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), test_options(mode));
  EXPECT_NO_THROW(s.predict(static_cast<const float*>(nullptr), 0, static_cast<float*>(nullptr)));
  EXPECT_NO_THROW(s.predict(static_cast<const double*>(nullptr), 0, static_cast<double*>(nullptr)));
  EXPECT_EQ(s.stats().calls, 2);
  EXPECT_EQ(s.stats().columns, 0);
  EXPECT_EQ(s.stats().batch_columns, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Bad input on one rank: that rank gets the error, the others their correct outputs; nobody hangs (CTest
// TIMEOUT), and the next call works everywhere.

struct BadCase {
  const char* what;
  Status status;
};

TEST_P(ModeTest, BadInputOnOneRankIsThatRanksError) {
  const std::string mode = GetParam();
  const int rank = world_rank(), size = world_size();
  const int bad_rank = size - 1;
  const std::string path = fkb::test::fixture_path("k3_cbrain.keras");
  const Model model = Model::load(path);
  const int64_t nin = model.input_size(0), nout = model.output_size(0);
  Session s(MPI_COMM_WORLD, path, test_options(mode));
  const BadCase cases[] = {{"negative ncol", Status::InvalidArgument}, {"null x", Status::InvalidArgument},
                           {"null y", Status::InvalidArgument},        {"wide x", Status::ShapeMismatch},
                           {"narrow y", Status::ShapeMismatch},        {"x/y columns differ", Status::ShapeMismatch}};
  uint32_t seed = 77;
  for (const BadCase& bc : cases) {
    SCOPED_TRACE(std::string(bc.what) + " mode " + mode);
    std::vector<int64_t> counts;
    for (int r = 0; r < size; ++r) counts.push_back(5 + 3 * r);
    const auto d = offsets(counts);
    const auto gx = random_batch(d.back(), nin, seed++);
    std::vector<int64_t> contributing = counts;
    contributing[static_cast<size_t>(bad_rank)] = 0;
    const auto expect = expected_for_rank(mode, model, gx, contributing, rank, 4096);
    const int64_t mine = counts[static_cast<size_t>(rank)];
    const float* x = gx.data() + d[static_cast<size_t>(rank)] * nin;
    std::vector<float> y(static_cast<size_t>(mine * nout), -3.0f);
    const std::string w = bc.what;
    if (rank == bad_rank) {
      try {
        if (w == "negative ncol") s.predict(x, -1, y.data());
        if (w == "null x") s.predict(nullptr, mine, y.data());
        if (w == "null y") s.predict(x, mine, nullptr);
        if (w == "wide x") s.predict_checked(x, nin + 1, mine, y.data(), nout, mine);
        if (w == "narrow y") s.predict_checked(x, nin, mine, y.data(), nout - 1, mine);
        if (w == "x/y columns differ") s.predict_checked(x, nin, mine, y.data(), nout, mine - 1);
        ADD_FAILURE() << "rank " << rank << ": bad input was accepted";
      } catch (const Error& e) {
        EXPECT_EQ(e.status(), bc.status) << e.what();
        EXPECT_NE(std::string(e.what()).find("rank " + std::to_string(rank)), std::string::npos) << e.what();
      }
      for (float v : y) EXPECT_EQ(v, -3.0f) << "a rejected call must not write y";
    } else {
      if (w == "wide x" || w == "narrow y" || w == "x/y columns differ")
        EXPECT_NO_THROW(s.predict_checked(x, nin, mine, y.data(), nout, mine));
      else
        EXPECT_NO_THROW(s.predict(x, mine, y.data()));
      EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), mine * nout)) << "rank " << rank;
    }
    // The next, good, call works on every rank (nobody is out of step).
    const auto expect2 = expected_for_rank(mode, model, gx, counts, rank, 4096);
    std::vector<float> y2(static_cast<size_t>(mine * nout));
    EXPECT_NO_THROW(s.predict(x, mine, y2.data()));
    EXPECT_TRUE(bitwise_equal(y2.data(), expect2.data(), mine * nout)) << "rank " << rank << " after the bad call";
  }
}

TEST_P(ModeTest, NonFiniteInputUnderErrorPolicyIsThatRanksError) {
  const std::string mode = GetParam();
  const int rank = world_rank(), size = world_size();
  const int bad_rank = size - 1;
  const std::string path = fkb::test::fixture_path("k3_dense_chain.keras");
  const Model model = Model::load(path);
  const int64_t nin = model.input_size(0), nout = model.output_size(0);
  auto o = test_options(mode);
  o.nonfinite = "error";
  Session s(MPI_COMM_WORLD, path, o);
  std::vector<int64_t> counts(static_cast<size_t>(size), 6);
  const auto d = offsets(counts);
  auto gx = random_batch(d.back(), nin, 5);
  gx[static_cast<size_t>((d[static_cast<size_t>(bad_rank)] + 4) * nin + 2)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int64_t> contributing = counts;
  contributing[static_cast<size_t>(bad_rank)] = 0;
  const auto expect = expected_for_rank(mode, model, gx, contributing, rank, 4096);
  std::vector<float> y(static_cast<size_t>(6 * nout));
  const float* x = gx.data() + d[static_cast<size_t>(rank)] * nin;
  if (rank == bad_rank) {
    try {
      s.predict(x, 6, y.data());
      ADD_FAILURE() << "NaN input accepted under policy 'error'";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::NonFinite) << e.what();
      EXPECT_NE(std::string(e.what()).find("column 4,"), std::string::npos) << "local column index: " << e.what();
    }
  } else {
    EXPECT_NO_THROW(s.predict(x, 6, y.data()));
    EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), 6 * nout));
  }
  // max_batch 2: the rank's 6 columns run in 3 chunks; the message still names the call's column 4 (not the
  // chunk's column 0), and nothing is written to y.
  o.max_batch = 2;
  Session chunked(MPI_COMM_WORLD, path, o);
  if (rank == bad_rank) {
    std::fill(y.begin(), y.end(), 7.0f);
    try {
      chunked.predict(x, 6, y.data());
      ADD_FAILURE() << "NaN input accepted under policy 'error' (max_batch 2)";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::NonFinite) << e.what();
      EXPECT_NE(std::string(e.what()).find("column 4,"), std::string::npos) << "call's column index: " << e.what();
    }
    if (!aggregate(mode))
      for (float v : y) EXPECT_EQ(v, 7.0f) << "outputs written before the non-finite check failed";
  } else {
    const auto expect2 = expected_for_rank(mode, model, gx, contributing, rank, 2);
    EXPECT_NO_THROW(chunked.predict(x, 6, y.data()));
    EXPECT_TRUE(bitwise_equal(y.data(), expect2.data(), 6 * nout));
  }
}

// Per-rank and cpu modes communicate nothing in predict: ranks may call it different numbers of times.
TEST_P(ModeTest, PredictIsLocalOutsideNodeAggregate) {
  const std::string mode = GetParam();
  if (aggregate(mode)) GTEST_SKIP() << "predict is collective in node-aggregate mode";
  const int rank = world_rank();
  const std::string path = fkb::test::fixture_path("k3_dense_chain.keras");
  const Model model = Model::load(path);
  Session s(MPI_COMM_WORLD, path, test_options(mode));
  const auto x = random_batch(9, model.input_size(0), 3);
  const auto expect = reference(model, x.data(), 9);
  std::vector<float> y(static_cast<size_t>(9 * model.output_size(0)));
  for (int i = 0; i <= rank; ++i) {
    s.predict(x.data(), 9, y.data());
    EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), 9 * model.output_size(0)));
  }
  EXPECT_EQ(s.stats().calls, rank + 1);
}

INSTANTIATE_TEST_SUITE_P(Modes, ModeTest, ::testing::ValuesIn(kModes), [](const auto& info) {
  std::string n = info.param;
  for (auto& c : n)
    if (c == '-') c = '_';
  return n;
});

// ---------------------------------------------------------------------------------------------------------------
// Node-aggregate specifics

TEST(NodeAggregate, TopologyOneGroupPerNodeOnTheCpu) {
  Session s(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), test_options("node-aggregate"));
  EXPECT_EQ(s.rank(), world_rank());
  EXPECT_EQ(s.size(), world_size());
  EXPECT_EQ(s.nodes(), 1);  // CI runs on one machine
  EXPECT_EQ(s.node(), 0);
  EXPECT_EQ(s.local_size(), world_size());
  EXPECT_EQ(s.local_rank(), world_rank());
  EXPECT_EQ(s.group_size(), world_size());
  EXPECT_EQ(s.is_leader(), s.local_rank() == 0);
  EXPECT_EQ(s.assigned_device(), "cpu");
  EXPECT_NE(s.device_name().find("cpu"), std::string::npos) << s.device_name();
  Session p(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), test_options("per-rank"));
  EXPECT_TRUE(p.is_leader());
  EXPECT_EQ(p.group_size(), 1);
}

// Two emulated nodes of two ranks (4 ranks; fewer ranks give one node): one group and one leader per node,
// each node's batch is its own ranks' columns, devices and local ranks are per node.
TEST(NodeAggregate, EmulatedNodesBatchPerNode) {
  const int rank = world_rank(), size = world_size();
  const std::string path = fkb::test::fixture_path("k3_cbrain.keras");
  const Model model = Model::load(path);
  const int64_t nin = model.input_size(0), nout = model.output_size(0);
  auto o = test_options("node-aggregate");
  o.ranks_per_node = 2;
  Session s(MPI_COMM_WORLD, path, o);
  const int nodes = (size + 1) / 2;
  EXPECT_EQ(s.nodes(), nodes);
  EXPECT_EQ(s.node(), rank / 2);
  EXPECT_EQ(s.local_rank(), rank % 2);
  EXPECT_EQ(s.is_leader(), rank % 2 == 0);
  EXPECT_EQ(s.group_size(), std::min(2, size - 2 * (rank / 2)));
  std::vector<int64_t> counts;
  for (int r = 0; r < size; ++r) counts.push_back(4 + 9 * r);
  const auto d = offsets(counts);
  const auto gx = random_batch(d.back(), nin, 123);
  // This node's batch: its ranks' columns only.
  const int first = 2 * (rank / 2), last = std::min(size, first + 2);
  const auto ynode = reference(model, gx.data() + d[static_cast<size_t>(first)] * nin,
                               d[static_cast<size_t>(last)] - d[static_cast<size_t>(first)]);
  const int64_t mine = counts[static_cast<size_t>(rank)];
  std::vector<float> y(static_cast<size_t>(mine * nout));
  s.predict(gx.data() + d[static_cast<size_t>(rank)] * nin, mine, y.data());
  EXPECT_TRUE(bitwise_equal(
      y.data(), ynode.data() + (d[static_cast<size_t>(rank)] - d[static_cast<size_t>(first)]) * nout, mine * nout));
  const fkb::mpi::Report r = s.report();
  EXPECT_EQ(r.nodes, nodes);
  EXPECT_EQ(r.groups, nodes);
  for (const auto& pr : r.per_rank) {
    EXPECT_EQ(pr.node, pr.rank / 2);
    const int64_t node_cols =
        d[static_cast<size_t>(std::min(size, 2 * (pr.rank / 2) + 2))] - d[static_cast<size_t>(2 * (pr.rank / 2))];
    EXPECT_EQ(pr.stats.batch_columns, pr.leader ? node_cols : 0) << "rank " << pr.rank;
  }
}

// Every waiting policy hands over correctly (auto on the CPU means sleep: futex waits).
TEST(NodeAggregate, EveryWaitPolicy) {
  const int rank = world_rank(), size = world_size();
  const std::string path = fkb::test::fixture_path("k3_dense_chain.keras");
  const Model model = Model::load(path);
  const int64_t nin = model.input_size(0), nout = model.output_size(0);
  for (const char* policy : {"auto", "spin", "yield", "sleep"}) {
    SCOPED_TRACE(policy);
    auto o = test_options("node-aggregate");
    o.wait = policy;
    Session s(MPI_COMM_WORLD, path, o);
    for (int call = 0; call < 5; ++call) {
      std::vector<int64_t> counts;
      for (int r = 0; r < size; ++r) counts.push_back((r + call) % 3 * 7);
      const auto d = offsets(counts);
      const auto gx = random_batch(d.back(), nin, 500u + static_cast<uint32_t>(call));
      const auto expect = expected_for_rank("node-aggregate", model, gx, counts, rank, 4096);
      const int64_t mine = counts[static_cast<size_t>(rank)];
      std::vector<float> y(static_cast<size_t>(mine * nout));
      // Rank 0 (the leader) is late on purpose: the others must wait for it, whatever the policy.
      if (rank == 0 && call % 2 == 0) usleep(3000);
      s.predict(mine ? gx.data() + d[static_cast<size_t>(rank)] * nin : nullptr, mine, mine ? y.data() : nullptr);
      EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), mine * nout)) << "call " << call;
    }
  }
}

TEST(NodeAggregate, LeaderFailureReachesEveryRank) {
  const int rank = world_rank(), size = world_size();
  const std::string path = fkb::test::fixture_path("k3_dense_chain.keras");
  const Model model = Model::load(path);
  const int64_t nin = model.input_size(0), nout = model.output_size(0);
  Session s(MPI_COMM_WORLD, path, test_options("node-aggregate"));
  std::vector<int64_t> counts(static_cast<size_t>(size), 4);
  const auto d = offsets(counts);
  const auto gx = random_batch(d.back(), nin, 9);
  const float* x = gx.data() + d[static_cast<size_t>(rank)] * nin;
  std::vector<float> y(static_cast<size_t>(4 * nout), -5.0f);
  if (s.is_leader()) fkb::mpi::detail::inject_leader_failures(s, 1);
  try {
    s.predict(x, 4, y.data());
    ADD_FAILURE() << "rank " << rank << ": the leader's failure was not reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::Internal) << e.what();
    if (size > 1) EXPECT_NE(std::string(e.what()).find("group leader (rank 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("injected failure"), std::string::npos) << e.what();
  }
  // Still in step: the next call succeeds everywhere.
  const auto expect = expected_for_rank("node-aggregate", model, gx, counts, rank, 4096);
  EXPECT_NO_THROW(s.predict(x, 4, y.data()));
  EXPECT_TRUE(bitwise_equal(y.data(), expect.data(), 4 * nout));
}

TEST(NodeAggregate, MultiInputMultiOutputModel) {
  const int rank = world_rank(), size = world_size();
  const std::string path = fkb::test::fixture_path("k3_multi_io.keras");
  const Model model = Model::load(path);
  ASSERT_EQ(model.num_inputs(), 2);
  ASSERT_EQ(model.num_outputs(), 2);
  for (const char* mode : kModes) {
    SCOPED_TRACE(mode);
    Session s(MPI_COMM_WORLD, path, test_options(mode));
    const auto counts = uneven_split(23 * size, size);
    const auto d = offsets(counts);
    const int64_t mine = counts[static_cast<size_t>(rank)], total = d.back();
    std::vector<std::vector<float>> gx, y;
    for (int i = 0; i < 2; ++i) gx.push_back(random_batch(total, model.input_size(i), 40u + static_cast<uint32_t>(i)));
    for (int i = 0; i < 2; ++i) y.emplace_back(static_cast<size_t>(mine * model.output_size(i)), -2.0f);
    const int64_t lo = aggregate(mode) ? 0 : d[static_cast<size_t>(rank)];
    const int64_t n = aggregate(mode) ? total : mine;
    // Reference: the batch one process would run (see the file comment).
    fkb::RuntimeOptions ro;
    ro.device = "cpu";
    ro.threads = 1;
    ro.verbose = false;
    fkb::Runtime rt(model, ro);
    std::vector<std::vector<float>> ref;
    for (int i = 0; i < 2; ++i) ref.emplace_back(static_cast<size_t>(n * model.output_size(i)));
    rt.predict(
        std::vector<const float*>{gx[0].data() + lo * model.input_size(0), gx[1].data() + lo * model.input_size(1)}, n,
        std::vector<float*>{ref[0].data(), ref[1].data()});
    s.predict(std::vector<const float*>{gx[0].data() + d[static_cast<size_t>(rank)] * model.input_size(0),
                                        gx[1].data() + d[static_cast<size_t>(rank)] * model.input_size(1)},
              mine, std::vector<float*>{y[0].data(), y[1].data()});
    const int64_t off = aggregate(mode) ? d[static_cast<size_t>(rank)] : 0;
    for (int i = 0; i < 2; ++i)
      EXPECT_TRUE(bitwise_equal(y[static_cast<size_t>(i)].data(),
                                ref[static_cast<size_t>(i)].data() + off * model.output_size(i),
                                mine * model.output_size(i)))
          << "output " << i << " rank " << rank;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Construction: all-or-nothing

TEST(Session, LoadFailureOnOneRankFailsEveryRank) {
  const int rank = world_rank(), size = world_size();
  for (const char* mode : kModes) {
    SCOPED_TRACE(mode);
    const std::string path =
        rank == size - 1 ? std::string("/nonexistent/model.h5") : fkb::test::fixture_path("k3_dense_chain.keras");
    try {
      Session s(MPI_COMM_WORLD, path, test_options(mode));
      ADD_FAILURE() << "rank " << rank << ": construction succeeded although rank " << size - 1 << " failed";
    } catch (const Error& e) {
      if (rank == size - 1) {
        EXPECT_EQ(e.status(), Status::FileError) << e.what();
      } else {
        EXPECT_EQ(e.status(), Status::FileError) << e.what();
        EXPECT_NE(std::string(e.what()).find("rank " + std::to_string(size - 1)), std::string::npos) << e.what();
      }
    }
  }
}

TEST(Session, BadOptionsFailEveryRank) {
  for (const char* field : {"mode", "precision", "device", "wait"}) {
    SCOPED_TRACE(field);
    auto o = test_options("per-rank");
    if (std::string(field) == "mode") o.mode = "sideways";
    if (std::string(field) == "precision") o.precision = "fp7";
    if (std::string(field) == "device") o.device = "tpu";
    if (std::string(field) == "wait") o.wait = "forever";
    try {
      Session s(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), o);
      ADD_FAILURE() << "accepted a bad " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::InvalidArgument) << e.what();
    }
  }
}

TEST(Session, DeviceFromEnvironmentOverridesOption) {
  auto o = test_options("per-rank");
  o.use_env = true;
  o.device = "cuda";  // would fail here (no GPU): FKB_DEVICE=cpu must win
  setenv("FKB_DEVICE", "cpu", 1);
  {
    Session s(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), o);
    EXPECT_EQ(s.assigned_device(), "cpu");
  }
  // A device this build cannot run fails on every rank alike (nobody hangs).
  setenv("FKB_DEVICE", "cuda:0", 1);
  o.device = "cpu";
  try {
    Session s(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), o);
    if (fkb::cuda_device_count() == 0) ADD_FAILURE() << "cuda:0 accepted without a GPU";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::CudaError) << e.what();
  }
  unsetenv("FKB_DEVICE");
  // Mode cpu ignores FKB_DEVICE.
  setenv("FKB_DEVICE", "cuda:0", 1);
  auto c = test_options("cpu");
  c.use_env = true;
  {
    Session s(MPI_COMM_WORLD, fkb::test::fixture_path("k3_dense_chain.keras"), c);
    EXPECT_EQ(s.assigned_device(), "cpu");
  }
  unsetenv("FKB_DEVICE");
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics and reports

TEST(Report, CountsMinMedianMaxAndJson) {
  const int rank = world_rank(), size = world_size();
  const std::string path = fkb::test::fixture_path("k3_dense_chain.keras");
  const Model model = Model::load(path);
  for (const char* mode : kModes) {
    SCOPED_TRACE(mode);
    Session s(MPI_COMM_WORLD, path, test_options(mode));
    const int64_t mine = rank + 1;  // rank r: r+1 columns per call, 3 calls
    const auto x = random_batch(mine, model.input_size(0), 1);
    std::vector<float> y(static_cast<size_t>(mine * model.output_size(0)));
    for (int i = 0; i < 3; ++i) s.predict(x.data(), mine, y.data());
    const fkb::mpi::Report r = s.report();
    ASSERT_EQ(static_cast<int>(r.per_rank.size()), size);
    int64_t all_cols = 0;
    for (int q = 0; q < size; ++q) {
      const auto& pr = r.per_rank[static_cast<size_t>(q)];
      EXPECT_EQ(pr.rank, q);
      EXPECT_EQ(pr.stats.calls, 3);
      EXPECT_EQ(pr.stats.columns, 3 * (q + 1));
      all_cols += pr.stats.columns;
      EXPECT_GE(pr.stats.total, 0.0);
      if (aggregate(mode)) {
        EXPECT_EQ(pr.stats.batch_columns, q == 0 ? 3 * int64_t(size) * (size + 1) / 2 : 0);
      } else {
        EXPECT_EQ(pr.stats.batch_columns, 3 * (q + 1));
      }
    }
    EXPECT_EQ(r.ranks, size);
    EXPECT_EQ(r.groups, aggregate(mode) ? 1 : size);
    EXPECT_EQ(r.mode, mode);
    const std::string text = r.text();
    for (const char* w : {"min", "median", "max", "calls", "pack", "H2D", "compute", "D2H", "wait"})
      EXPECT_NE(text.find(w), std::string::npos) << w << " missing from\n" << text;
    const auto j = nlohmann::json::parse(r.json());
    EXPECT_EQ(j["ranks"], size);
    EXPECT_EQ(j["per_rank"].size(), static_cast<size_t>(size));
    EXPECT_EQ(j["summary"]["columns"]["min"].get<double>(), 3.0);
    EXPECT_EQ(j["summary"]["columns"]["max"].get<double>(), 3.0 * size);
    const double median = size % 2 ? 3.0 * (size / 2 + 1) : 3.0 * (size / 2 + size / 2 + 1) / 2.0;
    EXPECT_EQ(j["summary"]["columns"]["median"].get<double>(), median);
    EXPECT_EQ(j["summary"]["calls"]["median"].get<double>(), 3.0);
    for (const char* k : {"pack_s", "unpack_s", "h2d_s", "compute_s", "d2h_s", "wait_s", "total_s"})
      EXPECT_TRUE(j["summary"].contains(k)) << k;
    EXPECT_EQ(all_cols, 3 * int64_t(size) * (size + 1) / 2);

    // The file: written by rank 0, readable by everyone after the collective returns.
    const std::string file = "fkb_mpi_report_" + std::string(mode) + "_" + std::to_string(size) + ".json";
    s.write_report_json(file);
    std::ifstream f(file);
    ASSERT_TRUE(f.good());
    const auto jf = nlohmann::json::parse(f);
    EXPECT_EQ(jf["per_rank"].size(), static_cast<size_t>(size));
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) std::remove(file.c_str());
    // A file rank 0 cannot write is an error on every rank.
    try {
      s.write_report_json("/nonexistent/dir/report.json");
      ADD_FAILURE() << "no error for an unwritable report path";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::FileError) << e.what();
    }
    s.reset_stats();
    EXPECT_EQ(s.stats().calls, 0);
  }
}

}  // namespace
