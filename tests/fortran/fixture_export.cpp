// Writes a Keras fixture's data (tests/fixtures/<name>.data.h5: input_0, output_0, float32, batch first) as
// plain text for the Fortran tests, which then need no HDF5:
//
//   line 1: model file (absolute path)
//   line 2: architecture config file for weights-only models, or "-"
//   line 3: nin nout ncol
//   then ncol*nin input values (column after column, i.e. Fortran x(nin, ncol) order), one per line
//   then ncol*nout reference outputs (Keras' own model.predict), likewise
//
// Values are written with 9 significant digits, which round-trips float32 exactly.
//
// A NAME that is a directory FIXTURES_DIR/NAME with a data.h5 (the ensemble fixtures of
// make_ensemble_fixtures.py) is written as an ensemble file instead:
//   lines 1-4: the members directory, the list file, the YAML config, the mismatch list file (absolute paths)
//   line 5: nin nout ncol n_members
//   then x (Fortran x(nin, ncol) order), Keras' mean (mean(nout, ncol)), numpy's population std
//   (std(nout, ncol)) and every member's own output (members(nout, ncol, n_members)), one value per line
// Usage: fkb_fixture_export FIXTURES_DIR OUT_DIR NAME...
#include <hdf5.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

struct Data {
  std::vector<hsize_t> dims;
  std::vector<float> values;
};

Data read(const std::string& path, const std::string& name) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    throw std::runtime_error("cannot open " + path);
  hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  if (d < 0) {
    H5Fclose(f);
    throw std::runtime_error("no dataset " + name + " in " + path);
  }
  hid_t sp = H5Dget_space(d);
  Data out;
  out.dims.resize(H5Sget_simple_extent_ndims(sp));
  H5Sget_simple_extent_dims(sp, out.dims.data(), nullptr);
  size_t n = 1;
  for (auto v : out.dims)
    n *= v;
  out.values.resize(n);
  herr_t rc = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.values.data());
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  if (rc < 0)
    throw std::runtime_error("cannot read " + name + " from " + path);
  return out;
}

void write_values(std::FILE* f, const std::vector<float>& v) {
  for (float x : v)
    std::fprintf(f, "%.9g\n", x);
}

void export_ensemble(const std::string& dir, const std::string& out_dir, const std::string& name) {
  const std::string base = dir + "/" + name, data = base + "/data.h5";
  Data x = read(data, "input"), mean = read(data, "mean"), sd = read(data, "std"), mem = read(data, "members");
  if (x.dims.size() != 2 || mem.dims.size() != 3 || mem.dims[1] != x.dims[0])
    throw std::runtime_error("bad ensemble data in " + data);
  const size_t ncol = x.dims[0], nin = x.dims[1], nmem = mem.dims[0], nout = mem.dims[2];
  const std::string path = out_dir + "/" + name + ".txt";
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f)
    throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "%s/members\n%s/members.txt\n%s/ensemble.yaml\n%s/ensemble_mismatch/members.txt\n", base.c_str(),
               base.c_str(), base.c_str(), dir.c_str());
  std::fprintf(f, "%zu %zu %zu %zu\n", nin, nout, ncol, nmem);
  write_values(f, x.values);
  write_values(f, mean.values);
  write_values(f, sd.values);
  write_values(f, mem.values);
  std::fclose(f);
  std::cout << "wrote " << path << " (ensemble of " << nmem << ", " << nin << " -> " << nout << ", " << ncol
            << " columns)\n";
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: fkb_fixture_export FIXTURES_DIR OUT_DIR NAME...\n";
    return 2;
  }
  try {
    const std::string dir = argv[1], out_dir = argv[2];
    std::ifstream mf(dir + "/manifest.json");
    if (!mf)
      throw std::runtime_error("cannot open " + dir + "/manifest.json");
    const auto manifest = nlohmann::json::parse(mf);
    std::filesystem::create_directories(out_dir);
    for (int a = 3; a < argc; ++a) {
      const std::string name = argv[a];
      if (std::filesystem::exists(dir + "/" + name + "/data.h5")) {
        export_ensemble(dir, out_dir, name);
        continue;
      }
      const nlohmann::json* entry = nullptr;
      for (const auto& e : manifest["fixtures"])
        if (e["name"] == name)
          entry = &e;
      if (!entry)
        throw std::runtime_error("no fixture " + name + " in " + dir + "/manifest.json");
      const std::string data = dir + "/" + (*entry)["data"].get<std::string>();
      Data x = read(data, "input_0"), y = read(data, "output_0");
      if (x.dims.empty() || y.dims.empty() || x.dims[0] != y.dims[0])
        throw std::runtime_error("bad data in " + data);
      const size_t ncol = x.dims[0], nin = x.values.size() / ncol, nout = y.values.size() / ncol;
      const std::string path = out_dir + "/" + name + ".txt";
      std::FILE* f = std::fopen(path.c_str(), "w");
      if (!f)
        throw std::runtime_error("cannot write " + path);
      std::fprintf(f, "%s\n", (dir + "/" + (*entry)["file"].get<std::string>()).c_str());
      std::fprintf(f, "%s\n",
                   (*entry)["config"].is_null() ? "-" : (dir + "/" + (*entry)["config"].get<std::string>()).c_str());
      std::fprintf(f, "%zu %zu %zu\n", nin, nout, ncol);
      for (float v : x.values)
        std::fprintf(f, "%.9g\n", v);
      for (float v : y.values)
        std::fprintf(f, "%.9g\n", v);
      std::fclose(f);
      std::cout << "wrote " << path << " (" << nin << " -> " << nout << ", " << ncol << " columns)\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "fkb_fixture_export: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
