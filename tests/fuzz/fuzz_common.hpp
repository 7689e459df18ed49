// Shared by the fuzz targets (tests/fuzz/fuzz_*.cpp): what counts as a finding, the small limits a target loads
// with, a per-process scratch file for the readers that take a path, and the model "smoke run".
//
// A target calls `run_guarded`: fkb::Error is the expected answer to bad input and is swallowed; anything else
// escapes (std::bad_alloc, nlohmann/yaml-cpp exceptions, std::length_error, ...) and so does an fkb::Error with
// Status::Internal, which FKB reserves for its own bugs. Escaping means std::terminate -> abort: libFuzzer
// reports it as a crash, and the regression driver (regress_main.cpp) fails the same way.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "fkb/runtime.hpp"

namespace fkb_fuzz {

/// Limits for targets that load a model: small enough that the loader, not the fuzzer's -rss_limit_mb, is what
/// refuses a memory bomb. Depth and value counts keep FKB's defaults (0), which are what users get.
inline fkb::LoadLimits load_limits() {
  fkb::LoadLimits l;
  l.max_weight_bytes = uint64_t{64} << 20;
  l.max_config_bytes = uint64_t{1} << 20;
  return l;
}

template <typename F> void run_guarded(F&& f) {
  try {
    f();
  } catch (const fkb::Error& e) {
    if (e.status() == fkb::Status::Internal) {
      std::fprintf(stderr, "fkb fuzz: internal error (an FKB bug) on this input: %s\n", e.what());
      std::abort();
    }
  }
}

/// A scratch directory of this process (under /dev/shm when writable, else $TMPDIR or /tmp), made on first use and
/// removed at exit (its files are removed by the targets that write them).
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::vector<std::string> bases;
    if (access("/dev/shm", W_OK) == 0)
      bases.push_back("/dev/shm");
    if (const char* t = std::getenv("TMPDIR"))
      bases.push_back(t);
    bases.push_back("/tmp");
    for (const std::string& b : bases) {
      std::string tmpl = b + "/fkb_fuzz_XXXXXX";
      if (mkdtemp(tmpl.data())) {
        std::atexit([] { rmdir(scratch_dir().c_str()); });
        return tmpl;
      }
    }
    std::perror("fkb fuzz: mkdtemp");
    std::abort();
  }();
  return dir;
}

/// Write `data` to `name` in the scratch directory; returns the path. Aborts when it cannot (not a finding).
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(("fkb fuzz: cannot write " + path).c_str());
    std::abort();
  }
  return path;
}

/// A loaded model is run like `fkb predict` would: compiled for the CPU and given two columns, when its activations
/// and arithmetic are small enough for a fuzzer (a file the loader accepts may still declare a large graph).
/// Custom layers are not registered here, so such models are only loaded.
inline void smoke_run(const fkb::Model& m) {
  (void)m.summary();
  int64_t values = 0;
  for (const fkb::Node& n : m.nodes) {
    if (n.op == fkb::OpKind::Custom)
      return;
    const int64_t s = fkb::shape_size(n.shape);
    if (s < 0 || s > (int64_t{1} << 20))
      return;
    values += s;
  }
  if (values > (int64_t{1} << 22) || m.flops_per_column() > (int64_t{1} << 27))
    return;
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.max_batch = 2;
  o.threads = 1;
  o.verbose = false;
  fkb::Runtime rt(m, o);
  const int64_t ncol = 2;
  std::vector<std::vector<float>> x(rt.num_inputs()), y(rt.num_outputs());
  std::vector<const float*> xp;
  std::vector<float*> yp;
  for (int i = 0; i < rt.num_inputs(); ++i) {
    x[i].assign(static_cast<size_t>(ncol * rt.n_inputs(i)), 0.5f);
    xp.push_back(x[i].data());
  }
  for (int i = 0; i < rt.num_outputs(); ++i) {
    y[i].assign(static_cast<size_t>(ncol * rt.n_outputs(i)), 0.0f);
    yp.push_back(y[i].data());
  }
  rt.predict(xp, ncol, yp);
}

} // namespace fkb_fuzz

#ifdef FKB_LIBFUZZER
// The sanitizer settings of scripts/fuzz, also when a target is run by hand (ASAN_OPTIONS/UBSAN_OPTIONS override).
// allocator_may_return_null=1: malloc of an impossible size returns NULL as in production (HDF5 asks for such sizes
// when it reads corrupted metadata, and handles the NULL); C++ `new` still reports, ASan never returns NULL from it.
// Each fuzz target is its own executable and includes this header once.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1:detect_leaks=1"; }
extern "C" const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }
#endif
