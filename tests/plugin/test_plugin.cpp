// The CUDA backend as a plugin (libfkb_cuda.so, loaded by libfkb at run time): libfkb and libfkb_fortran link
// no CUDA library; an install of a CUDA build, run in a view of this machine where the CUDA libraries cannot
// be found (hide_cuda.sh: a mount namespace covering them), runs `fkb predict` and the Fortran column-model
// example on the CPU with the right answers and a one-line notice for device 'auto', and fails clearly for
// device 'cuda'; a missing or broken plugin names where it was looked for. Label `plugin`; built only with
// CUDA. The view and the install come from make_view.sh (a CTest fixture).
#include <gtest/gtest.h>

#include <string>

#include "io/array_io.hpp"
#include "test_util.hpp"

using namespace fkb;

namespace {

const std::string kWork = FKB_PLUGIN_WORK;  // make_view.sh's WORK_DIR
const std::string kHide = FKB_PLUGIN_HIDE;  // hide_cuda.sh

std::string q(const std::string& s) { return "'" + s + "'"; }

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// Runs COMMAND in the view without the CUDA libraries; skips the test where no mount namespace can be made.
int in_view(const std::string& command, std::string* out) {
  const int rc = test::run_command("FKB_HIDE_CUDA_PROBE=" + q(kWork + "/prefix/lib/libfkb_cuda.so") +
                                       " FKB_HIDE_CUDA_DIRS=" + q(FKB_CUDA_LIB_DIRS) + " " + q(kHide) + " " + command,
                                   out);
  return rc;
}

#define SKIP_WITHOUT_VIEW(rc, out)                                                  \
  do {                                                                              \
    if ((rc) == 77) GTEST_SKIP() << "no mount namespace on this machine: " << out; \
  } while (0)

struct Case {
  std::string model, data, dir;
};

// The small Keras fixture of the CLI tests: 5 -> 4, Keras' outputs stored next to it.
Case small_case() {
  for (const auto& f : test::manifest()["fixtures"])
    if (f["name"] == "k3_dense_chain_h5") return {test::fixture_path(f["file"]), test::fixture_path(f["data"]), test::temp_dir()};
  throw std::runtime_error("no fixture k3_dense_chain_h5");
}

std::string predict_args(const Case& c, const std::string& device) {
  return " predict " + q(c.model) + " --input " + q(c.data) + " --dataset input_0 --output " + q(c.dir + "/y.npy") +
         " --device " + device;
}

void expect_keras_answer(const Case& c) {
  const io::HostArray y = io::read_npy(c.dir + "/y.npy");
  const test::Data ref = test::read_dataset(c.data, "output_0");
  ASSERT_EQ(y.rows(), ref.rows());
  ASSERT_EQ(y.row_size(), ref.row_size());
  ASSERT_EQ(y.dtype, DType::F32);
  EXPECT_LE(test::relative_max_error(y.f32.data(), ref.values.data(), static_cast<int64_t>(y.f32.size())), 1e-5);
}

void expect_no_cuda_library(const std::string& file) {
  std::string out;
  ASSERT_EQ(test::run_command("ldd " + q(file), &out), 0) << out;
  EXPECT_FALSE(has(out, "libcudart")) << file << " links the CUDA runtime:\n" << out;
  EXPECT_FALSE(has(out, "libcublas")) << file << " links cuBLAS:\n" << out;
  EXPECT_FALSE(has(out, "libcuda.so")) << file << " links the CUDA driver:\n" << out;
}

}  // namespace

