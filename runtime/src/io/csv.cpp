// CSV batches: one line per column of the batch, one value per feature.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "fkb/error.hpp"
#include "io/array_io.hpp"

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
  while (std::getline(f, line)) {
    ++lineno;
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
