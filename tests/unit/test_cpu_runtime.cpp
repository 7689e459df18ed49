// fkb::Runtime on the CPU: threads, chunking, the double path, the non-finite policy, devices, argument
// checks, and concurrent Runtimes sharing one Model.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"
#include "test_cpu_util.hpp"

using namespace fkb;
using namespace fkb::cputest;

namespace {

// 20 -> 64 (leaky 0.3) -> 64 (tanh) -> 7, with its double-precision reference.
struct Mlp {
  Model m;
  std::vector<float> w1, b1, w2, b2, w3, b3;
  Mlp() {
    w1 = random_vec(20 * 64, 1, -0.3f, 0.3f);
    b1 = random_vec(64, 2);
    w2 = random_vec(64 * 64, 3, -0.2f, 0.2f);
    b2 = random_vec(64, 4);
    w3 = random_vec(64 * 7, 5, -0.3f, 0.3f);
    b3 = random_vec(7, 6);
    m.nodes.push_back(input("x", {20}));
    m.nodes.push_back(dense("d1", 0, 20, 64, w1, b1));
    m.nodes.push_back(activation("leaky", 1, ActKind::LeakyRelu, ActParams{0.3f}));
    m.nodes.push_back(dense("d2", 2, 64, 64, w2, b2, ActKind::Tanh));
    m.nodes.push_back(dense("d3", 3, 64, 7, w3, b3));
    m = finish(m, {0}, {4});
  }
  std::vector<double> ref(const std::vector<float>& x, int64_t ncol) const {
    auto h = dense_ref(to_double(x), ncol, 20, 64, w1, b1);
    for (auto& v : h) v = v >= 0 ? v : 0.3 * v;
    h = dense_ref(h, ncol, 64, 64, w2, b2);
    for (auto& v : h) v = std::tanh(v);
    return dense_ref(h, ncol, 64, 7, w3, b3);
  }
};

RuntimeOptions cpu_opts(int threads = 1, int64_t max_batch = 4096) {
  RuntimeOptions o;
  o.device = "cpu";
  o.threads = threads;
  o.max_batch = max_batch;
  o.verbose = false;
  return o;
}

template <typename F>
Error expect_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected an fkb::Error";
  return Error(Status::Ok, "");
}

}  // namespace

TEST(CpuRuntime, MatchesDoubleReference) {
  Mlp net;
  for (int64_t ncol : {1, 7, 64, 1000}) {
    auto x = random_vec(ncol * 20, 100 + static_cast<uint32_t>(ncol), -2, 2);
    auto y = run_cpu(net.m, x, ncol);
    EXPECT_LT(rel_err(y, net.ref(x, ncol)), 1e-6) << "ncol " << ncol;
  }
}

TEST(CpuRuntime, OneAndTwoThreadsGiveTheSameResults) {
  Mlp net;
  const int64_t ncol = 3001;
  auto x = random_vec(ncol * 20, 7, -2, 2);
  auto y1 = run_cpu(net.m, x, ncol, 1);
  auto y2 = run_cpu(net.m, x, ncol, 2);
  EXPECT_LT(rel_err(y2, to_double(y1)), 1e-6);
  EXPECT_LT(rel_err(y2, net.ref(x, ncol)), 1e-6);
  Runtime rt(net.m, cpu_opts(2));
  EXPECT_EQ(rt.device_name(), "cpu (2 threads)");
  EXPECT_EQ(rt.backend_name(), "cpu");
}

TEST(CpuRuntime, ChunksCallsLargerThanMaxBatch) {
  Mlp net;
  const int64_t ncol = 100;
  auto x = random_vec(ncol * 20, 8, -2, 2);
  Runtime rt(net.m, cpu_opts(2, 16));
  EXPECT_EQ(rt.max_batch(), 16);
  std::vector<float> y(ncol * 7);
  rt.predict(x.data(), ncol, y.data());
  EXPECT_LT(rel_err(y, net.ref(x, ncol)), 1e-6);
}

TEST(CpuRuntime, DoubleInputGivesDoubleOutput) {
  Mlp net;
  const int64_t ncol = 300;
  auto xf = random_vec(ncol * 20, 9, -2, 2);
  std::vector<double> xd(xf.begin(), xf.end());
  Runtime rt(net.m, cpu_opts(2, 128));
  std::vector<double> yd(ncol * 7, -1.0);
  rt.predict(xd.data(), ncol, yd.data());
  std::vector<float> yf(ncol * 7);
  rt.predict(xf.data(), ncol, yf.data());
  for (size_t i = 0; i < yd.size(); ++i) ASSERT_EQ(yd[i], static_cast<double>(yf[i])) << i;
  std::vector<float> ydf(yd.begin(), yd.end());
  EXPECT_LT(rel_err(ydf, net.ref(xf, ncol)), 1e-6);
}

