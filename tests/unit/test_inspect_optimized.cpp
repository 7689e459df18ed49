// `fkb inspect MODEL --optimized`: the graph after the optimizer's passes, on a Keras 3 model with five
// BatchNormalization layers (tests/fixtures/k3_batchnorm.keras: Dense, BN, Dense, BN, Dense(relu), BN, Dense, BN,
// BN, Dense). Every BN folds: into the linear Dense before it, or (after the relu Dense) into the Dense after it.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace {

TEST(InspectOptimized, ShowsTheFoldedGraphAndWhatWasFolded) {
  const std::string path = fkb::test::fixture_path("k3_batchnorm.keras");
  std::string out;
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect " + path + " --optimized", &out), 0) << out;
  EXPECT_EQ(out.find("BatchNormalization "), std::string::npos) << "a BatchNormalization row is left:\n" << out;
  EXPECT_NE(out.find("dense+batch_normalization "), std::string::npos) << out;
  EXPECT_NE(out.find("  folded batch_normalization into dense\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  folded batch_normalization_2 into dense_3+batch_normalization_3+batch_normalization_4\n"),
            std::string::npos)
      << out;

  std::string plain;
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect " + path, &plain), 0) << plain;
  EXPECT_NE(plain.find("BatchNormalization "), std::string::npos) << "plain inspect shows the file's layers";
  EXPECT_EQ(plain.find("optimized:"), std::string::npos);
}

TEST(InspectOptimized, JsonListsThePassesAndNotes) {
  const std::string path = fkb::test::fixture_path("k3_batchnorm.keras");
  std::string out;
  ASSERT_EQ(fkb::test::run_command(fkb::test::cli() + " inspect --json --optimized " + path, &out), 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(j["layers"].size(), 6u);  // input and five Dense layers
  for (const auto& l : j["layers"]) EXPECT_NE(l["op"], "Affine") << l.dump();
  EXPECT_EQ(j["optimizer"]["notes"].size(), 5u);
  EXPECT_EQ(j["optimizer"]["passes"][0], "dead_nodes");
  EXPECT_EQ(j["total_params"], 299);  // folding keeps the Dense parameter counts; the BN statistics are gone
}

TEST(InspectOptimized, RefusedForAnEnsemble) {
  std::string out;
  const int rc = fkb::test::run_command(
      fkb::test::cli() + " inspect --optimized " + fkb::test::fixture_path("ensemble8"), &out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--optimized applies to a single model"), std::string::npos) << out;
}

}  // namespace
