// The MPI layer's C API (fkb/fkb_mpi.h): Fortran communicator handles, status codes and messages, the
// checked predict a Fortran caller uses, statistics and reports as strings.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/fkb_mpi.h"
#include "mpi_test_util.hpp"

using namespace fkb::test::mpi;

namespace {

fkb_mpi_t load(const char* mode, const char* path = nullptr) {
  fkb_mpi_options o;
  EXPECT_EQ(fkb_mpi_options_init(&o), FKB_OK);
  o.mode = mode;
  o.threads = 1;
  o.verbose = 0;
  o.use_env = 0;
  fkb_mpi_t s = nullptr;
  const std::string p = path ? path : fkb::test::fixture_path("k3_cbrain.keras");
  const int st = fkb_mpi_load(p.c_str(), MPI_Comm_c2f(MPI_COMM_WORLD), &o, &s);
  EXPECT_EQ(st, FKB_OK) << fkb_mpi_last_error();
  return s;
}

TEST(CApiMpi, PredictBothTypesInEveryMode) {
  const int rank = world_rank(), size = world_size();
  const fkb::Model model = fkb::Model::load(fkb::test::fixture_path("k3_cbrain.keras"));
  for (const char* mode : {"per-rank", "node-aggregate", "cpu"}) {
    SCOPED_TRACE(mode);
    fkb_mpi_t s = load(mode);
    int64_t nin = 0, nout = 0;
    EXPECT_EQ(fkb_mpi_n_inputs(s, &nin), FKB_OK);
    EXPECT_EQ(fkb_mpi_n_outputs(s, &nout), FKB_OK);
    EXPECT_EQ(nin, 94);
    EXPECT_EQ(nout, 65);
    const auto counts = uneven_split(13 * size, size);
    const auto d = offsets(counts);
    const int64_t mine = counts[static_cast<size_t>(rank)];
    const auto gx = random_batch(d.back(), nin, 31);
    const bool agg = std::string(mode) == "node-aggregate";
    const auto full =
        reference(model, gx.data() + (agg ? 0 : d[static_cast<size_t>(rank)] * nin), agg ? d.back() : mine);
    const float* expect = full.data() + (agg ? d[static_cast<size_t>(rank)] * nout : 0);
    std::vector<float> y(static_cast<size_t>(mine * nout));
    EXPECT_EQ(fkb_mpi_predict_f32(s, gx.data() + d[static_cast<size_t>(rank)] * nin, mine, y.data()), FKB_OK)
        << fkb_mpi_last_error();
    EXPECT_TRUE(bitwise_equal(y.data(), expect, mine * nout));
    EXPECT_STREQ(fkb_mpi_last_error(), "");
    std::vector<double> xd(gx.begin() + d[static_cast<size_t>(rank)] * nin,
                           gx.begin() + d[static_cast<size_t>(rank) + 1] * nin);
    std::vector<double> yd(static_cast<size_t>(mine * nout));
    EXPECT_EQ(fkb_mpi_predict_checked_f64(s, xd.data(), nin, mine, yd.data(), nout, mine), FKB_OK)
        << fkb_mpi_last_error();
    EXPECT_TRUE(bitwise_equal(yd.data(), expect, mine * nout));

    // Wrong width on the last rank only: its error, everyone else fine.
    const int bad = size - 1;
    const int st = fkb_mpi_predict_checked_f64(s, xd.data(), rank == bad ? nin - 1 : nin, mine, yd.data(), nout, mine);
    if (rank == bad) {
      EXPECT_EQ(st, FKB_ERR_SHAPE_MISMATCH);
      EXPECT_NE(std::string(fkb_mpi_last_error()).find("size(x,1)"), std::string::npos) << fkb_mpi_last_error();
    } else {
      EXPECT_EQ(st, FKB_OK) << fkb_mpi_last_error();
    }

    int32_t leader = -1, lr = -1, gs = -1;
    EXPECT_EQ(fkb_mpi_is_leader(s, &leader), FKB_OK);
    EXPECT_EQ(fkb_mpi_local_rank(s, &lr), FKB_OK);
    EXPECT_EQ(fkb_mpi_group_size(s, &gs), FKB_OK);
    EXPECT_EQ(leader, agg ? (lr == 0 ? 1 : 0) : 1);
    EXPECT_EQ(gs, agg ? size : 1);
    char name[128];
    EXPECT_EQ(fkb_mpi_device_name(s, name, sizeof(name)), FKB_OK);
    EXPECT_NE(std::string(name).find("cpu"), std::string::npos);

    fkb_mpi_stats st2;
    EXPECT_EQ(fkb_mpi_get_stats(s, &st2), FKB_OK);
    EXPECT_EQ(st2.calls, 3);
    EXPECT_EQ(st2.columns, rank == bad ? 2 * mine : 3 * mine);

    char* json = nullptr;
    EXPECT_EQ(fkb_mpi_report_json(s, &json), FKB_OK) << fkb_mpi_last_error();
    ASSERT_NE(json, nullptr);
    const auto j = nlohmann::json::parse(json);
    EXPECT_EQ(j["mode"], mode);
    EXPECT_EQ(j["per_rank"].size(), static_cast<size_t>(size));
    fkb_mpi_free_string(json);
    char* text = nullptr;
    EXPECT_EQ(fkb_mpi_report_text(s, &text), FKB_OK);
    ASSERT_NE(text, nullptr);
    EXPECT_NE(std::string(text).find("median"), std::string::npos);
    fkb_mpi_free_string(text);
    EXPECT_EQ(fkb_mpi_report(s), FKB_OK);
    EXPECT_EQ(fkb_mpi_reset_stats(s), FKB_OK);
    EXPECT_EQ(fkb_mpi_free(s), FKB_OK);
  }
}

TEST(CApiMpi, ErrorsAreCodesWithMessages) {
  EXPECT_EQ(fkb_mpi_predict_f32(nullptr, nullptr, 0, nullptr), FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_mpi_last_error()).find("NULL"), std::string::npos);
  EXPECT_EQ(fkb_mpi_free(nullptr), FKB_OK);
  EXPECT_EQ(fkb_mpi_options_init(nullptr), FKB_ERR_INVALID_ARGUMENT);
  fkb_mpi_t s = reinterpret_cast<fkb_mpi_t>(0x1);
  // A collective failure: a file nobody can read; every rank gets FKB_ERR_FILE and a NULL handle.
  EXPECT_EQ(fkb_mpi_load("/nonexistent.h5", MPI_Comm_c2f(MPI_COMM_WORLD), nullptr, &s), FKB_ERR_FILE);
  EXPECT_EQ(s, nullptr);
  EXPECT_NE(std::string(fkb_mpi_last_error()).find("/nonexistent.h5"), std::string::npos) << fkb_mpi_last_error();
  const std::string path = fkb::test::fixture_path("k3_dense_chain.keras");
  EXPECT_EQ(
      fkb_mpi_load_ex(path.c_str(), MPI_Comm_c2f(MPI_COMM_WORLD), "no-such-mode", nullptr, nullptr, 0, 1, nullptr, &s),
      FKB_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(fkb_mpi_last_error()).find("per-rank, node-aggregate, cpu"), std::string::npos);
  EXPECT_EQ(fkb_mpi_load_ex(path.c_str(), MPI_Comm_c2f(MPI_COMM_WORLD), "", "", "", 0, 1, "", &s), FKB_OK)
      << fkb_mpi_last_error();
  EXPECT_EQ(fkb_mpi_free(s), FKB_OK);
}

}  // namespace
