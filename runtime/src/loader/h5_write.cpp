// Writing Keras HDF5 files: in-memory files, groups, string attributes and float32 datasets (fkb/keras_writer).
#include <cstring>

#include "fkb/error.hpp"
#include "loader/h5.hpp"

namespace fkb::h5 {

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
