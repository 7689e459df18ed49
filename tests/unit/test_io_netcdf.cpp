// netCDF batches: `fkb predict` on netCDF-4 and classic netCDF-3 (CDF-1, CDF-2, CDF-5) variables written here with
// the netCDF C API from the Keras fixtures' inputs, compared with Keras' own outputs (never with FKB's); the
// format chosen by content, not by name; leading dimensions flattened and sliced; float and double variables;
// netCDF outputs checked with the netCDF C API; and every error case, with nothing left behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "io/array_io.hpp"
#include "io/netcdf.hpp"
#include "test_io_util.hpp"
#include "test_util.hpp"

using namespace fkb;
using namespace fkb::iotest;

namespace {

struct Fixture {
  std::string model, data;
};

Fixture fixture(const std::string& name) {
  for (const auto& f : test::manifest()["fixtures"])
    if (f["name"] == name) return {test::fixture_path(f["file"]), test::fixture_path(f["data"])};
  throw std::runtime_error("no fixture " + name);
}

std::string q(const std::string& s) { return "'" + s + "'"; }

int predict(const std::string& args, std::string* out) {
  return test::run_command(test::cli() + " predict " + args, out);
}

// The single-input fixture 5 -> 4 (37 columns).
const char* kSmall = "k3_dense_chain_h5";

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

// Rows of a [rows][width] array in the order `order`.
std::vector<float> permute_rows(const std::vector<float>& v, int64_t width, const std::vector<int64_t>& order) {
  std::vector<float> out;
  for (int64_t r : order) out.insert(out.end(), v.begin() + r * width, v.begin() + (r + 1) * width);
  return out;
}

// Three "time steps" of the fixture's columns: in order, reversed, rotated by 5.
std::vector<std::vector<int64_t>> time_orders(int64_t n) {
  std::vector<int64_t> id(static_cast<size_t>(n)), rev, rot;
  for (int64_t i = 0; i < n; ++i) id[static_cast<size_t>(i)] = i;
  rev.assign(id.rbegin(), id.rend());
  rot = id;
  std::rotate(rot.begin(), rot.begin() + 5, rot.end());
  return {id, rev, rot};
}

std::vector<float> concat(const std::vector<std::vector<float>>& parts) {
  std::vector<float> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  EXPECT_LE(test::relative_max_error(got.data(), ref.data(), static_cast<int64_t>(got.size())), 1e-5) << what;
}

std::vector<float> npy_values(const std::string& path, std::vector<int64_t>* shape = nullptr) {
  io::HostArray a = io::read_npy(path);
  if (shape) *shape = a.shape;
  return a.f32;
}

}  // namespace

TEST(NetcdfIo, Netcdf4AndClassicFormatsMatchKeras) {
  Fixture f = fixture(kSmall);
  test::Data x = test::read_dataset(f.data, "input_0"), y = test::read_dataset(f.data, "output_0");
  const std::string dir = test::temp_dir();
  struct Case {
    int cmode;
    const char* name;
    std::string magic;
  };
  const std::vector<Case> cases{{NC_NETCDF4, "nc4", "\x89HDF\r\n\x1a\n"},
                                {0, "cdf1", std::string("CDF\x01", 4)},
                                {NC_64BIT_OFFSET, "cdf2", std::string("CDF\x02", 4)},
                                {NC_64BIT_DATA, "cdf5", std::string("CDF\x05", 4)}};
  for (const auto& c : cases) {
    const std::string in = dir + "/x_" + c.name + ".nc";
    write_nc(in, c.cmode, "state", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_FLOAT,
             as_double(x.values));
    ASSERT_EQ(file_head(in, c.magic.size()), c.magic) << c.name << ": the test made the intended format";
    EXPECT_EQ(io::input_kind(in), io::FileKind::NetCdf) << c.name;
    std::string out;
    const std::string yp = dir + "/y_" + c.name + ".npy";
    ASSERT_EQ(predict(q(f.model) + " -i " + in + " --dataset state -o " + yp + " --device cpu", &out), 0)
        << c.name << ": " << out;
    std::vector<int64_t> shape;
    expect_close(npy_values(yp, &shape), y.values, c.name);
    EXPECT_EQ(shape, (std::vector<int64_t>{x.rows(), 4})) << c.name;
  }
}

