// Batches as HDF5 datasets (float32 or float64, batch first).
#include <hdf5.h>

#include <string>

#include "fkb/error.hpp"
#include "io/array_io.hpp"

namespace fkb::io {

namespace {

// Silence HDF5's own error printing while we report errors ourselves.
struct QuietHdf5 {
  H5E_auto2_t func = nullptr;
  void* data = nullptr;
  QuietHdf5() {
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func, data); }
};

struct Hid {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Hid() {
    if (id >= 0) close(id);
  }
};

}  // namespace

HostArray read_h5(const std::string& path, const std::string& dataset) {
  QuietHdf5 quiet;
  if (dataset.empty())
    throw_error(Status::InvalidArgument, "'" + path + "' is an HDF5 file: name the dataset to read (--dataset NAME)");
  Hid file{H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) throw_error(Status::FileError, "cannot open '" + path + "' as an HDF5 file");
  if (H5Lexists(file.id, dataset.c_str(), H5P_DEFAULT) <= 0)
    throw_error(Status::FileError, "'" + path + "' has no dataset '" + dataset + "'");
  Hid d{H5Dopen2(file.id, dataset.c_str(), H5P_DEFAULT), H5Dclose};
  if (d.id < 0) throw_error(Status::FileError, "'" + path + "': '" + dataset + "' is not a dataset");
  Hid type{H5Dget_type(d.id), H5Tclose};
  HostArray a;
  if (H5Tget_class(type.id) != H5T_FLOAT || (H5Tget_size(type.id) != 4 && H5Tget_size(type.id) != 8))
    throw_error(Status::Unsupported, "'" + path + "' dataset '" + dataset +
                                         "' is not float32 or float64; FKB reads float32/float64 datasets");
  a.dtype = H5Tget_size(type.id) == 4 ? DType::F32 : DType::F64;
  Hid space{H5Dget_space(d.id), H5Sclose};
  const int rank = H5Sget_simple_extent_ndims(space.id);
  if (rank < 0) throw_error(Status::FormatError, "'" + path + "' dataset '" + dataset + "': cannot read its shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  for (auto v : dims) a.shape.push_back(static_cast<int64_t>(v));
  herr_t st;
  if (a.dtype == DType::F32) {
    a.f32.resize(static_cast<size_t>(a.size()));
    st = H5Dread(d.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.f32.data());
  } else {
    a.f64.resize(static_cast<size_t>(a.size()));
    st = H5Dread(d.id, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.f64.data());
  }
  if (st < 0) throw_error(Status::FileError, "'" + path + "': cannot read dataset '" + dataset + "'");
  return a;
}

void write_h5(const std::string& path, const std::string& dataset, const float* data,
              const std::vector<int64_t>& shape) {
  QuietHdf5 quiet;
  Hid file{H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose};
  if (file.id < 0) throw_error(Status::FileError, "cannot create the HDF5 file '" + path + "'");
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Hid space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose};
  Hid lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Hid d{H5Dcreate2(file.id, dataset.c_str(), H5T_IEEE_F32LE, space.id, lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
  if (d.id < 0) throw_error(Status::FileError, "'" + path + "': cannot create dataset '" + dataset + "'");
  if (H5Dwrite(d.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    throw_error(Status::FileError, "'" + path + "': cannot write dataset '" + dataset + "'");
}

}  // namespace fkb::io
