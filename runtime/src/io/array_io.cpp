// Extension dispatch and atomic writes for batch files.
#include "io/array_io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fkb/error.hpp"

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
  throw_error(Status::InvalidArgument, "'" + path + "': unknown file type '" + e +
                                           "'; accepted extensions: .npy, .csv, .h5 (or .hdf5, with --dataset)");
}

HostArray read_array(const std::string& path, const std::string& dataset) {
  switch (file_kind(path)) {
    case FileKind::Npy: return read_npy(path);
    case FileKind::Csv: return read_csv(path);
    case FileKind::H5: return read_h5(path, dataset);
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
                 const std::string& dataset) {
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
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw_error(Status::FileError, "cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace fkb::io
