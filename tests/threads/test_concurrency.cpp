// One model shared by many threads (issue 10): a GCM calls its parameterization from the threads of an
// OpenMP `parallel do`, or from threads of its own, all on one network held in a module variable. Every
// concurrent predict must give bitwise the serial result (and that result must match Keras), from 1 to
// thousands of columns, for single- and multi-input models, float and double, Runtime and Ensemble.
// CTest label `threads`: scripts/test runs them again under ThreadSanitizer (build-tsan/).
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fkb/custom_layer.hpp"
#include "fkb/ensemble.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"
#include "workspace_pool.hpp"

using fkb::test::Data;
using fkb::test::fixture_path;

namespace {

constexpr double kKerasTolerance = 1e-5;
const std::vector<int64_t> kSizes = {1, 7, 37, 512, 2000};

std::vector<float> cycle_rows(const Data& d, int64_t ncol) {
  const int64_t w = d.row_size();
  std::vector<float> out(static_cast<size_t>(ncol * w));
  for (int64_t c = 0; c < ncol; ++c)
    std::copy(d.values.begin() + (c % d.rows()) * w, d.values.begin() + (c % d.rows() + 1) * w, out.begin() + c * w);
  return out;
}

int test_threads() {
  // The number of caller threads: at least 3, so that calls really overlap on this 2-core machine too.
  return std::max(3, static_cast<int>(std::thread::hardware_concurrency()));
}

fkb::RuntimeOptions cpu_options(int threads, int64_t max_batch) {
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.threads = threads;
  o.max_batch = max_batch;
  o.verbose = false;
  return o;
}

// A fixture's inputs cycled to `ncol` columns, and its Keras outputs likewise.
struct Batch {
  std::vector<std::vector<float>> x, ref;
};

Batch make_batch(const std::string& data, const fkb::Model& m, int64_t ncol) {
  Batch b;
  for (int i = 0; i < m.num_inputs(); ++i)
    b.x.push_back(cycle_rows(fkb::test::read_dataset(data, "input_" + std::to_string(i)), ncol));
  for (int o = 0; o < m.num_outputs(); ++o)
    b.ref.push_back(cycle_rows(fkb::test::read_dataset(data, "output_" + std::to_string(o)), ncol));
  return b;
}

template <typename T>
std::vector<std::vector<T>> run(fkb::Runtime& rt, const std::vector<std::vector<T>>& x, int64_t ncol) {
  std::vector<std::vector<T>> y;
  std::vector<const T*> xp;
  std::vector<T*> yp;
  for (const auto& v : x) xp.push_back(v.data());
  for (int o = 0; o < rt.num_outputs(); ++o) y.emplace_back(static_cast<size_t>(ncol * rt.n_outputs(o)), T(NAN));
  for (auto& v : y) yp.push_back(v.data());
  rt.predict(xp, ncol, yp);
  return y;
}

template <typename T>
std::vector<std::vector<T>> convert(const std::vector<std::vector<float>>& x) {
  std::vector<std::vector<T>> r;
  for (const auto& v : x) r.emplace_back(v.begin(), v.end());
  return r;
}

template <typename T>
bool bitwise_equal(const std::vector<std::vector<T>>& a, const std::vector<std::vector<T>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(T)) != 0) return false;
  return true;
}