TEST(CudaPlugin, LibfkbAndItsUsersLinkNoCudaLibrary) {
  for (const std::string f : {std::string(FKB_BUILD_LIBFKB), std::string(FKB_BUILD_CLI), kWork + "/prefix/lib/libfkb.so",
                              kWork + "/prefix/bin/fkb"})
    expect_no_cuda_library(f);
  for (const std::string f : {std::string(FKB_BUILD_LIBFKB_FORTRAN), std::string(FKB_BUILD_LIBFKB_MPI)})
    if (!f.empty()) expect_no_cuda_library(f);
  // The plugin is the one that links them, and libfkb.
  std::string out;
  ASSERT_EQ(test::run_command("ldd " + q(kWork + "/prefix/lib/libfkb_cuda.so"), &out), 0) << out;
  EXPECT_TRUE(has(out, "libcudart.so")) << out;
  EXPECT_TRUE(has(out, "libcublasLt.so")) << out;
  EXPECT_TRUE(has(out, kWork + "/prefix/lib/libfkb.so")) << "the installed plugin finds libfkb next to it:\n" << out;
}

TEST(CudaPlugin, TheViewHidesTheCudaLibrariesFromThePlugin) {
  std::string out;
  const int rc = in_view("ldd " + q(kWork + "/prefix/lib/libfkb_cuda.so"), &out);
  SKIP_WITHOUT_VIEW(rc, out);
  EXPECT_TRUE(has(out, "libcudart.so.") && has(out, "=> not found")) << out;
  EXPECT_FALSE(has(out, "libcudart.so.13 => /")) << out;
}

