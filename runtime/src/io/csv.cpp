// CSV batches: one line per column of the batch, one value per feature.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#include "fkb/error.hpp"
#include "io/array_io.hpp"
#include "loader/limits.hpp"

namespace fkb::io {

namespace {

// Parse the numbers of one line; false when a token is not a number.
bool parse_line(const std::string& line, std::vector<double>& out) {
  out.clear();
  const char* s = line.c_str();
  const char* end = s + line.size();
  while (s < end) {
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) ++s;
    if (s >= end) break;
    char* e = nullptr;
    const double v = std::strtod(s, &e);
    if (e == s) return false;
    out.push_back(v);
    s = e;
    const char* after_number = s;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) ++s;
    if (s < end) {
      if (*s == ',' || *s == ';')
        ++s;
      else if (s == after_number)  // whitespace alone also separates values
        return false;
    }
  }
  return true;
}

// A CSV line is one column of the batch: its features. Longer than this, it is no input of a Keras model.
constexpr size_t kMaxLineBytes = size_t{64} << 20;

// One line into `line`, without its '\n', read at most kMaxLineBytes + 1 bytes (a longer line is refused by the
// caller before the rest of it is read); false at the end of the file.
bool read_line(std::streambuf* sb, std::string& line) {
  line.clear();
  int c = sb->sbumpc();
  if (c == std::char_traits<char>::eof()) return false;
  for (; c != std::char_traits<char>::eof() && c != '\n'; c = sb->sbumpc()) {
    line.push_back(static_cast<char>(c));
    if (line.size() > kMaxLineBytes) break;
  }
  return true;
}

}  // namespace

HostArray read_csv(const std::string& path, bool allow_empty) {
  std::ifstream f(path);
  if (!f) throw_error(Status::FileError, "cannot open '" + path + "': " + std::strerror(errno));
  HostArray a;
  a.dtype = DType::F64;
  std::string line;
  std::vector<double> vals;
  int64_t cols = -1, rows = 0, lineno = 0;
  bool first = true;
  try {
    while (read_line(f.rdbuf(), line)) {
      ++lineno;
      if (line.size() > kMaxLineBytes)
        throw_error(Status::FormatError, "'" + path + "' line " + std::to_string(lineno) + " is longer than " +
                                             loader::bytes_str(kMaxLineBytes) +
                                             ", over the limit for one line of a CSV batch (one column's features)");
      size_t k = line.find_first_not_of(" \t\r");
      if (k == std::string::npos || line[k] == '#') continue;
      if (!parse_line(line, vals)) {
        if (first) {  // a header line
          first = false;
          continue;
        }
        throw_error(Status::FormatError, "'" + path + "' line " + std::to_string(lineno) + ": not a list of numbers");
      }
      first = false;
      if (cols < 0) cols = static_cast<int64_t>(vals.size());
      if (static_cast<int64_t>(vals.size()) != cols)
        throw_error(Status::FormatError, "'" + path + "' line " + std::to_string(lineno) + " has " +
                                             std::to_string(vals.size()) + " values, earlier lines have " +
                                             std::to_string(cols));
      a.f64.insert(a.f64.end(), vals.begin(), vals.end());
      ++rows;
    }
  } catch (const std::bad_alloc&) {
    throw_error(Status::FormatError, "'" + path + "' line " + std::to_string(lineno) + ": the values read so far (" +
                                         loader::bytes_str(a.f64.size() * sizeof(double)) +
                                         " as float64) do not fit in this process's memory; FKB reads a CSV batch "
                                         "whole (use .npy for large batches)");
  }
  if (rows == 0 && !allow_empty) throw_error(Status::FormatError, "'" + path + "' holds no rows of numbers");
  // No rows of numbers (an empty file, or a header alone): a batch of 0 columns whose width is unknown.
  a.shape = rows == 0 ? std::vector<int64_t>{0} : std::vector<int64_t>{rows, cols};
  return a;
}

void write_csv(const std::string& path, const float* data, int64_t rows, int64_t cols) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw_error(Status::FileError, "cannot write '" + path + "': " + std::strerror(errno));
  bool ok = true;
  for (int64_t r = 0; r < rows && ok; ++r)
    for (int64_t c = 0; c < cols && ok; ++c)
      // %.9g round-trips every float32.
      ok = std::fprintf(f, c + 1 < cols ? "%.9g," : "%.9g\n", static_cast<double>(data[r * cols + c])) > 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) throw_error(Status::FileError, "cannot write '" + path + "': " + std::strerror(errno));
}

}  // namespace fkb::io
