// The CUDA backend's host-side logic, tested without a GPU (these run in CI on every machine):
//  * plan arithmetic: chunk planning, the out-of-memory batch fallback with a fake memory limit, alignment;
//  * bf16/fp16 conversions of elem.hpp (host implementations; the GPU uses the CUDA intrinsics);
//  * the lowering (folding, fusion, in-place concatenation, dtype choices, buffer reuse), executed by the
//    host emulator (kernels/emulator.hpp: same ops, views, arena layout and per-element code as the GPU)
//    and compared with the CPU backend on the op zoo and with Keras on every fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "../../kernels/emulator.hpp"
#include "../../kernels/lowering.hpp"
#include "../../kernels/plan_math.hpp"
#include "backend_test_util.hpp"
#include "fkb/error.hpp"

namespace {

using namespace fkb;
using namespace fkb::cudatest;
using fkb::cuda::Chunk;

// ---------------------------------------------------------------------------------------------------------------------
// Plan arithmetic

TEST(CudaHostLogic, ChunksCoverTheBatchInOrder) {
  cuda::ChunkPolicy pol;  // 4096 columns minimum, 4 chunks at most, 64-aligned
  for (int64_t ncol : {1, 63, 4096, 8191, 8192, 10000, 32768, 131072, 524288, 524289}) {
    for (bool host : {false, true}) {
      const auto ch = cuda::plan_chunks(ncol, host, pol);
      ASSERT_FALSE(ch.empty());
      int64_t next = 0;
      for (const Chunk& c : ch) {
        EXPECT_EQ(c.offset, next) << ncol;
        EXPECT_GT(c.count, 0) << ncol;
        next += c.count;
      }
      EXPECT_EQ(next, ncol);
      EXPECT_LE(static_cast<int>(ch.size()), pol.max_chunks);
      if (!host) EXPECT_EQ(ch.size(), 1u) << "device-resident data is never split";
      for (size_t i = 0; i + 1 < ch.size(); ++i) {
        EXPECT_EQ(ch[i].offset % pol.align, 0);
        EXPECT_GE(ch[i].count, pol.min_chunk);
      }
    }
  }
  EXPECT_EQ(cuda::plan_chunks(4096, true, pol).size(), 1u);
  EXPECT_EQ(cuda::plan_chunks(8192, true, pol).size(), 2u);
  EXPECT_EQ(cuda::plan_chunks(131072, true, pol).size(), 4u);
  EXPECT_TRUE(cuda::plan_chunks(0, true, pol).empty());
}

TEST(CudaHostLogic, OutOfMemoryFallbackHalvesUntilItFits) {
  cuda::MemoryNeed need;
  need.fixed = 10'000'000;    // weights + workspace
  need.per_column = 10'000;   // activations + staging
  std::vector<int64_t> tried;
  // 80 MB: 4096 columns need 50.96 MB -> fits at once.
  EXPECT_EQ(cuda::fallback_max_batch(4096, need, 80'000'000, &tried), 4096);
  EXPECT_EQ(tried, (std::vector<int64_t>{4096}));
  // 30 MB: 4096 (51 MB), 2048 (30.48 MB) fail, 1024 (20.24 MB) fits.
  tried.clear();
  EXPECT_EQ(cuda::fallback_max_batch(4096, need, 30'000'000, &tried), 1024);
  EXPECT_EQ(tried, (std::vector<int64_t>{4096, 2048, 1024}));
  // Odd sizes round down.
  tried.clear();
  EXPECT_EQ(cuda::fallback_max_batch(1000, need, 13'000'000, &tried), 250);
  EXPECT_EQ(tried, (std::vector<int64_t>{1000, 500, 250}));
  // Not even one column: 0 (the plan then throws OutOfMemory).
  tried.clear();
  EXPECT_EQ(cuda::fallback_max_batch(64, need, 10'005'000, &tried), 0);
  EXPECT_EQ(tried.back(), 1);
  EXPECT_EQ(tried.size(), 7u);  // 64 32 16 8 4 2 1
  // Overflow-safe byte count.
  cuda::MemoryNeed huge{1, int64_t(1) << 40};
  EXPECT_EQ(huge.bytes(int64_t(1) << 30), INT64_MAX);
  // With a predicate (what the plan does with cudaMalloc).
  EXPECT_EQ(cuda::fallback_max_batch(100, [](int64_t b) { return b <= 30; }), 25);
}

TEST(CudaHostLogic, AlignmentOfAddresses) {
  EXPECT_EQ(cuda::alignment_of(0x1000), 256u);
  EXPECT_EQ(cuda::alignment_of(0x1004), 4u);
  EXPECT_EQ(cuda::alignment_of(0x1010), 16u);
  EXPECT_EQ(cuda::alignment_of(0x1080), 128u);
  EXPECT_EQ(cuda::alignment_of(0x1002), 2u);
}

TEST(CudaHostLogic, GraphKeysOrderAllFields) {
  cuda::GraphKey a{64, 0, false, false}, b{64, 0, true, false}, c{64, 64, false, false}, d{65, 0, false, false};
  EXPECT_TRUE(a < b && a < c && a < d);
  EXPECT_FALSE(b < a);
  EXPECT_FALSE(a < a);
}

// ---------------------------------------------------------------------------------------------------------------------
// Half-precision conversions (host side of elem.hpp)

TEST(CudaHostLogic, Bf16AndF16RoundToNearestEven) {
  using namespace fkb::cuda;
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);  // 1 + 3*2^-8: tie, rounds up to even
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(INFINITY)), INFINITY);

  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);   // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);   // tie with 0: even
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 ulp: tie, rounds to even (2)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);   // smallest normal
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);       // tie: even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);   // tie: up to even
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  // Every half value survives a round trip.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t v = static_cast<uint16_t>(h);
    if ((v & 0x7c00) == 0x7c00 && (v & 0x3ff)) continue;  // NaNs
    ASSERT_EQ(f32_to_f16(f16_to_f32(v)), v) << std::hex << h;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The lowering, on hand-built models

