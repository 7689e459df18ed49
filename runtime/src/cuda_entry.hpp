// Entry points of the CUDA backend (kernels/), defined in the CUDA plugin libfkb_cuda.so and reached from
// libfkb only through the plugin's table (backend_plugin.hpp, kernels/plugin_entry.cpp).
#pragma once

#include <memory>

#include "fkb/backend.hpp"

namespace fkb::cuda {
std::unique_ptr<Backend> create_backend();
int device_count() noexcept;
}  // namespace fkb::cuda