TEST(NetcdfIo, ContentWinsOverTheFileName) {
  Fixture f = fixture(kSmall);
  test::Data x = test::read_dataset(f.data, "input_0"), y = test::read_dataset(f.data, "output_0");
  const std::string dir = test::temp_dir();
  std::string out;
  // A netCDF-3 file named .h5, a netCDF-4 file named .nc, one named .npy, and one without an extension.
  write_nc(dir + "/classic.h5", 0, "x", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_FLOAT,
           as_double(x.values));
  write_nc(dir + "/four.nc", NC_NETCDF4, "x", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_FLOAT,
           as_double(x.values));
  write_nc(dir + "/four.npy", NC_NETCDF4, "x", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_FLOAT,
           as_double(x.values));
  write_nc(dir + "/noext", 0, "x", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_FLOAT,
           as_double(x.values));
  for (const char* n : {"classic.h5", "four.nc", "four.npy", "noext"}) {
    EXPECT_EQ(io::input_kind(dir + "/" + n), io::FileKind::NetCdf) << n;
    ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/" + n + " --dataset x -o " + dir + "/y.npy --device cpu", &out), 0)
        << n << ": " << out;
    expect_close(npy_values(dir + "/y.npy"), y.values, n);
  }
  // A plain HDF5 file (h5py, no netCDF-4 marks) named .nc stays on the HDF5 path, datasets and all.
  {
    std::ifstream src(f.data, std::ios::binary);
    std::ofstream dst(dir + "/plain.nc", std::ios::binary);
    dst << src.rdbuf();
  }
  EXPECT_EQ(io::input_kind(dir + "/plain.nc"), io::FileKind::H5);
  EXPECT_EQ(io::input_kind(f.data), io::FileKind::H5);
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/plain.nc --dataset input_0 -o " + dir + "/y2.npy --device cpu", &out),
            0)
      << out;
  expect_close(npy_values(dir + "/y2.npy"), y.values, "plain HDF5 named .nc");
  // A .nc name with neither magic: the message says what was expected.
  std::ofstream(dir + "/fake.nc") << "not a netcdf file\n";
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/fake.nc --dataset x -o " + dir + "/y3.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("fake.nc' is named like a netCDF file but is neither netCDF-3"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/y3.npy"));
}

TEST(NetcdfIo, LeadingDimensionsFlattenedAndSliced) {
  Fixture f = fixture(kSmall);
  test::Data x = test::read_dataset(f.data, "input_0"), y = test::read_dataset(f.data, "output_0");
  const int64_t n = x.rows();
  const auto orders = time_orders(n);
  std::vector<std::vector<float>> xs, ys;
  for (const auto& o : orders) {
    xs.push_back(permute_rows(x.values, 5, o));
    ys.push_back(permute_rows(y.values, 4, o));
  }
  const std::string dir = test::temp_dir();
  for (int cmode : {NC_NETCDF4, 0}) {
    const std::string in = dir + "/x" + std::to_string(cmode) + ".nc";
    // time is unlimited (the record dimension, as in climate model output).
    write_nc(in, cmode, "X", {{"time", 3, true}, {"ncol", static_cast<size_t>(n)}, {"nin", 5}}, NC_FLOAT,
             as_double(concat(xs)));
    std::string out;
    // All time steps: [3*37, 4], time-major.
    ASSERT_EQ(predict(q(f.model) + " -i " + in + " --dataset X -o " + dir + "/all.npy --device cpu", &out), 0) << out;
    std::vector<int64_t> shape;
    expect_close(npy_values(dir + "/all.npy", &shape), concat(ys), "flattened");
    EXPECT_EQ(shape, (std::vector<int64_t>{3 * n, 4}));
    // One time step, counted from the start and from the end.
    ASSERT_EQ(
        predict(q(f.model) + " -i " + in + " --dataset X --slice time=1 -o " + dir + "/t1.npy --device cpu", &out), 0)
        << out;
    expect_close(npy_values(dir + "/t1.npy", &shape), ys[1], "time=1");
    EXPECT_EQ(shape, (std::vector<int64_t>{n, 4}));
    ASSERT_EQ(
        predict(q(f.model) + " -i " + in + " --dataset X --slice time=-1 -o " + dir + "/tl.npy --device cpu", &out), 0)
        << out;
    expect_close(npy_values(dir + "/tl.npy"), ys[2], "time=-1");
    // A range of time steps and a range of columns together.
    ASSERT_EQ(predict(q(f.model) + " -i " + in + " --dataset X --slice time=1:3 --slice ncol=4:10 -o " + dir +
                          "/r.npy --device cpu",
                      &out),
              0)
        << out;
    std::vector<float> want;
    for (int t = 1; t < 3; ++t) want.insert(want.end(), ys[t].begin() + 4 * 4, ys[t].begin() + 10 * 4);
    expect_close(npy_values(dir + "/r.npy", &shape), want, "time=1:3, ncol=4:10");
    EXPECT_EQ(shape, (std::vector<int64_t>{12, 4}));
    // An index of the column dimension leaves one column per time step.
    ASSERT_EQ(
        predict(q(f.model) + " -i " + in + " --dataset X --slice ncol=7 -o " + dir + "/c7.npy --device cpu", &out), 0)
        << out;
    want.clear();
    for (int t = 0; t < 3; ++t) want.insert(want.end(), ys[t].begin() + 7 * 4, ys[t].begin() + 8 * 4);
    expect_close(npy_values(dir + "/c7.npy"), want, "ncol=7");
  }
}

