// Reading and writing batches of columns as files: NumPy .npy, CSV, HDF5 datasets and netCDF variables
// (netcdf.hpp).
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

enum class FileKind { Npy, Csv, H5, NetCdf };

struct NcWriteSpec;

/// The kind of a file to WRITE, from the extension (.npy, .csv, .h5/.hdf5, .nc/.nc4); throws InvalidArgument
/// naming the accepted extensions otherwise.
FileKind file_kind(const std::string& path);

/// The kind of a file to READ, from its content: netCDF-3 magic (`CDF\x01`, `CDF\x02`, `CDF\x05`) -> NetCdf;
/// the HDF5 signature (at byte 0, 512, 1024, ...) -> NetCdf when netCDF-C says it is netCDF-4 (is_netcdf4),
/// else H5; the .npy magic -> Npy; anything else by the extension (.csv, and .npy/.h5/.nc whose readers then
/// say what is wrong). Throws FileError when the file cannot be opened, InvalidArgument for an unknown
/// extension without a recognised magic.
FileKind input_kind(const std::string& path);
const char* kind_name(FileKind k);

/// NumPy .npy, format versions 1-3, little-endian '<f4' or '<f8', C order.
HostArray read_npy(const std::string& path);
void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

/// CSV: one row per column of the batch, values separated by commas (or whitespace/semicolons); blank
/// lines and lines starting with '#' are skipped; a first line that is not numeric is a header. Read as
/// float64. A file without rows of numbers is a FormatError, or with `allow_empty` shape [0] (0 columns, width
/// unknown).
HostArray read_csv(const std::string& path, bool allow_empty = false);
void write_csv(const std::string& path, const float* data, int64_t rows, int64_t cols);

/// A float32 or float64 dataset of an HDF5 file.
HostArray read_h5(const std::string& path, const std::string& dataset);
void write_h5(const std::string& path, const std::string& dataset, const float* data,
              const std::vector<int64_t>& shape);

/// Dispatch on the content (input_kind). `dataset` (the variable) is required for HDF5 and netCDF and ignored
/// otherwise; netCDF variables are read whole, leading dimensions flattened into columns (read_netcdf).
HostArray read_array(const std::string& path, const std::string& dataset = "");
/// Dispatch on the extension; atomic (temporary file + rename). CSV files get shape [rows, product(rest)].
/// netCDF files (.nc) are written as `netcdf` says, or with variable `dataset` over dims (ncol, nout).
void write_array(const std::string& path, const float* data, const std::vector<int64_t>& shape,
                 const std::string& dataset = "output", const NcWriteSpec* netcdf = nullptr);

/// A unique temporary path in the directory of `target` (the file is created empty).
std::string make_temp_path(const std::string& target);

}  // namespace fkb::io
