#include "cpu/call_threads.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>

namespace fkb::cpu {

namespace {
std::atomic<int> g_calls_in_flight{0};
}  // namespace

CallScope::CallScope() noexcept {
  concurrent_ = g_calls_in_flight.fetch_add(1, std::memory_order_relaxed) > 0;
}

CallScope::~CallScope() { g_calls_in_flight.fetch_sub(1, std::memory_order_relaxed); }

int CallScope::threads(int configured, int nested) const noexcept {
  const int n = std::max(configured, 1);
  if (!concurrent_ && !omp_in_parallel()) return n;
  return std::clamp(nested, 1, n);
}

}  // namespace fkb::cpu
