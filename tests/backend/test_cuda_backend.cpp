// The CUDA backend on a GPU: Keras parity on every fixture, per-op CUDA-vs-CPU with sentinels around the
// outputs (ggml test-backend-ops style), precision modes with their measured errors, float64 and
// device-resident data, CUDA graph replay, the reproducible mode, pipelined chunks, the out-of-memory
// fallback. Every test that needs a device skips without one; the tests that check what happens without a
// device run everywhere.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "backend_test_util.hpp"
#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"

// Device memory helpers exported by libfkb when it is built with CUDA (kernels/cuda_backend.cu). Weak, so
// this file links without CUDA; a null address means "not built with CUDA".
extern "C" {
int fkb_cuda_test_malloc(void** p, size_t bytes) __attribute__((weak));
int fkb_cuda_test_malloc_managed(void** p, size_t bytes) __attribute__((weak));
int fkb_cuda_test_host_alloc(void** p, size_t bytes) __attribute__((weak));
int fkb_cuda_test_free(void* p) __attribute__((weak));
int fkb_cuda_test_free_host(void* p) __attribute__((weak));
int fkb_cuda_test_memcpy(void* dst, const void* src, size_t bytes) __attribute__((weak));
}

#define FKB_REQUIRE_GPU()                                                     \
  do {                                                                        \
    if (fkb::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";      \
  } while (0)

namespace {

using namespace fkb;
using namespace fkb::cudatest;

constexpr float kSentinel = -12345.5f;
constexpr int64_t kPad = 3;  // sentinel columns before and after every output

Model zoo_model(const std::string& name) {
  for (auto& z : zoo())
    if (z.name == name) return z.make();
  throw std::runtime_error("no zoo model " + name);
}

RuntimeOptions cuda_options(const std::string& precision = "fp32", int64_t max_batch = 4096) {
  RuntimeOptions o;
  o.device = "cuda";
  o.precision = precision;
  o.max_batch = max_batch;
  o.verbose = false;
  return o;
}

/// A plan run through the backend interface with sentinel columns around each output buffer.
struct Padded {
  std::vector<std::vector<float>> buf;
  std::vector<float*> out;
  Padded(const Model& m, int64_t ncol) {
    for (int j = 0; j < m.num_outputs(); ++j) buf.emplace_back(static_cast<size_t>((ncol + 2 * kPad) * m.output_size(j)), kSentinel);
    for (int j = 0; j < m.num_outputs(); ++j) out.push_back(buf[j].data() + kPad * m.output_size(j));
  }
  void expect_sentinels(const Model& m, int64_t ncol, const std::string& what) const {
    for (int j = 0; j < m.num_outputs(); ++j) {
      const int64_t w = m.output_size(j);
      for (int64_t i = 0; i < kPad * w; ++i) {
        ASSERT_EQ(buf[j][i], kSentinel) << what << ": output " << j << " written before its first column";
        ASSERT_EQ(buf[j][(kPad + ncol) * w + i], kSentinel) << what << ": output " << j << " written past its last column";
      }
    }
  }
  std::vector<float> values(const Model& m, int j, int64_t ncol) const {
    const float* p = out[static_cast<size_t>(j)];
    return std::vector<float>(p, p + ncol * m.output_size(j));
  }
};

std::vector<std::vector<float>> run_plan(Plan& plan, const Model& m, const std::vector<std::vector<float>>& xs,
                                         int64_t ncol, const std::string& what) {
  Padded pad(m, ncol);
  IoBinding io;
  for (const auto& x : xs) io.inputs.push_back(x.data());
  for (float* p : pad.out) io.outputs.push_back(p);
  plan.run(io, ncol);
  pad.expect_sentinels(m, ncol, what);
  std::vector<std::vector<float>> ys;
  for (int j = 0; j < m.num_outputs(); ++j) ys.push_back(pad.values(m, j, ncol));
  return ys;
}

std::unique_ptr<Plan> compile_cuda(const Model& m, Precision p = Precision::FP32, int64_t max_batch = 4096,
                                   bool reproducible = false) {
  CompileOptions co;
  co.precision = p;
  co.max_batch = max_batch;
  co.reproducible = reproducible;
  return make_cuda_backend()->compile(m, co);
}

double max_err(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& ref) {
  double e = 0;
  for (size_t j = 0; j < ref.size(); ++j)
    e = std::max(e, test::relative_max_error(got[j].data(), ref[j].data(), static_cast<int64_t>(ref[j].size())));
  return e;
}

/// Set an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

/// Device buffer (through the weak helpers).
struct DeviceBuffer {
  void* p = nullptr;
  bool managed = false;
  DeviceBuffer(size_t bytes, bool use_managed = false) : managed(use_managed) {
    const int rc = use_managed ? fkb_cuda_test_malloc_managed(&p, bytes) : fkb_cuda_test_malloc(&p, bytes);
    if (rc != 0) throw std::runtime_error("device allocation failed");
  }
  ~DeviceBuffer() {
    if (p) fkb_cuda_test_free(p);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// ---------------------------------------------------------------------------------------------------------------------
// Device discovery (runs everywhere)

TEST(CudaDevice, CountNeverThrowsAndIsZeroWithoutCuda) {
  const int n = cuda_device_count();
  EXPECT_GE(n, 0);
  if (!built_with_cuda()) EXPECT_EQ(n, 0);
  std::printf("[ cuda     ] built with CUDA: %s, devices: %d\n", built_with_cuda() ? "yes" : "no", n);
}

TEST(CudaDevice, WithoutADeviceCompileFailsWithACudaError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  const Model m = zoo_model("mlp_cbrain_like");
  try {
    auto be = make_cuda_backend();
    EXPECT_EQ(be->name(), "cuda");
    CompileOptions co;
    be->compile(m, co);
    FAIL() << "expected a CudaError";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::CudaError) << e.what();
  }
}

TEST(CudaDevice, OutOfRangeIndexNamesTheIndexAndTheCount) {
  FKB_REQUIRE_GPU();
  const int n = cuda_device_count();
  const Model m = zoo_model("mlp_cbrain_like");
  CompileOptions co;
  co.device_index = n + 2;
  try {
    make_cuda_backend()->compile(m, co);
    FAIL() << "expected a CudaError";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::CudaError);
    const std::string msg = e.what();
    EXPECT_NE(msg.find(std::to_string(n + 2)), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(n) + " CUDA device"), std::string::npos) << msg;
  }
}

TEST(CudaDevice, SupportsEveryBuiltInOpButCustom) {
  const Model m = zoo_model("multi_io");
  // supports() is pure host logic: it answers without a device.
  if (!built_with_cuda()) GTEST_SKIP() << "built without CUDA";
  auto be = make_cuda_backend();
  for (const auto& n : m.nodes) EXPECT_TRUE(be->supports(m, n, nullptr)) << n.name;
  Node custom = m.nodes[1];
  custom.op = OpKind::Custom;
  custom.keras_class = "ScaledTanh";
  std::string why;
  EXPECT_FALSE(be->supports(m, custom, &why));
  EXPECT_NE(why.find("ScaledTanh"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------------------------------
// Keras parity on every fixture, fp32, batches 37 (committed), 1, 7, 64, 5000

class CudaFixtureParity : public ::testing::TestWithParam<FixtureCase> {};

void check_fixture_batch(const FixtureCase& c, const Model& m, Runtime& rt, int64_t ncol, double tol) {
  std::vector<std::vector<float>> xs, refs, ys;
  std::vector<float*> yp;
  for (int i = 0; i < m.num_inputs(); ++i)
    xs.push_back(cycle_rows(test::read_dataset(c.data, "input_" + std::to_string(i)), ncol));
  for (int j = 0; j < m.num_outputs(); ++j) {
    refs.push_back(cycle_rows(test::read_dataset(c.data, "output_" + std::to_string(j)), ncol));
    ys.emplace_back(refs.back().size(), NAN);
  }
  for (auto& y : ys) yp.push_back(y.data());
  rt.predict(ptrs(xs), ncol, yp);
  for (int j = 0; j < m.num_outputs(); ++j)
    EXPECT_LE(test::relative_max_error(ys[j].data(), refs[j].data(), static_cast<int64_t>(ys[j].size())), tol)
        << c.name << ": output " << j << " on " << ncol << " columns";
}

TEST_P(CudaFixtureParity, Fp32MatchesKerasOnAllBatches) {
  FKB_REQUIRE_GPU();
  const FixtureCase& c = GetParam();
  const Model m = load_fixture(c);
  Runtime rt(m, cuda_options());
  EXPECT_EQ(rt.backend_name(), "cuda");
  const int64_t committed = test::read_dataset(c.data, "input_0").rows();
  for (int64_t ncol : {committed, int64_t{1}, int64_t{7}, int64_t{64}, int64_t{5000}}) {
    SCOPED_TRACE("ncol " + std::to_string(ncol));
    check_fixture_batch(c, m, rt, ncol, 1e-5);
  }
}

TEST_P(CudaFixtureParity, ReproducibleModeMatchesKeras) {
  FKB_REQUIRE_GPU();
  const FixtureCase& c = GetParam();
  const Model m = load_fixture(c);
  RuntimeOptions o = cuda_options();
  o.reproducible = true;
  Runtime rt(m, o);
  check_fixture_batch(c, m, rt, 37, 1e-5);
  check_fixture_batch(c, m, rt, 5000, 1e-5);
}

TEST_P(CudaFixtureParity, PrecisionModesStayWithinTheirBounds) {
  FKB_REQUIRE_GPU();
  const FixtureCase& c = GetParam();
  const Model m = load_fixture(c);
  std::vector<std::vector<float>> xs, refs;
  for (int i = 0; i < m.num_inputs(); ++i) xs.push_back(test::read_dataset(c.data, "input_" + std::to_string(i)).values);
  for (int j = 0; j < m.num_outputs(); ++j) refs.push_back(test::read_dataset(c.data, "output_" + std::to_string(j)).values);
  const int64_t ncol = static_cast<int64_t>(xs[0].size()) / m.input_size(0);
  for (const char* p : {"tf32", "bf16", "fp16"}) {
    const double bound = std::string(p) == "tf32" ? tf32_bound(c.name) : half_precision_bound(c.name);
    Runtime rt(m, cuda_options(p));
    std::vector<std::vector<float>> ys;
    std::vector<float*> yp;
    for (const auto& r : refs) ys.emplace_back(r.size(), NAN);
    for (auto& y : ys) yp.push_back(y.data());
    rt.predict(ptrs(xs), ncol, yp);
    const double err = max_err(ys, refs);
    std::printf("[ precision] %-32s %-5s relative error %.3g (bound %.0e)\n", c.name.c_str(), p, err, bound);
    EXPECT_LE(err, bound) << c.name << " " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFixtureParity, ::testing::ValuesIn(fixture_cases()),
                         [](const ::testing::TestParamInfo<FixtureCase>& p) { return sanitize(p.param.name); });

// ---------------------------------------------------------------------------------------------------------------------
// Per op: CUDA vs CPU, with sentinels around the outputs

class CudaOps : public ::testing::TestWithParam<ZooCase> {};

TEST_P(CudaOps, MatchTheCpuBackendWithoutOverruns) {
  FKB_REQUIRE_GPU();
  const Model m = GetParam().make();
  for (int64_t ncol : {int64_t{1}, int64_t{37}, int64_t{300}}) {
    const auto xs = random_inputs(m, ncol, 5);
    const auto ref = run_cpu(m, xs, ncol);
    for (bool reproducible : {false, true}) {
      auto plan = compile_cuda(m, Precision::FP32, 512, reproducible);
      const std::string what = GetParam().name + (reproducible ? " (fused GEMM)" : " (cuBLASLt)") + " ncol " +
                               std::to_string(ncol);
      const auto got = run_plan(*plan, m, xs, ncol, what);
      EXPECT_LE(max_err(got, ref), 1e-5) << what;
    }
    for (Precision p : {Precision::TF32, Precision::BF16, Precision::FP16}) {
      auto plan = compile_cuda(m, p, 512);
      const auto got = run_plan(*plan, m, xs, ncol, GetParam().name + " " + precision_name(p));
      EXPECT_LE(max_err(got, ref), p == Precision::TF32 ? 1e-2 : 5e-2) << GetParam().name << " " << precision_name(p);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, CudaOps, ::testing::ValuesIn(zoo()),
                         [](const ::testing::TestParamInfo<ZooCase>& p) { return sanitize(p.param.name); });

// ---------------------------------------------------------------------------------------------------------------------
// Execution features

TEST(CudaExecution, GraphReplayIsStableAcrossCallsAndBatchSizes) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("add_fused_residual");
  auto plan = compile_cuda(m);
  const auto xa = random_inputs(m, 100, 1), xb = random_inputs(m, 33, 2);
  const auto a1 = run_plan(*plan, m, xa, 100, "first call");
  const auto a2 = run_plan(*plan, m, xa, 100, "replay");
  EXPECT_EQ(a1, a2) << "a replayed graph gives bitwise the same result";
  const auto b = run_plan(*plan, m, xb, 33, "another batch size");
  EXPECT_LE(max_err(b, run_cpu(m, xb, 33)), 1e-5);
  const auto a3 = run_plan(*plan, m, xa, 100, "back to the first size");
  EXPECT_EQ(a1, a3);
  EXPECT_LE(max_err(a1, run_cpu(m, xa, 100)), 1e-5);
}

TEST(CudaExecution, WithoutGraphsTheResultIsTheSame) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("concat_slice_read_elsewhere");
  const auto xs = random_inputs(m, 50, 3);
  auto with = compile_cuda(m);
  const auto a = run_plan(*with, m, xs, 50, "graphs");
  ScopedEnv env("FKB_CUDA_GRAPHS", "0");
  auto without = compile_cuda(m);
  const auto b = run_plan(*without, m, xs, 50, "direct launches");
  EXPECT_EQ(a, b);
}

TEST(CudaExecution, PipelinedChunksGiveTheSameResult) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("multi_io");
  const int64_t ncol = 5000;
  const auto xs = random_inputs(m, ncol, 4);
  const auto ref = run_cpu(m, xs, ncol);
  ScopedEnv env("FKB_CUDA_MIN_CHUNK", "512");  // 4 chunks of 1280 columns
  auto plan = compile_cuda(m, Precision::FP32, 8192);
  EXPECT_LE(max_err(run_plan(*plan, m, xs, ncol, "pageable, pipelined"), ref), 1e-5);
  // Pinned caller buffers: copied directly, still pipelined.
  std::vector<void*> pinned;
  IoBinding io;
  for (int i = 0; i < m.num_inputs(); ++i) {
    void* p = nullptr;
    ASSERT_EQ(fkb_cuda_test_host_alloc(&p, xs[i].size() * sizeof(float)), 0);
    std::memcpy(p, xs[i].data(), xs[i].size() * sizeof(float));
    pinned.push_back(p);
    io.inputs.push_back(p);
  }
  for (int j = 0; j < m.num_outputs(); ++j) {
    void* p = nullptr;
    ASSERT_EQ(fkb_cuda_test_host_alloc(&p, ref[j].size() * sizeof(float)), 0);
    pinned.push_back(p);
    io.outputs.push_back(p);
  }
  plan->run(io, ncol);
  for (int j = 0; j < m.num_outputs(); ++j) {
    const float* y = static_cast<const float*>(io.outputs[j]);
    EXPECT_LE(test::relative_max_error(y, ref[j].data(), static_cast<int64_t>(ref[j].size())), 1e-5) << "pinned output " << j;
  }
  for (void* p : pinned) fkb_cuda_test_free_host(p);
  const PhaseTimes t = plan->last_times();
  EXPECT_GT(t.total, 0.0);
  EXPECT_GT(t.compute, 0.0);
  EXPECT_GE(t.h2d, 0.0);
  EXPECT_GE(t.d2h, 0.0);
  std::printf("[ times    ] 5000 columns, 4 chunks: h2d %.1f us, compute %.1f us, d2h %.1f us, total %.1f us\n",
              t.h2d * 1e6, t.compute * 1e6, t.d2h * 1e6, t.total * 1e6);
}

TEST(CudaExecution, DoubleInputAndOutputAreConvertedOnTheDevice) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("mlp_cbrain_like");
  const int64_t ncol = 257;
  const auto xs = random_inputs(m, ncol, 6);
  const auto ref = run_cpu(m, xs, ncol);
  std::vector<double> xd(xs[0].begin(), xs[0].end()), yd(ref[0].size(), NAN);
  Runtime rt(m, cuda_options());
  rt.predict(xd.data(), ncol, yd.data());
  std::vector<float> yf(yd.begin(), yd.end());
  EXPECT_LE(test::relative_max_error(yf.data(), ref[0].data(), static_cast<int64_t>(yf.size())), 1e-5);
  // Doubles that are not floats: converted with rounding on the device, like static_cast<float> (a relative
  // change far below half a float ulp rounds back to the same float).
  std::vector<double> xr(xd);
  for (auto& v : xr) v *= 1.0 + 1e-12;
  std::vector<double> yr(yd.size(), NAN);
  rt.predict(xr.data(), ncol, yr.data());
  for (size_t i = 0; i < yr.size(); ++i) ASSERT_EQ(yr[i], yd[i]) << "element " << i;
}

TEST(CudaExecution, DevicePointersAreUsedWithoutHostStaging) {
  FKB_REQUIRE_GPU();
  ASSERT_NE(fkb_cuda_test_malloc, nullptr);
  const Model m = zoo_model("multi_io");
  const int64_t ncol = 300;
  const auto xs = random_inputs(m, ncol, 8);
  auto plan = compile_cuda(m);
  const auto host = run_plan(*plan, m, xs, ncol, "host");
  for (bool managed : {false, true}) {
    std::vector<std::unique_ptr<DeviceBuffer>> in, out;
    IoBinding io;
    for (const auto& x : xs) {
      in.push_back(std::make_unique<DeviceBuffer>(x.size() * sizeof(float), managed));
      ASSERT_EQ(fkb_cuda_test_memcpy(in.back()->p, x.data(), x.size() * sizeof(float)), 0);
      io.inputs.push_back(in.back()->p);
    }
    for (const auto& y : host) {
      out.push_back(std::make_unique<DeviceBuffer>(y.size() * sizeof(float), managed));
      io.outputs.push_back(out.back()->p);
    }
    plan->run(io, ncol);
    for (size_t j = 0; j < host.size(); ++j) {
      std::vector<float> y(host[j].size(), NAN);
      ASSERT_EQ(fkb_cuda_test_memcpy(y.data(), out[j]->p, y.size() * sizeof(float)), 0);
      EXPECT_EQ(y, host[j]) << (managed ? "managed" : "device") << " output " << j;
    }
    EXPECT_EQ(plan->last_times().h2d >= 0.0, true);
  }
  // float64 device input and output
  std::vector<std::unique_ptr<DeviceBuffer>> in, out;
  IoBinding io;
  io.input_dtype = io.output_dtype = DType::F64;
  for (const auto& x : xs) {
    std::vector<double> xd(x.begin(), x.end());
    in.push_back(std::make_unique<DeviceBuffer>(xd.size() * sizeof(double)));
    ASSERT_EQ(fkb_cuda_test_memcpy(in.back()->p, xd.data(), xd.size() * sizeof(double)), 0);
    io.inputs.push_back(in.back()->p);
  }
  for (const auto& y : host) {
    out.push_back(std::make_unique<DeviceBuffer>(y.size() * sizeof(double)));
    io.outputs.push_back(out.back()->p);
  }
  plan->run(io, ncol);
  for (size_t j = 0; j < host.size(); ++j) {
    std::vector<double> yd(host[j].size(), NAN);
    ASSERT_EQ(fkb_cuda_test_memcpy(yd.data(), out[j]->p, yd.size() * sizeof(double)), 0);
    for (size_t i = 0; i < yd.size(); ++i) ASSERT_EQ(static_cast<float>(yd[i]), host[j][i]) << "f64 output " << j;
  }
}

TEST(CudaExecution, ReproducibleModeIsBitwiseIndependentOfBatchAndPosition) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("mlp_cbrain_like");
  auto plan = compile_cuda(m, Precision::FP32, 8192, true);
  const int64_t big = 6000, pos = 4321;
  const auto xs = random_inputs(m, big, 9);
  const auto all = run_plan(*plan, m, xs, big, "big batch");
  const int64_t nin = m.input_size(0), nout = m.output_size(0);
  std::vector<std::vector<float>> one = {std::vector<float>(xs[0].begin() + pos * nin, xs[0].begin() + (pos + 1) * nin)};
  const auto single = run_plan(*plan, m, one, 1, "one column");
  for (int64_t j = 0; j < nout; ++j) ASSERT_EQ(single[0][j], all[0][pos * nout + j]) << "feature " << j;
}

TEST(CudaExecution, NonFiniteInputsPropagateToTheirColumnOnly) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("dense_relu");
  const int64_t ncol = 20, bad = 11;
  auto xs = random_inputs(m, ncol, 10);
  xs[0][bad * m.input_size(0)] = NAN;
  auto plan = compile_cuda(m);
  const auto y = run_plan(*plan, m, xs, ncol, "NaN input");
  const int64_t w = m.output_size(0);
  for (int64_t c = 0; c < ncol; ++c)
    for (int64_t j = 0; j < w; ++j)
      EXPECT_EQ(std::isnan(y[0][c * w + j]), c == bad) << "column " << c << " feature " << j;
}

TEST(CudaExecution, OutOfMemoryFallsBackToASmallerMaximumBatch) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("mlp_cbrain_like");
  {
    // Pretend the device has 64 MiB: the plan halves its maximum batch until it fits.
    ScopedEnv env("FKB_CUDA_MAX_BYTES", std::to_string(int64_t(64) << 20));
    auto plan = compile_cuda(m, Precision::FP32, int64_t(1) << 22);
    EXPECT_LT(plan->max_batch(), int64_t(1) << 22);
    EXPECT_GE(plan->max_batch(), 1);
    std::printf("[ oom      ] 64 MiB limit: maximum batch %lld\n", static_cast<long long>(plan->max_batch()));
    const int64_t ncol = std::min<int64_t>(plan->max_batch(), 1000);
    const auto xs = random_inputs(m, ncol, 11);
    EXPECT_LE(max_err(run_plan(*plan, m, xs, ncol, "fallback plan"), run_cpu(m, xs, ncol)), 1e-5);

    // Through the Runtime, a call larger than the plan is chunked.
    Runtime rt(m, cuda_options("fp32", int64_t(1) << 22));
    const int64_t big = rt.max_batch() + 77;
    const auto xb = random_inputs(m, big, 12);
    std::vector<float> y(static_cast<size_t>(big * m.output_size(0)), NAN);
    rt.predict(xb[0].data(), big, y.data());
    const auto ref = run_cpu(m, xb, big);
    EXPECT_LE(test::relative_max_error(y.data(), ref[0].data(), static_cast<int64_t>(y.size())), 1e-5);
  }
  {
    // Not even one column fits: OutOfMemory.
    ScopedEnv env("FKB_CUDA_MAX_BYTES", "1000");
    try {
      compile_cuda(m);
      FAIL() << "expected OutOfMemory";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::OutOfMemory) << e.what();
    }
  }
}

