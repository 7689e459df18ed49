// `fkb predict` end to end: Keras fixtures in .npy/.csv/.h5, float64 inputs, multi-input/multi-output
// models (one --output per output, or a directory), inputs with 0 columns, and every error case (with no
// output file left behind). Expected values are Keras' own predictions stored with each fixture. netCDF
// inputs and outputs: test_io_netcdf.cpp.
#include <gtest/gtest.h>

#include <fstream>

#include "io/array_io.hpp"
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

std::vector<float> as_float(const io::HostArray& a) {
  if (a.dtype == DType::F32) return a.f32;
  return std::vector<float>(a.f64.begin(), a.f64.end());
}

void expect_matches(const io::HostArray& got, const test::Data& ref, const std::string& what) {
  ASSERT_EQ(got.rows(), ref.rows()) << what;
  ASSERT_EQ(got.row_size(), ref.row_size()) << what;
  const auto g = as_float(got);
  EXPECT_LE(test::relative_max_error(g.data(), ref.values.data(), static_cast<int64_t>(g.size())), 1e-5) << what;
}

// A single-input, single-output fixture: 5 -> 4.
const char* kSmall = "k3_dense_chain_h5";

}  // namespace

TEST(CliPredict, H5InputToNpyOutput) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  std::string out;
  ASSERT_EQ(predict(q(f.model) + " --input " + q(f.data) + " --dataset input_0 --output " + dir + "/y.npy --device cpu",
                    &out),
            0)
      << out;
  expect_matches(io::read_npy(dir + "/y.npy"), test::read_dataset(f.data, "output_0"), "npy output");
  EXPECT_EQ(io::read_npy(dir + "/y.npy").dtype, DType::F32);
  EXPECT_EQ(list_dir(dir).size(), 1u);
}

TEST(CliPredict, NpyFloat32ToCsvAndFloat64ToH5) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  test::Data x = test::read_dataset(f.data, "input_0");
  write_f32_npy(dir + "/x32.npy", x.values, x.shape);
  std::vector<double> xd(x.values.begin(), x.values.end());
  write_f64_npy(dir + "/x64.npy", xd, x.shape);
  std::string out;
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x32.npy -o " + dir + "/y.csv --device cpu --threads 1", &out), 0)
      << out;
  expect_matches(io::read_csv(dir + "/y.csv"), test::read_dataset(f.data, "output_0"), "csv output");
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x64.npy -o " + dir + "/y.h5 --output-dataset pred --device cpu",
                    &out),
            0)
      << out;
  io::HostArray y = io::read_h5(dir + "/y.h5", "pred");
  EXPECT_EQ(y.dtype, DType::F32);
  expect_matches(y, test::read_dataset(f.data, "output_0"), "h5 output from float64 input");
}

TEST(CliPredict, CsvInputWithDeviceAuto) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  test::Data x = test::read_dataset(f.data, "input_0");
  io::write_csv(dir + "/x.csv", x.values.data(), x.rows(), x.row_size());
  std::string out;
  ASSERT_EQ(predict(q(f.model) + " --input " + dir + "/x.csv --output " + dir + "/y.npy", &out), 0) << out;
  EXPECT_NE(out.find("device auto ->"), std::string::npos) << "auto prints which device it uses: " << out;
  expect_matches(io::read_npy(dir + "/y.npy"), test::read_dataset(f.data, "output_0"), "csv input");
}

