// The issue-12 ops on a real GPU (skipped without one; label backend): merge layers with broadcasting,
// Normalization(invert=True) with broadcast mean/variance and Keras 3 int8 Dense, through the public Runtime on
// device "cuda", against Keras' outputs (tests/fixtures/ops_issue12/ops.h5). The host-logic tests
// (test_cuda_issue12_host.cpp) check the same lowering through the emulator on every machine.
#include <gtest/gtest.h>

#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "issue12_cases.hpp"

namespace {

using namespace fkb;
using namespace fkb::issue12;

double rel_err(const std::vector<float>& got, const test::Data& ref) {
  EXPECT_EQ(got.size(), ref.values.size());
  return test::relative_max_error(got.data(), ref.values.data(), static_cast<int64_t>(ref.values.size()));
}

TEST(CudaIssue12Device, OpsMatchKeras) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  std::vector<OpCase> all = merge_cases();
  for (auto& c : norm_cases()) all.push_back(std::move(c));
  for (auto& c : int8_cases())
    if (c.name != "int8/wide_1500_3") all.push_back(std::move(c));  // refused on CUDA (over the exact-sum limit)
  for (const auto& c : all) EXPECT_LE(rel_err(run_case(c, "cuda"), c.y), 1e-6) << c.name;
}

TEST(CudaIssue12Device, WideInt8DenseIsRefusedAndAutoFallsBackToTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  for (const auto& c : int8_cases()) {
    if (c.name != "int8/wide_1500_3") continue;
    EXPECT_THROW(run_case(c, "cuda"), Error);
    EXPECT_LE(rel_err(run_case(c, "auto"), c.y), 1e-6);
  }
}

}  // namespace
