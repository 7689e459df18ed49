// Reading and writing batches of columns as files: NumPy .npy, CSV, and HDF5 datasets.
//
// An array is batch-first: shape [ncol, ...per-column shape], C order, which is FKB's [ncol][features]
// layout. Readers keep float64 data as float64 (the runtime converts per block); writers write float32.
// Writers never leave a partial file behind: they write a temporary file next to the target and rename it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fkb/backend.hpp"

namespace fkb::io {

struct HostArray {
  std::vector<int64_t> shape;  ///< batch first
  DType dtype = DType::F32;
  std::vector<float> f32;      ///< data when dtype == F32
  std::vector<double> f64;     ///< data when dtype == F64
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  /// Values per row (product of shape[1:]; 1 for a rank-1 array).
  int64_t row_size() const;
  int64_t size() const;
};

enum class FileKind { Npy, Csv, H5 };

/// The file kind from the extension (.npy, .csv, .h5/.hdf5); throws InvalidArgument naming the accepted
/// extensions otherwise.
FileKind file_kind(const std::string& path);

/// NumPy .npy, format versions 1-3, little-endian '<f4' or '<f8', C order.
HostArray read_npy(const std::string& path);
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

/// CSV: one row per column of the batch, values separated by commas (or whitespace/semicolons); blank
/// lines and lines starting with '#' are skipped; a first line that is not numeric is a header. Read as
/// float64.
HostArray read_csv(const std::string& path);
void write_csv(const std::string& path, const float* data, int64_t rows, int64_t cols);

/// A float32 or float64 dataset of an HDF5 file.
HostArray read_h5(const std::string& path, const std::string& dataset);
void write_h5(const std::string& path, const std::string& dataset, const float* data,
              const std::vector<int64_t>& shape);

/// Dispatch on the extension. `dataset` is required for HDF5 and ignored otherwise.
HostArray read_array(const std::string& path, const std::string& dataset = "");
/// Dispatch on the extension; atomic (temporary file + rename). CSV files get shape [rows, product(rest)].
void write_array(const std::string& path, const float* data, const std::vector<int64_t>& shape,
                 const std::string& dataset = "output");

/// A unique temporary path in the directory of `target` (the file is created empty).
std::string make_temp_path(const std::string& target);

}  // namespace fkb::io
