// NumPy .npy reader and writer (format: numpy/lib/format.py). Versions 1.0 (uint16 header length),
// 2.0 and 3.0 (uint32); the header is a Python dict literal with 'descr', 'fortran_order' and 'shape'.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>

#include "fkb/error.hpp"
#include "io/array_io.hpp"
#include "loader/limits.hpp"

namespace fkb::io {

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw_error(Status::FormatError, "'" + path + "' is not a valid .npy file: " + what);
}

// The text after `key` (quoted) and the following colon in the header dict, or npos.
size_t value_pos(const std::string& h, const std::string& key) {
  for (const char* q : {"'", "\""}) {
    size_t p = h.find(std::string(q) + key + q);
    if (p == std::string::npos) continue;
    p = h.find(':', p + key.size() + 2);
    if (p == std::string::npos) return p;
    ++p;
    while (p < h.size() && (h[p] == ' ' || h[p] == '\t')) ++p;
    return p;
  }
  return std::string::npos;
}

// Read up to `n` values. `sized`: the file size was checked against `n`, so the vector is allocated at once;
// otherwise (a pipe) it grows with the data actually read, never past `n`. Returns the number of values read.
template <typename T>
uint64_t read_values(std::FILE* f, std::vector<T>& out, uint64_t n, bool sized) {
  constexpr uint64_t kChunk = (uint64_t{1} << 24) / sizeof(T);
  if (sized) out.reserve(static_cast<size_t>(n));
  uint64_t got = 0;
  while (got < n) {
    const uint64_t want = std::min<uint64_t>(kChunk, n - got);
    if (got + want > out.capacity())
      out.reserve(static_cast<size_t>(std::min<uint64_t>(n, std::max<uint64_t>(2 * out.capacity(), got + want))));
    out.resize(static_cast<size_t>(got + want));
    const size_t r = std::fread(out.data() + got, sizeof(T), static_cast<size_t>(want), f);
    got += r;
    if (r < want) break;
  }
  out.resize(static_cast<size_t>(got));
  return got;
}

}  // namespace

