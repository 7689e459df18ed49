#include "loader/limits.hpp"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "fkb/error.hpp"

namespace fkb::loader {

namespace {

// "17179869184", "16G", "512M", "64k": a byte count with an optional power-of-1024 suffix.
uint64_t env_bytes(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  errno = 0;
  const bool digits = *v >= '0' && *v <= '9';  // strtoull would take "-5" and " 5"
  const unsigned long long n = digits ? std::strtoull(v, &end, 10) : 0;
  const std::string suffix = digits ? end : "";
  uint64_t scale = 0;
  if (suffix.empty()) scale = 1;
  for (const auto& [letter, shift] : {std::pair<char, int>{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}}) {
    for (const std::string tail : {"", "B", "iB"})
      if (!suffix.empty() && std::toupper(static_cast<unsigned char>(suffix[0])) == letter && suffix.substr(1) == tail)
        scale = uint64_t{1} << shift;
  }
  if (!digits || errno == ERANGE || scale == 0 || n == 0 || n > UINT64_MAX / scale)
    throw_error(Status::InvalidArgument, std::string("environment variable ") + name + "='" + v +
                                             "' is not a byte count (a positive integer, optionally followed by "
                                             "K, M, G or T for powers of 1024, e.g. 16G)");
  return n * scale;
}

}  // namespace

Limits resolve(const LoadLimits& o) {
  Limits l;
  l.max_weight_bytes = o.max_weight_bytes ? o.max_weight_bytes : env_bytes("FKB_MAX_WEIGHT_BYTES", kDefaultMaxWeightBytes);
  l.max_config_bytes = o.max_config_bytes ? o.max_config_bytes : env_bytes("FKB_MAX_CONFIG_BYTES", kDefaultMaxConfigBytes);
  l.max_config_depth = o.max_config_depth > 0 ? o.max_config_depth : kDefaultMaxConfigDepth;
  l.max_config_values = o.max_config_values ? o.max_config_values : kDefaultMaxConfigValues;
  return l;
}

std::string bytes_str(uint64_t b) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (b < 1024) return std::to_string(b) + " bytes";
  double v = static_cast<double>(b) / 1024.0;
  int u = 0;
  while (v >= 1024.0 && u < 5) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v == static_cast<double>(static_cast<uint64_t>(v)) ? "%.0f %s" : "%.1f %s", v,
                units[u]);
  return buf;
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw_error(Status::FileError, "cannot open '" + path + "': " + std::strerror(errno));
  return static_cast<uint64_t>(st.st_size);
}

std::string read_text_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw_error(Status::FileError, "cannot open " + what + " '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) > max_bytes)
    throw_error(Status::FormatError, "the " + what + " '" + path + "' is " + bytes_str(st.st_size) +
                                         ", over the limit of " + bytes_str(max_bytes) +
                                         " for one configuration file (FKB_MAX_CONFIG_BYTES)");
  // Not a regular file (a pipe): read at most the limit plus one byte.
  std::string out;
  std::vector<char> buf(size_t{1} << 16);  // on the heap: a caller's thread may have a small stack
  while (f.read(buf.data(), static_cast<std::streamsize>(buf.size())) || f.gcount() > 0) {
    out.append(buf.data(), static_cast<size_t>(f.gcount()));
    if (out.size() > max_bytes)
      throw_error(Status::FormatError, "the " + what + " '" + path + "' is over the limit of " +
                                           bytes_str(max_bytes) + " for one configuration file (FKB_MAX_CONFIG_BYTES)");
  }
  return out;
}

void WeightBudget::take(uint64_t bytes, const std::string& what) {
  if (bytes > limit_ - used_ || used_ > limit_)
    throw_error(Status::FormatError, "'" + file_ + "': " + what + " needs " + bytes_str(bytes) +
                                         ", which brings the model's weights to " + bytes_str(used_ + bytes) +
                                         ", over the limit of " + bytes_str(limit_) +
                                         " (raise it with LoadLimits::max_weight_bytes or FKB_MAX_WEIGHT_BYTES)");
  used_ += bytes;
}

}  // namespace fkb::loader
