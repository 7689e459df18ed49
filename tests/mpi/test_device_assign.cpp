// Device assignment rules (fkb::mpi::assign_device): by node-local rank, FKB_DEVICE over the option over
// "auto", comma lists indexed by local rank, mode cpu wins. Pure function: no GPU needed.
#include <gtest/gtest.h>

#include "fkb/mpi.hpp"

using fkb::Error;
using fkb::Status;
using fkb::mpi::assign_device;
using fkb::mpi::Mode;

TEST(DeviceAssign, AutoUsesLocalRankModuloGpus) {
  for (int lr = 0; lr < 9; ++lr) {
    const auto c = assign_device(Mode::PerRank, "auto", nullptr, lr, 4);
    EXPECT_EQ(c.device, "cuda:" + std::to_string(lr % 4));
    EXPECT_TRUE(c.automatic);
  }
  EXPECT_EQ(assign_device(Mode::NodeAggregate, "", nullptr, 5, 2).device, "cuda:1");
}

TEST(DeviceAssign, AutoWithoutGpuIsCpu) {
  const auto c = assign_device(Mode::PerRank, "auto", nullptr, 3, 0);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_NE(c.source.find("no GPU"), std::string::npos) << c.source;
}

TEST(DeviceAssign, EnvironmentOverridesOption) {
  EXPECT_EQ(assign_device(Mode::PerRank, "cuda:1", "cpu", 0, 2).device, "cpu");
  EXPECT_EQ(assign_device(Mode::PerRank, "cpu", "cuda:1", 0, 2).device, "cuda:1");
  EXPECT_EQ(assign_device(Mode::PerRank, "cpu", "", 0, 2).device, "cpu");  // empty = unset
  EXPECT_EQ(assign_device(Mode::PerRank, "cpu", "  ", 0, 2).device, "cpu");
  EXPECT_NE(assign_device(Mode::PerRank, "cpu", "cuda", 1, 2).source.find("FKB_DEVICE"), std::string::npos);
}

TEST(DeviceAssign, ListsAreIndexedByLocalRank) {
  const char* list = "cuda:0, cuda:0 ,cuda:1,cpu";
  EXPECT_EQ(assign_device(Mode::PerRank, "", list, 0, 2).device, "cuda:0");
  EXPECT_EQ(assign_device(Mode::PerRank, "", list, 1, 2).device, "cuda:0");
  EXPECT_EQ(assign_device(Mode::PerRank, "", list, 2, 2).device, "cuda:1");
  EXPECT_EQ(assign_device(Mode::PerRank, "", list, 3, 2).device, "cpu");
  EXPECT_EQ(assign_device(Mode::PerRank, "", list, 6, 2).device, "cuda:1");
  EXPECT_EQ(assign_device(Mode::PerRank, "auto,cpu", nullptr, 2, 3).device, "cuda:2");
  EXPECT_EQ(assign_device(Mode::PerRank, "auto,cpu", nullptr, 3, 3).device, "cpu");
}

TEST(DeviceAssign, ExplicitCudaNeedsAGpu) {
  EXPECT_EQ(assign_device(Mode::PerRank, "cuda", nullptr, 5, 4).device, "cuda:1");
  EXPECT_FALSE(assign_device(Mode::PerRank, "cuda", nullptr, 5, 4).automatic);
  try {
    assign_device(Mode::PerRank, "cuda", nullptr, 0, 0);
    ADD_FAILURE() << "cuda accepted without a GPU";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::CudaError);
  }
  EXPECT_EQ(assign_device(Mode::PerRank, "CUDA:3", nullptr, 0, 0).device, "cuda:3");  // the runtime checks it
}

TEST(DeviceAssign, ModeCpuWins) { EXPECT_EQ(assign_device(Mode::Cpu, "cuda:0", "cuda:1", 0, 8).device, "cpu"); }

TEST(DeviceAssign, BadValuesAreInvalidArguments) {
  for (const char* bad : {"tpu", "cuda:", "cuda:-1", "cuda:x", "gpu0", ",", "cpu,,cpu"}) {
    SCOPED_TRACE(bad);
    bool threw = false;
    for (int lr = 0; lr < 3; ++lr) {
      try {
        assign_device(Mode::PerRank, bad, nullptr, lr, 1);
      } catch (const Error& e) {
        EXPECT_EQ(e.status(), Status::InvalidArgument) << e.what();
        threw = true;
      }
    }
    EXPECT_TRUE(threw);
  }
}

TEST(DeviceAssign, ModeNames) {
  EXPECT_EQ(fkb::mpi::parse_mode("per-rank"), Mode::PerRank);
  EXPECT_EQ(fkb::mpi::parse_mode("Node_Aggregate"), Mode::NodeAggregate);
  EXPECT_EQ(fkb::mpi::parse_mode("aggregate"), Mode::NodeAggregate);
  EXPECT_EQ(fkb::mpi::parse_mode("cpu"), Mode::Cpu);
  EXPECT_STREQ(fkb::mpi::mode_name(Mode::NodeAggregate), "node-aggregate");
  EXPECT_THROW(fkb::mpi::parse_mode("both"), Error);
}
