// Helpers for the C++ tests: fixture manifest, Keras-made data files, comparisons, running the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fkb::test {

/// Absolute path of a file in tests/fixtures.
std::string fixture_path(const std::string& rel);
/// The fixture manifest (tests/fixtures/manifest.json).
const nlohmann::json& manifest();
/// Directory of the shared real models, or "" when absent (tests then GTEST_SKIP with a message).
std::string shared_models_dir();

/// A float32 dataset read from an HDF5 file: shape (batch first) and data.
struct Data {
  std::vector<int64_t> shape;
  std::vector<float> values;
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t row_size() const;
};
Data read_dataset(const std::string& h5_path, const std::string& name);
/// Number of datasets named prefix_0, prefix_1, ... in the file.
int count_datasets(const std::string& h5_path, const std::string& prefix);

/// max|a-b| / max|ref|  (the numerical contract of DESIGN.md). ref all zeros: returns max|a-b|.
double relative_max_error(const float* got, const float* ref, int64_t n);

/// Run a shell command, capture stdout+stderr; returns the exit status.
int run_command(const std::string& cmd, std::string* output);
/// The fkb CLI built in this tree.
std::string cli();
/// A fresh temporary directory (removed by the OS; tests clean what they can).
std::string temp_dir();

}  // namespace fkb::test
