// Helpers for the batch-file tests: raw .npy files written byte by byte (independently of io/npy.cpp).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <dirent.h>

namespace fkb::iotest {

/// Write a .npy file with the given header dict text and raw data bytes; the header is padded as NumPy does
/// (to a multiple of 64 bytes including the preamble, ending in '\n').
inline void write_raw_npy(const std::string& path, const std::string& dict, const void* data, size_t bytes,
                          int major = 1) {
  std::string h = dict;
  const size_t pre = major == 1 ? 10 : 12;
  h.append((64 - (pre + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::FILE* f = std::fopen(path.c_str(), "wb");
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(major), 0};
  std::fwrite(magic, 1, 8, f);
  const uint32_t n = static_cast<uint32_t>(h.size());
  if (major == 1) {
    const unsigned char len[2] = {static_cast<unsigned char>(n & 0xff), static_cast<unsigned char>(n >> 8)};
    std::fwrite(len, 1, 2, f);
  } else {
    const unsigned char len[4] = {static_cast<unsigned char>(n & 0xff), static_cast<unsigned char>((n >> 8) & 0xff),
                                  static_cast<unsigned char>((n >> 16) & 0xff), static_cast<unsigned char>(n >> 24)};
    std::fwrite(len, 1, 4, f);
  }
  std::fwrite(h.data(), 1, h.size(), f);
  if (bytes) std::fwrite(data, 1, bytes, f);
  std::fclose(f);
}

inline std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += std::to_string(s[i]) + (s.size() == 1 || i + 1 < s.size() ? ", " : "");
  if (!s.empty()) t.erase(t.size() - (s.size() == 1 ? 1 : 0));
  return t + ")";
}

inline void write_f32_npy(const std::string& path, const std::vector<float>& v, const std::vector<int64_t>& shape) {
  write_raw_npy(path, "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }", v.data(),
                v.size() * sizeof(float));
}

inline void write_f64_npy(const std::string& path, const std::vector<double>& v, const std::vector<int64_t>& shape) {
  write_raw_npy(path, "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }", v.data(),
                v.size() * sizeof(double));
}

inline bool file_exists(const std::string& p) {
  std::FILE* f = std::fopen(p.c_str(), "rb");
  if (f) std::fclose(f);
  return f != nullptr;
}

/// Names of the entries of a directory (no "." and "..").
inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

}  // namespace fkb::iotest
