// CSV and HDF5 batch files, extension dispatch, and atomic writes.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <fstream>

#include "fkb/error.hpp"
#include "io/array_io.hpp"
#include "test_io_util.hpp"
#include "test_util.hpp"

using namespace fkb;
using namespace fkb::iotest;

namespace {

template <typename F>
Error expect_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected an fkb::Error";
  return Error(Status::Ok, "");
}

}  // namespace

TEST(IoCsv, ReadsHeaderCommentsBlankLinesAndSeparators) {
  const std::string p = test::temp_dir() + "/a.csv";
  std::ofstream(p) << "q1,q2,t\n# a comment\n1, 2.5 ,-3e-2\n\n4;5;6\n7 8\t9\r\n";
  io::HostArray a = io::read_csv(p);
  EXPECT_EQ(a.dtype, DType::F64);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(a.f64, (std::vector<double>{1, 2.5, -3e-2, 4, 5, 6, 7, 8, 9}));
}

TEST(IoCsv, RaggedRowsAndTextAreErrorsNamingTheLine) {
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/r.csv") << "1,2,3\n4,5\n";
  Error e = expect_error([&] { io::read_csv(dir + "/r.csv"); });
  EXPECT_EQ(e.status(), Status::FormatError);
  EXPECT_NE(std::string(e.what()).find("line 2 has 2 values"), std::string::npos) << e.what();
  std::ofstream(dir + "/t.csv") << "1,2\n3,abc\n";
  e = expect_error([&] { io::read_csv(dir + "/t.csv"); });
  EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  std::ofstream(dir + "/e.csv") << "# nothing\n";
  EXPECT_EQ(expect_error([&] { io::read_csv(dir + "/e.csv"); }).status(), Status::FormatError);
}

TEST(IoCsv, WriteRoundTripsEveryFloat) {
  const std::string p = test::temp_dir() + "/w.csv";
  const std::vector<float> v = {0.1f, -1.0f / 3.0f, 1e-38f, 3.4e38f, 123456789.0f, -0.0f};
  io::write_csv(p, v.data(), 2, 3);
  io::HostArray a = io::read_csv(p);
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(static_cast<float>(a.f64[i]), v[i]) << i;
}

TEST(IoH5, WriteAndReadFloat32AndFloat64Datasets) {
  const std::string dir = test::temp_dir();
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  io::write_h5(dir + "/a.h5", "group/pred", v.data(), {3, 2});
  io::HostArray a = io::read_h5(dir + "/a.h5", "group/pred");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.f32, v);

  // A float64 dataset written with the HDF5 API directly.
  hid_t f = H5Fcreate((dir + "/d.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t dims[2] = {2, 2};
  hid_t sp = H5Screate_simple(2, dims, nullptr);
  hid_t d = H5Dcreate2(f, "x", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const double dv[4] = {0.1, 0.2, 0.3, 0.4};
  H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dv);
  H5Dclose(d);
  hid_t di = H5Dcreate2(f, "ints", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const int iv[4] = {1, 2, 3, 4};
  H5Dwrite(di, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, iv);
  H5Dclose(di);
  H5Sclose(sp);
  H5Fclose(f);
  a = io::read_h5(dir + "/d.h5", "x");
  EXPECT_EQ(a.dtype, DType::F64);
  EXPECT_EQ(a.f64, (std::vector<double>{0.1, 0.2, 0.3, 0.4}));

  Error e = expect_error([&] { io::read_h5(dir + "/d.h5", "ints"); });
  EXPECT_EQ(e.status(), Status::Unsupported);
  EXPECT_NE(std::string(e.what()).find("float32 or float64"), std::string::npos) << e.what();
  e = expect_error([&] { io::read_h5(dir + "/d.h5", "nope"); });
  EXPECT_NE(std::string(e.what()).find("no dataset 'nope'"), std::string::npos) << e.what();
  e = expect_error([&] { io::read_h5(dir + "/d.h5", ""); });
  EXPECT_NE(std::string(e.what()).find("--dataset"), std::string::npos) << e.what();
  e = expect_error([&] { io::read_h5(dir + "/missing.h5", "x"); });
  EXPECT_EQ(e.status(), Status::FileError);
}

TEST(IoArray, ExtensionDispatch) {
  EXPECT_EQ(io::file_kind("a/b.NPY"), io::FileKind::Npy);
  EXPECT_EQ(io::file_kind("b.csv"), io::FileKind::Csv);
  EXPECT_EQ(io::file_kind("b.hdf5"), io::FileKind::H5);
  Error e = expect_error([] { io::file_kind("data.txt"); });
  EXPECT_EQ(e.status(), Status::InvalidArgument);
  EXPECT_NE(std::string(e.what()).find(".npy, .csv, .h5"), std::string::npos) << e.what();
  EXPECT_EQ(expect_error([] { io::file_kind("dir.d/noext"); }).status(), Status::InvalidArgument);
}

TEST(IoArray, AtomicWriteLeavesOnlyTheFinalFile) {
  const std::string dir = test::temp_dir();
  const std::vector<float> v = {1, 2, 3, 4};
  for (const char* name : {"y.npy", "y.csv", "y.h5"}) io::write_array(dir + "/" + name, v.data(), {2, 2});
  auto names = list_dir(dir);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"y.csv", "y.h5", "y.npy"}));
  EXPECT_EQ(io::read_array(dir + "/y.h5", "output").f32, v);
  EXPECT_EQ(io::read_array(dir + "/y.npy").f32, v);
  // Into a missing directory: an error, and nothing is created.
  Error e = expect_error([&] { io::write_array(dir + "/missing/y.npy", v.data(), {2, 2}); });
  EXPECT_EQ(e.status(), Status::FileError);
  EXPECT_FALSE(file_exists(dir + "/missing/y.npy"));
}
