#include "loader/h5.hpp"

#include <algorithm>
#include <cstring>

#include "fkb/error.hpp"

namespace fkb::h5 {

std::recursive_mutex& lock() {
  static std::recursive_mutex m;
  return m;
}

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    kind_ = o.kind_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  switch (kind_) {
    case Kind::File: H5Fclose(id_); break;
    case Kind::Group: H5Gclose(id_); break;
    case Kind::Dataset: H5Dclose(id_); break;
    case Kind::Attribute: H5Aclose(id_); break;
    case Kind::Dataspace: H5Sclose(id_); break;
    case Kind::Datatype: H5Tclose(id_); break;
    case Kind::Plist: H5Pclose(id_); break;
  }
  id_ = -1;
}

File File::open(const std::string& path) {
  File f;
  f.label_ = path;
  // H5F_CLOSE_STRONG closes everything still open when the file is closed (no leaked handles on errors).
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Handle::Kind::Plist);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0)
    throw_error(Status::FormatError, "'" + path + "' could not be opened as HDF5: the file is truncated or corrupted");
  f.h_ = Handle(id, Handle::Kind::File);
  return f;
}

File File::open_image(const std::vector<char>& image, const std::string& label) {
  File f;
  f.label_ = label;
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Handle::Kind::Plist);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  // Core driver over a copy of the image: nothing touches the disk.
  H5Pset_fapl_core(fapl.get(), image.size() + 1, 0);
  if (H5Pset_file_image(fapl.get(), const_cast<char*>(image.data()), image.size()) < 0)
    throw_error(Status::FormatError, "'" + label + "': could not hand the HDF5 image to the library");
  hid_t id = H5Fopen(label.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0)
    throw_error(Status::FormatError, "'" + label + "' is not a readable HDF5 file: it is truncated or corrupted");
  f.h_ = Handle(id, Handle::Kind::File);
  return f;
}

bool exists(hid_t loc, const std::string& path) {
  // H5Lexists fails when an intermediate component is missing: check each prefix.
  size_t pos = 0;
  while (true) {
    size_t next = path.find('/', pos);
    std::string prefix = path.substr(0, next);
    if (!prefix.empty() && H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (next == std::string::npos) return true;
    pos = next + 1;
  }
}

bool is_group(hid_t loc, const std::string& path) {
  if (!exists(loc, path)) return false;
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  if (H5Oget_info_by_name3(loc, path.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return false;
#else
  if (H5Oget_info_by_name2(loc, path.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return false;
#endif
  return info.type == H5O_TYPE_GROUP;
}

bool has_attr(hid_t loc, const std::string& name) { return H5Aexists(loc, name.c_str()) > 0; }

namespace {

std::vector<std::string> read_string_attr(hid_t loc, const std::string& name, const std::string& where) {
  Handle a(H5Aopen(loc, name.c_str(), H5P_DEFAULT), Handle::Kind::Attribute);
  if (!a.valid()) throw_error(Status::FormatError, where + ": attribute '" + name + "' cannot be opened");
  Handle type(H5Aget_type(a.get()), Handle::Kind::Datatype);
  Handle space(H5Aget_space(a.get()), Handle::Kind::Dataspace);
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw_error(Status::FormatError, where + ": attribute '" + name + "' is not a string");
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) throw_error(Status::FormatError, where + ": attribute '" + name + "' has an invalid dataspace");
  std::vector<std::string> out;
  if (n == 0) return out;
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1), Handle::Kind::Datatype);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    if (H5Aread(a.get(), mem.get(), ptrs.data()) < 0)
      throw_error(Status::FormatError, where + ": attribute '" + name + "' cannot be read");
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
  } else {
    size_t len = H5Tget_size(type.get());
    std::vector<char> buf(len * static_cast<size_t>(n) + 1, '\0');
    Handle mem(H5Tcopy(type.get()), Handle::Kind::Datatype);
    if (H5Aread(a.get(), mem.get(), buf.data()) < 0)
      throw_error(Status::FormatError, where + ": attribute '" + name + "' cannot be read");
    for (hssize_t i = 0; i < n; ++i) {
      const char* s = buf.data() + i * len;
      out.emplace_back(s, strnlen(s, len));
    }
  }
  return out;
}

}  // namespace

std::string attr_string(hid_t loc, const std::string& name, const std::string& where) {
  if (!has_attr(loc, name)) throw_error(Status::FormatError, where + ": attribute '" + name + "' is missing");
  auto v = read_string_attr(loc, name, where);
  if (v.empty()) return "";
  return v[0];
}

std::vector<std::string> attr_strings(hid_t loc, const std::string& name, const std::string& where) {
  if (has_attr(loc, name)) return read_string_attr(loc, name, where);
  std::vector<std::string> out;
  for (int chunk = 0; has_attr(loc, name + std::to_string(chunk)); ++chunk) {
    auto part = read_string_attr(loc, name + std::to_string(chunk), where);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<std::string> children(hid_t loc, const std::string& path) {
  std::vector<std::string> out;
  Handle g(H5Gopen2(loc, path.c_str(), H5P_DEFAULT), Handle::Kind::Group);
  if (!g.valid()) return out;
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) return out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) continue;
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    out.push_back(name);
  }
  return out;
}

