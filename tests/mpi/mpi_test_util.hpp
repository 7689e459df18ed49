// Helpers for the MPI tests: the world, uneven column splits, seeded batches and single-process references.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fkb/mpi.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace fkb::test::mpi {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

/// Counts summing to n, rank r getting about n (r+1) / (1 + ... + size): uneven on purpose.
inline std::vector<int64_t> uneven_split(int64_t n, int size) {
  std::vector<int64_t> c(static_cast<size_t>(size), 0);
  const int64_t w = static_cast<int64_t>(size) * (size + 1) / 2;
  int64_t used = 0;
  for (int r = 0; r < size; ++r) {
    c[static_cast<size_t>(r)] = n * (r + 1) / w;
    used += c[static_cast<size_t>(r)];
  }
  c.back() += n - used;
  return c;
}

inline std::vector<int64_t> offsets(const std::vector<int64_t>& counts) {
  std::vector<int64_t> d(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) d[i + 1] = d[i] + counts[i];
  return d;
}

/// A seeded normal batch (never zeros), identical on every rank.
inline std::vector<float> random_batch(int64_t ncol, int64_t features, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(ncol * features));
  for (auto& x : v) x = d(g);
  return v;
}

/// The single-process output: a CPU runtime with one thread (as the sessions under test use) on `ncol`
/// columns starting at x.
inline std::vector<float> reference(const Model& m, const float* x, int64_t ncol, int64_t max_batch = 4096) {
  RuntimeOptions o;
  o.device = "cpu";
  o.threads = 1;
  o.verbose = false;
  o.max_batch = max_batch;
  Runtime rt(m, o);
  std::vector<float> y(static_cast<size_t>(std::max<int64_t>(ncol, 0) * rt.n_outputs()));
  if (ncol > 0) rt.predict(x, ncol, y.data());
  return y;
}

inline bool bitwise_equal(const float* a, const float* b, int64_t n) {
  return n <= 0 || std::memcmp(a, b, sizeof(float) * static_cast<size_t>(n)) == 0;
}

inline bool bitwise_equal(const double* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (a[i] != static_cast<double>(b[i]) && !(a[i] != a[i] && b[i] != b[i])) return false;
  return true;
}

/// Options every test session starts from: one thread (deterministic), no FKB_DEVICE, quiet.
inline fkb::mpi::SessionOptions test_options(const std::string& mode, int64_t max_batch = 4096) {
  fkb::mpi::SessionOptions o;
  o.mode = mode;
  o.threads = 1;
  o.max_batch = max_batch;
  o.verbose = false;
  o.use_env = false;
  return o;
}

/// Whether every rank says true (collective).
inline bool all_ranks(bool ok) {
  int mine = ok ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

}  // namespace fkb::test::mpi
