// Entry points of the CUDA backend (kernels/), linked into libfkb when FKB is built with CUDA.
#pragma once

#include <memory>

#include "fkb/backend.hpp"

namespace fkb::cuda {
std::unique_ptr<Backend> create_backend();
int device_count() noexcept;
}  // namespace fkb::cuda
