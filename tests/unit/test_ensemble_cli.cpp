// `fkb inspect` on ensembles (directory, list file, YAML): member count, the shared architecture and each
// member's parameter count as Keras counted it (tests/fixtures/ensemble8/manifest.json, count_params()); the
// mismatch error; and the single-model output left as it was.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

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

}  // namespace
