// Threads inside a rank (issue 10): in modes per-rank and cpu, one Session serves concurrent predict() calls
// from several std::threads, each chunk bitwise equal to the same call made serially, with consistent
// statistics; in mode node-aggregate (more than one rank per node group) a second call on a rank while one is
// in flight is refused with Status::Unsupported and touches nothing: the call in flight completes with the
// right numbers. The C API reports the refusal as FKB_ERR_UNSUPPORTED.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fkb/fkb_mpi.h"
#include "mpi_test_util.hpp"

using fkb::Error;
using fkb::Model;
using fkb::Status;
using fkb::mpi::Session;
using namespace fkb::test::mpi;

namespace {

Model cbrain() { return Model::load(fkb::test::fixture_path("k3_cbrain.keras")); }

}  // namespace

TEST(MpiThreads, PerRankAndCpuTakeConcurrentCalls) {
  const Model m = cbrain();
  const int64_t nin = m.input_size(0), nout = m.output_size(0);
  for (const char* mode : {"per-rank", "cpu"}) {
    Session s(MPI_COMM_WORLD, m, test_options(mode));
    for (int64_t chunk : {1, 7, 37, 512}) {
      const int64_t n = std::max<int64_t>(4 * chunk, 600), nchunks = (n + chunk - 1) / chunk;
      const std::vector<float> x = random_batch(n, nin, 17 + static_cast<uint32_t>(world_rank()));
      std::vector<float> serial(static_cast<size_t>(n * nout), -1.0f), threaded(serial.size(), -2.0f);
      for (int64_t c = 0; c < nchunks; ++c) {
        const int64_t lo = c * chunk, cnt = std::min(chunk, n - lo);
        s.predict(x.data() + lo * nin, cnt, serial.data() + lo * nout);
      }
      s.reset_stats();
      std::atomic<int64_t> next{0};
      std::atomic<int> failures{0};
      std::vector<std::thread> pool;
      for (int t = 0; t < 4; ++t)
        pool.emplace_back([&] {
          for (int64_t c; (c = next.fetch_add(1)) < nchunks;) {
            const int64_t lo = c * chunk, cnt = std::min(chunk, n - lo);
            try {
              s.predict(x.data() + lo * nin, cnt, threaded.data() + lo * nout);
            } catch (...) {
              ++failures;
            }
          }
        });
      for (auto& t : pool) t.join();
      EXPECT_EQ(failures.load(), 0) << mode << " chunk " << chunk;
      EXPECT_TRUE(bitwise_equal(threaded.data(), serial.data(), n * nout)) << mode << " chunk " << chunk;
      EXPECT_EQ(s.stats().calls, nchunks) << mode << " chunk " << chunk;
      EXPECT_EQ(s.stats().columns, n) << mode << " chunk " << chunk;
    }
  }
}

TEST(MpiThreads, NodeAggregateRefusesASecondCallOnARank) {
  if (world_size() < 2) GTEST_SKIP() << "needs 2 ranks in one node group";
  const Model m = cbrain();
  const int64_t nin = m.input_size(0), nout = m.output_size(0);
  Session s(MPI_COMM_WORLD, m, test_options("node-aggregate"));
  if (s.group_size() < 2) GTEST_SKIP() << "the ranks are not in one node group";
  const int64_t ncol = 5;
  const int size = world_size(), rank = world_rank();
  const std::vector<float> global = random_batch(ncol * size, nin, 99);
  const std::vector<int64_t> counts(static_cast<size_t>(size), ncol);
  const std::vector<float> expected = reference(m, global.data(), ncol * size);
  std::vector<float> y(static_cast<size_t>(ncol * nout), -1.0f), y2(y.size(), -3.0f);
  const float* x = global.data() + rank * ncol * nin;
  bool refused = true, untouched = true;
  if (rank == 0) {
    // The first call waits in the group (the other ranks join 1.5 s later); a second call from another thread
    // 0.3 s later must be refused at once, leaving the window, the first call and y2 alone.
    std::thread second([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      const auto t0 = std::chrono::steady_clock::now();
      try {
        s.predict(x, ncol, y2.data());
        refused = false;
      } catch (const Error& e) {
        refused = e.status() == Status::Unsupported && std::string(e.what()).find("node-aggregate") != std::string::npos &&
                  std::string(e.what()).find("one thread at a time") != std::string::npos;
      }
      refused = refused && std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(1000);
    });
    s.predict(x, ncol, y.data());
    second.join();
    for (float v : y2) untouched = untouched && v == -3.0f;
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    s.predict(x, ncol, y.data());
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(untouched);
  EXPECT_TRUE(bitwise_equal(y.data(), expected.data() + rank * ncol * nout, ncol * nout));
  // The session still works for everyone afterwards.
  std::fill(y.begin(), y.end(), -1.0f);
  s.predict(x, ncol, y.data());
  EXPECT_TRUE(all_ranks(bitwise_equal(y.data(), expected.data() + rank * ncol * nout, ncol * nout)));
}

TEST(MpiThreads, CApiOptionsAndCounts) {
  fkb_mpi_options o;
  ASSERT_EQ(fkb_mpi_options_init(&o), FKB_OK);
  EXPECT_EQ(o.nested_threads, 1);
  o.device = "cpu";
  o.verbose = 0;
  o.use_env = 0;
  o.nested_threads = -1;
  fkb_mpi_t s = nullptr;
  const std::string cb = fkb::test::fixture_path("k3_cbrain.keras");
  EXPECT_EQ(fkb_mpi_load(cb.c_str(), MPI_Comm_c2f(MPI_COMM_WORLD), &o, &s), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_mpi_last_error()).find("nested_threads"), std::string::npos);
  o.nested_threads = 2;
  ASSERT_EQ(fkb_mpi_load(cb.c_str(), MPI_Comm_c2f(MPI_COMM_WORLD), &o, &s), FKB_OK) << fkb_mpi_last_error();
  int64_t n = 0;
  EXPECT_EQ(fkb_mpi_input_count(s, &n), FKB_OK);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(fkb_mpi_output_count(s, &n), FKB_OK);
  EXPECT_EQ(n, 1);
  fkb_mpi_free(s);
  const std::string mio = fkb::test::fixture_path("k3_multi_io.keras");
  ASSERT_EQ(fkb_mpi_load(mio.c_str(), MPI_Comm_c2f(MPI_COMM_WORLD), &o, &s), FKB_OK) << fkb_mpi_last_error();
  EXPECT_EQ(fkb_mpi_input_count(s, &n), FKB_OK);
  EXPECT_EQ(n, 2);
  EXPECT_EQ(fkb_mpi_output_count(s, &n), FKB_OK);
  EXPECT_EQ(n, 2);
  fkb_mpi_free(s);
}