// Runs the fixture serially on every size (checked against Keras), then from `nthreads` threads at once, each
// going through the sizes in its own order `rounds` times; every concurrent result must be bitwise the serial one.
template <typename T>
void check_shared_runtime(const std::string& name, int plan_threads, int64_t max_batch, int rounds) {
  const auto& fx = fkb::test::manifest()["fixtures"];
  std::string file;
  for (const auto& f : fx)
    if (f["name"] == name) file = f["file"].get<std::string>();
  ASSERT_FALSE(file.empty()) << name << " is not in the fixture manifest";
  const std::string data = fixture_path(name + ".data.h5");
  fkb::Model m = fkb::Model::load(fixture_path(file));
  fkb::Runtime rt(m, cpu_options(plan_threads, max_batch));

  std::vector<std::vector<std::vector<T>>> xs, serial;
  for (int64_t n : kSizes) {
    Batch b = make_batch(data, m, n);
    xs.push_back(convert<T>(b.x));
    serial.push_back(run<T>(rt, xs.back(), n));
    for (size_t o = 0; o < b.ref.size(); ++o) {
      const std::vector<float> got(serial.back()[o].begin(), serial.back()[o].end());
      EXPECT_LE(fkb::test::relative_max_error(got.data(), b.ref[o].data(), static_cast<int64_t>(got.size())),
                kKerasTolerance)
          << name << " output " << o << ", " << n << " columns (serial)";
    }
  }

  const int nthreads = test_threads();
  std::atomic<int> mismatches{0}, errors{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < nthreads; ++t)
    pool.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int r = 0; r < rounds; ++r)
        for (size_t k = 0; k < kSizes.size(); ++k) {
          const size_t i = (k + static_cast<size_t>(t) + static_cast<size_t>(r)) % kSizes.size();
          try {
            if (!bitwise_equal(run<T>(rt, xs[i], kSizes[i]), serial[i])) ++mismatches;
          } catch (const std::exception&) {
            ++errors;
          }
        }
    });
  go = true;
  for (auto& th : pool) th.join();
  EXPECT_EQ(errors.load(), 0) << name;
  EXPECT_EQ(mismatches.load(), 0) << name << ": concurrent predict differs from the serial result (" << nthreads
                                  << " threads)";
}

}  // namespace

TEST(SharedModelThreads, CbrainFloatFromStdThreads) { check_shared_runtime<float>("k3_cbrain_keras", 2, 4096, 1); }
TEST(SharedModelThreads, CbrainDoubleChunkedFromStdThreads) {
  check_shared_runtime<double>("tk_cbrain_h5", 2, 300, 1);  // max_batch 300: the large calls run in chunks
}
TEST(SharedModelThreads, Conv1DFromStdThreads) { check_shared_runtime<float>("k3_conv1d_keras", 2, 4096, 2); }
TEST(SharedModelThreads, MultiInputOutputFromStdThreads) {
  check_shared_runtime<float>("k3_multi_io_keras", 2, 4096, 2);
  check_shared_runtime<double>("tk_multi_io_skip_h5", 1, 64, 2);
}
TEST(SharedModelThreads, BatchNormMergeFromStdThreads) {
  check_shared_runtime<float>("tk_batchnorm_h5", 2, 4096, 2);
  check_shared_runtime<float>("k3_merge_keras", 2, 4096, 2);
}

// The same model from the threads of an OpenMP parallel loop (the GCM pattern): chunks of columns, each
// predicted by whichever thread gets it; the whole must equal one serial call bitwise.
TEST(SharedModelThreads, OpenMPParallelForOverColumnChunks) {
  fkb::Model m = fkb::Model::load(fixture_path("k3_cbrain.keras"));
  fkb::Runtime rt(m, cpu_options(0, 4096));
  const std::string data = fixture_path("k3_cbrain_keras.data.h5");
  const int64_t ncol = 3000, nin = rt.n_inputs(), nout = rt.n_outputs();
  Batch b = make_batch(data, m, ncol);
  std::vector<float> serial(static_cast<size_t>(ncol * nout));
  rt.predict(b.x[0].data(), ncol, serial.data());
  EXPECT_LE(fkb::test::relative_max_error(serial.data(), b.ref[0].data(), ncol * nout), kKerasTolerance);
  for (int64_t chunk : {1, 37, 500}) {
    std::vector<float> y(serial.size(), NAN);
    const int64_t nchunks = (ncol + chunk - 1) / chunk;
    int failures = 0;
#pragma omp parallel for num_threads(test_threads()) schedule(dynamic) reduction(+ : failures)
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t c0 = c * chunk, n = std::min(chunk, ncol - c0);
      try {
        rt.predict(b.x[0].data() + c0 * nin, n, y.data() + c0 * nout);
      } catch (const std::exception&) {
        ++failures;
      }
    }
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(std::memcmp(y.data(), serial.data(), y.size() * sizeof(float)), 0)
        << "chunks of " << chunk << " columns from an OpenMP parallel loop differ from one serial call";
  }
}