TEST(CpuRuntime, DoubleInputIsRoundedToFloatPerValue) {
  // A double that is not a float: the plan converts with a plain cast (round to nearest).
  Model m;
  m.nodes.push_back(input("x", {1}));
  m.nodes.push_back(dense("d", 0, 1, 1, {1.0f}, {0.0f}));
  m = finish(m, {0}, {1});
  Runtime rt(m, cpu_opts());
  const double x = 0.1;
  double y = 0;
  rt.predict(&x, 1, &y);
  EXPECT_EQ(y, static_cast<double>(0.1f));
}

TEST(CpuRuntime, ZeroColumnsIsANoOpAndNegativeIsAnError) {
  Mlp net;
  Runtime rt(net.m, cpu_opts());
  std::vector<float> x(20, 1.0f), y(7, 42.0f);
  rt.predict(x.data(), 0, y.data());
  for (float v : y) EXPECT_EQ(v, 42.0f);
  // A rank or chunk with no columns may pass null arrays (Fortran zero-size arrays, empty std::vectors).
  rt.predict(static_cast<const float*>(nullptr), 0, static_cast<float*>(nullptr));
  rt.predict(static_cast<const double*>(nullptr), 0, static_cast<double*>(nullptr));
  rt.predict(std::vector<const float*>{nullptr}, 0, std::vector<float*>{nullptr});
  EXPECT_EQ(expect_error([&] { rt.predict(x.data(), -1, y.data()); }).status(), Status::InvalidArgument);
  EXPECT_EQ(expect_error([&] { rt.predict(static_cast<const float*>(nullptr), 1, y.data()); }).status(),
            Status::InvalidArgument);
  EXPECT_EQ(expect_error([&] { rt.predict(x.data(), 1, static_cast<float*>(nullptr)); }).status(),
            Status::InvalidArgument);
  EXPECT_EQ(expect_error([&] {
              rt.predict(std::vector<const float*>{x.data(), x.data()}, 1, std::vector<float*>{y.data()});
            }).status(),
            Status::InvalidArgument);
}