cuda::LowerOptions lower_opts(Precision p = Precision::FP32, cuda::GemmEngine e = cuda::GemmEngine::Lt) {
  cuda::LowerOptions o;
  o.precision = p;
  o.engine = e;
  return o;
}

Model make(const std::string& name) {
  for (auto& z : zoo())
    if (z.name == name) return z.make();
  throw std::runtime_error("no zoo model " + name);
}

TEST(CudaLowering, MlpIsOneGemmAndOneFusedKernelPerLayerInTwoBuffers) {
  const Model m = make("mlp_cbrain_like");
  const cuda::Program p = cuda::lower_model(m, lower_opts());
  EXPECT_EQ(p.count_ops(cuda::OpType::GemmLt), 5);
  EXPECT_EQ(p.count_ops(cuda::OpType::Ew), 4);  // bias + LeakyReLU after each hidden GEMM
  EXPECT_LE(p.slot_bytes_per_col.size(), 3u) << "input, and two ping-pong activation buffers";
  // The output layer has a linear activation: bias in the cuBLASLt epilogue, no post-kernel.
  EXPECT_EQ(p.ops.back().type, cuda::OpType::GemmLt);
  EXPECT_EQ(p.ops.back().lt_epilogue, cuda::LtEpilogue::Bias);

  const cuda::Program f = cuda::lower_model(m, lower_opts(Precision::FP32, cuda::GemmEngine::Fused));
  EXPECT_EQ(f.count_ops(cuda::OpType::GemmFused), 5);
  EXPECT_EQ(f.ops.size(), 5u) << "fused engine: bias and activation in the GEMM epilogue";
}

TEST(CudaLowering, BatchNormIsFolded) {
  const cuda::Program p1 = cuda::lower_model(make("bn_fold_producer"), lower_opts());
  EXPECT_EQ(p1.ops.size(), 2u);
  EXPECT_TRUE(p1.has_note("folded"));
  const cuda::Program p2 = cuda::lower_model(make("bn_fold_consumer"), lower_opts());
  EXPECT_TRUE(p2.has_note("folded"));
  EXPECT_EQ(p2.count_ops(cuda::OpType::GemmLt), 2);
}