// Inside the caller's parallel region a call runs on its caller's thread alone (nested_threads = 1), opening
// no OpenMP region of its own: a custom layer records the deepest OpenMP nesting level it runs at.
TEST(SharedModelThreads, NoOversubscriptionInsideCallersParallelRegion) {
  static std::atomic<int> deepest{0};
  fkb::CustomLayer st;
  st.output_shape = [](const std::vector<fkb::Shape>& in, const std::string&) { return in.at(0); };
  st.cpu = [](const fkb::CustomLayerInfo& l, const float* const* x, int64_t ncol, float* y) {
    int seen = deepest.load();
    const int level = omp_get_level();
    while (level > seen && !deepest.compare_exchange_weak(seen, level)) {
    }
    for (int64_t i = 0; i < ncol * l.input_sizes[0]; ++i) y[i] = 1.5f * std::tanh(x[0][i]);
  };
  fkb::register_custom_layer("ScaledTanh", st);
  struct Unregister {
    ~Unregister() { fkb::unregister_custom_layer("ScaledTanh"); }
  } unregister;
  fkb::Model m = fkb::Model::load(fixture_path("k3_custom.keras"));
  fkb::Runtime rt(m, cpu_options(2, 1 << 20));
  const int64_t ncol = 1 << 20, nin = rt.n_inputs(), nout = rt.n_outputs();
  std::vector<float> x(static_cast<size_t>(ncol * nin)), y(static_cast<size_t>(ncol * nout));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.01f * static_cast<float>(i));
  // The control: alone at the top level, a large call opens a team of the plan's 2 threads (level 1).
  rt.predict(x.data(), ncol, y.data());
  ASSERT_EQ(deepest.load(), 1) << "the control call did not run in an OpenMP team of its own";
  deepest = 0;
  int callers = 0;
#pragma omp parallel num_threads(2) reduction(+ : callers)
  {
    std::vector<float> yy(y.size());
    rt.predict(x.data(), ncol, yy.data());
    callers += yy == y ? 1 : 0;
  }
  EXPECT_EQ(callers, 2) << "calls inside the caller's parallel region differ from the serial result";
  EXPECT_EQ(deepest.load(), 1) << "a call inside the caller's parallel region opened a nested OpenMP region";
}