TEST(CpuRuntime, NonFinitePolicy) {
  Mlp net;
  const int64_t ncol = 10;
  auto x = random_vec(ncol * 20, 10);
  x[5 * 20 + 3] = NAN;
  x[8 * 20 + 0] = INFINITY;
  {
    Runtime rt(net.m, cpu_opts());  // default: propagate
    std::vector<float> y(ncol * 7);
    rt.predict(x.data(), ncol, y.data());
    for (int64_t c = 0; c < ncol; ++c)
      for (int j = 0; j < 7; ++j) {
        const bool bad = c == 5 || c == 8;
        EXPECT_EQ(std::isfinite(y[c * 7 + j]), !bad) << "column " << c;
      }
  }
  {
    RuntimeOptions o = cpu_opts(1, 4);  // chunks of 4: column 5 is in the second chunk
    o.nonfinite = "error";
    Runtime rt(net.m, o);
    std::vector<float> y(ncol * 7, 7.0f);
    Error e = expect_error([&] { rt.predict(x.data(), ncol, y.data()); });
    EXPECT_EQ(e.status(), Status::NonFinite);
    for (float v : y) EXPECT_EQ(v, 7.0f) << "the first chunk was written before the check of the second failed";
    EXPECT_NE(std::string(e.what()).find("Fortran x(4, 6)"), std::string::npos) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find("column 5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("input 0"), std::string::npos) << msg;
    std::vector<double> xd(x.begin(), x.end()), yd(ncol * 7);
    xd[5 * 20 + 3] = 1.0;
    e = expect_error([&] { rt.predict(xd.data(), ncol, yd.data()); });
    EXPECT_NE(std::string(e.what()).find("column 8"), std::string::npos) << e.what();
  }
  EXPECT_EQ(expect_error([&] {
              RuntimeOptions o = cpu_opts();
              o.nonfinite = "ignore";
              Runtime rt(net.m, o);
            }).status(),
            Status::InvalidArgument);
}

TEST(CpuRuntime, PrecisionAndDeviceOptions) {
  Mlp net;
  RuntimeOptions o = cpu_opts();
  o.precision = "bf16";
  Error e = expect_error([&] { Runtime rt(net.m, o); });
  EXPECT_EQ(e.status(), Status::Unsupported);
  EXPECT_NE(std::string(e.what()).find("fp32"), std::string::npos) << e.what();
  o.precision = "fp64";
  e = expect_error([&] { Runtime rt(net.m, o); });
  EXPECT_EQ(e.status(), Status::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find("fp32, tf32, bf16, fp16"), std::string::npos) << e.what();
  o.precision = "fp32";
  o.device = "gpu";
  e = expect_error([&] { Runtime rt(net.m, o); });
  EXPECT_EQ(e.status(), Status::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find("cuda:N"), std::string::npos) << e.what();
  o.device = "cuda:x";
  EXPECT_EQ(expect_error([&] { Runtime rt(net.m, o); }).status(), Status::InvalidArgument);
  if (!built_with_cuda()) {
    o.device = "cuda";
    EXPECT_EQ(expect_error([&] { Runtime rt(net.m, o); }).status(), Status::CudaError);
  }
  if (!built_with_cuda() || cuda_device_count() == 0) {
    o.device = "auto";
    Runtime rt(net.m, o);
    EXPECT_EQ(rt.backend_name(), "cpu");
  }
  EXPECT_EQ(precision_name(parse_precision("tf32")), std::string("tf32"));
}

// `auto` with a GPU precision on a host without a usable GPU runs the CPU in fp32 and says so (the same call
// with device cpu is refused: there the user asked for the CPU explicitly).
TEST(CpuRuntime, AutoWithGpuPrecisionRunsFp32OnCpuHosts) {
  if (built_with_cuda() && cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present: auto picks it";
  Mlp net;
  const int64_t ncol = 9;
  auto x = random_vec(ncol * 20, 11);
  std::vector<float> y32(ncol * 7), y(ncol * 7);
  Runtime(net.m, cpu_opts(1)).predict(x.data(), ncol, y32.data());
  for (const char* p : {"tf32", "bf16", "fp16"}) {
    RuntimeOptions o = cpu_opts(1);
    o.device = "auto";
    o.precision = p;
    o.verbose = true;
    testing::internal::CaptureStderr();
    Runtime rt(net.m, o);
    const std::string notice = testing::internal::GetCapturedStderr();
    EXPECT_EQ(rt.backend_name(), "cpu");
    EXPECT_NE(notice.find(std::string("precision '") + p + "' applies to CUDA devices only; the CPU runs fp32"),
              std::string::npos)
        << notice;
    rt.predict(x.data(), ncol, y.data());
    EXPECT_EQ(y, y32) << p;
    o.verbose = false;
    testing::internal::CaptureStderr();
    Runtime quiet(net.m, o);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << "verbose = false must print nothing";
  }
  EXPECT_EQ(parse_nonfinite_policy("error"), NonFinitePolicy::Error);
}

TEST(CpuRuntime, ConcurrentRuntimesSharingOneModel) {
  Mlp net;
  const int64_t ncol = 777;
  auto x = random_vec(ncol * 20, 11, -2, 2);
  const auto ref = run_cpu(net.m, x, ncol, 1);
  std::vector<std::vector<float>> ys(4, std::vector<float>(ncol * 7));
  std::vector<std::thread> th;
  for (int t = 0; t < 4; ++t)
    th.emplace_back([&, t] {
      Runtime rt(net.m, cpu_opts(1 + t % 2, 200));
      for (int rep = 0; rep < 5; ++rep) rt.predict(x.data(), ncol, ys[t].data());
    });
  for (auto& t : th) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_LT(rel_err(ys[t], to_double(ref)), 1e-6) << "thread " << t;
}

TEST(CpuRuntime, LastTimesAreAllCompute) {
  Mlp net;
  Runtime rt(net.m, cpu_opts());
  auto x = random_vec(500 * 20, 13);
  std::vector<float> y(500 * 7);
  rt.predict(x.data(), 500, y.data());
  const PhaseTimes t = rt.last_times();
  EXPECT_GT(t.total, 0.0);
  EXPECT_EQ(t.compute, t.total);
  EXPECT_EQ(t.h2d, 0.0);
  EXPECT_EQ(t.d2h, 0.0);
}

TEST(CpuRuntime, RuntimeKeepsItsOwnCopyOfTheModel) {
  auto net = std::make_unique<Mlp>();
  Runtime rt(net->m, cpu_opts());
  auto x = random_vec(3 * 20, 12);
  const auto want = net->ref(x, 3);
  net.reset();
  std::vector<float> y(21);
  rt.predict(x.data(), 3, y.data());
  EXPECT_LT(rel_err(y, want), 1e-6);
  EXPECT_EQ(rt.n_inputs(), 20);
  EXPECT_EQ(rt.n_outputs(), 7);
  EXPECT_EQ(rt.model().nodes.size(), 5u);
}
