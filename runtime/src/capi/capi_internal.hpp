// Shared by the C API's translation units (capi.cpp, capi_ensemble.cpp, capi_custom.cpp): the thread-local
// last error and the guard that turns exceptions into status codes.
//
// Every entry point catches everything: our fkb::Error keeps its status, std::bad_alloc becomes
// FKB_ERR_OUT_OF_MEMORY, any other exception FKB_ERR_INTERNAL. Nothing here aborts or exits.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "fkb/error.hpp"
#include "fkb/fkb.h"

namespace fkb::capi {

/// The calling thread's last error message ("" after a successful call).
inline std::string& last_error() {
  thread_local std::string message;
  return message;
}

[[noreturn]] inline void invalid(const std::string& msg) { throw_error(Status::InvalidArgument, msg); }

/// Run `body`, translate any exception into a status and the thread's last error.
template <class F> int guarded(const char* fn, F&& body) noexcept {
  try {
    last_error().clear();
    body();
    return FKB_OK;
  } catch (const Error& e) {
    try {
      last_error() = e.what();
    } catch (...) {
    }
    return static_cast<int>(e.status());
  } catch (const std::bad_alloc&) {
    try {
      last_error() = std::string(fn) + ": out of memory";
    } catch (...) {
    }
    return FKB_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    try {
      last_error() = std::string(fn) + ": internal error: " + e.what();
    } catch (...) {
    }
    return FKB_ERR_INTERNAL;
  } catch (...) {
    try {
      last_error() = std::string(fn) + ": internal error: unknown exception";
    } catch (...) {
    }
    return FKB_ERR_INTERNAL;
  }
}

/// NULL or "" -> the default.
inline const char* or_default(const char* s, const char* def) { return (s && *s) ? s : def; }

}  // namespace fkb::capi