TEST(CliPredict, SeveralInputsAndOutputsToADirectory) {
  Fixture f = fixture("k3_multi_io_h5");
  const std::string dir = test::temp_dir();
  test::Data a = test::read_dataset(f.data, "input_0"), b = test::read_dataset(f.data, "input_1");
  write_f32_npy(dir + "/a.npy", a.values, a.shape);
  write_f32_npy(dir + "/b.npy", b.values, b.shape);
  std::string out;
  ASSERT_EQ(predict(q(f.model) + " --input " + dir + "/a.npy --input " + dir + "/b.npy --output " + dir +
                        "/out --device cpu",
                    &out),
            0)
      << out;
  auto names = list_dir(dir + "/out");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"output_0.npy", "output_1.npy"}));
  expect_matches(io::read_npy(dir + "/out/output_0.npy"), test::read_dataset(f.data, "output_0"), "output 0");
  expect_matches(io::read_npy(dir + "/out/output_1.npy"), test::read_dataset(f.data, "output_1"), "output 1");

  // Both inputs from one HDF5 file, one --dataset per input; CSV files in the directory.
  ASSERT_EQ(predict(q(f.model) + " -i " + q(f.data) + " -i " + q(f.data) +
                        " --dataset input_0 --dataset input_1 -o " + dir + "/out2 --output-format csv --device cpu",
                    &out),
            0)
      << out;
  expect_matches(io::read_csv(dir + "/out2/output_1.csv"), test::read_dataset(f.data, "output_1"), "csv output 1");

  // One input missing: an error saying how many are needed.
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/a.npy -o " + dir + "/out3 --device cpu", &out), 0);
  EXPECT_NE(out.find("2 input(s) but 1"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/out3/output_0.npy"));
}

TEST(CliPredict, WeightsOnlyFileWithConfigAndChunking) {
  std::string model, config, data;
  for (const auto& f : test::manifest()["fixtures"])
    if (f["name"] == "tk_weights_weights_json") {
      model = test::fixture_path(f["file"]);
      config = test::fixture_path(f["config"]);
      data = test::fixture_path(f["data"]);
    }
  ASSERT_FALSE(model.empty());
  const std::string dir = test::temp_dir();
  std::string out;
  // Without the architecture: an error saying so.
  EXPECT_NE(predict(q(model) + " -i " + q(data) + " --dataset input_0 -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_FALSE(file_exists(dir + "/y.npy"));
  // With it, and chunks of 5 columns.
  ASSERT_EQ(predict(q(model) + " --config " + q(config) + " -i " + q(data) + " --dataset input_0 -o " + dir +
                        "/y.npy --device cpu --max-batch 5 --threads 2",
                    &out),
            0)
      << out;
  expect_matches(io::read_npy(dir + "/y.npy"), test::read_dataset(data, "output_0"), "weights-only + config");
}

TEST(CliPredict, PerColumnShapesOfRank2Inputs) {
  // Input (30, 3): [ncol, 30, 3] and flat [ncol, 90] are accepted, [ncol, 3, 30] is not.
  Fixture f = fixture("k3_rank3_input_keras");
  const std::string dir = test::temp_dir();
  test::Data x = test::read_dataset(f.data, "input_0");
  ASSERT_EQ(x.shape, (std::vector<int64_t>{x.rows(), 30, 3}));
  std::string out;
  write_f32_npy(dir + "/x3.npy", x.values, {x.rows(), 30, 3});
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x3.npy -o " + dir + "/a.npy --device cpu", &out), 0) << out;
  expect_matches(io::read_npy(dir + "/a.npy"), test::read_dataset(f.data, "output_0"), "rank-3 input");
  write_f32_npy(dir + "/x2.npy", x.values, {x.rows(), 90});
  ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/x2.npy -o " + dir + "/b.npy --device cpu", &out), 0) << out;
  expect_matches(io::read_npy(dir + "/b.npy"), test::read_dataset(f.data, "output_0"), "flat input");
  write_f32_npy(dir + "/xt.npy", x.values, {x.rows(), 3, 30});
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/xt.npy -o " + dir + "/c.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("per-column shape (3, 30) but the model expects (30, 3)"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/c.npy"));
}

TEST(CliPredict, ErrorsLeaveNoOutputBehind) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  test::Data x = test::read_dataset(f.data, "input_0");
  std::string out;

  // Missing input file.
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/missing.npy -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("missing.npy"), std::string::npos) << out;

  // Wrong width: the message names both widths.
  std::vector<float> narrow(static_cast<size_t>(x.rows() * 3), 0.5f);
  write_f32_npy(dir + "/narrow.npy", narrow, {x.rows(), 3});
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/narrow.npy -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("has 3 features per column but the model expects 5"), std::string::npos) << out;

  // Unknown extensions, for the input and for the output.
  std::ofstream(dir + "/x.txt") << "1 2 3 4 5\n";
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/x.txt -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("accepted extensions"), std::string::npos) << out;
  write_f32_npy(dir + "/x.npy", x.values, x.shape);
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/x.npy -o " + dir + "/y.xyz --device cpu", &out), 0);
  EXPECT_NE(out.find("unknown file type"), std::string::npos) << out;

  // Bad dtype.
  std::vector<int32_t> ints(static_cast<size_t>(x.rows() * 5), 1);
  write_raw_npy(dir + "/int.npy", "{'descr': '<i4', 'fortran_order': False, 'shape': (37, 5), }", ints.data(),
                ints.size() * 4);
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/int.npy -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("'<i4'"), std::string::npos) << out;

  // HDF5 input without --dataset, and with a dataset that does not exist.
  EXPECT_NE(predict(q(f.model) + " -i " + q(f.data) + " -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("--dataset"), std::string::npos) << out;
  EXPECT_NE(predict(q(f.model) + " -i " + q(f.data) + " --dataset nope -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("no dataset 'nope'"), std::string::npos) << out;

  // Unsupported precision on the CPU, and an unknown device.
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/x.npy -o " + dir + "/y.npy --device cpu --precision bf16", &out), 0);
  EXPECT_NE(out.find("accepted values: fp32"), std::string::npos) << out;
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/x.npy -o " + dir + "/y.npy --device tpu", &out), 0);
  EXPECT_NE(out.find("unknown device 'tpu'"), std::string::npos) << out;

  // Non-finite input under --nonfinite error.
  std::vector<float> bad = x.values;
  bad[4 * 5 + 2] = NAN;
  write_f32_npy(dir + "/nan.npy", bad, x.shape);
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/nan.npy -o " + dir + "/y.npy --device cpu --nonfinite error", &out),
            0);
  EXPECT_NE(out.find("column 4"), std::string::npos) << out;

  // Missing model.
  EXPECT_NE(predict(dir + "/nomodel.h5 -i " + dir + "/x.npy -o " + dir + "/y.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("nomodel.h5"), std::string::npos) << out;

  // After all of these, no output and no temporary file exists.
  for (const auto& n : list_dir(dir)) {
    EXPECT_EQ(n.find("y."), std::string::npos) << "left behind: " << n;
    EXPECT_EQ(n.find(".tmp-"), std::string::npos) << "left behind: " << n;
  }
}

TEST(CliPredict, FailedRunKeepsAnExistingOutputUntouched) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/y.npy") << "previous contents";
  std::vector<float> narrow(6, 0.5f);
  write_f32_npy(dir + "/narrow.npy", narrow, {2, 3});
  std::string out;
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/narrow.npy -o " + dir + "/y.npy --device cpu", &out), 0);
  std::ifstream in(dir + "/y.npy");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(s, "previous contents");
}

TEST(CliPredict, ZeroColumnsGiveEmptyOutputsOfTheRightShape) {
  Fixture f = fixture(kSmall);
  const std::string dir = test::temp_dir();
  std::string out;
  // An empty .npy [0, 5] (float32 and float64), and an empty CSV (a header alone, and no bytes at all).
  write_f32_npy(dir + "/e32.npy", {}, {0, 5});
  write_f64_npy(dir + "/e64.npy", {}, {0, 5});
  std::ofstream(dir + "/header.csv") << "a,b,c,d,e\n";
  std::ofstream(dir + "/nothing.csv").close();
  for (const char* in : {"e32.npy", "e64.npy", "header.csv", "nothing.csv"}) {
    ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/" + in + " -o " + dir + "/y.npy --device cpu", &out), 0)
        << in << ": " << out;
    io::HostArray y = io::read_npy(dir + "/y.npy");
    EXPECT_EQ(y.shape, (std::vector<int64_t>{0, 4})) << in;
    ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/" + in + " -o " + dir + "/y.h5 --device cpu", &out), 0)
        << in << ": " << out;
    EXPECT_EQ(io::read_h5(dir + "/y.h5", "output").shape, (std::vector<int64_t>{0, 4})) << in;
    ASSERT_EQ(predict(q(f.model) + " -i " + dir + "/" + in + " -o " + dir + "/y.csv --device cpu", &out), 0)
        << in << ": " << out;
    std::ifstream c(dir + "/y.csv");
    std::string s((std::istreambuf_iterator<char>(c)), std::istreambuf_iterator<char>());
    EXPECT_EQ(s, "") << in;
  }
  // An empty input of the wrong width is still an error.
  write_f32_npy(dir + "/e3.npy", {}, {0, 3});
  EXPECT_NE(predict(q(f.model) + " -i " + dir + "/e3.npy -o " + dir + "/z.npy --device cpu", &out), 0);
  EXPECT_NE(out.find("has 3 features per column but the model expects 5"), std::string::npos) << out;
  // A multi-output model: one empty file per output, each with its own width.
  Fixture mio = fixture("k3_multi_io_h5");
  test::Data a = test::read_dataset(mio.data, "input_0"), b = test::read_dataset(mio.data, "input_1");
  test::Data ya = test::read_dataset(mio.data, "output_0"), yb = test::read_dataset(mio.data, "output_1");
  write_f32_npy(dir + "/ea.npy", {}, {0, a.row_size()});
  write_f32_npy(dir + "/eb.npy", {}, {0, b.row_size()});
  ASSERT_EQ(predict(q(mio.model) + " -i " + dir + "/ea.npy -i " + dir + "/eb.npy -o " + dir + "/o0.npy -o " + dir +
                        "/o1.npy --device cpu",
                    &out),
            0)
      << out;
  EXPECT_EQ(io::read_npy(dir + "/o0.npy").shape, (std::vector<int64_t>{0, ya.row_size()}));
  EXPECT_EQ(io::read_npy(dir + "/o1.npy").shape, (std::vector<int64_t>{0, yb.row_size()}));
}

TEST(CliPredict, OneOutputPathPerModelOutputOrADirectory) {
  Fixture f = fixture("k3_multi_io_h5");
  const std::string dir = test::temp_dir();
  test::Data a = test::read_dataset(f.data, "input_0"), b = test::read_dataset(f.data, "input_1");
  write_f32_npy(dir + "/a.npy", a.values, a.shape);
  write_f32_npy(dir + "/b.npy", b.values, b.shape);
  const std::string ins = q(f.model) + " -i " + dir + "/a.npy -i " + dir + "/b.npy --device cpu ";
  std::string out;
  // --output once per output, each with its own format.
  ASSERT_EQ(predict(ins + "-o " + dir + "/first.npy --output " + dir + "/second.csv", &out), 0) << out;
  expect_matches(io::read_npy(dir + "/first.npy"), test::read_dataset(f.data, "output_0"), "output 0 (npy)");
  expect_matches(io::read_csv(dir + "/second.csv"), test::read_dataset(f.data, "output_1"), "output 1 (csv)");

  // One --output with a file extension: refused, naming the number of outputs and both forms; nothing created.
  EXPECT_NE(predict(ins + "-o " + dir + "/y.csv", &out), 0);
  EXPECT_NE(out.find("the model has 2 outputs but one --output '" + dir + "/y.csv' with a file extension"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("--output a.npy --output b.npy"), std::string::npos) << out;
  EXPECT_NE(out.find("a directory path without a file extension"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/y.csv"));
  // Three paths for two outputs, and the same path twice.
  EXPECT_NE(predict(ins + "-o " + dir + "/p.npy -o " + dir + "/r.npy -o " + dir + "/s.npy", &out), 0);
  EXPECT_NE(out.find("2 output(s) but 3 --output paths"), std::string::npos) << out;
  EXPECT_NE(predict(ins + "-o " + dir + "/p.npy -o " + dir + "/p.npy", &out), 0);
  EXPECT_NE(out.find("given twice"), std::string::npos) << out;
  // A directory path without an extension: one file per output, here netCDF.
  ASSERT_EQ(predict(ins + "-o " + dir + "/outdir --output-format nc --output-var first --output-var second", &out), 0)
      << out;
  auto names = list_dir(dir + "/outdir");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"output_0.nc", "output_1.nc"}));
  NcRead r0 = read_nc_var(dir + "/outdir/output_0.nc", "first");
  NcRead r1 = read_nc_var(dir + "/outdir/output_1.nc", "second");
  test::Data y0 = test::read_dataset(f.data, "output_0"), y1 = test::read_dataset(f.data, "output_1");
  EXPECT_LE(test::relative_max_error(r0.values.data(), y0.values.data(), static_cast<int64_t>(y0.values.size())), 1e-5);
  ASSERT_EQ(r1.values.size(), y1.values.size());
  EXPECT_LE(test::relative_max_error(r1.values.data(), y1.values.data(), static_cast<int64_t>(y1.values.size())), 1e-5);
  // --spread on a single model is refused.
  EXPECT_NE(predict(ins + "-o " + dir + "/q1.npy -o " + dir + "/q2.npy --spread " + dir + "/s.npy", &out), 0);
  EXPECT_NE(out.find("--spread and --members apply to ensembles"), std::string::npos) << out;
  for (const auto& n : list_dir(dir))
    EXPECT_TRUE(n == "a.npy" || n == "b.npy" || n == "first.npy" || n == "second.csv" || n == "outdir")
        << "left behind: " << n;
}
