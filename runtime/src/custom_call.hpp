// A custom layer as a compiled plan holds it: the registered implementation, the layer's description (owning
// copies of its weights, so the plan does not depend on the Model it was compiled from) and the state
// `prepare` returned. Built once per plan at compile time; shared (read-only) by the plan's threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fkb/custom_layer.hpp"
#include "fkb/model.hpp"

namespace fkb {

class CustomCall {
public:
  /// Look up the node's class in the registry and prepare it. Throws Unsupported naming the layer when the
  /// class is not registered; rethrows `prepare`'s errors with the layer's name.
  static std::shared_ptr<const CustomCall> make(const Model& model, const Node& node);

  CustomCall(const CustomCall&) = delete;
  CustomCall& operator=(const CustomCall&) = delete;

  const CustomLayer& impl() const { return *impl_; }
  const CustomLayerInfo& info() const { return info_; }
  bool has_cuda() const { return static_cast<bool>(impl_->cuda); }

  /// Run the host implementation on `ncol` columns. Never throws: a failure is returned as an exception
  /// pointer (an fkb::Error naming the layer), so it can be called inside OpenMP regions and CUDA host nodes.
  std::exception_ptr run_cpu(const float* const* inputs, int64_t ncol, float* output) const noexcept;
  /// Run the device implementation (has_cuda() must hold). Throws fkb::Error naming the layer.
  void run_cuda(const float* const* inputs, int64_t ncol, float* output, void* stream) const;

private:
  CustomCall() = default;
  std::shared_ptr<const CustomLayer> impl_;
  std::vector<Array> weights_;
  CustomLayerInfo info_;
  std::shared_ptr<void> state_;
  std::shared_ptr<std::recursive_mutex> serial_;  ///< shared by the plans of one implementation (not thread_safe)
};

/// Collects the first error raised by custom layers inside a parallel region, rethrown after it.
class ErrorSink {
public:
  void set(std::exception_ptr e) noexcept {
    if (!e) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (!first_) first_ = e;
    failed_.store(true, std::memory_order_release);
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }
  /// Throw the first error (and forget it), if any.
  void rethrow() {
    std::exception_ptr e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      e = first_;
      first_ = nullptr;
      failed_.store(false, std::memory_order_release);
    }
    if (e) std::rethrow_exception(e);
  }

private:
  std::mutex mu_;
  std::exception_ptr first_;
  std::atomic<bool> failed_{false};
};

}  // namespace fkb
