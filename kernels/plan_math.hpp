// Pure host arithmetic of the CUDA plan, kept free of CUDA headers so it is unit-tested on machines
// without a GPU (tests/backend/test_cuda_host_logic.cpp): how a batch is split into pipelined chunks, how
// the compile-time maximum batch falls back when device memory is short, pointer alignment for cuBLASLt.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace fkb::cuda {

/// A contiguous range of columns of one run() call.
struct Chunk {
  int64_t offset = 0;  ///< first column
  int64_t count = 0;   ///< number of columns
};

/// When and how a batch with host-resident inputs/outputs is split so that the copies of chunk i+1 overlap
/// the compute of chunk i (and the D2H of chunk i-1). Device-resident data is never split: there is
/// nothing to overlap, and every chunk costs a graph launch.
struct ChunkPolicy {
  int64_t min_chunk = 4096;  ///< never make chunks smaller than this many columns
  int max_chunks = 4;        ///< at most this many chunks
  int64_t align = 64;        ///< chunk boundaries are multiples of this (keeps GEMM operands aligned)
};

/// Split `ncol` columns into chunks. One chunk when `host_transfers` is false or the batch is small.
inline std::vector<Chunk> plan_chunks(int64_t ncol, bool host_transfers, const ChunkPolicy& pol = {}) {
  std::vector<Chunk> out;
  if (ncol <= 0) return out;
  const int64_t min_chunk = std::max<int64_t>(pol.min_chunk, 1);
  int64_t n = host_transfers ? std::min<int64_t>(pol.max_chunks, ncol / min_chunk) : 1;
  if (n <= 1) {
    out.push_back({0, ncol});
    return out;
  }
  const int64_t align = std::max<int64_t>(pol.align, 1);
  int64_t base = (ncol + n - 1) / n;
  base = (base + align - 1) / align * align;
  for (int64_t off = 0; off < ncol; off += base) out.push_back({off, std::min(base, ncol - off)});
  return out;
}

/// Device memory a plan needs for a maximum batch: `fixed` bytes (weights, cuBLASLt workspace) plus
/// `per_column` bytes for each column of the maximum batch (activations, device staging).
struct MemoryNeed {
  int64_t fixed = 0;
  int64_t per_column = 0;
  /// Bytes for `max_batch` columns; INT64_MAX when that overflows.
  int64_t bytes(int64_t max_batch) const {
    if (per_column > 0 && max_batch > (INT64_MAX - fixed) / per_column) return INT64_MAX;
    return fixed + per_column * max_batch;
  }
};

/// The compile-time out-of-memory fallback: try `requested`, and while `fits(batch)` is false halve the batch
/// (rounding down, at least 1). Returns the first batch that fits, or 0 when not even one column fits
/// (the caller then throws OutOfMemory). `tried`, when given, receives every batch tried, in order.
inline int64_t fallback_max_batch(int64_t requested, const std::function<bool(int64_t)>& fits,
                                  std::vector<int64_t>* tried = nullptr) {
  int64_t b = std::max<int64_t>(requested, 1);
  for (;;) {
    if (tried) tried->push_back(b);
    if (fits(b)) return b;
    if (b == 1) return 0;
    b = std::max<int64_t>(b / 2, 1);
  }
}

/// The same with a byte limit (a fake one in tests; the free device memory, or FKB_CUDA_MAX_BYTES, in a plan).
inline int64_t fallback_max_batch(int64_t requested, const MemoryNeed& need, int64_t limit_bytes,
                                  std::vector<int64_t>* tried = nullptr) {
  return fallback_max_batch(
      requested, [&](int64_t b) { return need.bytes(b) <= limit_bytes; }, tried);
}

/// Largest power of two (at most `cap`) dividing the address: cuBLASLt's heuristics assume 256-byte aligned
/// operands unless told otherwise, and chunk or concat-slot offsets break that.
inline uint32_t alignment_of(uintptr_t address, uint32_t cap = 256) {
  uint32_t a = 1;
  while (a < cap && (address % (2 * a)) == 0) a *= 2;
  return address == 0 ? cap : a;
}

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/// A positive integer from the environment, else `fallback` (also for malformed values).
inline int64_t env_int64(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  return (end && *end == 0 && v > 0) ? static_cast<int64_t>(v) : fallback;
}

inline std::string env_string(const char* name) {
  const char* s = std::getenv(name);
  return s ? std::string(s) : std::string();
}

/// Key of one captured CUDA graph: the batch (or chunk) size, the column offset of the chunk, and the
/// dtypes of the caller's buffers (F64 adds a conversion kernel to the graph).
struct GraphKey {
  int64_t ncol = 0;
  int64_t offset = 0;
  bool in_f64 = false;
  bool out_f64 = false;
  bool operator<(const GraphKey& o) const {
    if (ncol != o.ncol) return ncol < o.ncol;
    if (offset != o.offset) return offset < o.offset;
    if (in_f64 != o.in_f64) return in_f64 < o.in_f64;
    return out_f64 < o.out_f64;
  }
};

}  // namespace fkb::cuda
