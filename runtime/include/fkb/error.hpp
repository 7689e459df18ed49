// FKB error type. Exceptions are used inside the library; the C API turns them into status codes.
#pragma once

#include <stdexcept>
#include <string>

namespace fkb {

/// Status codes. The same numbers are returned by the C API (fkb.h) and the Fortran module.
enum class Status : int {
  Ok = 0,
  InvalidArgument = 1,  ///< a bad argument from the caller (null pointer, wrong width, bad option value)
  FileError = 2,        ///< a file is missing, unreadable or cannot be written
  FormatError = 3,      ///< a file is not a Keras model, or is truncated/corrupted, or its config is invalid
  Unsupported = 4,      ///< a layer, activation or option FKB does not implement
  ShapeMismatch = 5,    ///< weights or inputs whose shape disagrees with the model
  NonFinite = 6,        ///< a non-finite input under the `error` policy
  CudaError = 7,        ///< a CUDA/cuBLAS failure, or the CUDA backend was requested but is not available
  MpiError = 8,         ///< an MPI failure
  OutOfMemory = 9,      ///< an allocation failed
  Internal = 10,        ///< a bug in FKB
};

/// Short name of a status ("ok", "invalid argument", ...).
const char* status_name(Status s) noexcept;

/// The one exception type FKB throws. `what()` is a complete, user-readable message.
class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

[[noreturn]] void throw_error(Status status, const std::string& message);

}  // namespace fkb

/// Internal consistency check: throws fkb::Error(Internal) with file and line.
#define FKB_ASSERT(cond)                                                                                               \
  do {                                                                                                                 \
    if (!(cond))                                                                                                       \
      ::fkb::throw_error(::fkb::Status::Internal,                                                                      \
                         std::string("internal error: ") + #cond + " failed at " + __FILE__ + ":" +                    \
                             std::to_string(__LINE__));                                                                \
  } while (0)
