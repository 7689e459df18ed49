// Batches as netCDF variables (netCDF-4, and classic netCDF-3: CDF-1, CDF-2 64-bit offset, CDF-5), through the
// netCDF C library.
//
// A variable's dimensions are split into column dimensions (leading) and feature dimensions (trailing): the
// last one, or the last k when they equal the model's per-column shape of rank k (e.g. (lev, chan) for a
// rank-3 model). Column dimensions are flattened in C order into the batch's columns, so (time, ncol, nin)
// becomes [time*ncol, nin]. A slice picks an index (the dimension is dropped) or a range (the dimension is
// kept, shorter) of any dimension before that split.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/array_io.hpp"

namespace fkb::io {

/// One --slice: `DIM=INDEX` (negative counts from the end; the dimension is dropped) or `DIM=START:STOP`
/// (half-open, either end may be omitted; the dimension is kept with length STOP-START).
struct DimSlice {
  std::string text;  ///< as the user wrote it, for messages
  std::string dim;
  bool range = false;
  int64_t index = 0;                     ///< when !range
  bool has_start = false, has_stop = false;
  int64_t start = 0, stop = 0;           ///< when range (and has_*)
};
/// Parse `DIM=INDEX` or `DIM=START:STOP`; throws InvalidArgument showing the accepted forms.
DimSlice parse_slice(const std::string& text);

struct NcDim {
  std::string name;
  int64_t length = 0;
  bool unlimited = false;
};

/// A coordinate variable (1-D, named like its dimension, e.g. time(time)): values as double and its text
/// attributes (units, calendar, long_name, ...), kept for the outputs.
struct NcCoord {
  std::string name;  ///< == the dimension's name
  std::vector<double> values;
  std::vector<std::pair<std::string, std::string>> attributes;
};

/// A variable read as a batch: `array` is [ncol, feature dims...] (ncol = product of the column dims).
struct NcArray {
  HostArray array;
  std::vector<NcDim> column_dims;   ///< after slicing, in file order (may be empty: one column)
  std::vector<NcCoord> coords;      ///< coordinate variables of the column dims found in the file (sliced alike)
  std::vector<NcDim> feature_dims;  ///< the trailing dims taken as features (may be empty: one feature)
  std::string format;               ///< "netCDF-4", "netCDF-3 classic (CDF-1)", ...
  std::string description;          ///< e.g. "'x.nc' variable 'X' (time=4, ncol=37, nin=5)"
};

/// Read variable `var` ("name", or "group/sub/name" in netCDF-4) of `path`. `per_column` is the model's
/// per-column shape for this input (decides the feature dims; empty = the last dim). Slices whose dimension the
/// variable does not have are skipped and reported in `unused` (indices into `slices`) when given, else an
/// error. Throws FileError (cannot open, no such variable: lists the file's variables), Unsupported (not
/// float/double: names the type), InvalidArgument (bad slice: names the dimension and its length).
NcArray read_netcdf(const std::string& path, const std::string& var, const std::vector<DimSlice>& slices = {},
                    const std::vector<int64_t>& per_column = {}, std::vector<size_t>* unused = nullptr);

/// Whether an HDF5-signature file is netCDF-4: netCDF-C opens it and reports `_IsNetcdf4` = 1 (the file has
/// the `_NCProperties` attribute or netCDF-4 dimension scales). Plain HDF5 files (h5py, Keras) give false.
bool is_netcdf4(const std::string& path) noexcept;

/// The variables of a netCDF file as "name(dim, dim) type", groups included; for messages.
std::vector<std::string> netcdf_variables(const std::string& path);

/// Whether `name` is a valid netCDF name (no '/', no control characters, starts with a letter, digit or '_').
bool valid_netcdf_name(const std::string& name);

/// How to write a batch [rows, per-column shape...] as a netCDF-4 variable.
struct NcWriteSpec {
  std::string var = "y";
  std::vector<NcDim> column_dims;             ///< product of lengths == rows; empty = one dim "ncol"
  std::vector<std::string> feature_dim_names; ///< one per per-column dim; empty = "nout", "nout_1", ...
  std::vector<std::pair<std::string, std::string>> global_attributes;
  std::vector<std::pair<std::string, std::string>> variable_attributes;
  /// Coordinate variables to write (as double) over the column dimension of the same name and length; others
  /// are skipped.
  std::vector<NcCoord> coords;
};

/// Write a netCDF-4 file holding one float variable. Dimension names that collide get a suffix; a zero-length
/// or (in the input) unlimited column dimension is written unlimited.
void write_netcdf(const std::string& path, const float* data, const std::vector<int64_t>& shape,
                  const NcWriteSpec& spec);

}  // namespace fkb::io
