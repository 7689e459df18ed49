// The packed-weight GEMMs (runtime/src/cpu/packed_gemm.cpp: AVX-512 and AVX2 kernels) on awkward shapes
// against a double reference, and the OpenBLAS path of the same plans (every path must give the same
// answers).
#include <gtest/gtest.h>

#include <cmath>

#include "cpu/packed_gemm.hpp"
#include "test_cpu_util.hpp"

using namespace fkb;
using namespace fkb::cputest;

namespace {

// The kernels this CPU has, each selected in turn (the limit is restored afterwards).
std::vector<cpu::PackedIsa> isas() {
  std::vector<cpu::PackedIsa> out;
  for (auto isa : {cpu::PackedIsa::Avx512, cpu::PackedIsa::Avx2}) {
    cpu::set_packed_gemm_isa_limit(isa);
    if (cpu::packed_gemm_isa() == isa) out.push_back(isa);
  }
  cpu::set_packed_gemm_isa_limit(cpu::PackedIsa::Avx512);
  return out;
}

struct IsaScope {
  explicit IsaScope(cpu::PackedIsa isa) { cpu::set_packed_gemm_isa_limit(isa); }
  ~IsaScope() { cpu::set_packed_gemm_isa_limit(cpu::PackedIsa::Avx512); }
};

}  // namespace

TEST(CpuPackedGemm, AwkwardShapesAndEpilogues) {
  if (isas().empty()) GTEST_SKIP() << "this CPU has neither AVX-512F nor AVX2+FMA: the OpenBLAS path is used";
  for (auto isa : isas()) {
  IsaScope scope(isa);
  SCOPED_TRACE("isa " + std::to_string(static_cast<int>(isa)));
  for (int64_t m : {1, 2, 3, 5, 12, 13, 25}) {
    for (int64_t n : {1, 15, 16, 17, 31, 32, 33, 65}) {
      for (int64_t k : {1, 3, 64}) {
        const auto a = random_vec(m * (k + 2), 1 + static_cast<uint32_t>(m * 1000 + n * 10 + k), -2, 2);
        const auto w = random_vec(k * n, 2 + static_cast<uint32_t>(n));
        const auto bias = random_vec(n, 3);
        auto packed = cpu::pack_weights(w.data(), k, n, bias.data());
        for (auto epi : {cpu::PackedEpilogue::None, cpu::PackedEpilogue::Bias, cpu::PackedEpilogue::BiasLeaky}) {
          // lda = k + 2 and ldc = n + 3: strided rows; the padding columns of C must stay untouched.
          std::vector<float> c(static_cast<size_t>(m * (n + 3)), 1234.5f);
          cpu::packed_gemm(a.data(), k + 2, m, packed, epi, 0.3f, c.data(), n + 3);
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              double s = 0;
              for (int64_t kk = 0; kk < k; ++kk) s += double(a[i * (k + 2) + kk]) * w[kk * n + j];
              if (epi != cpu::PackedEpilogue::None) s += bias[j];
              if (epi == cpu::PackedEpilogue::BiasLeaky && s < 0) s *= 0.3;
              ASSERT_NEAR(c[i * (n + 3) + j], s, 1e-5 * (1 + std::fabs(s)))
                  << "m " << m << " n " << n << " k " << k << " epi " << int(epi) << " at " << i << "," << j;
            }
            for (int64_t j = n; j < n + 3; ++j) ASSERT_EQ(c[i * (n + 3) + j], 1234.5f) << "overrun at " << i << "," << j;
          }
        }
      }
    }
  }
  }
}

TEST(CpuPackedGemm, LeakyEpiloguePropagatesNaN) {
  if (isas().empty()) GTEST_SKIP() << "no packed kernel on this CPU";
  for (auto isa : isas()) {
    IsaScope scope(isa);
    const std::vector<float> a = {NAN, 1.0f};
    const std::vector<float> w = {1.0f, 1.0f};
    auto packed = cpu::pack_weights(w.data(), 1, 1, nullptr);
    EXPECT_EQ(packed.isa, isa);
    std::vector<float> c(2);
    cpu::packed_gemm(a.data(), 1, 2, packed, cpu::PackedEpilogue::BiasLeaky, 0.3f, c.data(), 1);
    EXPECT_TRUE(std::isnan(c[0]));
    EXPECT_EQ(c[1], 1.0f);
  }
}

TEST(CpuPackedGemm, OpenBlasPathGivesTheSameAnswers) {
  // A model mixing fused (LeakyReLU) and unfused (tanh, softmax) epilogues, run through both GEMM paths.
  Model m;
  m.nodes.push_back(input("x", {40}));
  auto w1 = random_vec(40 * 70, 11), b1 = random_vec(70, 12);
  auto w2 = random_vec(70 * 33, 13), b2 = random_vec(33, 14);
  auto w3 = random_vec(33 * 9, 15), b3 = random_vec(9, 16);
  m.nodes.push_back(dense("d1", 0, 40, 70, w1, b1, ActKind::LeakyRelu, ActParams{0.2f}));
  m.nodes.push_back(dense("d2", 1, 70, 33, w2, b2, ActKind::Tanh));
  m.nodes.push_back(dense("d3", 2, 33, 9, w3, b3, ActKind::Softmax));
  m = finish(m, {0}, {3});
  const int64_t ncol = 301;
  auto x = random_vec(ncol * 40, 17, -2, 2);
  auto h = dense_ref(to_double(x), ncol, 40, 70, w1, b1);
  for (auto& v : h) v = v >= 0 ? v : 0.2 * v;
  h = dense_ref(h, ncol, 70, 33, w2, b2);
  for (auto& v : h) v = std::tanh(v);
  auto ref = dense_ref(h, ncol, 33, 9, w3, b3);
  for (int64_t c = 0; c < ncol; ++c) {
    double mx = -1e300, s = 0;
    for (int j = 0; j < 9; ++j) mx = std::max(mx, ref[c * 9 + j]);
    for (int j = 0; j < 9; ++j) s += std::exp(ref[c * 9 + j] - mx);
    for (int j = 0; j < 9; ++j) ref[c * 9 + j] = std::exp(ref[c * 9 + j] - mx) / s;
  }
  std::vector<float> y_blas;
  {
    IsaScope scope(cpu::PackedIsa::None);
    y_blas = run_cpu(m, x, ncol, 2);
  }
  // The fp32 contract (1e-5); every path sums the 70-long dot products in another order than the reference.
  EXPECT_LT(rel_err(y_blas, ref), 1e-5);
  for (auto isa : isas()) {
    IsaScope scope(isa);
    auto y = run_cpu(m, x, ncol, 2);
    EXPECT_LT(rel_err(y, ref), 1e-5) << "isa " << static_cast<int>(isa);
    EXPECT_LT(rel_err(y_blas, to_double(y)), 1e-5) << "isa " << static_cast<int>(isa);
  }
}