TEST(CudaPlugin, AutoRunsOnTheCpuWithOneNoticeWhereTheCudaLibrariesAreMissing) {
  const Case c = small_case();
  const std::string why = "(CUDA backend not loaded: " + kWork + "/prefix/lib/libfkb_cuda.so: libcudart.so";
  // The CLI's own device line (not --quiet) carries the reason.
  std::string out;
  int rc = in_view(q(kWork + "/prefix/bin/fkb") + predict_args(c, "auto"), &out);
  SKIP_WITHOUT_VIEW(rc, out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(count(out, "fkb: device auto -> cpu"), 1u) << out;
  EXPECT_EQ(count(out, why), 1u) << out;
  EXPECT_TRUE(has(out, "cannot open shared object file")) << out;
  expect_keras_answer(c);
  // --quiet (the runtime not verbose, as from Fortran or C with verbose off): the same answer, nothing printed.
  rc = in_view(q(kWork + "/prefix/bin/fkb") + predict_args(c, "auto") + " --quiet", &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_FALSE(has(out, "device auto")) << "a quiet run printed the notice: " << out;
  expect_keras_answer(c);
}

TEST(CudaPlugin, ExplicitCudaFailsClearlyWhereTheCudaLibrariesAreMissing) {
  const Case c = small_case();
  for (const std::string dev : {"cuda", "cuda:1"}) {
    std::string out;
    const int rc = in_view(q(kWork + "/prefix/bin/fkb") + predict_args(c, dev), &out);
    SKIP_WITHOUT_VIEW(rc, out);
    EXPECT_NE(rc, 0) << out;
    EXPECT_TRUE(has(out, "the CUDA backend could not be loaded: " + kWork + "/prefix/lib/libfkb_cuda.so: libcudart.so"))
        << out;
    EXPECT_TRUE(has(out, "FKB_BACKEND_PATH")) << out;
    EXPECT_TRUE(has(out, "use device 'cpu' or 'auto'")) << out;
    EXPECT_FALSE(has(out, "device auto ->")) << out;
  }
}

TEST(CudaPlugin, TheFortranExampleRunsInTheView) {
  if (std::string(FKB_PLUGIN_FORTRAN).empty()) GTEST_SKIP() << "built without Fortran";
  std::string out;
  const int rc = in_view(q(kWork + "/column_model") + " --check " + q(FKB_COLUMN_MODEL_DIR "/fkb.nml") + " " +
                             q(FKB_COLUMN_MODEL_DIR "/keras_check.txt"),
                         &out);
  SKIP_WITHOUT_VIEW(rc, out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(has(out, "relative max error")) << out;
  EXPECT_TRUE(has(out, "\nok")) << out;
  EXPECT_EQ(count(out, "fkb: device auto -> cpu"), 1u) << out;
  EXPECT_EQ(count(out, "(CUDA backend not loaded: " + kWork + "/prefix/lib/libfkb_cuda.so: libcudart.so"), 1u) << out;
  // The program itself does not map the CUDA runtime: it linked against the install with pkg-config alone.
  std::string deps;
  ASSERT_EQ(test::run_command("ldd " + q(kWork + "/column_model"), &deps), 0) << deps;
  EXPECT_FALSE(has(deps, "libcudart")) << deps;
  EXPECT_TRUE(has(deps, kWork + "/prefix/lib/libfkb.so")) << deps;
}

TEST(CudaPlugin, AMissingPluginNamesWhereItWasLookedFor) {
  const Case c = small_case();
  const std::string env = "FKB_BACKEND_PATH=" + q(kWork + "/nowhere") + " ";
  std::string out;
  EXPECT_NE(test::run_command(env + q(kWork + "/noplugin/bin/fkb") + predict_args(c, "cuda"), &out), 0) << out;
  EXPECT_TRUE(has(out, "the CUDA backend could not be loaded: libfkb_cuda.so not found (looked in " + kWork +
                           "/nowhere (FKB_BACKEND_PATH), " + kWork + "/noplugin/lib (libfkb's directory))"))
      << out;
  ASSERT_EQ(test::run_command(env + q(kWork + "/noplugin/bin/fkb") + predict_args(c, "auto"), &out), 0) << out;
  EXPECT_EQ(count(out, "device auto -> cpu"), 1u) << out;
  EXPECT_EQ(count(out, "(CUDA backend not loaded: libfkb_cuda.so not found (looked in "), 1u) << out;
  expect_keras_answer(c);
}

TEST(CudaPlugin, BackendPathIsSearchedFirstAndABrokenPluginIsNamed) {
  const Case c = small_case();
  std::string out;
  // Only a broken file: its path and the loader's complaint.
  EXPECT_NE(test::run_command("FKB_BACKEND_PATH=" + q(kWork + "/fake") + " " + q(kWork + "/noplugin/bin/fkb") +
                                  predict_args(c, "cuda"),
                              &out),
            0)
      << out;
  EXPECT_TRUE(has(out, "the CUDA backend could not be loaded: " + kWork + "/fake/libfkb_cuda.so: ")) << out;
  // A list: the broken one first, then a good plugin (the install's), which is used.
  const std::string list = "FKB_BACKEND_PATH=" + q(kWork + "/fake:" + kWork + "/prefix/lib") + " ";
  ASSERT_EQ(test::run_command(list + q(kWork + "/noplugin/bin/fkb") + predict_args(c, "auto"), &out), 0) << out;
  EXPECT_FALSE(has(out, "CUDA backend not loaded")) << out;
  expect_keras_answer(c);
  const int rc = test::run_command(list + q(kWork + "/noplugin/bin/fkb") + predict_args(c, "cuda"), &out);
  if (rc != 0) EXPECT_FALSE(has(out, "could not be loaded")) << "loaded, then no device or another CUDA error: " << out;
}

TEST(CudaPlugin, TheBuildTreeFindsThePluginNextToLibfkb) {
  const Case c = small_case();
  std::string out;
  const int rc = test::run_command("env -u FKB_BACKEND_PATH " + q(FKB_BUILD_CLI) + predict_args(c, "cuda"), &out);
  if (rc != 0) {
    EXPECT_FALSE(has(out, "could not be loaded")) << out;
    EXPECT_TRUE(has(out, "CUDA device")) << "without a GPU: the plugin's own 'no device' error: " << out;
  }
  ASSERT_EQ(test::run_command("env -u FKB_BACKEND_PATH " + q(FKB_BUILD_CLI) + predict_args(c, "auto"), &out), 0) << out;
  EXPECT_FALSE(has(out, "CUDA backend not loaded")) << out;
  expect_keras_answer(c);
}