TEST(CudaExecution, PlanReportsItsDeviceAndTimes) {
  FKB_REQUIRE_GPU();
  const Model m = zoo_model("mlp_cbrain_like");
  auto plan = compile_cuda(m);
  EXPECT_EQ(plan->device_name().rfind("cuda:0 (", 0), 0u) << plan->device_name();
  const auto xs = random_inputs(m, 64, 13);
  run_plan(*plan, m, xs, 64, "times");
  const PhaseTimes t = plan->last_times();
  EXPECT_GT(t.total, 0.0);
  EXPECT_GT(t.compute, 0.0);
  EXPECT_LE(t.compute, t.total * 1.5);
}

// ---------------------------------------------------------------------------------------------------------------------
// Real models (../shared/models) against the committed Keras references

TEST(CudaSharedModels, MatchKeras) {
  FKB_REQUIRE_GPU();
  const std::string dir = test::shared_models_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models is absent (set FKB_SHARED_MODELS)";
  std::ifstream f(test::fixture_path("shared_refs/manifest.json"));
  if (!f) GTEST_SKIP() << "no shared_refs manifest";
  const auto man = nlohmann::json::parse(f);
  for (const auto& r : man["references"]) {
    FixtureCase c;
    c.name = r["name"].get<std::string>();
    c.model = dir + "/" + r["model"].get<std::string>();
    c.data = test::fixture_path("shared_refs/" + r["data"].get<std::string>());
    SCOPED_TRACE(c.name);
    const Model m = load_fixture(c);
    Runtime rt(m, cuda_options());
    for (int64_t ncol : {int64_t{1}, int64_t{64}, int64_t{5000}}) check_fixture_batch(c, m, rt, ncol, 1e-5);
  }
}

}  // namespace
