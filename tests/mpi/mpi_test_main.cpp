// GoogleTest main for the MPI tests: MPI_Init/Finalize around RUN_ALL_TESTS; every rank runs every test (the
// tests are collective). After each test the ranks agree on its outcome, so rank 0 names tests that failed on
// any rank; ranks other than 0 print only their own failures. The exit status is non-zero on every rank when
// any rank failed.
#include <mpi.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                 r.message());
  }

private:
  int rank_;
};

// Collective after every test: which ranks failed it.
class AgreeOnOutcome : public ::testing::EmptyTestEventListener {
public:
  AgreeOnOutcome(int rank, int size) : rank_(rank), size_(size) {}
  void OnTestEnd(const ::testing::TestInfo& info) override {
    int failed = info.result()->Failed() ? 1 : 0;
    std::string who;
    for (int r = 0; r < size_; ++r) {
      int f = failed;
      MPI_Bcast(&f, 1, MPI_INT, r, MPI_COMM_WORLD);
      if (f) who += (who.empty() ? "" : ",") + std::to_string(r);
    }
    if (rank_ == 0 && !who.empty())
      std::fprintf(stderr, "[  FAILED  ] %s.%s failed on rank(s) %s of %d\n", info.test_suite_name(), info.name(),
                   who.c_str(), size_);
  }

private:
  int rank_, size_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  listeners.Append(new AgreeOnOutcome(rank, size));
  const int rc = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int worst = 0;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) std::printf("%s (%d rank(s))\n", worst ? "FAIL: a test failed on some rank" : "PASS", size);
  MPI_Finalize();
  return worst;
}
