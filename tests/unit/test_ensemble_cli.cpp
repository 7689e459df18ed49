// `fkb inspect` on ensembles (directory, list file, YAML): member count, the shared architecture and each
// member's parameter count as Keras counted it (tests/fixtures/ensemble8/manifest.json, count_params()); the
// mismatch error; and the single-model output left as it was. `fkb predict` on ensembles: mean, spread and
// members against Keras' own member outputs and numpy's mean/std (ensemble8/data.h5).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "io/array_io.hpp"
#include "test_io_util.hpp"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;

nlohmann::json keras_manifest() {
  std::ifstream f(fixture_path("ensemble8/manifest.json"));
  return nlohmann::json::parse(f);
}

TEST(EnsembleCli, InspectTextAndJson) {
  const auto km = keras_manifest();
  for (const char* p : {"ensemble8/members", "ensemble8/members.txt", "ensemble8/ensemble.yaml"}) {
    std::string out;
    ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect " + fixture_path(p), &out), 0) << out;
    EXPECT_NE(out.find("members:       8\n"), std::string::npos) << out;
    EXPECT_NE(out.find("LeakyReLU"), std::string::npos) << out;
    EXPECT_NE(out.find("inputs:        (10,)"), std::string::npos) << out;
    EXPECT_NE(out.find("outputs:       (5,)"), std::string::npos) << out;
    int64_t total = 0;
    for (const auto& n : km["params"]) total += n.get<int64_t>();
    EXPECT_NE(out.find("total params:  " + std::to_string(total)), std::string::npos) << out;
    for (const auto& f : km["members"])
      EXPECT_NE(out.find(f.get<std::string>().substr(8)), std::string::npos) << f << "\n" << out;  // "members/" off

    ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect --json " + fixture_path(p) + " 2>/dev/null", &out), 0)
        << out;
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j["n_members"], 8);
    ASSERT_EQ(j["members"].size(), 8u);
    for (size_t i = 0; i < 8; ++i) EXPECT_EQ(j["members"][i]["params"], km["params"][i]) << p << " member " << i;
    EXPECT_EQ(j["total_params"], total);
    EXPECT_EQ(j["inputs"][0][0], km["nin"]);
    EXPECT_EQ(j["outputs"][0][0], km["nout"]);
    EXPECT_EQ(j["runnable"], true);
  }
  std::string out;
  ASSERT_EQ(
      fkb::test::run_command(fkb::test::cli() + " inspect --json " + fixture_path("ensemble8/ensemble.yaml"), &out), 0);
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["kind"], "yaml");
  EXPECT_EQ(j["options"]["max_batch"], 16);
  EXPECT_EQ(j["options"]["device"], "cpu");
}

TEST(EnsembleCli, InspectMismatchAndSingleModel) {
  std::string out;
  EXPECT_NE(
      fkb::test::run_command(fkb::test::cli() + " inspect " + fixture_path("ensemble_mismatch/members.txt"), &out), 0);
  EXPECT_NE(out.find("odd_width.keras"), std::string::npos) << out;
  EXPECT_NE(out.find("(20,)"), std::string::npos) << out;
  // A single Keras file keeps the single-model output.
  ASSERT_EQ(
      fkb::test::run_command(fkb::test::cli() + " inspect " + fixture_path("ensemble8/members/member_03.keras"), &out),
      0);
  EXPECT_EQ(out.rfind("file:", 0), 0u) << out;
  EXPECT_EQ(out.find("ensemble:"), std::string::npos) << out;
  EXPECT_NE(out.find("total params:  989"), std::string::npos) << out;
}

void expect_close(const std::vector<float>& got, const fkb::test::Data& ref, const std::string& what) {
  ASSERT_EQ(got.size(), ref.values.size()) << what;
  EXPECT_LE(fkb::test::relative_max_error(got.data(), ref.values.data(), static_cast<int64_t>(got.size())), 1e-5)
      << what;
}

std::vector<float> as_float(const fkb::io::HostArray& a) {
  return a.dtype == fkb::DType::F32 ? a.f32 : std::vector<float>(a.f64.begin(), a.f64.end());
}