TEST(CudaLowering, AddIsAccumulatedByTheGemm) {
  const cuda::Program p = cuda::lower_model(make("add_fused_residual"), lower_opts());
  int accumulating = 0;
  for (const auto& o : p.ops) accumulating += (o.type == cuda::OpType::GemmLt && o.c >= 0);
  EXPECT_EQ(accumulating, 2);
  EXPECT_TRUE(p.has_note("fused Add"));
  const cuda::Program q = cuda::lower_model(make("add_fused_three_operands"), lower_opts());
  EXPECT_TRUE(q.has_note("fused Add"));
}

TEST(CudaLowering, ConcatenateLastAxisIsWrittenInPlace) {
  const cuda::Program p = cuda::lower_model(make("concat_slices"), lower_opts());
  EXPECT_TRUE(p.has_note("aliased"));
  for (const auto& o : p.ops) EXPECT_EQ(o.remap_w, 0) << "no copy kernel expected: " << o.name;
  // Both head GEMMs write strided into the output (ldd = 28).
  int strided = 0;
  for (const auto& o : p.ops)
    if (o.type == cuda::OpType::GemmLt && p.values[o.d].slice()) ++strided;
  EXPECT_EQ(strided, 2);

  const cuda::Program q = cuda::lower_model(make("concat_input_and_dense"), lower_opts());
  int copies = 0;
  for (const auto& o : q.ops) copies += o.remap_w > 0;
  EXPECT_EQ(copies, 1) << "the model input is copied, the Dense output is written in place";
}

TEST(CudaLowering, HalfModesStoreGemmOnlyOperandsInHalf) {
  const cuda::Program p = cuda::lower_model(make("mlp_cbrain_like"), lower_opts(Precision::BF16));
  EXPECT_EQ(p.operand_dt, cuda::DT::BF16);
  int half_roots = 0;
  for (const auto& r : p.roots) half_roots += r.slot >= 0 && r.dt == cuda::DT::BF16;
  EXPECT_GE(half_roots, 4) << "input and hidden activations are read only by GEMMs";
  for (int v : p.outputs) EXPECT_EQ(p.roots[p.values[v].root].dt, cuda::DT::F32);
  // The skip connection reads an activation both as a GEMM operand and in an Add: stored f32, cast once.
  const cuda::Program q = cuda::lower_model(make("add_fused_residual"), lower_opts(Precision::FP16));
  bool cast = false;
  for (const auto& o : q.ops) cast |= o.name.find("/cast") != std::string::npos;
  EXPECT_TRUE(cast);
}

