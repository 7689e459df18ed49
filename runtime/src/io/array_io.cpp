// Content/extension dispatch and atomic writes for batch files.
#include "io/array_io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fkb/error.hpp"
#include "io/netcdf.hpp"

namespace fkb::io {

int64_t HostArray::row_size() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

int64_t HostArray::size() const {
  int64_t n = 1;
  for (auto v : shape) n *= v;
  return n;
}

namespace {
std::string lower_ext(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string e = path.substr(dot);
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
}
}  // namespace

FileKind file_kind(const std::string& path) {
  const std::string e = lower_ext(path);
  if (e == ".npy") return FileKind::Npy;
  if (e == ".csv") return FileKind::Csv;
  if (e == ".h5" || e == ".hdf5") return FileKind::H5;
  if (e == ".nc" || e == ".nc4") return FileKind::NetCdf;
  throw_error(Status::InvalidArgument, "'" + path + "': unknown file type '" + e +
                                           "'; accepted extensions: .npy, .csv, .h5 (or .hdf5), .nc (netCDF-4)");
}

const char* kind_name(FileKind k) {
  switch (k) {
    case FileKind::Npy: return "npy";
    case FileKind::Csv: return "csv";
    case FileKind::H5: return "HDF5";
    case FileKind::NetCdf: return "netCDF";
  }
  return "?";
}

FileKind input_kind(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw_error(Status::FileError, "cannot open '" + path + "': " + std::strerror(errno));
  unsigned char head[8] = {0};
  const size_t n = std::fread(head, 1, sizeof head, f);
  static const unsigned char kHdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  bool hdf5 = n == 8 && std::memcmp(head, kHdf5, 8) == 0;
  // HDF5 files with a user block carry the signature at 512, 1024, 2048, ... (HDF5 file format spec, II.A).
  for (long off = 512; !hdf5 && off > 0 && off <= (1L << 30); off *= 2) {
    unsigned char b[8];
    if (std::fseek(f, off, SEEK_SET) != 0 || std::fread(b, 1, 8, f) != 8) break;
    hdf5 = std::memcmp(b, kHdf5, 8) == 0;
  }
  std::fclose(f);
  if (n >= 4 && std::memcmp(head, "CDF", 3) == 0 && (head[3] == 1 || head[3] == 2 || head[3] == 5))
    return FileKind::NetCdf;
  if (hdf5) return is_netcdf4(path) ? FileKind::NetCdf : FileKind::H5;
  if (n >= 6 && std::memcmp(head, "\x93NUMPY", 6) == 0) return FileKind::Npy;
  const std::string e = lower_ext(path);
  if (e == ".npy") return FileKind::Npy;
  if (e == ".csv") return FileKind::Csv;
  if (e == ".h5" || e == ".hdf5")
    throw_error(Status::FormatError, "'" + path + "' is named like an HDF5 file but does not carry the HDF5 signature");
  if (e == ".nc" || e == ".nc4" || e == ".cdf")
    throw_error(Status::FormatError, "'" + path +
                                         "' is named like a netCDF file but is neither netCDF-3 (starts with CDF\\x01, "
                                         "CDF\\x02 or CDF\\x05) nor netCDF-4/HDF5 (HDF5 signature)");
  throw_error(Status::InvalidArgument,
              "'" + path + "': unknown file type '" + e +
                  "'; accepted: .npy and .csv files (by extension), and HDF5 or netCDF files (recognised by their "
                  "content, any name; accepted extensions .h5, .hdf5, .nc)");
}

HostArray read_array(const std::string& path, const std::string& dataset) {
  switch (input_kind(path)) {
    case FileKind::Npy: return read_npy(path);
    case FileKind::Csv: return read_csv(path);
    case FileKind::H5: return read_h5(path, dataset);
    case FileKind::NetCdf: return read_netcdf(path, dataset).array;
  }
  throw_error(Status::Internal, "unreachable");
}

std::string make_temp_path(const std::string& target) {
  std::string tmpl = target + ".tmp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  const int fd = mkstemp(buf.data());
  if (fd < 0) throw_error(Status::FileError, "cannot create a file next to '" + target + "': " + std::strerror(errno));
  // mkstemp creates the file 0600; give the final file the permissions a plain fopen would have.
  const mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  close(fd);
  return std::string(buf.data());
}

void write_array(const std::string& path, const float* data, const std::vector<int64_t>& shape,
                 const std::string& dataset, const NcWriteSpec* netcdf) {
  const FileKind kind = file_kind(path);
  const std::string tmp = make_temp_path(path);
  try {
    switch (kind) {
      case FileKind::Npy: write_npy(tmp, data, shape); break;
      case FileKind::Csv: {
        int64_t cols = 1;
        for (size_t i = 1; i < shape.size(); ++i) cols *= shape[i];
        write_csv(tmp, data, shape.empty() ? 1 : shape[0], cols);
        break;
      }
      case FileKind::H5: write_h5(tmp, dataset.empty() ? "output" : dataset, data, shape); break;
      case FileKind::NetCdf: {
        NcWriteSpec spec;
        if (netcdf)
          spec = *netcdf;
        else if (!dataset.empty())
          spec.var = dataset;
        write_netcdf(tmp, data, shape, spec);
        break;
      }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw_error(Status::FileError, "cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace fkb::io
