// Reproducible mode on the CPU: a column's output is bitwise the same whatever the batch size and the
// column's position in it, also on the OpenBLAS path (CPUs without AVX2/AVX-512), and still Keras' numbers.
#include <gtest/gtest.h>

#include <cstring>

#include "cpu/packed_gemm.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace {

struct IsaLimit {
  explicit IsaLimit(fkb::cpu::PackedIsa isa) { fkb::cpu::set_packed_gemm_isa_limit(isa); }
  ~IsaLimit() { fkb::cpu::set_packed_gemm_isa_limit(fkb::cpu::PackedIsa::Avx512); }
};

void check_batch_independence(fkb::cpu::PackedIsa isa) {
  IsaLimit limit(isa);
  const fkb::Model m = fkb::Model::load(fkb::test::fixture_path("tk_cbrain.h5"));
  const auto x = fkb::test::read_dataset(fkb::test::fixture_path("tk_cbrain_h5.data.h5"), "input_0");
  const auto ref = fkb::test::read_dataset(fkb::test::fixture_path("tk_cbrain_h5.data.h5"), "output_0");
  const int64_t nin = m.input_size(), nout = m.output_size(), n0 = x.rows();
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.threads = 1;
  o.reproducible = true;
  o.verbose = false;
  fkb::Runtime rt(m, o);

  // A big batch: the fixture's columns four times over.
  const int64_t nbig = 4 * n0;
  std::vector<float> big(static_cast<size_t>(nbig * nin)), ybig(static_cast<size_t>(nbig * nout));
  for (int r = 0; r < 4; ++r) std::memcpy(big.data() + r * n0 * nin, x.values.data(), sizeof(float) * n0 * nin);
  rt.predict(big.data(), nbig, ybig.data());
  EXPECT_LE(fkb::test::relative_max_error(ybig.data(), ref.values.data(), n0 * nout), 1e-5);

  // Small batches of the same columns at other positions: bitwise equal.
  for (int64_t len : {1, 3, 6, 13}) {
    for (int64_t start : {0, 5, 20}) {
      std::vector<float> ys(static_cast<size_t>(len * nout));
      rt.predict(x.values.data() + start * nin, len, ys.data());
      const float* expect = ybig.data() + (2 * n0 + start) * nout;  // the third copy of those columns
      EXPECT_EQ(std::memcmp(ys.data(), expect, sizeof(float) * len * nout), 0)
          << "batch of " << len << " starting at column " << start << " differs from the same columns in a batch of "
          << nbig;
    }
  }
}

}  // namespace

TEST(CpuReproducible, OpenBlasPathIsBatchIndependent) { check_batch_independence(fkb::cpu::PackedIsa::None); }

TEST(CpuReproducible, PackedPathIsBatchIndependent) {
  if (!fkb::cpu::packed_gemm_available()) GTEST_SKIP() << "this CPU has no AVX2/AVX-512 packed kernel";
  check_batch_independence(fkb::cpu::PackedIsa::Avx512);
}
