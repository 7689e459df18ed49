// Writing Keras HDF5 files: in-memory files, groups, string attributes and float32 datasets (fkb/keras_writer).
#include <algorithm>
#include <cmath>
#include <cstdint>
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

void write_attr_strings_chunked(hid_t loc, const std::string& name, const std::vector<std::string>& values,
                                const std::string& where) {
  size_t width = 1;
  for (const auto& v : values) {
    if (v.size() > kKerasAttributeLimit)
      throw_error(Status::InvalidArgument, where + ": cannot write attribute '" + name + "': the name '" +
                                               v.substr(0, 80) + "...' is " + std::to_string(v.size()) +
                                               " bytes, more than HDF5's " + std::to_string(kKerasAttributeLimit) +
                                               "-byte object header holds (Keras refuses it too); use shorter names");
    width = std::max(width, v.size());
  }
  // numpy.array_split into k chunks: the first n % k chunks hold one more element.
  const size_t n = values.size();
  size_t k = 1;
  auto largest = [&](size_t chunks) { return (n / chunks + (n % chunks ? 1 : 0)) * width; };
  while (n > 0 && largest(k) > kKerasAttributeLimit) ++k;
  if (k == 1) {
    write_attr_strings(loc, name, values, where);
    return;
  }
  size_t begin = 0;
  for (size_t c = 0; c < k; ++c) {
    const size_t count = n / k + (c < n % k ? 1 : 0);
    std::vector<std::string> part(values.begin() + static_cast<std::ptrdiff_t>(begin),
                                  values.begin() + static_cast<std::ptrdiff_t>(begin + count));
    // Every chunk keeps the whole list's width, as numpy's split of one fixed-width array does.
    std::vector<char> buf(width * part.size(), '\0');
    for (size_t i = 0; i < part.size(); ++i) std::memcpy(buf.data() + i * width, part[i].data(), part[i].size());
    Handle type(H5Tcopy(H5T_C_S1), Handle::Kind::Datatype);
    H5Tset_size(type.get(), width);
    H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
    hsize_t len = part.size();
    Handle space(H5Screate_simple(1, &len, nullptr), Handle::Kind::Dataspace);
    const std::string chunk_name = name + std::to_string(c);
    Handle a(H5Acreate2(loc, chunk_name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
             Handle::Kind::Attribute);
    if (!a.valid() || (len > 0 && H5Awrite(a.get(), type.get(), buf.data()) < 0))
      write_error(where, "attribute '" + chunk_name + "'");
    begin += count;
  }
}

namespace {

// float32 → bfloat16 bits, round to nearest even (what ml_dtypes' cast does); NaN stays NaN.
uint16_t to_bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE half precision as h5py declares numpy.float16 (sign 15, exponent 10..14, mantissa 0..9, bias 15).
Handle half_type() {
  Handle t(H5Tcopy(H5T_IEEE_F32LE), Handle::Kind::Datatype);
  H5Tset_fields(t.get(), 15, 10, 5, 0, 10);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), 15);
  return t;
}

}  // namespace

void write_array(hid_t loc, const std::string& path, const Array& a, const std::string& where, StoreType type) {
  std::vector<hsize_t> dims(a.shape.begin(), a.shape.end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               Handle::Kind::Dataspace);
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), Handle::Kind::Plist);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Handle file_type;
  switch (type) {
    case StoreType::Float32: file_type = Handle(H5Tcopy(H5T_IEEE_F32LE), Handle::Kind::Datatype); break;
    case StoreType::Float16: file_type = half_type(); break;
    case StoreType::Float64: file_type = Handle(H5Tcopy(H5T_IEEE_F64LE), Handle::Kind::Datatype); break;
    case StoreType::BFloat16: file_type = Handle(H5Tcreate(H5T_OPAQUE, 2), Handle::Kind::Datatype); break;
    case StoreType::Int64: file_type = Handle(H5Tcopy(H5T_STD_I64LE), Handle::Kind::Datatype); break;
    case StoreType::Int8: file_type = Handle(H5Tcopy(H5T_STD_I8LE), Handle::Kind::Datatype); break;
  }
  Handle d(H5Dcreate2(loc, path.c_str(), file_type.get(), space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT),
           Handle::Kind::Dataset);
  if (!d.valid()) write_error(where, "dataset '" + path + "'");
  if (type == StoreType::BFloat16) {
    // Keras 3 marks its bfloat16 datasets so it reads them back as bfloat16 (saving_lib.H5Entry).
    write_attr_string(d.get(), "dtype", "bfloat16", where);
  }
  if (a.size() == 0) return;
  herr_t rc = 0;
  if (type == StoreType::BFloat16) {
    std::vector<uint16_t> bits(a.data.size());
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = to_bfloat16(a.data[i]);
    rc = H5Dwrite(d.get(), file_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, bits.data());
  } else if (type == StoreType::Int64 || type == StoreType::Int8) {
    std::vector<int64_t> ints(a.data.size());
    for (size_t i = 0; i < ints.size(); ++i) ints[i] = static_cast<int64_t>(std::llround(a.data[i]));
    rc = H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ints.data());
  } else {
    rc = H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data());
  }
  if (rc < 0) write_error(where, "dataset '" + path + "'");
}

}  // namespace fkb::h5
