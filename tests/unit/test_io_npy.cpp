// The .npy reader and writer (runtime/src/io): format versions, dtypes, and every rejection.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

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

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

TEST(IoNpy, ReadsFloat32Version1) {
  const std::string p = test::temp_dir() + "/a.npy";
  write_f32_npy(p, {1, 2, 3, 4, 5, 6}, {2, 3});
  io::HostArray a = io::read_npy(p);
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.f32, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(a.rows(), 2);
  EXPECT_EQ(a.row_size(), 3);
}

TEST(IoNpy, ReadsFloat64Version2AndRank1) {
  const std::string dir = test::temp_dir();
  const std::vector<double> v = {0.1, -2.5, 1e300};
  write_raw_npy(dir + "/b.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", v.data(), 24, 2);
  io::HostArray a = io::read_npy(dir + "/b.npy");
  EXPECT_EQ(a.dtype, DType::F64);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(a.f64, v);
  // Double-quoted keys and a rank-3 shape.
  const std::vector<float> w(2 * 3 * 4, 0.5f);
  write_raw_npy(dir + "/c.npy", "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3, 4)}", w.data(),
                w.size() * 4);
  a = io::read_npy(dir + "/c.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(a.row_size(), 12);
}

TEST(IoNpy, WriterProducesNumpyHeader) {
  const std::string p = test::temp_dir() + "/w.npy";
  io::write_npy(p, std::vector<float>{1.5f, -2, 3, 4}.data(), {2, 2});
  const std::string s = slurp(p);
  ASSERT_GE(s.size(), 10u);
  EXPECT_EQ(s.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t hlen = static_cast<unsigned char>(s[8]) | (static_cast<unsigned char>(s[9]) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  const std::string h = s.substr(10, hlen);
  EXPECT_EQ(h.back(), '\n');
  EXPECT_EQ(h.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"), 0u) << h;
  EXPECT_EQ(s.size(), 10 + hlen + 16);
  float first;
  std::memcpy(&first, s.data() + 10 + hlen, 4);
  EXPECT_EQ(first, 1.5f);
  io::HostArray a = io::read_npy(p);
  EXPECT_EQ(a.f32, (std::vector<float>{1.5f, -2, 3, 4}));

  io::write_npy(p, std::vector<float>{7}.data(), {1});
  EXPECT_NE(slurp(p).find("'shape': (1,), }"), std::string::npos);
}

TEST(IoNpy, RejectsFortranOrderOtherDtypesAndBigEndian) {
  const std::string dir = test::temp_dir();
  const std::vector<float> v(4, 1.0f);
  write_raw_npy(dir + "/f.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", v.data(), 16);
  Error e = expect_error([&] { io::read_npy(dir + "/f.npy"); });
  EXPECT_EQ(e.status(), Status::Unsupported);
  EXPECT_NE(std::string(e.what()).find("Fortran order"), std::string::npos) << e.what();

  const std::vector<int32_t> iv(4, 1);
  write_raw_npy(dir + "/i.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }", iv.data(), 16);
  e = expect_error([&] { io::read_npy(dir + "/i.npy"); });
  EXPECT_EQ(e.status(), Status::Unsupported);
  EXPECT_NE(std::string(e.what()).find("'<i4'"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("'<f4'"), std::string::npos) << e.what();

  write_raw_npy(dir + "/be.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", v.data(), 16);
  e = expect_error([&] { io::read_npy(dir + "/be.npy"); });
  EXPECT_NE(std::string(e.what()).find("'>f4'"), std::string::npos) << e.what();
}

TEST(IoNpy, RejectsTruncatedAndForeignFiles) {
  const std::string dir = test::temp_dir();
  const std::vector<float> v(3, 1.0f);
  write_raw_npy(dir + "/t.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", v.data(), 12);
  Error e = expect_error([&] { io::read_npy(dir + "/t.npy"); });
  EXPECT_EQ(e.status(), Status::FormatError);
  EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();

  std::ofstream(dir + "/x.npy") << "a,b,c\n1,2,3\n";
  e = expect_error([&] { io::read_npy(dir + "/x.npy"); });
  EXPECT_EQ(e.status(), Status::FormatError);
  EXPECT_NE(std::string(e.what()).find("x.npy"), std::string::npos) << e.what();

  e = expect_error([&] { io::read_npy(dir + "/missing.npy"); });
  EXPECT_EQ(e.status(), Status::FileError);
  EXPECT_NE(std::string(e.what()).find("missing.npy"), std::string::npos) << e.what();
}
