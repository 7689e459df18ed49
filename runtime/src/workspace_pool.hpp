// A small pool of per-call workspaces, so that one compiled plan can serve concurrent callers (the threads of
// a GCM's `!$omp parallel do` sharing one network): the plan itself stays read-only, each call in flight holds
// a workspace of its own, and a workspace returns to the pool when the call ends.
//
// Steady state allocates nothing: a workspace is created only when more calls are in flight at once than ever
// before, and the free list reserves room for every workspace ever created, so returning one never allocates.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace fkb {

template <class W>
class WorkspacePool {
 public:
  /// A workspace held for the duration of one call; returned to the pool when destroyed.
  class Lease {
   public:
    Lease(WorkspacePool* pool, std::unique_ptr<W> w) : pool_(pool), w_(std::move(w)) {}
    Lease(Lease&& o) noexcept : pool_(o.pool_), w_(std::move(o.w_)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (w_) pool_->release(std::move(w_));
    }
    W& operator*() const { return *w_; }
    W* operator->() const { return w_.get(); }

   private:
    WorkspacePool* pool_;
    std::unique_ptr<W> w_;
  };

  /// Put a workspace made in advance (at compile time) into the pool.
  void add(std::unique_ptr<W> w) {
    std::lock_guard<std::mutex> lock(mu_);
    ++created_;
    free_.reserve(created_);
    free_.push_back(std::move(w));
  }

  /// A free workspace for which `fits(w)` holds, else a new one from `make()` (called outside the lock; may
  /// throw, e.g. OutOfMemory, and then nothing is held).
  template <class Fits, class Make>
  Lease acquire(Fits&& fits, Make&& make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = free_.size(); i-- > 0;) {
        if (!fits(*free_[i])) continue;
        std::unique_ptr<W> w = std::move(free_[i]);
        free_[i] = std::move(free_.back());
        free_.pop_back();
        return Lease(this, std::move(w));
      }
    }
    std::unique_ptr<W> w = make();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++created_;
      free_.reserve(created_);  // so that release() never allocates
    }
    return Lease(this, std::move(w));
  }

  /// Number of workspaces created so far (the most calls ever in flight at once, at least).
  size_t created() const {
    std::lock_guard<std::mutex> lock(mu_);
    return created_;
  }

 private:
  void release(std::unique_ptr<W> w) noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(w));  // capacity >= created_: no allocation
  }

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<W>> free_;
  size_t created_ = 0;
};

}  // namespace fkb
