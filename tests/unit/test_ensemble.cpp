// fkb::Ensemble against Keras: 8 members of one architecture made by real Keras (tests/fixtures/ensemble8,
// make_ensemble_fixtures.py) with each member's own model.predict output and numpy's mean and population
// standard deviation over them. Each member, the mean and the spread must agree within 1e-5 (relative to the
// reference's max |value|), from a directory, a list file and a YAML config, float and double, chunked.
// Also: the architecture check (a member of another width; another activation) and the error paths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fkb/backend.hpp"
#include "fkb/ensemble.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;
using fkb::test::relative_max_error;

constexpr double kTol = 1e-5;

struct Ref {
  fkb::test::Data x, members, mean, std;
  int64_t ncol() const { return x.rows(); }
  int64_t nin() const { return x.row_size(); }
  int64_t nmem() const { return members.rows(); }
  int64_t nout() const { return mean.row_size(); }
};

const Ref& ref() {
  static const Ref r = [] {
    const std::string d = fixture_path("ensemble8/data.h5");
    Ref q;
    q.x = fkb::test::read_dataset(d, "input");
    q.members = fkb::test::read_dataset(d, "members");
    q.mean = fkb::test::read_dataset(d, "mean");
    q.std = fkb::test::read_dataset(d, "std");
    return q;
  }();
  return r;
}

fkb::EnsembleOptions cpu(int64_t max_batch = 0, int threads = 0) {
  fkb::EnsembleOptions o;
  o.device = "cpu";
  o.max_batch = max_batch;
  o.threads = threads;
  o.verbose = false;
  return o;
}

template <typename T> void check_against_keras(fkb::Ensemble& ens, const std::string& what) {
  const Ref& r = ref();
  ASSERT_EQ(ens.n_members(), r.nmem());
  ASSERT_EQ(ens.n_inputs(), r.nin());
  ASSERT_EQ(ens.n_outputs(), r.nout());
  const int64_t nc = r.ncol(), n = nc * r.nout();
  std::vector<T> x(r.x.values.begin(), r.x.values.end());
  std::vector<T> mean(n, T(-999)), spread(n, T(-999)), members(r.nmem() * n, T(-999));
  ens.predict(x.data(), nc, mean.data(), spread.data(), members.data());
  auto f32 = [](const std::vector<T>& v, int64_t off, int64_t len) {
    return std::vector<float>(v.begin() + off, v.begin() + off + len);
  };
  for (int64_t m = 0; m < r.nmem(); ++m) {
    const double e = relative_max_error(f32(members, m * n, n).data(), r.members.values.data() + m * n, n);
    EXPECT_LE(e, kTol) << what << ": member " << m << " (" << ens.member_name(static_cast<int>(m)) << ")";
  }
  EXPECT_LE(relative_max_error(f32(mean, 0, n).data(), r.mean.values.data(), n), kTol) << what << ": mean";
  EXPECT_LE(relative_max_error(f32(spread, 0, n).data(), r.std.values.data(), n), kTol) << what << ": spread";

  // Mean only (spread and members not requested) gives the same mean.
  std::vector<T> mean2(n, T(-999));
  ens.predict(x.data(), nc, mean2.data());
  EXPECT_EQ(mean2, mean) << what << ": mean alone";
}

TEST(Ensemble, DirectoryListAndYamlAgreeWithKeras) {
  for (const char* p : {"ensemble8/members", "ensemble8/members.txt", "ensemble8/ensemble.yaml"}) {
    fkb::Ensemble ens = fkb::Ensemble::load(fixture_path(p), cpu());
    EXPECT_EQ(ens.engine(), "cpu-blocked");
    // Member order: the directory's name order, the list's and the YAML's line order are the same here.
    for (int m = 0; m < 8; ++m)
      EXPECT_NE(ens.member_name(m).find(m < 6 ? "member_0" + std::to_string(m) + ".keras"
                                              : "member_0" + std::to_string(m) + ".h5"),
                std::string::npos)
          << p << ": " << ens.member_name(m);
    check_against_keras<float>(ens, std::string(p) + " float");
    check_against_keras<double>(ens, std::string(p) + " double");
  }
}

