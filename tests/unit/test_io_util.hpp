// Helpers for the batch-file tests: raw .npy files written byte by byte (independently of io/npy.cpp), and
// netCDF files written and read with the netCDF C API (independently of io/netcdf.cpp).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <dirent.h>
#include <netcdf.h>

#include <stdexcept>

namespace fkb::iotest {

/// Write a .npy file with the given header dict text and raw data bytes; the header is padded as NumPy does
/// (to a multiple of 64 bytes including the preamble, ending in '\n').
inline void write_raw_npy(const std::string& path, const std::string& dict, const void* data, size_t bytes,
                          int major = 1) {
  std::string h = dict;
  const size_t pre = major == 1 ? 10 : 12;
  h.append((64 - (pre + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::FILE* f = std::fopen(path.c_str(), "wb");
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(major), 0};
  std::fwrite(magic, 1, 8, f);
  const uint32_t n = static_cast<uint32_t>(h.size());
  if (major == 1) {
    const unsigned char len[2] = {static_cast<unsigned char>(n & 0xff), static_cast<unsigned char>(n >> 8)};
    std::fwrite(len, 1, 2, f);
  } else {
    const unsigned char len[4] = {static_cast<unsigned char>(n & 0xff), static_cast<unsigned char>((n >> 8) & 0xff),
                                  static_cast<unsigned char>((n >> 16) & 0xff), static_cast<unsigned char>(n >> 24)};
    std::fwrite(len, 1, 4, f);
  }
  std::fwrite(h.data(), 1, h.size(), f);
  if (bytes) std::fwrite(data, 1, bytes, f);
  std::fclose(f);
}

inline std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += std::to_string(s[i]) + (s.size() == 1 || i + 1 < s.size() ? ", " : "");
  if (!s.empty()) t.erase(t.size() - (s.size() == 1 ? 1 : 0));
  return t + ")";
}

inline void write_f32_npy(const std::string& path, const std::vector<float>& v, const std::vector<int64_t>& shape) {
  write_raw_npy(path, "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }", v.data(),
                v.size() * sizeof(float));
}

inline void write_f64_npy(const std::string& path, const std::vector<double>& v, const std::vector<int64_t>& shape) {
  write_raw_npy(path, "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }", v.data(),
                v.size() * sizeof(double));
}

inline bool file_exists(const std::string& p) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (f) std::fclose(f);
  return f != nullptr;
}

/// Names of the entries of a directory (no "." and "..").
inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

/// One dimension of a netCDF variable written by write_nc.
struct NcTestDim {
  std::string name;
  size_t length;
  bool unlimited = false;
};

inline void nc_check(int status, const std::string& what) {
  if (status != NC_NOERR) throw std::runtime_error(what + ": " + nc_strerror(status));
}

/// Create `path` with the netCDF C API: `cmode` NC_NETCDF4, 0 (classic CDF-1), NC_64BIT_OFFSET (CDF-2) or
/// NC_64BIT_DATA (CDF-5); one variable `var` of type `type` over `dims` holding `values` (C order, converted by
/// netCDF; a dimension marked unlimited is the record dimension and must come first in classic files), plus a
/// float variable `other(other_dim)` so that the file holds something else too, and coordinate variables
/// `coords` (name of a dimension in `dims`, values) of type double with units "days since 2000-01-01".
inline void write_nc(const std::string& path, int cmode, const std::string& var, const std::vector<NcTestDim>& dims,
                     nc_type type, const std::vector<double>& values,
                     const std::vector<std::pair<std::string, std::vector<double>>>& coords = {}) {
  int nc = -1;
  nc_check(nc_create(path.c_str(), cmode | NC_CLOBBER, &nc), "nc_create " + path);
  std::vector<int> ids;
  std::vector<size_t> start, count;
  for (const auto& d : dims) {
    int id = -1;
    nc_check(nc_def_dim(nc, d.name.c_str(), d.unlimited ? NC_UNLIMITED : d.length, &id), "nc_def_dim " + d.name);
    ids.push_back(id);
    start.push_back(0);
    count.push_back(d.length);
  }
  int v = -1, other = -1, odim = -1;
  nc_check(nc_def_var(nc, var.c_str(), type, static_cast<int>(ids.size()), ids.data(), &v), "nc_def_var " + var);
  nc_check(nc_def_dim(nc, "other_dim", 2, &odim), "nc_def_dim other_dim");
  nc_check(nc_def_var(nc, "other", NC_FLOAT, 1, &odim, &other), "nc_def_var other");
  const char units[] = "1";
  nc_check(nc_put_att_text(nc, v, "units", sizeof units - 1, units), "nc_put_att_text");
  std::vector<int> coord_ids;
  for (const auto& [name, vals] : coords) {
    size_t j = 0;
    while (j < dims.size() && dims[j].name != name) ++j;
    if (j == dims.size()) throw std::runtime_error("write_nc: no dimension " + name);
    int c = -1;
    nc_check(nc_def_var(nc, name.c_str(), NC_DOUBLE, 1, &ids[j], &c), "nc_def_var " + name);
    const char cu[] = "days since 2000-01-01";
    nc_check(nc_put_att_text(nc, c, "units", sizeof cu - 1, cu), "nc_put_att_text");
    coord_ids.push_back(c);
  }
  nc_check(nc_enddef(nc), "nc_enddef");
  for (size_t k = 0; k < coords.size(); ++k) {
    const size_t s0 = 0, n = coords[k].second.size();
    nc_check(nc_put_vara_double(nc, coord_ids[k], &s0, &n, coords[k].second.data()), "nc_put_vara coord");
  }
  if (!values.empty()) nc_check(nc_put_vara_double(nc, v, start.data(), count.data(), values.data()), "nc_put_vara");
  const float o[2] = {1.0f, 2.0f};
  nc_check(nc_put_var_float(nc, other, o), "nc_put_var other");
  nc_check(nc_close(nc), "nc_close " + path);
}

/// The first bytes of a file (to check which format a test created).
inline std::string file_head(const std::string& path, size_t n) {
  std::string s(n, '\0');
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return "";
  s.resize(std::fread(&s[0], 1, n, f));
  std::fclose(f);
  return s;
}

/// A netCDF variable read back with the netCDF C API: dimension names and lengths, values as float.
struct NcRead {
  std::vector<std::string> dim_names;
  std::vector<size_t> dim_lengths;
  std::vector<float> values;
  nc_type type = 0;
};

inline NcRead read_nc_var(const std::string& path, const std::string& var) {
  int nc = -1, v = -1, nd = 0;
  nc_check(nc_open(path.c_str(), NC_NOWRITE, &nc), "nc_open " + path);
  NcRead r;
  try {
    nc_check(nc_inq_varid(nc, var.c_str(), &v), "no variable " + var + " in " + path);
    nc_check(nc_inq_var(nc, v, nullptr, &r.type, &nd, nullptr, nullptr), "nc_inq_var");
    std::vector<int> ids(static_cast<size_t>(nd));
    nc_check(nc_inq_vardimid(nc, v, ids.data()), "nc_inq_vardimid");
    size_t total = 1;
    for (int id : ids) {
      char name[NC_MAX_NAME + 1] = {0};
      size_t len = 0;
      nc_check(nc_inq_dim(nc, id, name, &len), "nc_inq_dim");
      r.dim_names.push_back(name);
      r.dim_lengths.push_back(len);
      total *= len;
    }
    r.values.resize(total);
    if (total) nc_check(nc_get_var_float(nc, v, r.values.data()), "nc_get_var_float");
  } catch (...) {
    nc_close(nc);
    throw;
  }
  nc_close(nc);
  return r;
}

/// A text attribute (NC_GLOBAL when var is empty), or "<missing>".
inline std::string nc_text_attribute(const std::string& path, const std::string& var, const std::string& name) {
  int nc = -1, v = NC_GLOBAL;
  nc_check(nc_open(path.c_str(), NC_NOWRITE, &nc), "nc_open " + path);
  std::string out = "<missing>";
  size_t len = 0;
  if ((var.empty() || nc_inq_varid(nc, var.c_str(), &v) == NC_NOERR) &&
      nc_inq_attlen(nc, v, name.c_str(), &len) == NC_NOERR) {
    out.assign(len, '\0');
    if (len) nc_get_att_text(nc, v, name.c_str(), &out[0]);
  }
  nc_close(nc);
  return out;
}

}  // namespace fkb::iotest