Array read_array(hid_t loc, const std::string& path, const std::string& where, loader::WeightBudget& budget) {
  if (!exists(loc, path)) throw_error(Status::FormatError, where + ": weight dataset '" + path + "' is missing");
  Handle d(H5Dopen2(loc, path.c_str(), H5P_DEFAULT), Handle::Kind::Dataset);
  if (!d.valid()) throw_error(Status::FormatError, where + ": weight '" + path + "' is not a readable dataset");
  Handle space(H5Dget_space(d.get()), Handle::Kind::Dataspace);
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0 || rank > 8) throw_error(Status::FormatError, where + ": weight '" + path + "' has an invalid shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  Array a;
  int64_t n = 1;
  for (auto v : dims) {
    a.shape.push_back(static_cast<int64_t>(v));
    n *= static_cast<int64_t>(v);
  }
  Handle type(H5Dget_type(d.get()), Handle::Kind::Datatype);
  H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    throw_error(Status::FormatError, where + ": weight '" + path + "' is not numeric");
  budget.take(static_cast<uint64_t>(n) * sizeof(float), "weight '" + path + "' of " + where);
  a.data.resize(static_cast<size_t>(n));
  if (n > 0 && H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()) < 0)
    throw_error(Status::FormatError,
                where + ": weight '" + path + "' cannot be read (the file is truncated or corrupted)");
  return a;
}

// ---- writing ---------------------------------------------------------------------------------------------------

namespace {
[[noreturn]] void write_error(const std::string& where, const std::string& what) {
  throw_error(Status::FileError, where + ": cannot write " + what);
}
}  // namespace

Handle create_memory_file(const std::string& label) {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Handle::Kind::Plist);
  H5Pset_fapl_core(fapl.get(), 1 << 20, 0);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  hid_t id = H5Fcreate(label.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (id < 0) write_error(label, "an in-memory HDF5 file");
  return Handle(id, Handle::Kind::File);
}

std::vector<char> file_image(hid_t file) {
  H5Fflush(file, H5F_SCOPE_GLOBAL);
  ssize_t n = H5Fget_file_image(file, nullptr, 0);
  if (n < 0) throw_error(Status::Internal, "H5Fget_file_image failed");
  std::vector<char> buf(static_cast<size_t>(n));
  if (H5Fget_file_image(file, buf.data(), buf.size()) < 0) throw_error(Status::Internal, "H5Fget_file_image failed");
  return buf;
}

Handle create_group(hid_t loc, const std::string& path, const std::string& where) {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), Handle::Kind::Plist);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  hid_t g = H5Gcreate2(loc, path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) write_error(where, "group '" + path + "'");
  return Handle(g, Handle::Kind::Group);
}

void write_attr_string(hid_t loc, const std::string& name, const std::string& value, const std::string& where) {
  Handle type(H5Tcopy(H5T_C_S1), Handle::Kind::Datatype);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), Handle::Kind::Dataspace);
  Handle a(H5Acreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), Handle::Kind::Attribute);
  const char* p = value.c_str();
  if (!a.valid() || H5Awrite(a.get(), type.get(), &p) < 0) write_error(where, "attribute '" + name + "'");
}

void write_attr_strings(hid_t loc, const std::string& name, const std::vector<std::string>& values,
                        const std::string& where) {
  hsize_t n = values.size();
  if (n == 0) {
    Handle space(H5Screate_simple(1, &n, nullptr), Handle::Kind::Dataspace);
    Handle a(H5Acreate2(loc, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
             Handle::Kind::Attribute);
    if (!a.valid()) write_error(where, "attribute '" + name + "'");
    return;
  }
  size_t len = 1;
  for (const auto& v : values) len = std::max(len, v.size());
  std::vector<char> buf(len * values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) std::memcpy(buf.data() + i * len, values[i].data(), values[i].size());
  Handle type(H5Tcopy(H5T_C_S1), Handle::Kind::Datatype);
  H5Tset_size(type.get(), len);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate_simple(1, &n, nullptr), Handle::Kind::Dataspace);
  Handle a(H5Acreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), Handle::Kind::Attribute);
  if (!a.valid() || H5Awrite(a.get(), type.get(), buf.data()) < 0) write_error(where, "attribute '" + name + "'");
}

void write_array(hid_t loc, const std::string& path, const Array& a, const std::string& where) {
  std::vector<hsize_t> dims(a.shape.begin(), a.shape.end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               Handle::Kind::Dataspace);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), Handle::Kind::Plist);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle d(H5Dcreate2(loc, path.c_str(), H5T_IEEE_F32LE, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
           Handle::Kind::Dataset);
  if (!d.valid()) write_error(where, "dataset '" + path + "'");
  if (a.size() > 0 && H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()) < 0)
    write_error(where, "dataset '" + path + "'");
}

}  // namespace fkb::h5
