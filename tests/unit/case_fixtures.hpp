// Locating the Keras-made case folders (tests/fixtures/cases/<name>, else ../shared/cases/<name>) for the issue-12
// loader tests, and reading their cases.json.
#pragma once

#include <sys/stat.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace fkb::test {

inline bool path_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

/// tests/fixtures/cases/<name>, else ../shared/cases/<name>, else "".
inline std::string case_dir(const std::string& name) {
  const std::string own = fixture_path("cases/" + name);
  if (path_exists(own + "/cases.json")) return own;
  const std::string shared = std::string(FKB_SOURCE_DIR) + "/../shared/cases/" + name;
  if (path_exists(shared + "/cases.json")) return shared;
  return "";
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

}  // namespace fkb::test

/// Declares `dir` as the case folder `name`, or skips the test saying it is absent.
#define REQUIRE_CASE(dir, name)                                                                              \
  const std::string dir = fkb::test::case_dir(name);                                                         \
  if (dir.empty())                                                                                           \
    GTEST_SKIP() << "case '" << name << "' is neither in tests/fixtures/cases nor in ../shared/cases (absent "  \
                 << "from this checkout)";