TEST(NetcdfIo, DoubleVariablesAndRank3Models) {
  Fixture f = fixture(kSmall);
  test::Data x = test::read_dataset(f.data, "input_0"), y = test::read_dataset(f.data, "output_0");
  const std::string dir = test::temp_dir();
  std::string out;
  write_nc(dir + "/d.nc", NC_NETCDF4, "xd", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_DOUBLE,
           as_double(x.values));
  write_nc(dir + "/d3.nc", NC_64BIT_OFFSET, "xd", {{"ncol", static_cast<size_t>(x.rows())}, {"nin", 5}}, NC_DOUBLE,
           as_double(x.values));
  for (const char* n : {"d.nc", "d3.nc"}) {
    io::NcArray a = io::read_netcdf(dir + "/" + n, "xd");
    EXPECT_EQ(a.array.dtype, DType::F64) << n;
    ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/" + n + " --dataset xd -o " + dir + "/y.npy --device cpu", &out), 0)
        << out;
    expect_close(npy_values(dir + "/y.npy"), y.values, std::string("double ") + n);
  }

  // A rank-3 model, input (30, 3): the variable's last two dims are (lev, chan); the others are columns.
  Fixture r = fixture("k3_rank3_input_keras");
  test::Data x3 = test::read_dataset(r.data, "input_0"), y3 = test::read_dataset(r.data, "output_0");
  const size_t n3 = static_cast<size_t>(x3.rows());
  std::vector<float> two = x3.values;
  two.insert(two.end(), x3.values.begin(), x3.values.end());
  write_nc(dir + "/r3.nc", NC_NETCDF4, "prof", {{"time", 2}, {"ncol", n3}, {"lev", 30}, {"chan", 3}}, NC_FLOAT,
           as_double(two));
  ASSERT_EQ(predict(q(r.model) + " -i " + dir + "/r3.nc --dataset prof -o " + dir + "/y3.npy --device cpu", &out), 0)
      << out;
  std::vector<float> want = y3.values;
  want.insert(want.end(), y3.values.begin(), y3.values.end());
  expect_close(npy_values(dir + "/y3.npy"), want, "rank-3 input (time, ncol, lev, chan)");
  ASSERT_EQ(predict(q(r.model) + " -i " + dir + "/r3.nc --dataset prof --slice time=1 -o " + dir +
                        "/y4.nc --device cpu",
                    &out),
            0)
      << out;
  const fkb::Model m3 = fkb::Model::load(r.model);
  NcRead got = read_nc_var(dir + "/y4.nc", m3.nodes[m3.outputs[0]].name);
  expect_close(got.values, y3.values, "rank-3, time=1, netCDF output");
  EXPECT_EQ(got.dim_names.front(), "ncol");
}