TEST(EnsembleCli, PredictMeanSpreadAndMembersMatchKeras) {
  const std::string data = fixture_path("ensemble8/data.h5");
  const auto x = fkb::test::read_dataset(data, "input"), mean = fkb::test::read_dataset(data, "mean"),
             sd = fkb::test::read_dataset(data, "std"), members = fkb::test::read_dataset(data, "members");
  const std::string dir = fkb::test::temp_dir();
  std::string out;
  for (const char* p : {"ensemble8/members", "ensemble8/members.txt", "ensemble8/ensemble.yaml"}) {
    const std::string cmd = fkb::test::cli() + " predict " + fixture_path(p) + " -i " + data +
                            " --dataset input --device cpu -o " + dir + "/mean.npy --spread " + dir +
                            "/sd.h5 --members " + dir + "/m.npy";
    ASSERT_EQ(fkb::test::run_command(cmd, &out), 0) << p << ": " << out;
    expect_close(as_float(fkb::io::read_npy(dir + "/mean.npy")), mean, std::string(p) + " mean");
    expect_close(as_float(fkb::io::read_h5(dir + "/sd.h5", "output")), sd, std::string(p) + " spread");
    fkb::io::HostArray m = fkb::io::read_npy(dir + "/m.npy");
    EXPECT_EQ(m.shape, (std::vector<int64_t>{8, 53, 5})) << p;
    expect_close(m.f32, members, std::string(p) + " members");
  }
  // The mean alone, from float64 input, to CSV; the members as CSV rows member after member.
  fkb::iotest::write_f64_npy(dir + "/x64.npy", std::vector<double>(x.values.begin(), x.values.end()), x.shape);
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " predict " + fixture_path("ensemble8/members") + " -i " + dir +
                                       "/x64.npy --device cpu -o " + dir + "/mean.csv --members " + dir + "/m.csv",
                                   &out),
            0)
      << out;
  expect_close(as_float(fkb::io::read_csv(dir + "/mean.csv")), mean, "mean from float64 input (csv)");
  fkb::io::HostArray mc = fkb::io::read_csv(dir + "/m.csv");
  EXPECT_EQ(mc.shape, (std::vector<int64_t>{8 * 53, 5}));
  expect_close(as_float(mc), members, "members (csv)");

  // netCDF: the mean over the input's column dimension, members over (member, ncol, nout).
  fkb::iotest::write_nc(dir + "/x.nc", NC_NETCDF4, "X", {{"ncol", 53}, {"nin", 10}}, NC_FLOAT,
                        std::vector<double>(x.values.begin(), x.values.end()));
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " predict " + fixture_path("ensemble8/ensemble.yaml") + " -i " +
                                       dir + "/x.nc --dataset X -o " + dir + "/mean.nc --spread " + dir +
                                       "/sd.nc --members " + dir + "/m.nc --output-var q",
                                   &out),
            0)
      << out;
  auto rm = fkb::iotest::read_nc_var(dir + "/mean.nc", "q");
  EXPECT_EQ(rm.dim_names, (std::vector<std::string>{"ncol", "nout"}));
  expect_close(rm.values, mean, "netCDF mean");
  expect_close(fkb::iotest::read_nc_var(dir + "/sd.nc", "q_spread").values, sd, "netCDF spread");
  auto rmem = fkb::iotest::read_nc_var(dir + "/m.nc", "q_members");
  EXPECT_EQ(rmem.dim_names, (std::vector<std::string>{"member", "ncol", "nout"}));
  EXPECT_EQ(rmem.dim_lengths, (std::vector<size_t>{8, 53, 5}));
  expect_close(rmem.values, members, "netCDF members");
  EXPECT_NE(fkb::iotest::nc_text_attribute(dir + "/m.nc", "", "fkb_ensemble_members").find("member_07.h5"),
            std::string::npos);
  EXPECT_EQ(fkb::iotest::nc_text_attribute(dir + "/m.nc", "", "fkb_model_file"),
            fixture_path("ensemble8/ensemble.yaml"));

  // Zero columns: empty outputs.
  fkb::iotest::write_f32_npy(dir + "/e.npy", {}, {0, 10});
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " predict " + fixture_path("ensemble8/members") + " -i " + dir +
                                       "/e.npy --device cpu -o " + dir + "/em.npy --members " + dir + "/emm.npy",
                                   &out),
            0)
      << out;
  EXPECT_EQ(fkb::io::read_npy(dir + "/em.npy").shape, (std::vector<int64_t>{0, 5}));
  EXPECT_EQ(fkb::io::read_npy(dir + "/emm.npy").shape, (std::vector<int64_t>{8, 0, 5}));
}

TEST(EnsembleCli, PredictErrors) {
  const std::string data = fixture_path("ensemble8/data.h5");
  const std::string dir = fkb::test::temp_dir();
  const std::string ens = fkb::test::cli() + " predict " + fixture_path("ensemble8/members") + " -i " + data +
                          " --dataset input --device cpu ";
  std::string out;
  // Wrong width: names the width the members expect.
  fkb::iotest::write_f32_npy(dir + "/narrow.npy", std::vector<float>(12, 0.5f), {4, 3});
  EXPECT_NE(fkb::test::run_command(fkb::test::cli() + " predict " + fixture_path("ensemble8/members") + " -i " + dir +
                                       "/narrow.npy -o " + dir + "/y.npy --device cpu",
                                   &out),
            0);
  EXPECT_NE(out.find("has 3 features per column but the model expects 10"), std::string::npos) << out;
  // Two --output paths for an ensemble, and a bad --members extension: refused before any work.
  EXPECT_NE(fkb::test::run_command(ens + "-o " + dir + "/y.npy -o " + dir + "/z.npy", &out), 0);
  EXPECT_NE(out.find("an ensemble writes its mean to one --output file"), std::string::npos) << out;
  EXPECT_NE(fkb::test::run_command(ens + "-o " + dir + "/y.npy --members " + dir + "/m.xyz", &out), 0);
  EXPECT_NE(out.find("unknown file type '.xyz'"), std::string::npos) << out;
  // A mismatched ensemble: the loader's message.
  EXPECT_NE(fkb::test::run_command(fkb::test::cli() + " predict " + fixture_path("ensemble_mismatch/members.txt") +
                                       " -i " + data + " --dataset input -o " + dir + "/y.npy --device cpu",
                                   &out),
            0);
  EXPECT_NE(out.find("odd_width.keras"), std::string::npos) << out;
  EXPECT_EQ(out.find("neither an HDF5"), std::string::npos) << out;
  EXPECT_TRUE(fkb::iotest::list_dir(dir) == std::vector<std::string>{"narrow.npy"});
}

}  // namespace