HostArray read_npy(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) throw_error(Status::FileError, "cannot open '" + path + "': " + std::strerror(errno));
  unsigned char pre[10];
  if (std::fread(pre, 1, 8, f.get()) != 8 || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    bad(path, "the file does not start with the .npy magic string");
  const int major = pre[6];
  uint32_t hlen = 0;
  if (major == 1) {
    unsigned char b[2];
    if (std::fread(b, 1, 2, f.get()) != 2) bad(path, "truncated header");
    hlen = b[0] | (b[1] << 8);
  } else if (major == 2 || major == 3) {
    unsigned char b[4];
    if (std::fread(b, 1, 4, f.get()) != 4) bad(path, "truncated header");
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  } else {
    bad(path, "unknown format version " + std::to_string(major) + " (FKB reads versions 1, 2 and 3)");
  }
  if (hlen > (1u << 24)) bad(path, "implausible header length " + std::to_string(hlen));
  std::string h(hlen, '\0');
  if (std::fread(&h[0], 1, hlen, f.get()) != hlen) bad(path, "truncated header");

  HostArray a;
  size_t p = value_pos(h, "descr");
  if (p == std::string::npos || p >= h.size() || (h[p] != '\'' && h[p] != '"')) bad(path, "no 'descr' in the header");
  const size_t e = h.find(h[p], p + 1);
  if (e == std::string::npos) bad(path, "unterminated 'descr'");
  const std::string descr = h.substr(p + 1, e - p - 1);
  size_t item = 0;
  if (descr == "<f4") {
    a.dtype = DType::F32;
    item = 4;
  } else if (descr == "<f8") {
    a.dtype = DType::F64;
    item = 8;
  } else {
    throw_error(Status::Unsupported, "'" + path + "' has dtype '" + descr +
                                         "'; FKB reads little-endian float32 ('<f4') or float64 ('<f8') .npy files "
                                         "(convert with numpy: a.astype('<f4'))");
  }
  p = value_pos(h, "fortran_order");
  if (p == std::string::npos) bad(path, "no 'fortran_order' in the header");
  if (h.compare(p, 4, "True") == 0)
    throw_error(Status::Unsupported, "'" + path + "' is stored in Fortran order (fortran_order: True); FKB reads "
                                                  "C-order arrays of shape [ncol, features] (numpy.ascontiguousarray)");
  if (h.compare(p, 5, "False") != 0) bad(path, "bad 'fortran_order' value");
  p = value_pos(h, "shape");
  if (p == std::string::npos || p >= h.size() || h[p] != '(') bad(path, "no 'shape' tuple in the header");
  const size_t close = h.find(')', p);
  if (close == std::string::npos) bad(path, "unterminated 'shape'");
  const std::string tup = h.substr(p + 1, close - p - 1);
  size_t i = 0;
  while (i < tup.size()) {
    while (i < tup.size() && (tup[i] == ' ' || tup[i] == ',')) ++i;
    if (i >= tup.size()) break;
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(tup.c_str() + i, &end, 10);
    if (end == tup.c_str() + i || v < 0 || errno == ERANGE) bad(path, "bad shape '(" + tup + ")'");
    a.shape.push_back(v);
    i = static_cast<size_t>(end - tup.c_str());
    // Python 2 era files may write long integers as '37L'.
    if (i < tup.size() && (tup[i] == 'L' || tup[i] == 'l')) ++i;
  }
  std::string shape = "(";
  for (size_t k = 0; k < a.shape.size(); ++k) shape += (k ? ", " : "") + std::to_string(a.shape[k]);
  shape += a.shape.size() == 1 ? ",)" : ")";

  // The data must be exactly what the header declares, checked against the file size before anything is
  // allocated (README "Loading policy"): a 100-byte file cannot make FKB allocate what its header claims.
  // The product of the non-zero dimensions must fit too: with a 0 in the shape there is no data, but the batch's
  // row size (the product of the other dimensions) is still computed.
  uint64_t n = 1, nonzero = 1;
  bool overflow = false;
  for (const int64_t d : a.shape) {
    if (d == 0) {
      n = 0;
      continue;
    }
    if (nonzero > (uint64_t{1} << 62) / static_cast<uint64_t>(d)) overflow = true;
    else nonzero *= static_cast<uint64_t>(d);
    n *= static_cast<uint64_t>(d);
  }
  if (overflow || n > (uint64_t{1} << 62) / item)
    bad(path, "the header's shape " + shape + " declares more data than any file can hold");
  const uint64_t need = n * item;
  const long pos = std::ftell(f.get());
  struct stat st;
  const bool sized = pos >= 0 && fstat(fileno(f.get()), &st) == 0 && S_ISREG(st.st_mode);
  if (sized) {
    const uint64_t left = static_cast<uint64_t>(st.st_size) - std::min<uint64_t>(st.st_size, pos);
    if (left < need)
      bad(path, "truncated data: the header's shape " + shape + " of '" + descr + "' needs " +
                    loader::bytes_str(need) + " of data, the file holds " + loader::bytes_str(left) +
                    " after its header");
    if (left > need)
      bad(path, "the header's shape " + shape + " of '" + descr + "' needs " + loader::bytes_str(need) +
                    " of data, the file holds " + loader::bytes_str(left) + " after its header (trailing bytes)");
  }
  const uint64_t got = a.dtype == DType::F32 ? read_values(f.get(), a.f32, n, sized)
                                             : read_values(f.get(), a.f64, n, sized);
  if (got != n)
    bad(path, "truncated data: the header's shape " + shape + " of '" + descr + "' needs " + loader::bytes_str(need) +
                  " of data, the file holds " + loader::bytes_str(got * item) + " after its header");
  return a;
}

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
    n *= shape[i];
  }
  dict += "), }";
  // Pad with spaces so that magic + length + header is a multiple of 64 bytes, ending in '\n'.
  const bool v2 = dict.size() + 11 + 64 > 65535;
  const size_t pre = v2 ? 12 : 10;
  size_t total = pre + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  File f(std::fopen(path.c_str(), "wb"));
  if (!f) throw_error(Status::FileError, "cannot write '" + path + "': " + std::strerror(errno));
  unsigned char head[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(v2 ? 2 : 1), 0};
  const uint32_t len = static_cast<uint32_t>(dict.size());
  head[8] = len & 0xff;
  head[9] = (len >> 8) & 0xff;
  if (v2) {
    head[10] = (len >> 16) & 0xff;
    head[11] = (len >> 24) & 0xff;
  }
  bool ok = std::fwrite(head, 1, pre, f.get()) == pre && std::fwrite(dict.data(), 1, dict.size(), f.get()) == dict.size();
  ok = ok && std::fwrite(data, sizeof(float), static_cast<size_t>(n), f.get()) == static_cast<size_t>(n);
  ok = (std::fclose(f.release()) == 0) && ok;
  if (!ok) throw_error(Status::FileError, "cannot write '" + path + "': " + std::strerror(errno));
}

}  // namespace fkb::io