TEST(NetcdfIo, NetcdfOutputHasDimensionsAttributesAndKerasValues) {
  Fixture f = fixture(kSmall);
  test::Data x = test::read_dataset(f.data, "input_0"), y = test::read_dataset(f.data, "output_0");
  const int64_t n = x.rows();
  const auto orders = time_orders(n);
  std::vector<std::vector<float>> xs, ys;
  for (const auto& o : orders) {
    xs.push_back(permute_rows(x.values, 5, o));
    ys.push_back(permute_rows(y.values, 4, o));
  }
  const std::string dir = test::temp_dir();
  write_nc(dir + "/x.nc", 0, "X", {{"time", 3, true}, {"ncol", static_cast<size_t>(n)}, {"nin", 5}}, NC_FLOAT,
           as_double(concat(xs)), {{"time", {0.5, 1.5, 2.5}}});
  std::string out;
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x.nc --dataset X -o " + dir + "/y.nc --output-var tend --device cpu",
                    &out),
            0)
      << out;
  // The output is netCDF-4 (HDF5 signature), with the input's column dimensions kept.
  EXPECT_EQ(file_head(dir + "/y.nc", 8), std::string("\x89HDF\r\n\x1a\n"));
  NcRead r = read_nc_var(dir + "/y.nc", "tend");
  EXPECT_EQ(r.type, NC_FLOAT);
  EXPECT_EQ(r.dim_names, (std::vector<std::string>{"time", "ncol", "nout"}));
  EXPECT_EQ(r.dim_lengths, (std::vector<size_t>{3, static_cast<size_t>(n), 4}));
  expect_close(r.values, concat(ys), "netCDF output values");
  EXPECT_EQ(nc_text_attribute(dir + "/y.nc", "", "fkb_model_file"), f.model);
  const fkb::Model m = fkb::Model::load(f.model);
  ASSERT_FALSE(m.info.name.empty());
  EXPECT_EQ(nc_text_attribute(dir + "/y.nc", "", "fkb_model_name"), m.info.name);
  EXPECT_EQ(nc_text_attribute(dir + "/y.nc", "", "fkb_version"), std::string(fkb::version()));
  EXPECT_NE(nc_text_attribute(dir + "/y.nc", "", "fkb_inputs").find("x.nc' variable 'X'"), std::string::npos);
  EXPECT_NE(nc_text_attribute(dir + "/y.nc", "tend", "long_name").find(m.info.name), std::string::npos);
  // The time coordinate variable comes along, with its units.
  NcRead t = read_nc_var(dir + "/y.nc", "time");
  EXPECT_EQ(t.values, (std::vector<float>{0.5f, 1.5f, 2.5f}));
  EXPECT_EQ(nc_text_attribute(dir + "/y.nc", "time", "units"), "days since 2000-01-01");

  // A range slice keeps the matching part of the coordinate.
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x.nc --dataset X --slice time=1: -o " + dir +
                        "/yr.nc --output-var tend --device cpu",
                    &out),
            0)
      << out;
  NcRead rr = read_nc_var(dir + "/yr.nc", "tend");
  EXPECT_EQ(rr.dim_lengths, (std::vector<size_t>{2, static_cast<size_t>(n), 4}));
  expect_close(rr.values, concat({ys[1], ys[2]}), "time=1: netCDF output");
  EXPECT_EQ(read_nc_var(dir + "/yr.nc", "time").values, (std::vector<float>{1.5f, 2.5f}));

  // Default variable name: the Keras output layer's; a slice drops its dimension from the output.
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x.nc --dataset X --slice time=2 -o " + dir + "/y2.nc --device cpu",
                    &out),
            0)
      << out;
  const std::string layer = m.nodes[m.outputs[0]].name;
  NcRead r2 = read_nc_var(dir + "/y2.nc", layer);
  EXPECT_EQ(r2.dim_names, (std::vector<std::string>{"ncol", "nout"}));
  EXPECT_EQ(nc_text_attribute(dir + "/y2.nc", "time", "units"), "<missing>");  // the time dimension is gone
  expect_close(r2.values, ys[2], "time=2 netCDF output");
  EXPECT_NE(nc_text_attribute(dir + "/y2.nc", "", "fkb_inputs").find("[time=2]"), std::string::npos);

  // A .npy input gives the dimensions (ncol, nout).
  write_f32_npy(dir + "/x.npy", x.values, x.shape);
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x.npy -o " + dir + "/y3.nc --device cpu", &out), 0) << out;
  NcRead r3 = read_nc_var(dir + "/y3.nc", layer);
  EXPECT_EQ(r3.dim_names, (std::vector<std::string>{"ncol", "nout"}));
  expect_close(r3.values, y.values, "npy input, netCDF output");
}

