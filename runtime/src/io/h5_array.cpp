// Batches as HDF5 datasets (float32 or float64, batch first).
#include <hdf5.h>

#include <string>

#include "fkb/error.hpp"
#include "io/array_io.hpp"
#include "loader/h5.hpp"

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

// The loading policy of model files applies to inputs too (README "Loading policy"): only data stored inside the
// file is read (links walked, no external storage, no virtual datasets, built-in filters only) and the declared size
// must agree with what the file stores, all checked before anything is allocated.
HostArray read_h5(const std::string& path, const std::string& dataset) {
  if (dataset.empty())
    throw_error(Status::InvalidArgument, "'" + path + "' is an HDF5 file: name the dataset to read (--dataset NAME)");
  std::lock_guard<std::recursive_mutex> guard(h5::lock());  // HDF5 (serial builds) is not thread-safe
  h5::QuietErrors quiet;
  h5::NoPlugins no_plugins;
  Hid fapl{H5Pcreate(H5P_FILE_ACCESS), H5Pclose};
  H5Pset_fclose_degree(fapl.id, H5F_CLOSE_STRONG);
  Hid file{H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id), H5Fclose};
  if (file.id < 0) throw_error(Status::FileError, "cannot open '" + path + "' as an HDF5 file");
  const std::string where = "'" + path + "'";
  const std::string what = "dataset '" + dataset + "'";
  const char* kind = "input file";
  if (!h5::exists(file.id, dataset, where, what, kind))
    throw_error(Status::FileError, "'" + path + "' has no dataset '" + dataset + "'");
  H5O_info_t oinfo;
#if H5_VERSION_GE(1, 12, 0)
  const herr_t got =
      H5Oget_info_by_name3(file.id, dataset.c_str(), &oinfo, H5O_INFO_BASIC, h5::no_external_links_lapl());
#else
  const herr_t got =
      H5Oget_info_by_name2(file.id, dataset.c_str(), &oinfo, H5O_INFO_BASIC, h5::no_external_links_lapl());
#endif
  if (got < 0 || oinfo.type != H5O_TYPE_DATASET)
    throw_error(Status::FileError, "'" + path + "': '" + dataset + "' is not a dataset");
  h5::Handle d = h5::open_dataset(file.id, dataset, where, what, kind);
  Hid type{H5Dget_type(d.get()), H5Tclose};
  HostArray a;
  if (H5Tget_class(type.id) != H5T_FLOAT || (H5Tget_size(type.id) != 4 && H5Tget_size(type.id) != 8))
    throw_error(Status::Unsupported, "'" + path + "' dataset '" + dataset +
                                         "' is not float32 or float64; FKB reads float32/float64 datasets");
  a.dtype = H5Tget_size(type.id) == 4 ? DType::F32 : DType::F64;
  const h5::DatasetInfo info = h5::check_dataset(d.get(), where, what, kind);
  a.shape = info.shape;
  herr_t st = 0;
  try {
    if (a.dtype == DType::F32) {
      a.f32.resize(static_cast<size_t>(info.elements));
      if (info.elements > 0) st = H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.f32.data());
    } else {
      a.f64.resize(static_cast<size_t>(info.elements));
      if (info.elements > 0) st = H5Dread(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.f64.data());
    }
  } catch (const std::bad_alloc&) {
    throw_error(Status::FormatError, where + ": " + what + " " + h5::shape_str(info.shape) + " needs " +
                                         loader::bytes_str(info.elements * info.type_size) +
                                         ", which this process cannot allocate");
  }
  if (st < 0) throw_error(Status::FileError, "'" + path + "': cannot read dataset '" + dataset + "'");
  return a;
}

void write_h5(const std::string& path, const std::string& dataset, const float* data,
              const std::vector<int64_t>& shape) {
  std::lock_guard<std::recursive_mutex> guard(h5::lock());
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
