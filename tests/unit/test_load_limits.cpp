// The loading policy's limits (runtime/src/loader/limits.hpp): resolution from LoadLimits, the environment and
// the defaults; the weight budget. The hostile files themselves are tests/hostile (CTest hostile_*).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "fkb/error.hpp"
#include "loader/limits.hpp"

namespace {

using fkb::loader::Limits;
using fkb::loader::WeightBudget;

struct EnvGuard {
  explicit EnvGuard(const char* name, const char* value) : name_(name) {
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~EnvGuard() { ::unsetenv(name_); }
  const char* name_;
};

}  // namespace

TEST(LoadLimits, DefaultsAreGenerous) {
  EnvGuard w("FKB_MAX_WEIGHT_BYTES", nullptr);
  EnvGuard c("FKB_MAX_CONFIG_BYTES", nullptr);
  const Limits l = fkb::loader::resolve(fkb::LoadLimits{});
  EXPECT_EQ(l.max_weight_bytes, uint64_t{16} << 30);
  EXPECT_EQ(l.max_config_bytes, uint64_t{64} << 20);
  EXPECT_EQ(l.max_config_depth, 512);
  EXPECT_EQ(l.max_config_values, 10'000'000u);
}

TEST(LoadLimits, EnvironmentTakesByteCountsWithBinarySuffixes) {
  EnvGuard c("FKB_MAX_CONFIG_BYTES", nullptr);
  for (const auto& [text, bytes] : std::initializer_list<std::pair<const char*, uint64_t>>{
           {"123", 123}, {"4K", 4096}, {"2M", 2u << 20}, {"16G", uint64_t{16} << 30}, {"1T", uint64_t{1} << 40},
           {"3GiB", uint64_t{3} << 30}, {"5MB", 5u << 20}}) {
    EnvGuard w("FKB_MAX_WEIGHT_BYTES", text);
    EXPECT_EQ(fkb::loader::resolve(fkb::LoadLimits{}).max_weight_bytes, bytes) << text;
  }
  for (const char* bad : {"", "abc", "-5", "0", "12Q", "1.5G", "99999999999999999999", "20000000000T", "4KX"}) {
    EnvGuard w("FKB_MAX_WEIGHT_BYTES", bad);
    if (*bad == '\0') {  // empty: as if unset
      EXPECT_EQ(fkb::loader::resolve(fkb::LoadLimits{}).max_weight_bytes, uint64_t{16} << 30);
      continue;
    }
    try {
      fkb::loader::resolve(fkb::LoadLimits{});
      ADD_FAILURE() << "accepted FKB_MAX_WEIGHT_BYTES=" << bad;
    } catch (const fkb::Error& e) {
      EXPECT_EQ(e.status(), fkb::Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(std::string("FKB_MAX_WEIGHT_BYTES='") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(LoadLimits, OptionsWinOverTheEnvironment) {
  EnvGuard w("FKB_MAX_WEIGHT_BYTES", "1K");
  EnvGuard c("FKB_MAX_CONFIG_BYTES", "2K");
  fkb::LoadLimits o;
  EXPECT_EQ(fkb::loader::resolve(o).max_weight_bytes, 1024u);
  EXPECT_EQ(fkb::loader::resolve(o).max_config_bytes, 2048u);
  o.max_weight_bytes = 7;
  o.max_config_bytes = 9;
  o.max_config_depth = 3;
  o.max_config_values = 11;
  const Limits l = fkb::loader::resolve(o);
  EXPECT_EQ(l.max_weight_bytes, 7u);
  EXPECT_EQ(l.max_config_bytes, 9u);
  EXPECT_EQ(l.max_config_depth, 3);
  EXPECT_EQ(l.max_config_values, 11u);
}

TEST(LoadLimits, BudgetRefusesTheWeightThatPassesTheLimitWithoutOverflow) {
  WeightBudget b(1000, "m.h5");
  b.take(600, "weight 'a'");
  b.take(400, "weight 'b'");  // exactly the limit is allowed
  EXPECT_EQ(b.used(), 1000u);
  try {
    b.take(1, "weight 'c'");
    ADD_FAILURE() << "the budget accepted a byte over the limit";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::FormatError);
    EXPECT_NE(std::string(e.what()).find("'m.h5': weight 'c'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("over the limit of 1000 bytes"), std::string::npos) << e.what();
  }
  WeightBudget huge(uint64_t{16} << 30, "m.h5");
  huge.take(8, "weight 'a'");
  EXPECT_THROW(huge.take(UINT64_MAX - 4, "weight 'bomb'"), fkb::Error);  // no wrap-around
  EXPECT_EQ(huge.used(), 8u);
}

TEST(LoadLimits, BytesReadAsUnits) {
  EXPECT_EQ(fkb::loader::bytes_str(512), "512 bytes");
  EXPECT_EQ(fkb::loader::bytes_str(1024), "1 KiB");
  EXPECT_EQ(fkb::loader::bytes_str(uint64_t{16} << 30), "16 GiB");
  EXPECT_EQ(fkb::loader::bytes_str(3u << 19), "1.5 MiB");
}