TEST(NetcdfIo, ZeroLengthDimensionGivesAnEmptyOutput) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  write_nc(dir + "/empty.nc", NC_NETCDF4, "X", {{"time", 0, true}, {"ncol", 37}, {"nin", 5}}, NC_FLOAT, {});
  std::string out;
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/empty.nc --dataset X -o " + dir + "/y.npy --device cpu", &out), 0)
      << out;
  std::vector<int64_t> shape;
  EXPECT_TRUE(npy_values(dir + "/y.npy", &shape).empty());
  EXPECT_EQ(shape, (std::vector<int64_t>{0, 4}));
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/empty.nc --dataset X -o " + dir + "/y.nc --output-var y --device cpu",
                    &out),
            0)
      << out;
  NcRead r = read_nc_var(dir + "/y.nc", "y");
  EXPECT_EQ(r.dim_names, (std::vector<std::string>{"time", "ncol", "nout"}));
  EXPECT_EQ(r.dim_lengths, (std::vector<size_t>{0, 37, 4}));
}

TEST(NetcdfIo, ErrorsNameFileVariableAndWhatIsAccepted) {
  Fixture f = fixture(kSmall);
  test::Data x = test::read_dataset(f.data, "input_0");
  const std::string dir = test::temp_dir();
  const size_t n = static_cast<size_t>(x.rows());
  write_nc(dir + "/x.nc", NC_NETCDF4, "X", {{"time", 1}, {"ncol", n}, {"nin", 5}}, NC_FLOAT, as_double(x.values));
  std::string out;
  const std::string m = q(f.model);

  // Missing variable: the variables in the file are listed.
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc --dataset Y -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("x.nc' (netCDF-4) has no variable 'Y'"), std::string::npos) << out;
  EXPECT_NE(out.find("X(time, ncol, nin) float"), std::string::npos) << out;
  EXPECT_NE(out.find("other(other_dim) float"), std::string::npos) << out;
  // No --dataset: same list.
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("--dataset VAR"), std::string::npos) << out;
  EXPECT_NE(out.find("X(time, ncol, nin) float"), std::string::npos) << out;

  // Wrong feature count: names the variable and its dims.
  std::vector<double> three(n * 3, 0.5);
  write_nc(dir + "/narrow.nc", 0, "X", {{"ncol", n}, {"nin", 3}}, NC_FLOAT, three);
  EXPECT_NE(predict(m + " -i " + dir + "/narrow.nc --dataset X -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("narrow.nc' variable 'X' (ncol=37, nin=3) has 3 features per column but the model expects 5"),
            std::string::npos)
      << out;

  // Bad slices: index out of range (names the dimension and its length), unknown dimension, bad syntax, twice.
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc --dataset X --slice time=1 -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("dimension 'time' of"), std::string::npos) << out;
  EXPECT_NE(out.find("has length 1; accepted indices: 0..0"), std::string::npos) << out;
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc --dataset X --slice ncol=30:40 -o " + dir + "/y.npy --device cpu", &out),
            0);
  EXPECT_NE(out.find("dimension 'ncol' of"), std::string::npos) << out;
  EXPECT_NE(out.find("has length 37; accepted ranges"), std::string::npos) << out;
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc --dataset X --slice lev=0 -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("no netCDF input has a dimension 'lev'"), std::string::npos) << out;
  EXPECT_NE(out.find("(time=1, ncol=37, nin=5)"), std::string::npos) << out;
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc --dataset X --slice time:0 -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("accepted: DIM=INDEX"), std::string::npos) << out;
  EXPECT_NE(
      predict(m + " -i " + dir + "/x.nc --dataset X --slice time=0 --slice time=0 -o " + dir + "/y.npy --device cpu",
              &out),
      0);
  EXPECT_NE(out.find("sliced twice"), std::string::npos) << out;
  // --slice on a non-netCDF input.
  write_f32_npy(dir + "/x.npy", x.values, x.shape);
  EXPECT_NE(predict(m + " -i " + dir + "/x.npy --slice time=0 -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("no input is a netCDF file"), std::string::npos) << out;

  // An int variable: file, variable and type named.
  std::vector<double> ints(n * 5, 1.0);
  write_nc(dir + "/int.nc", NC_NETCDF4, "I", {{"ncol", n}, {"nin", 5}}, NC_INT, ints);
  EXPECT_NE(predict(m + " -i " + dir + "/int.nc --dataset I -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("int.nc' variable 'I' has type int (int32); FKB reads float or double"), std::string::npos)
      << out;
  write_nc(dir + "/short3.nc", 0, "S", {{"ncol", n}, {"nin", 5}}, NC_SHORT, ints);
  EXPECT_NE(predict(m + " -i " + dir + "/short3.nc --dataset S -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("variable 'S' has type short (int16)"), std::string::npos) << out;

  // A bad output variable name fails before any work.
  EXPECT_NE(predict(m + " -i " + dir + "/x.nc --dataset X -o " + dir + "/y.nc --output-var a/b --device cpu", &out), 0);
  EXPECT_NE(out.find("--output-var 'a/b' is not a valid netCDF variable name"), std::string::npos) << out;

  for (const auto& name : list_dir(dir)) {
    EXPECT_EQ(name.rfind("y.", 0), std::string::npos) << "left behind: " << name;
    EXPECT_EQ(name.find(".tmp-"), std::string::npos) << "left behind: " << name;
  }
}

TEST(NetcdfIo, ReaderApi) {
  const std::string dir = test::temp_dir();
  std::vector<double> v(2 * 3 * 4);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  write_nc(dir + "/a.nc", NC_64BIT_DATA, "a", {{"time", 2}, {"ncol", 3}, {"nin", 4}}, NC_FLOAT, v);
  io::NcArray a = io::read_netcdf(dir + "/a.nc", "a");
  EXPECT_EQ(a.format, "netCDF-3 64-bit data (CDF-5)");
  EXPECT_EQ(a.array.shape, (std::vector<int64_t>{6, 4}));
  ASSERT_EQ(a.column_dims.size(), 2u);
  EXPECT_EQ(a.column_dims[0].name, "time");
  EXPECT_EQ(a.column_dims[1].name, "ncol");
  EXPECT_EQ(a.array.f32[23], 23.0f);
  // Slice ncol=-1: rows (t, 2) for t = 0, 1.
  io::NcArray b = io::read_netcdf(dir + "/a.nc", "a", {io::parse_slice("ncol=-1")});
  EXPECT_EQ(b.array.shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(b.array.f32[0], 8.0f);
  EXPECT_EQ(b.array.f32[4], 20.0f);
  // A model of per-column shape (3, 4): the last two dims are the features.
  io::NcArray c = io::read_netcdf(dir + "/a.nc", "a", {}, {3, 4});
  EXPECT_EQ(c.array.shape, (std::vector<int64_t>{2, 3, 4}));
  // One feature per column: every element is a column.
  io::NcArray d = io::read_netcdf(dir + "/a.nc", "a", {}, {1});
  EXPECT_EQ(d.array.shape, (std::vector<int64_t>{24, 1}));
  // Slice parsing.
  io::DimSlice s = io::parse_slice("lev=:5");
  EXPECT_TRUE(s.range);
  EXPECT_FALSE(s.has_start);
  EXPECT_EQ(s.stop, 5);
  EXPECT_THROW(io::parse_slice("=3"), fkb::Error);
  EXPECT_THROW(io::parse_slice("t=x"), fkb::Error);
  EXPECT_THROW(io::parse_slice("t=1:2:3"), fkb::Error);
}