// A custom layer that is not thread-safe (as every C and Fortran callback) may itself call predict, on a model
// using the same layer class: its lock is per implementation and recursive (a process-wide lock deadlocked).
TEST(SharedModelThreads, SerializedCustomLayerMayCallPredict) {
  static fkb::Runtime* inner = nullptr;
  static thread_local int depth = 0;
  fkb::CustomLayer st;
  st.thread_safe = false;
  st.output_shape = [](const std::vector<fkb::Shape>& in, const std::string&) { return in.at(0); };
  st.cpu = [](const fkb::CustomLayerInfo& l, const float* const* x, int64_t ncol, float* y) {
    for (int64_t i = 0; i < ncol * l.input_sizes[0]; ++i) y[i] = 1.5f * std::tanh(x[0][i]);
    if (inner && depth == 0) {
      ++depth;
      std::vector<float> xi(static_cast<size_t>(3 * inner->n_inputs()), 0.25f), yi(3 * inner->n_outputs());
      inner->predict(xi.data(), 3, yi.data());
      --depth;
    }
  };
  fkb::register_custom_layer("ScaledTanh", st);
  struct Unregister {
    ~Unregister() {
      inner = nullptr;
      fkb::unregister_custom_layer("ScaledTanh");
    }
  } unregister;
  fkb::Model m = fkb::Model::load(fixture_path("k3_custom.keras"));
  fkb::Runtime outer(m, cpu_options(1, 4096)), nested(m, cpu_options(1, 4096));
  const int64_t ncol = 40, nin = outer.n_inputs(), nout = outer.n_outputs();
  std::vector<float> x(static_cast<size_t>(ncol * nin)), plain(static_cast<size_t>(ncol * nout)), y(plain.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1f * static_cast<float>(i));
  outer.predict(x.data(), ncol, plain.data());
  inner = &nested;
  std::atomic<bool> done{false};
  std::thread watchdog([&] {  // a deadlock would hang the test binary: fail it instead
    for (int i = 0; i < 600 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!done.load()) {
      std::fprintf(stderr, "SerializedCustomLayerMayCallPredict: deadlock (a layer callback calling predict)\n");
      std::_Exit(1);
    }
  });
  std::vector<std::thread> callers;
  std::atomic<int> bad{0};
  for (int t = 0; t < 3; ++t)
    callers.emplace_back([&] {
      std::vector<float> yy(plain.size());
      outer.predict(x.data(), ncol, yy.data());
      if (yy != plain) ++bad;
    });
  for (auto& th : callers) th.join();
  done = true;
  watchdog.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(SharedModelThreads, EnsembleFromStdThreadsAndOpenMP) {
  const std::string d = fixture_path("ensemble8/data.h5");
  Data x = fkb::test::read_dataset(d, "input"), mean_ref = fkb::test::read_dataset(d, "mean");
  Data std_ref = fkb::test::read_dataset(d, "std");
  fkb::EnsembleOptions o;
  o.device = "cpu";
  o.threads = 2;
  o.max_batch = 256;
  o.verbose = false;
  fkb::Ensemble ens = fkb::Ensemble::load(fixture_path("ensemble8/ensemble.yaml"), o);
  const int64_t nout = ens.n_outputs(), nin = ens.n_inputs();
  for (int64_t ncol : {int64_t{1}, int64_t{37}, int64_t{1500}}) {
    const std::vector<float> xs = cycle_rows(x, ncol);
    const std::vector<float> mref = cycle_rows(mean_ref, ncol), sref = cycle_rows(std_ref, ncol);
    std::vector<float> mean(static_cast<size_t>(ncol * nout)), spread(mean.size());
    ens.predict(xs.data(), ncol, mean.data(), spread.data());
    EXPECT_LE(fkb::test::relative_max_error(mean.data(), mref.data(), ncol * nout), kKerasTolerance);
    EXPECT_LE(fkb::test::relative_max_error(spread.data(), sref.data(), ncol * nout), 1e-4);
    std::atomic<int> bad{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < test_threads(); ++t)
      pool.emplace_back([&] {
        for (int r = 0; r < 3; ++r) {
          std::vector<float> m2(mean.size()), s2(mean.size());
          ens.predict(xs.data(), ncol, m2.data(), s2.data());
          if (m2 != mean || s2 != spread) ++bad;
        }
      });
    for (auto& th : pool) th.join();
    EXPECT_EQ(bad.load(), 0) << "ensemble, " << ncol << " columns, std::thread callers";
    // Column chunks from an OpenMP loop.
    std::vector<float> m3(mean.size(), NAN);
    const int64_t chunk = 7;
#pragma omp parallel for num_threads(test_threads()) schedule(dynamic)
    for (int64_t c0 = 0; c0 < ncol; c0 += chunk)
      ens.predict(xs.data() + c0 * nin, std::min(chunk, ncol - c0), m3.data() + c0 * nout);
    EXPECT_EQ(std::memcmp(m3.data(), mean.data(), mean.size() * sizeof(float)), 0)
        << "ensemble, " << ncol << " columns in OpenMP chunks";
  }
}

// The workspace pool: calls that never overlap reuse one workspace; overlapping ones get one each.
TEST(WorkspacePool, GrowsOnlyWithOverlappingLeases) {
  fkb::WorkspacePool<std::vector<float>> pool;
  pool.add(std::make_unique<std::vector<float>>(8));
  auto fits = [](const std::vector<float>& v) { return v.size() >= 8; };
  auto make = [] { return std::make_unique<std::vector<float>>(8); };
  for (int i = 0; i < 10; ++i) {
    auto lease = pool.acquire(fits, make);
    (*lease)[0] = static_cast<float>(i);
  }
  EXPECT_EQ(pool.created(), 1u);
  {
    auto a = pool.acquire(fits, make);
    auto b = pool.acquire(fits, make);
    auto c = pool.acquire(fits, make);
    EXPECT_NE(&*a, &*b);
    EXPECT_NE(&*b, &*c);
  }
  EXPECT_EQ(pool.created(), 3u);
  for (int i = 0; i < 10; ++i) auto lease = pool.acquire(fits, make);
  EXPECT_EQ(pool.created(), 3u);
  // A lease that needs a bigger workspace than any free one makes a new one.
  auto big = pool.acquire([](const std::vector<float>& v) { return v.size() >= 100; },
                          [] { return std::make_unique<std::vector<float>>(100); });
  EXPECT_EQ(big->size(), 100u);
  EXPECT_EQ(pool.created(), 4u);
}

TEST(SharedModelThreads, NestedThreadsOptionIsChecked) {
  fkb::Model m = fkb::Model::load(fixture_path("k3_cbrain.keras"));
  fkb::RuntimeOptions o = cpu_options(1, 16);
  o.nested_threads = 0;
  EXPECT_THROW(fkb::Runtime(m, o), fkb::Error);
}
