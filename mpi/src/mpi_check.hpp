// FKB_CHECK_MPI: MPI calls in the MPI layer run with MPI_ERRORS_RETURN on our own communicators and windows;
// a failure becomes fkb::Error(MpiError) naming the call, MPI's message, file and line.
#pragma once

#include <mpi.h>

#include <string>

#include "fkb/error.hpp"

namespace fkb {
namespace mpi {
namespace detail {

[[noreturn]] inline void throw_mpi_error(int rc, const char* call, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  throw_error(Status::MpiError, std::string("MPI error in ") + call + ": " +
                                    std::string(msg, static_cast<size_t>(len)) + " (" + file + ":" +
                                    std::to_string(line) + ")");
}

}  // namespace detail
}  // namespace mpi
}  // namespace fkb

#define FKB_CHECK_MPI(call)                                                                                            \
  do {                                                                                                                 \
    const int fkb_mpi_rc_ = (call);                                                                                    \
    if (fkb_mpi_rc_ != MPI_SUCCESS) ::fkb::mpi::detail::throw_mpi_error(fkb_mpi_rc_, #call, __FILE__, __LINE__);       \
  } while (0)
