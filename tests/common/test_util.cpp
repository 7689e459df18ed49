#include "test_util.hpp"

#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fkb::test {

std::string fixture_path(const std::string& rel) {
  // FKB_FIXTURES overrides the compiled-in path (binaries carried to another machine).
  const char* env = std::getenv("FKB_FIXTURES");
  return std::string(env && *env ? env : FKB_FIXTURES_DIR) + "/" + rel;
}

const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    std::ifstream f(fixture_path("manifest.json"));
    if (!f) throw std::runtime_error("cannot open " + fixture_path("manifest.json"));
    return nlohmann::json::parse(f);
  }();
  return m;
}

std::string shared_models_dir() {
  const char* env = std::getenv("FKB_SHARED_MODELS");
  std::string dir = env && *env ? env : FKB_SHARED_MODELS_DIR;
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return "";
  return dir;
}

int64_t Data::row_size() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

Data read_dataset(const std::string& h5_path, const std::string& name) {
  hid_t f = H5Fopen(h5_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("cannot open " + h5_path);
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  if (d < 0) {
    H5Fclose(f);
    throw std::runtime_error("no dataset " + name + " in " + h5_path);
  }
  hid_t sp = H5Dget_space(d);
  int rank = H5Sget_simple_extent_ndims(sp);
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(sp, dims.data(), nullptr);
  Data out;
  int64_t n = 1;
  for (auto v : dims) {
    out.shape.push_back(static_cast<int64_t>(v));
    n *= static_cast<int64_t>(v);
  }
  out.values.resize(n);
  H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.values.data());
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

int count_datasets(const std::string& h5_path, const std::string& prefix) {
  hid_t f = H5Fopen(h5_path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return 0;
  int n = 0;
  while (H5Lexists(f, (prefix + "_" + std::to_string(n)).c_str(), H5P_DEFAULT) > 0) ++n;
  H5Fclose(f);
  return n;
}

double relative_max_error(const float* got, const float* ref, int64_t n) {
  double err = 0, mx = 0;
  for (int64_t i = 0; i < n; ++i) {
    double e = std::fabs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
    if (std::isnan(got[i]) != std::isnan(ref[i])) e = INFINITY;
    if (!std::isnan(e)) err = std::max(err, e);
    mx = std::max(mx, std::fabs(static_cast<double>(ref[i])));
  }
  return mx > 0 ? err / mx : err;
}

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string out;
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, k);
  int st = pclose(p);
  if (output) *output = out;
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

std::string cli() { return FKB_CLI_PATH; }

std::string temp_dir() {
  char tmpl[] = "/tmp/fkb-test-XXXXXX";
  char* d = mkdtemp(tmpl);
  if (!d) throw std::runtime_error("mkdtemp failed");
  return d;
}

}  // namespace fkb::test