TEST(CudaLowering, CustomLayersAreRejectedByName) {
  Builder b(1);
  const int x = b.input({4});
  Model m = b.finish({b.dense(x, 3)});
  m.nodes[1].op = OpKind::Custom;
  m.nodes[1].keras_class = "ScaledTanh";
  try {
    cuda::lower_model(m, lower_opts());
    FAIL() << "expected Unsupported";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::Unsupported);
    EXPECT_NE(std::string(e.what()).find("ScaledTanh"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The emulated program against the CPU backend, op by op

struct EmuCase {
  std::string zoo;
  Precision precision;
  cuda::GemmEngine engine;
};

void PrintTo(const EmuCase& c, std::ostream* os) { *os << c.zoo; }

std::vector<EmuCase> emu_cases() {
  std::vector<EmuCase> out;
  for (const auto& z : zoo())
    for (auto e : {cuda::GemmEngine::Lt, cuda::GemmEngine::Fused}) out.push_back({z.name, Precision::FP32, e});
  for (const auto& z : zoo())
    for (auto p : {Precision::BF16, Precision::FP16}) out.push_back({z.name, p, cuda::GemmEngine::Lt});
  return out;
}

class EmulatedOps : public ::testing::TestWithParam<EmuCase> {};

TEST_P(EmulatedOps, MatchTheCpuBackend) {
  const EmuCase& c = GetParam();
  const Model m = make(c.zoo);
  const int64_t ncol = 37, max_batch = 48;
  const auto xs = random_inputs(m, ncol, 7);
  const auto ref = run_cpu(m, xs, ncol);
  const cuda::Program p = cuda::lower_model(m, lower_opts(c.precision, c.engine));
  const double tol = c.precision == Precision::FP32 ? 1e-5 : 2e-2;
  // One chunk, and the batch split in uneven chunks at column offsets (what the pipelined GPU plan does).
  cuda::ChunkPolicy pol;
  pol.min_chunk = 8;
  pol.max_chunks = 4;
  pol.align = 4;
  for (const auto& chunks : {std::vector<Chunk>{}, cuda::plan_chunks(ncol, true, pol)}) {
    const auto got = cuda::emulate(p, ptrs(xs), ncol, max_batch, chunks);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t j = 0; j < got.size(); ++j) {
      const double err = test::relative_max_error(got[j].data(), ref[j].data(), static_cast<int64_t>(ref[j].size()));
      EXPECT_LE(err, tol) << c.zoo << " output " << j << " (" << chunks.size() << " chunks, " << precision_name(c.precision)
                          << ")";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, EmulatedOps, ::testing::ValuesIn(emu_cases()),
                         [](const ::testing::TestParamInfo<EmuCase>& p) {
                           return sanitize(p.param.zoo) + "_" + precision_name(p.param.precision) +
                                  (p.param.engine == cuda::GemmEngine::Fused ? "_fused" : "_lt");
                         });

// ---------------------------------------------------------------------------------------------------------------------
// The emulated program against Keras, on every fixture

class EmulatedFixtures : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(EmulatedFixtures, MatchKeras) {
  const FixtureCase& c = GetParam();
  const Model m = load_fixture(c);
  std::vector<std::vector<float>> xs, refs;
  for (int i = 0; i < m.num_inputs(); ++i) xs.push_back(test::read_dataset(c.data, "input_" + std::to_string(i)).values);
  for (int j = 0; j < m.num_outputs(); ++j)
    refs.push_back(test::read_dataset(c.data, "output_" + std::to_string(j)).values);
  const int64_t ncol = static_cast<int64_t>(xs[0].size()) / m.input_size(0);
  struct Mode {
    Precision p;
    cuda::GemmEngine e;
    double tol;
  };
  for (const Mode& mode : {Mode{Precision::FP32, cuda::GemmEngine::Lt, 1e-5}, Mode{Precision::FP32, cuda::GemmEngine::Fused, 1e-5},
                           Mode{Precision::TF32, cuda::GemmEngine::Lt, tf32_bound(c.name)},
                           Mode{Precision::BF16, cuda::GemmEngine::Lt, half_precision_bound(c.name)},
                           Mode{Precision::FP16, cuda::GemmEngine::Lt, half_precision_bound(c.name)}}) {
    const cuda::Program p = cuda::lower_model(m, lower_opts(mode.p, mode.e));
    const auto got = cuda::emulate(p, ptrs(xs), ncol, ncol);
    for (size_t j = 0; j < got.size(); ++j) {
      const double err = test::relative_max_error(got[j].data(), refs[j].data(), static_cast<int64_t>(refs[j].size()));
      if (mode.p != Precision::FP32)
        std::printf("[ emulated ] %-32s %s output %zu: relative error %.3g\n", c.name.c_str(), precision_name(mode.p), j,
                    err);
      EXPECT_LE(err, mode.tol) << c.name << " output " << j << " " << precision_name(mode.p)
                               << (mode.e == cuda::GemmEngine::Fused ? " fused" : " cuBLASLt");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EmulatedFixtures, ::testing::ValuesIn(fixture_cases()),
                         [](const ::testing::TestParamInfo<FixtureCase>& p) { return sanitize(p.param.name); });

}  // namespace