TEST(Ensemble, ChunksBlocksAndThreads) {
  // max_batch 7: 53 columns run in 8 chunks; 1 and 2 threads; the YAML's own max_batch (16) is overridden.
  for (int threads : {1, 2}) {
    fkb::Ensemble ens = fkb::Ensemble::load(fixture_path("ensemble8/ensemble.yaml"), cpu(7, threads));
    EXPECT_EQ(ens.max_batch(), 7);
    check_against_keras<float>(ens, "max_batch 7, threads " + std::to_string(threads));
  }
  fkb::EnsembleOptions o;
  o.verbose = false;
  fkb::Ensemble from_yaml = fkb::Ensemble::load(fixture_path("ensemble8/ensemble.yaml"), o);
  EXPECT_EQ(from_yaml.max_batch(), 16);          // the YAML's max_batch
  EXPECT_EQ(from_yaml.engine(), "cpu-blocked");  // the YAML's device: cpu
  check_against_keras<double>(from_yaml, "yaml options");
  // Column by column.
  const Ref& r = ref();
  std::vector<float> mean(r.nout()), spread(r.nout());
  double worst = 0;
  for (int64_t c = 0; c < r.ncol(); ++c) {
    from_yaml.predict(r.x.values.data() + c * r.nin(), 1, mean.data(), spread.data());
    worst = std::max(worst, relative_max_error(mean.data(), r.mean.values.data() + c * r.nout(), r.nout()));
  }
  EXPECT_LE(worst, kTol);
}

TEST(Ensemble, ModelsInMemoryAndSingleMember) {
  std::vector<fkb::Model> ms;
  for (int m = 0; m < 3; ++m)
    ms.push_back(fkb::Model::load(fixture_path("ensemble8/members/member_0" + std::to_string(m) + ".keras")));
  fkb::Ensemble three(ms, cpu());
  EXPECT_EQ(three.n_members(), 3);
  EXPECT_EQ(three.member_name(2), "#2");
  const Ref& r = ref();
  const int64_t n = r.ncol() * r.nout();
  std::vector<float> mean(n), spread(n);
  three.predict(r.x.values.data(), r.ncol(), mean.data(), spread.data());
  // numpy on the first three Keras outputs, here in double
  std::vector<float> want(n), want_sd(n);
  for (int64_t e = 0; e < n; ++e) {
    double s = 0, q = 0;
    for (int m = 0; m < 3; ++m) s += r.members.values[m * n + e];
    for (int m = 0; m < 3; ++m) q += std::pow(r.members.values[m * n + e] - s / 3, 2);
    want[e] = static_cast<float>(s / 3);
    want_sd[e] = static_cast<float>(std::sqrt(q / 3));  // population: divide by N, not N-1
  }
  EXPECT_LE(relative_max_error(mean.data(), want.data(), n), kTol);
  EXPECT_LE(relative_max_error(spread.data(), want_sd.data(), n), kTol);

  fkb::Ensemble one({ms[0]}, cpu());
  one.predict(r.x.values.data(), r.ncol(), mean.data(), spread.data());
  EXPECT_LE(relative_max_error(mean.data(), r.members.values.data(), n), kTol);
  for (float s : spread) EXPECT_EQ(s, 0.0f);
}

TEST(Ensemble, RejectsMemberOfAnotherWidth) {
  const fkb::Model odd = fkb::Model::load(fixture_path("ensemble_mismatch/odd_width.keras"));
  // The odd member's second Dense (after Dense + LeakyReLU) is the first layer that differs.
  const fkb::Node* dense2 = nullptr;
  int dense = 0;
  for (const auto& n : odd.nodes)
    if (n.op == fkb::OpKind::Dense && ++dense == 2) dense2 = &n;
  ASSERT_NE(dense2, nullptr);
  ASSERT_EQ(dense2->shape, fkb::Shape({20}));
  try {
    fkb::Ensemble::load(fixture_path("ensemble_mismatch/members.txt"), cpu());
    FAIL() << "expected a mismatch";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::ShapeMismatch);
    const std::string msg = e.what();
    for (const std::string& part : {std::string("odd_width.keras"), std::string("member_00.keras"), dense2->name,
                                    std::string("(20,)"), std::string("(24,)")})
      EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' missing from: " << msg;
  }
}

TEST(Ensemble, RejectsMemberWithAnotherActivation) {
  std::vector<fkb::Model> ms;
  for (int m = 0; m < 2; ++m)
    ms.push_back(fkb::Model::load(fixture_path("ensemble8/members/member_0" + std::to_string(m) + ".keras")));
  for (auto& n : ms[1].nodes)
    if (n.op == fkb::OpKind::Dense && n.activation.kind == fkb::ActKind::Tanh) {
      n.activation.kind = fkb::ActKind::Sigmoid;
      n.activation.keras_name = "sigmoid";
    }
  try {
    fkb::Ensemble(ms, cpu(), {"a.keras", "b.keras"});
    FAIL() << "expected a mismatch";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::ShapeMismatch);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("b.keras"), std::string::npos) << msg;
    EXPECT_NE(msg.find("sigmoid"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tanh"), std::string::npos) << msg;
  }
}

