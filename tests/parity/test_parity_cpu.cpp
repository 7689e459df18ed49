// Parity of the CPU backend with Keras: every fixture of tests/fixtures/manifest.json (made by real Keras,
// see make_fixtures.py) and every shared real model with a committed reference, within the DESIGN.md
// contract of 1e-5 (max-abs error / max-abs reference), on the committed batch and on batches of 1, 7, 64
// and 5000 columns built by cycling the committed columns (so no new Keras run is needed).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cpu/packed_gemm.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace {

using fkb::test::Data;

constexpr double kTolerance = 1e-5;

struct Case {
  std::string name;    // test name
  std::string model;   // absolute path
  std::string config;  // absolute path or ""
  std::string data;    // absolute path of <name>.data.h5
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string sanitize(std::string s) {
  for (auto& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

std::vector<Case> fixture_cases() {
  std::vector<Case> out;
  for (const auto& f : fkb::test::manifest()["fixtures"]) {
    if (!f["expect_error"].is_null()) continue;  // lambda / custom layers cannot load: tested by the loader tests
    Case c;
    c.name = f["name"].get<std::string>();
    c.model = fkb::test::fixture_path(f["file"].get<std::string>());
    if (f.contains("config") && !f["config"].is_null()) c.config = fkb::test::fixture_path(f["config"].get<std::string>());
    c.data = fkb::test::fixture_path(f["data"].get<std::string>());
    out.push_back(c);
  }
  return out;
}

/// Rows of `d` cycled to `ncol` rows (row c is row c % rows).
std::vector<float> cycle_rows(const Data& d, int64_t ncol) {
  const int64_t w = d.row_size();
  std::vector<float> out(static_cast<size_t>(ncol * w));
  for (int64_t c = 0; c < ncol; ++c)
    std::copy(d.values.begin() + (c % d.rows()) * w, d.values.begin() + (c % d.rows() + 1) * w,
              out.begin() + c * w);
  return out;
}

fkb::Model load(const Case& c) {
  fkb::Model::LoadOptions lo;
  lo.config_path = c.config;
  return fkb::Model::load(c.model, lo);
}

fkb::RuntimeOptions cpu_options(int64_t max_batch = 4096) {
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.max_batch = max_batch;
  o.verbose = false;
  return o;
}

/// Run the model on the fixture's inputs cycled to `ncol` columns and compare every output with the
/// cycled Keras reference.
void check_batch(const Case& c, const fkb::Model& m, fkb::Runtime& rt, int64_t ncol) {
  const int nin = static_cast<int>(m.num_inputs()), nout = static_cast<int>(m.num_outputs());
  ASSERT_EQ(fkb::test::count_datasets(c.data, "input"), nin) << c.data;
  ASSERT_EQ(fkb::test::count_datasets(c.data, "output"), nout) << c.data;
  std::vector<std::vector<float>> xs, ys, refs;
  std::vector<const float*> xp;
  std::vector<float*> yp;
  for (int i = 0; i < nin; ++i) {
    Data d = fkb::test::read_dataset(c.data, "input_" + std::to_string(i));
    ASSERT_EQ(d.row_size(), m.input_size(i)) << c.name << " input " << i;
    xs.push_back(cycle_rows(d, ncol));
  }
  for (int o = 0; o < nout; ++o) {
    Data d = fkb::test::read_dataset(c.data, "output_" + std::to_string(o));
    ASSERT_EQ(d.row_size(), m.output_size(o)) << c.name << " output " << o;
    refs.push_back(cycle_rows(d, ncol));
    ys.emplace_back(refs.back().size(), NAN);
  }
  for (auto& x : xs) xp.push_back(x.data());
  for (auto& y : ys) yp.push_back(y.data());
  rt.predict(xp, ncol, yp);
  for (int o = 0; o < nout; ++o) {
    const double err = fkb::test::relative_max_error(ys[o].data(), refs[o].data(), static_cast<int64_t>(ys[o].size()));
    EXPECT_LE(err, kTolerance) << c.name << ": output " << o << " on " << ncol << " columns";
  }
}

class FixtureParity : public ::testing::TestWithParam<Case> {};

TEST_P(FixtureParity, CommittedBatchAndCycledBatches) {
  const Case& c = GetParam();
  fkb::Model m = load(c);
  fkb::Runtime rt(m, cpu_options());
  const int64_t committed = fkb::test::read_dataset(c.data, "input_0").rows();
  for (int64_t ncol : {committed, int64_t{1}, int64_t{7}, int64_t{64}, int64_t{5000}}) {
    SCOPED_TRACE("ncol " + std::to_string(ncol));
    check_batch(c, m, rt, ncol);
  }
}

TEST_P(FixtureParity, SingleThreadAndSmallMaxBatch) {
  // One thread and chunks of 16 columns: a different blocking of the same batch gives the same answers.
  const Case& c = GetParam();
  fkb::Model m = load(c);
  fkb::RuntimeOptions o = cpu_options(16);
  o.threads = 1;
  fkb::Runtime rt(m, o);
  check_batch(c, m, rt, 100);
}

TEST_P(FixtureParity, OpenBlasGemmPath) {
  // Where the CPU has AVX-512 the packed-weight kernel is the default; the OpenBLAS path must hold the
  // same contract (it is the one used on every other CPU).
  const Case& c = GetParam();
  fkb::Model m = load(c);
  fkb::cpu::set_packed_gemm_isa_limit(fkb::cpu::PackedIsa::None);
  fkb::Runtime rt(m, cpu_options());
  fkb::cpu::set_packed_gemm_isa_limit(fkb::cpu::PackedIsa::Avx512);
  for (int64_t ncol : {int64_t{37}, int64_t{300}}) {
    SCOPED_TRACE("ncol " + std::to_string(ncol));
    check_batch(c, m, rt, ncol);
  }
}

TEST_P(FixtureParity, Avx2GemmPath) {
  // The AVX2 kernel is what CPUs without AVX-512 (e.g. AMD Zen 2/3 nodes) run.
  fkb::cpu::set_packed_gemm_isa_limit(fkb::cpu::PackedIsa::Avx2);
  const bool have = fkb::cpu::packed_gemm_isa() == fkb::cpu::PackedIsa::Avx2;
  const Case& c = GetParam();
  fkb::Model m = load(c);
  std::unique_ptr<fkb::Runtime> rt;
  if (have) rt = std::make_unique<fkb::Runtime>(m, cpu_options());
  fkb::cpu::set_packed_gemm_isa_limit(fkb::cpu::PackedIsa::Avx512);
  if (!have) GTEST_SKIP() << "this CPU has no AVX2+FMA";
  for (int64_t ncol : {int64_t{37}, int64_t{300}}) {
    SCOPED_TRACE("ncol " + std::to_string(ncol));
    check_batch(c, m, *rt, ncol);
  }
}

TEST_P(FixtureParity, NonFiniteInputFollowsThePolicy) {
  const Case& c = GetParam();
  fkb::Model m = load(c);
  const int64_t ncol = 10, bad_col = 6;
  const int nin = static_cast<int>(m.num_inputs()), nout = static_cast<int>(m.num_outputs());
  std::vector<std::vector<float>> xs, ys, refs;
  for (int i = 0; i < nin; ++i)
    xs.push_back(cycle_rows(fkb::test::read_dataset(c.data, "input_" + std::to_string(i)), ncol));
  for (int o = 0; o < nout; ++o) {
    refs.push_back(cycle_rows(fkb::test::read_dataset(c.data, "output_" + std::to_string(o)), ncol));
    ys.emplace_back(refs.back().size(), 0.0f);
  }
  const int bad_input = nin - 1;
  xs[bad_input][bad_col * m.input_size(bad_input)] = NAN;
  std::vector<const float*> xp;
  std::vector<float*> yp;
  for (auto& x : xs) xp.push_back(x.data());
  for (auto& y : ys) yp.push_back(y.data());

  fkb::Runtime rt(m, cpu_options());  // propagate: the other columns are untouched
  rt.predict(xp, ncol, yp);
  for (int o = 0; o < nout; ++o) {
    const int64_t w = m.output_size(o);
    for (int64_t col = 0; col < ncol; ++col) {
      if (col == bad_col) continue;
      EXPECT_LE(fkb::test::relative_max_error(ys[o].data() + col * w, refs[o].data() + col * w, w), kTolerance)
          << c.name << " output " << o << " column " << col;
    }
  }

  fkb::RuntimeOptions eo = cpu_options();
  eo.nonfinite = "error";
  fkb::Runtime strict(m, eo);
  try {
    strict.predict(xp, ncol, yp);
    ADD_FAILURE() << "expected a NonFinite error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::NonFinite);
    EXPECT_NE(std::string(e.what()).find("column " + std::to_string(bad_col)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("input " + std::to_string(bad_input)), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureParity, ::testing::ValuesIn(fixture_cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return sanitize(p.param.name); });

// ---------------------------------------------------------------------------------------------------------------
// Real models from ../shared/models against the references in tests/fixtures/shared_refs.

std::vector<Case> shared_cases() {
  std::vector<Case> out;
  std::ifstream f(fkb::test::fixture_path("shared_refs/manifest.json"));
  if (!f) return out;
  const auto m = nlohmann::json::parse(f);
  for (const auto& r : m["references"]) {
    Case c;
    c.name = r["name"].get<std::string>();
    c.model = r["model"].get<std::string>();  // relative to the shared models directory
    c.data = fkb::test::fixture_path("shared_refs/" + r["data"].get<std::string>());
    out.push_back(c);
  }
  return out;
}

class SharedModelParity : public ::testing::TestWithParam<Case> {};

TEST_P(SharedModelParity, CommittedBatchAndCycledBatches) {
  const std::string dir = fkb::test::shared_models_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared/models is absent (set FKB_SHARED_MODELS to its path): skipping";
  Case c = GetParam();
  c.model = dir + "/" + c.model;
  fkb::Model m = load(c);
  fkb::Runtime rt(m, cpu_options());
  const int64_t committed = fkb::test::read_dataset(c.data, "input_0").rows();
  for (int64_t ncol : {committed, int64_t{1}, int64_t{7}, int64_t{64}, int64_t{5000}}) {
    SCOPED_TRACE("ncol " + std::to_string(ncol));
    check_batch(c, m, rt, ncol);
  }
}

INSTANTIATE_TEST_SUITE_P(Shared, SharedModelParity, ::testing::ValuesIn(shared_cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return sanitize(p.param.name); });

}  // namespace
