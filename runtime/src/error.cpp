#include "fkb/error.hpp"

namespace fkb {

const char* status_name(Status s) noexcept {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::InvalidArgument: return "invalid argument";
    case Status::FileError: return "file error";
    case Status::FormatError: return "format error";
    case Status::Unsupported: return "unsupported";
    case Status::ShapeMismatch: return "shape mismatch";
    case Status::NonFinite: return "non-finite input";
    case Status::CudaError: return "CUDA error";
    case Status::MpiError: return "MPI error";
    case Status::OutOfMemory: return "out of memory";
    case Status::Internal: return "internal error";
  }
  return "unknown status";
}

void throw_error(Status status, const std::string& message) { throw Error(status, message); }

}  // namespace fkb