void expect_error(const std::string& path, fkb::Status st, const std::vector<std::string>& parts,
                  const fkb::EnsembleOptions& o = cpu()) {
  try {
    fkb::Ensemble::load(path, o);
    ADD_FAILURE() << "expected an error for " << path;
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), st) << e.what();
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(Ensemble, ErrorPaths) {
  const std::string dir = fkb::test::temp_dir();
  expect_error(dir + "/missing.yaml", fkb::Status::FileError, {"missing.yaml"});
  expect_error(dir, fkb::Status::FormatError, {dir, "no Keras files"});
  std::ofstream(dir + "/unknown_key.yaml") << "members: [a.keras]\ndevices: cpu\n";
  expect_error(dir + "/unknown_key.yaml", fkb::Status::FormatError, {"devices", "accepted"});
  std::ofstream(dir + "/no_members.yaml") << "device: cpu\n";
  expect_error(dir + "/no_members.yaml", fkb::Status::FormatError, {"no members"});
  std::ofstream(dir + "/bad.yaml") << "members: [unclosed\n";
  expect_error(dir + "/bad.yaml", fkb::Status::FormatError, {"YAML"});
  std::ofstream(dir + "/empty.txt") << "# nothing\n\n";
  expect_error(dir + "/empty.txt", fkb::Status::FormatError, {"names no members"});
  std::ofstream(dir + "/gone.txt") << fixture_path("ensemble8/members/member_00.keras") << "\nnot_there.keras\n";
  expect_error(dir + "/gone.txt", fkb::Status::FileError, {dir + "/not_there.keras"});
  expect_error(fixture_path("ensemble8/members/member_00.keras"), fkb::Status::InvalidArgument,
               {"does not name an ensemble"});
  fkb::EnsembleOptions bad_device = cpu();
  bad_device.device = "gpu";
  expect_error(fixture_path("ensemble8/members.txt"), fkb::Status::InvalidArgument, {"gpu", "auto, cpu, cuda"},
               bad_device);
  fkb::EnsembleOptions fp16 = cpu();
  fp16.precision = "fp16";
  expect_error(fixture_path("ensemble8/members.txt"), fkb::Status::Unsupported, {"fp16"}, fp16);
  if (fkb::cuda_device_count() == 0) {
    fkb::EnsembleOptions gpu = cpu();
    gpu.device = "cuda";
    expect_error(fixture_path("ensemble8/members.txt"), fkb::Status::CudaError, {}, gpu);
  }
  // Multi-output members are rejected with a clear message.
  const auto multi = fkb::Model::load(fixture_path("k3_multi_io.keras"));
  try {
    fkb::Ensemble({multi, multi}, cpu());
    ADD_FAILURE() << "expected Unsupported";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::Unsupported);
    EXPECT_NE(std::string(e.what()).find("single-input, single-output"), std::string::npos) << e.what();
  }
  // predict argument checks
  fkb::Ensemble ens = fkb::Ensemble::load(fixture_path("ensemble8/members.txt"), cpu());
  float x[10] = {0}, y[5];
  EXPECT_THROW(ens.predict(x, -1, y), fkb::Error);
  EXPECT_THROW(ens.predict(static_cast<const float*>(nullptr), 1, y), fkb::Error);
  EXPECT_THROW(ens.predict(x, 1, static_cast<float*>(nullptr)), fkb::Error);
  ens.predict(static_cast<const float*>(nullptr), 0, static_cast<float*>(nullptr));  // ncol = 0: no-op
  std::filesystem::remove_all(dir);
}

TEST(Ensemble, PathKinds) {
  EXPECT_TRUE(fkb::is_ensemble_path(fixture_path("ensemble8/members")));
  EXPECT_TRUE(fkb::is_ensemble_path(fixture_path("ensemble8/members.txt")));
  EXPECT_TRUE(fkb::is_ensemble_path(fixture_path("ensemble8/ensemble.yaml")));
  EXPECT_TRUE(fkb::is_ensemble_path("runs/ens.YML"));
  EXPECT_FALSE(fkb::is_ensemble_path(fixture_path("ensemble8/members/member_00.keras")));
  EXPECT_FALSE(fkb::is_ensemble_path(fixture_path("k3_custom.h5")));
  const fkb::EnsembleSpec s = fkb::read_ensemble_spec(fixture_path("ensemble8/ensemble.yaml"));
  ASSERT_EQ(s.members.size(), 8u);
  EXPECT_EQ(s.members[0], fixture_path("ensemble8/members/member_00.keras"));
  EXPECT_EQ(s.options.device, "cpu");
  EXPECT_EQ(s.options.precision, "fp32");
  EXPECT_EQ(s.options.max_batch, 16);
}

}  // namespace

