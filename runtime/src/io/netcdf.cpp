// netCDF variables as batches (reader: netCDF-4 and classic netCDF-3; writer: netCDF-4), via the netCDF C API.
#include "io/netcdf.hpp"

#include <netcdf.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>

#include "fkb/error.hpp"
#include "loader/h5.hpp"
#include "loader/limits.hpp"

namespace fkb::io {

namespace {

// netCDF-4 files are HDF5 files, and the netCDF library reads them through HDF5: the loading policy's HDF5 rules
// (README "Loading policy": only data stored inside the file, built-in filters only, declared size against what the
// file stores) apply to the variable read, checked here with HDF5 itself before the netCDF library reads anything.
// Returns whether the file is HDF5-based (netCDF-4).
bool check_hdf5_variable(const std::string& path, const std::string& var) {
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
  h5::QuietErrors quiet;
  if (H5Fis_hdf5(path.c_str()) <= 0) return false;
  h5::File file = h5::File::open(path);
  std::string p = var;
  while (!p.empty() && p[0] == '/') p.erase(0, 1);
  const std::string where = "'" + path + "'";
  const std::string what = "variable '" + var + "'";
  if (p.empty() || !h5::exists(file.id(), p, where, what, "input file")) return true;  // netCDF names what is missing
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  if (H5Oget_info_by_name3(file.id(), p.c_str(), &info, H5O_INFO_BASIC, h5::no_external_links_lapl()) < 0)
    return true;
#else
  if (H5Oget_info_by_name2(file.id(), p.c_str(), &info, H5O_INFO_BASIC, h5::no_external_links_lapl()) < 0)
    return true;
#endif
  if (info.type != H5O_TYPE_DATASET) return true;
  h5::Handle d = h5::open_dataset(file.id(), p, where, what, "input file");
  h5::check_dataset(d.get(), where, what, "input file");
  return true;
}

struct NcFile {
  int id = -1;
  ~NcFile() {
    if (id >= 0) nc_close(id);
  }
};

std::string q(const std::string& s) { return "'" + s + "'"; }

[[noreturn]] void nc_fail(Status st, const std::string& what, int status) {
  throw_error(st, what + ": " + nc_strerror(status));
}

std::string format_name(int ncid) {
  int fmt = 0;
  if (nc_inq_format(ncid, &fmt) != NC_NOERR) return "netCDF";
  switch (fmt) {
    case NC_FORMAT_CLASSIC: return "netCDF-3 classic (CDF-1)";
    case NC_FORMAT_64BIT_OFFSET: return "netCDF-3 64-bit offset (CDF-2)";
    case NC_FORMAT_64BIT_DATA: return "netCDF-3 64-bit data (CDF-5)";
    case NC_FORMAT_NETCDF4: return "netCDF-4";
    case NC_FORMAT_NETCDF4_CLASSIC: return "netCDF-4 classic model";
    default: return "netCDF";
  }
}

std::string type_name(int ncid, nc_type t) {
  switch (t) {
    case NC_BYTE: return "byte (int8)";
    case NC_CHAR: return "char";
    case NC_SHORT: return "short (int16)";
    case NC_INT: return "int (int32)";
    case NC_FLOAT: return "float";
    case NC_DOUBLE: return "double";
    case NC_UBYTE: return "ubyte (uint8)";
    case NC_USHORT: return "ushort (uint16)";
    case NC_UINT: return "uint (uint32)";
    case NC_INT64: return "int64";
    case NC_UINT64: return "uint64";
    case NC_STRING: return "string";
    default: {
      char name[NC_MAX_NAME + 1] = {0};
      if (nc_inq_type(ncid, t, name, nullptr) == NC_NOERR) return std::string("user-defined type '") + name + "'";
      return "type " + std::to_string(t);
    }
  }
}

void list_group(int gid, const std::string& prefix, std::vector<std::string>& out, int depth) {
  int nv = 0;
  if (nc_inq_nvars(gid, &nv) == NC_NOERR) {
    std::vector<int> ids(static_cast<size_t>(std::max(nv, 0)));
    if (nv > 0 && nc_inq_varids(gid, &nv, ids.data()) != NC_NOERR) ids.clear();
    for (int v : ids) {
      char name[NC_MAX_NAME + 1] = {0};
      int nd = 0;
      nc_type t = 0;
      if (nc_inq_var(gid, v, name, &t, &nd, nullptr, nullptr) != NC_NOERR || nd < 0 || nd > NC_MAX_VAR_DIMS) continue;
      std::vector<int> dims(static_cast<size_t>(nd));
      nc_inq_vardimid(gid, v, dims.data());
      std::string s = prefix + name + "(";
      for (int d = 0; d < nd; ++d) {
        char dn[NC_MAX_NAME + 1] = {0};
        nc_inq_dimname(gid, dims[static_cast<size_t>(d)], dn);
        s += std::string(d ? ", " : "") + dn;
      }
      out.push_back(s + ") " + type_name(gid, t));
    }
  }
  if (depth > 16) return;
  int ng = 0;
  if (nc_inq_grps(gid, &ng, nullptr) != NC_NOERR || ng <= 0) return;
  std::vector<int> groups(static_cast<size_t>(ng));
  nc_inq_grps(gid, &ng, groups.data());
  for (int g : groups) {
    char name[NC_MAX_NAME + 1] = {0};
    nc_inq_grpname(g, name);
    list_group(g, prefix + name + "/", out, depth + 1);
  }
}

bool numeric(nc_type t) {
  return t == NC_BYTE || t == NC_SHORT || t == NC_INT || t == NC_FLOAT || t == NC_DOUBLE || t == NC_UBYTE ||
         t == NC_USHORT || t == NC_UINT || t == NC_INT64 || t == NC_UINT64;
}

// The coordinate variable of dimension `dimid` named `name` (in group `gid` or the root), read over
// [start, start + count); false when there is none (or it cannot be read: coordinates are a courtesy).
bool read_coord(int root, int gid, int dimid, const std::string& name, size_t start, size_t count, NcCoord& c) {
  for (int g : {gid, root}) {
    int v = -1, nd = 0, d = -1;
    nc_type t = 0;
    if (nc_inq_varid(g, name.c_str(), &v) != NC_NOERR) continue;
    if (nc_inq_var(g, v, nullptr, &t, &nd, nullptr, nullptr) != NC_NOERR || nd != 1 || !numeric(t)) return false;
    if (nc_inq_vardimid(g, v, &d) != NC_NOERR || d != dimid) return false;
    c.name = name;
    c.values.resize(count);
    if (count > 0 && nc_get_vara_double(g, v, &start, &count, c.values.data()) != NC_NOERR) return false;
    int na = 0;
    nc_inq_varnatts(g, v, &na);
    for (int i = 0; i < na; ++i) {
      char an[NC_MAX_NAME + 1] = {0};
      nc_type at = 0;
      size_t len = 0;
      if (nc_inq_attname(g, v, i, an) != NC_NOERR || an[0] == '_') continue;
      if (nc_inq_att(g, v, an, &at, &len) != NC_NOERR || at != NC_CHAR || len > 4096) continue;
      std::string text(len, '\0');
      if (len && nc_get_att_text(g, v, an, &text[0]) != NC_NOERR) continue;
      c.attributes.emplace_back(an, text);
    }
    return true;
  }
  return false;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

bool parse_int(const std::string& s, int64_t& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  v = x;
  return true;
}

// netCDF names: no '/', no control characters, no leading punctuation other than '_', no trailing space.
bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > NC_MAX_NAME || n.back() == ' ') return false;
  const unsigned char c0 = static_cast<unsigned char>(n[0]);
  if (!(std::isalnum(c0) || c0 == '_' || c0 >= 0x80)) return false;
  for (unsigned char c : n)
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

bool valid_netcdf_name(const std::string& name) { return valid_name(name); }

DimSlice parse_slice(const std::string& text) {
  const std::string accepted =
      "accepted: DIM=INDEX (e.g. time=3, or time=-1 for the last) or DIM=START:STOP (e.g. time=0:12, half-open)";
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 >= text.size())
    throw_error(Status::InvalidArgument, "bad --slice '" + text + "'; " + accepted);
  DimSlice s;
  s.text = text;
  s.dim = text.substr(0, eq);
  const std::string v = text.substr(eq + 1);
  const size_t colon = v.find(':');
  if (colon == std::string::npos) {
    if (!parse_int(v, s.index)) throw_error(Status::InvalidArgument, "bad --slice '" + text + "'; " + accepted);
    return s;
  }
  s.range = true;
  const std::string a = v.substr(0, colon), b = v.substr(colon + 1);
  s.has_start = !a.empty();
  s.has_stop = !b.empty();
  if ((s.has_start && !parse_int(a, s.start)) || (s.has_stop && !parse_int(b, s.stop)) ||
      b.find(':') != std::string::npos)
    throw_error(Status::InvalidArgument, "bad --slice '" + text + "'; " + accepted);
  return s;
}

std::vector<std::string> netcdf_variables(const std::string& path) {
  NcFile f;
  std::vector<std::string> out;
  if (nc_open(path.c_str(), NC_NOWRITE, &f.id) != NC_NOERR) {
    f.id = -1;
    return out;
  }
  list_group(f.id, "", out, 0);
  return out;
}

bool is_netcdf4(const std::string& path) noexcept {
  NcFile f;
  if (nc_open(path.c_str(), NC_NOWRITE, &f.id) != NC_NOERR) {
    f.id = -1;
    return false;
  }
  int v = 0;
  return nc_get_att_int(f.id, NC_GLOBAL, "_IsNetcdf4", &v) == NC_NOERR && v == 1;
}

NcArray read_netcdf(const std::string& path, const std::string& var, const std::vector<DimSlice>& slices,
                    const std::vector<int64_t>& per_column, std::vector<size_t>* unused) {
  const bool hdf5_based = !var.empty() && check_hdf5_variable(path, var);
  NcFile f;
  int st = nc_open(path.c_str(), NC_NOWRITE, &f.id);
  if (st != NC_NOERR) {
    f.id = -1;
    nc_fail(Status::FileError, "cannot open " + q(path) + " as a netCDF file", st);
  }
  NcArray out;
  out.format = format_name(f.id);
  auto variables_hint = [&] {
    std::vector<std::string> vars;
    list_group(f.id, "", vars, 0);
    return vars.empty() ? std::string("the file has no variables")
                        : "variables in the file: " + join(vars, ", ");
  };
  if (var.empty())
    throw_error(Status::InvalidArgument, q(path) + " is a " + out.format +
                                             " file: name the variable to read with --dataset VAR; " +
                                             variables_hint());

  // "group/sub/name" (netCDF-4 groups) or "name".
  std::string name = var;
  int gid = f.id;
  while (!name.empty() && name[0] == '/') name.erase(0, 1);
  const size_t slash = name.find_last_of('/');
  if (slash != std::string::npos) {
    const std::string group = "/" + name.substr(0, slash);
    name = name.substr(slash + 1);
    if (nc_inq_grp_full_ncid(f.id, group.c_str(), &gid) != NC_NOERR)
      throw_error(Status::FileError, q(path) + " has no group '" + group + "' (for variable " + q(var) + "); " +
                                         variables_hint());
  }
  int varid = -1;
  if (name.empty() || nc_inq_varid(gid, name.c_str(), &varid) != NC_NOERR)
    throw_error(Status::FileError, q(path) + " (" + out.format + ") has no variable " + q(var) + "; " +
                                       variables_hint());

  nc_type t = 0;
  int nd = 0;
  st = nc_inq_var(gid, varid, nullptr, &t, &nd, nullptr, nullptr);
  if (st != NC_NOERR) nc_fail(Status::FormatError, q(path) + " variable " + q(var), st);
  if (t != NC_FLOAT && t != NC_DOUBLE)
    throw_error(Status::Unsupported, q(path) + " variable " + q(var) + " has type " + type_name(gid, t) +
                                         "; FKB reads float or double netCDF variables (packed integers with "
                                         "scale_factor/add_offset can be unpacked first, e.g. with ncpdq -U)");
  if (nd < 0 || nd > NC_MAX_VAR_DIMS) throw_error(Status::FormatError, q(path) + " variable " + q(var) + ": bad rank");

  std::vector<int> dimids(static_cast<size_t>(nd));
  if (nd > 0 && (st = nc_inq_vardimid(gid, varid, dimids.data())) != NC_NOERR)
    nc_fail(Status::FormatError, q(path) + " variable " + q(var), st);
  std::set<int> unlimited;
  for (int g : {gid, f.id}) {
    int nu = 0;
    if (nc_inq_unlimdims(g, &nu, nullptr) == NC_NOERR && nu > 0) {
      std::vector<int> u(static_cast<size_t>(nu));
      nc_inq_unlimdims(g, &nu, u.data());
      unlimited.insert(u.begin(), u.end());
    }
  }
  std::vector<NcDim> dims;
  for (int id : dimids) {
    char dn[NC_MAX_NAME + 1] = {0};
    size_t len = 0;
    if ((st = nc_inq_dim(gid, id, dn, &len)) != NC_NOERR)
      nc_fail(Status::FormatError, q(path) + " variable " + q(var), st);
    dims.push_back({dn, static_cast<int64_t>(len), unlimited.count(id) > 0});
  }
  std::string dims_text;
  for (size_t d = 0; d < dims.size(); ++d)
    dims_text += (d ? ", " : "") + dims[d].name + "=" + std::to_string(dims[d].length);
  out.description = q(path) + " variable " + q(var) + " (" + dims_text + ")";

  // Slices: start/count per dimension; an index drops the dimension.
  std::vector<size_t> start(dims.size(), 0), count(dims.size());
  std::vector<bool> dropped(dims.size(), false), sliced(dims.size(), false);
  for (size_t d = 0; d < dims.size(); ++d) count[d] = static_cast<size_t>(dims[d].length);
  std::vector<std::string> applied;
  for (size_t k = 0; k < slices.size(); ++k) {
    const DimSlice& s = slices[k];
    size_t d = 0;
    while (d < dims.size() && dims[d].name != s.dim) ++d;
    if (d == dims.size()) {
      if (unused) {
        unused->push_back(k);
        continue;
      }
      throw_error(Status::InvalidArgument, "--slice " + s.text + ": " + out.description + " has no dimension " +
                                               q(s.dim) + "; its dimensions: " + dims_text);
    }
    if (sliced[d])
      throw_error(Status::InvalidArgument, "--slice " + s.text + ": dimension " + q(s.dim) + " is sliced twice");
    sliced[d] = true;
    const int64_t len = dims[d].length;
    const std::string where = "--slice " + s.text + ": dimension " + q(s.dim) + " of " + out.description +
                              " has length " + std::to_string(len);
    if (!s.range) {
      const int64_t i = s.index < 0 ? s.index + len : s.index;
      if (i < 0 || i >= len)
        throw_error(Status::InvalidArgument,
                    where + (len == 0 ? " (nothing to pick)"
                                      : "; accepted indices: 0.." + std::to_string(len - 1) + " (or -" +
                                            std::to_string(len) + "..-1 from the end)"));
      start[d] = static_cast<size_t>(i);
      count[d] = 1;
      dropped[d] = true;
    } else {
      int64_t a = s.has_start ? s.start : 0, b = s.has_stop ? s.stop : len;
      if (a < 0) a += len;
      if (b < 0) b += len;
      if (a < 0 || b > len || a > b)
        throw_error(Status::InvalidArgument, where + "; accepted ranges: START:STOP with 0 <= START <= STOP <= " +
                                                 std::to_string(len));
      start[d] = static_cast<size_t>(a);
      count[d] = static_cast<size_t>(b - a);
      dims[d].length = b - a;
    }
    applied.push_back(s.text);
  }
  if (!applied.empty()) out.description += " [" + join(applied, ", ") + "]";

  // Split the kept dimensions into columns and features.
  std::vector<NcDim> kept;
  std::vector<size_t> kept_idx;
  for (size_t d = 0; d < dims.size(); ++d)
    if (!dropped[d]) {
      kept.push_back(dims[d]);
      kept_idx.push_back(d);
    }
  const size_t k = per_column.size();
  size_t nf = 1;
  if (k >= 1 && kept.size() >= k) {
    bool match = true;
    for (size_t j = 0; j < k; ++j) match = match && kept[kept.size() - k + j].length == per_column[j];
    if (match) nf = k;
  }
  // A model with one feature per column reads a variable without a feature dimension, e.g. (time, ncol).
  if (nf == 1 && k == 1 && per_column[0] == 1 && !kept.empty() && kept.back().length != 1) nf = 0;
  if (kept.empty()) nf = 0;
  out.column_dims.assign(kept.begin(), kept.end() - static_cast<std::ptrdiff_t>(nf));
  out.feature_dims.assign(kept.end() - static_cast<std::ptrdiff_t>(nf), kept.end());
  for (size_t j = 0; j < out.column_dims.size(); ++j) {
    const size_t d = kept_idx[j];
    NcCoord c;
    if (read_coord(f.id, gid, dimids[d], dims[d].name, start[d], count[d], c)) out.coords.push_back(std::move(c));
  }

  int64_t rows = 1, total = 1;
  for (const auto& d : out.column_dims)
    if (__builtin_mul_overflow(rows, d.length, &rows))
      throw_error(Status::FormatError, out.description + " is too large");
  HostArray& a = out.array;
  if (kept.empty()) {
    a.shape = {};  // a scalar (after slicing): the caller reports it
  } else {
    a.shape = {rows};
    if (nf == 0) a.shape.push_back(1);
    for (const auto& d : out.feature_dims) a.shape.push_back(d.length);
  }
  for (auto v : a.shape)
    if (__builtin_mul_overflow(total, v, &total) || total > (int64_t(1) << 40))
      throw_error(Status::FormatError, out.description + " is too large to read at once; pick a part with --slice");
  a.dtype = t == NC_FLOAT ? DType::F32 : DType::F64;
  // Classic files store every value they declare (netCDF-4 ones were checked by check_hdf5_variable): a header that
  // declares more than the file holds is refused before allocating.
  const uint64_t bytes = static_cast<uint64_t>(total) * (a.dtype == DType::F32 ? 4u : 8u);
  if (!hdf5_based) {
    const uint64_t have = loader::file_size(path);
    if (bytes > have)
      throw_error(Status::FormatError, out.description + " declares " + loader::bytes_str(bytes) + " but '" + path +
                                           "' holds " + loader::bytes_str(have) +
                                           "; FKB reads only data stored inside the input file");
  }
  if (a.dtype == DType::F32) {
    a.f32.resize(static_cast<size_t>(total));
    if (total > 0) st = nc_get_vara_float(gid, varid, start.data(), count.data(), a.f32.data());
  } else {
    a.f64.resize(static_cast<size_t>(total));
    if (total > 0) st = nc_get_vara_double(gid, varid, start.data(), count.data(), a.f64.data());
  }
  if (total > 0 && st != NC_NOERR) nc_fail(Status::FileError, "cannot read " + out.description, st);
  return out;
}

void write_netcdf(const std::string& path, const float* data, const std::vector<int64_t>& shape,
                  const NcWriteSpec& spec) {
  if (shape.empty()) throw_error(Status::Internal, "write_netcdf: no shape");
  if (!valid_name(spec.var))
    throw_error(Status::InvalidArgument, "bad netCDF variable name " + q(spec.var) +
                                             " (names start with a letter, digit or '_' and hold no '/')");
  std::vector<NcDim> cols = spec.column_dims;
  if (cols.empty()) cols.push_back({"ncol", shape[0], false});
  int64_t rows = 1;
  for (const auto& d : cols) rows *= d.length;
  if (rows != shape[0])
    throw_error(Status::Internal, "write_netcdf: column dims hold " + std::to_string(rows) + " columns, the data " +
                                      std::to_string(shape[0]));
  std::vector<std::string> fnames = spec.feature_dim_names;
  const size_t nf = shape.size() - 1;
  if (fnames.size() != nf) {
    fnames.clear();
    for (size_t j = 0; j < nf; ++j) fnames.push_back(nf == 1 ? "nout" : "nout_" + std::to_string(j));
  }
  std::set<std::string> used;
  auto unique = [&](std::string n) {
    std::replace(n.begin(), n.end(), '/', '_');
    if (!valid_name(n)) n = "dim";
    std::string u = n;
    for (int i = 1; used.count(u); ++i) u = n + "_" + std::to_string(i);
    used.insert(u);
    return u;
  };

  NcFile f;
  int st = nc_create(path.c_str(), NC_NETCDF4 | NC_CLOBBER, &f.id);
  if (st != NC_NOERR) {
    f.id = -1;
    nc_fail(Status::FileError, "cannot create the netCDF file " + q(path), st);
  }
  const std::string where = "cannot write " + q(path);
  std::vector<int> dimids;
  std::vector<size_t> count;
  std::vector<std::string> col_names;
  for (const auto& d : cols) {
    int id = -1;
    const bool unlim = d.unlimited || d.length == 0;
    col_names.push_back(unique(d.name));
    if ((st = nc_def_dim(f.id, col_names.back().c_str(), unlim ? NC_UNLIMITED : static_cast<size_t>(d.length), &id)) !=
        NC_NOERR)
      nc_fail(Status::FileError, where + " (dimension " + q(d.name) + ")", st);
    dimids.push_back(id);
    count.push_back(static_cast<size_t>(d.length));
  }
  for (size_t j = 0; j < nf; ++j) {
    int id = -1;
    if ((st = nc_def_dim(f.id, unique(fnames[j]).c_str(), static_cast<size_t>(shape[j + 1]), &id)) != NC_NOERR)
      nc_fail(Status::FileError, where + " (dimension " + q(fnames[j]) + ")", st);
    dimids.push_back(id);
    count.push_back(static_cast<size_t>(shape[j + 1]));
  }
  int varid = -1;
  if ((st = nc_def_var(f.id, spec.var.c_str(), NC_FLOAT, static_cast<int>(dimids.size()), dimids.data(), &varid)) !=
      NC_NOERR)
    nc_fail(Status::FileError, where + " (variable " + q(spec.var) + ")", st);
  for (const auto& [k, v] : spec.variable_attributes)
    if ((st = nc_put_att_text(f.id, varid, k.c_str(), v.size(), v.c_str())) != NC_NOERR)
      nc_fail(Status::FileError, where + " (attribute " + q(k) + ")", st);
  for (const auto& [k, v] : spec.global_attributes)
    if ((st = nc_put_att_text(f.id, NC_GLOBAL, k.c_str(), v.size(), v.c_str())) != NC_NOERR)
      nc_fail(Status::FileError, where + " (attribute " + q(k) + ")", st);
  // Coordinate variables of the column dims (e.g. time(time) with its units), when names and lengths agree.
  std::vector<std::pair<int, const NcCoord*>> coord_vars;
  for (const auto& c : spec.coords) {
    size_t j = 0;
    while (j < cols.size() && !(col_names[j] == c.name && static_cast<int64_t>(c.values.size()) == cols[j].length)) ++j;
    if (j == cols.size() || c.name == spec.var) continue;
    int cv = -1;
    if ((st = nc_def_var(f.id, c.name.c_str(), NC_DOUBLE, 1, &dimids[j], &cv)) != NC_NOERR)
      nc_fail(Status::FileError, where + " (coordinate variable " + q(c.name) + ")", st);
    for (const auto& [k, v] : c.attributes)
      if ((st = nc_put_att_text(f.id, cv, k.c_str(), v.size(), v.c_str())) != NC_NOERR)
        nc_fail(Status::FileError, where + " (attribute " + q(k) + " of " + q(c.name) + ")", st);
    coord_vars.emplace_back(cv, &c);
  }
  if ((st = nc_enddef(f.id)) != NC_NOERR) nc_fail(Status::FileError, where, st);
  for (const auto& [cv, c] : coord_vars) {
    const size_t s0 = 0, n = c->values.size();
    if (n > 0 && (st = nc_put_vara_double(f.id, cv, &s0, &n, c->values.data())) != NC_NOERR)
      nc_fail(Status::FileError, where + " (coordinate variable " + q(c->name) + ")", st);
  }
  int64_t total = 1;
  for (auto v : shape) total *= v;
  if (total > 0) {
    std::vector<size_t> start(count.size(), 0);
    if ((st = nc_put_vara_float(f.id, varid, start.data(), count.data(), data)) != NC_NOERR)
      nc_fail(Status::FileError, where, st);
  }
  st = nc_close(f.id);
  f.id = -1;
  if (st != NC_NOERR) nc_fail(Status::FileError, where, st);
}

}  // namespace fkb::io