// Device memory helpers exported by the CUDA backend (kernels/cuda_backend.cu); null without CUDA.
extern "C" {
int fkb_cuda_test_malloc(void** p, size_t bytes) __attribute__((weak));
int fkb_cuda_test_free(void* p) __attribute__((weak));
int fkb_cuda_test_memcpy(void* dst, const void* src, size_t bytes) __attribute__((weak));
}

namespace {

// GPU only (skips elsewhere): both CUDA engines against Keras, host and device pointers.
TEST(Ensemble, CudaEnginesAgreeWithKeras) {
  if (fkb::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  for (const char* engine : {"cuda-batched-gemm", "cuda-per-member"}) {
    if (std::string(engine) == "cuda-per-member")
      setenv("FKB_ENSEMBLE_CUDA", "per-member", 1);
    else
      unsetenv("FKB_ENSEMBLE_CUDA");
    fkb::EnsembleOptions o = cpu(16);
    o.device = "cuda";
    fkb::Ensemble ens = fkb::Ensemble::load(fixture_path("ensemble8/members.txt"), o);
    EXPECT_EQ(ens.engine(), engine);
    check_against_keras<float>(ens, engine);
    check_against_keras<double>(ens, engine);
    // Device pointers in and out.
    const Ref& r = ref();
    const int64_t n = r.ncol() * r.nout();
    ASSERT_NE(fkb_cuda_test_malloc, nullptr);
    void *dx = nullptr, *dm = nullptr, *ds = nullptr, *dy = nullptr;
    ASSERT_EQ(fkb_cuda_test_malloc(&dx, r.x.values.size() * 4), 0);
    ASSERT_EQ(fkb_cuda_test_malloc(&dm, n * 4), 0);
    ASSERT_EQ(fkb_cuda_test_malloc(&ds, n * 4), 0);
    ASSERT_EQ(fkb_cuda_test_malloc(&dy, r.nmem() * n * 4), 0);
    ASSERT_EQ(fkb_cuda_test_memcpy(dx, r.x.values.data(), r.x.values.size() * 4), 0);
    ens.predict(static_cast<const float*>(dx), r.ncol(), static_cast<float*>(dm), static_cast<float*>(ds),
                static_cast<float*>(dy));
    std::vector<float> mean(n), sd(n), mem(r.nmem() * n);
    ASSERT_EQ(fkb_cuda_test_memcpy(mean.data(), dm, n * 4), 0);
    ASSERT_EQ(fkb_cuda_test_memcpy(sd.data(), ds, n * 4), 0);
    ASSERT_EQ(fkb_cuda_test_memcpy(mem.data(), dy, r.nmem() * n * 4), 0);
    EXPECT_LE(relative_max_error(mean.data(), r.mean.values.data(), n), kTol) << engine << " device";
    EXPECT_LE(relative_max_error(sd.data(), r.std.values.data(), n), kTol) << engine << " device";
    EXPECT_LE(relative_max_error(mem.data(), r.members.values.data(), r.nmem() * n), kTol) << engine << " device";
    for (void* p : {dx, dm, ds, dy}) fkb_cuda_test_free(p);
  }
  unsetenv("FKB_ENSEMBLE_CUDA");
}

TEST(Ensemble, ExampleConfigLoads) {
  // configs/ensemble_example.yaml names the fixture directory; device auto falls back to the CPU here.
  fkb::EnsembleOptions o;
  o.verbose = false;
  fkb::Ensemble ens = fkb::Ensemble::load(std::string(FKB_SOURCE_DIR) + "/configs/ensemble_example.yaml", o);
  EXPECT_EQ(ens.n_members(), 8);
  EXPECT_EQ(ens.max_batch(), 4096);
  if (fkb::cuda_device_count() == 0) EXPECT_EQ(ens.engine(), "cpu-blocked");
  check_against_keras<float>(ens, "configs/ensemble_example.yaml");
}

}  // namespace
