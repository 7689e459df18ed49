// An MPI-3 shared-memory window owned by one rank of a group (the leader allocates the bytes, the others
// allocate none and address the leader's segment through MPI_Win_shared_query).
//
// Synchronization (MPI-3.1 §11.2.3 and §11.5.4, shared-memory windows): the window stays in one
// passive-target epoch (MPI_Win_lock_all with MPI_MODE_NOCHECK) for its whole life. Two hand-overs are used:
// - handover(): stores; MPI_Win_sync; MPI_Barrier(group); MPI_Win_sync; loads — the standard's pattern for
//   load/store communication through a shared window (used when the window is (re)allocated);
// - publish() / wait_until(): the writer stores its data, calls MPI_Win_sync, then stores a 64-bit flag
//   (an atomic release store); the reader polls the flag, calling MPI_Win_sync on every poll, and calls
//   MPI_Win_sync once more after it sees the value before loading the data. MPI_Win_sync is what makes the
//   private and public copies agree (separate model) and is a full memory barrier (unified model); the
//   atomic accesses keep the compiler and CPU from tearing or caching the flag. Flags are counters that only
//   grow, so no flag is ever reset.
// Waiting ranks do not spin for long: they spin ~20 us, then ("auto") yield up to 1 ms and sleep after that,
// or ("sleep", what "auto" becomes when the leader runs on the CPU) sleep right after the spin. Sleeping on
// the leader's verdict is a futex wait on a word in the shared window (Linux; the leader wakes everyone after
// publishing), elsewhere naps of 5 % of the time waited so far, 50 us to 1 ms — so on the CPU the leader's threads get
// the cores of the ranks waiting for it (an MPI_Barrier in Open MPI busy-polls and would take them).
#pragma once

#include <mpi.h>
#include <sched.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <thread>

namespace fkb {
namespace mpi {

class SharedWindow {
public:
  SharedWindow() = default;
  ~SharedWindow();  // releases the window if MPI is still running (collective then), else only forgets it
  SharedWindow(const SharedWindow&) = delete;
  SharedWindow& operator=(const SharedWindow&) = delete;

  /// Free the current window (if any) and allocate a new one of `bytes`, owned by rank 0 of `group`.
  /// Collective over `group`; every rank passes the same `bytes`.
  void allocate(MPI_Comm group, size_t bytes);
  /// Collective over the group the window was allocated on.
  void release();

  char* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  bool allocated() const { return win_ != MPI_WIN_NULL; }
  /// "unified" or "separate" (MPI_WIN_MODEL), "" when no window is allocated.
  std::string memory_model() const;

  /// The hand-over described above: this rank's stores become visible to the group's loads after it.
  /// Collective over `group` (the one the window was allocated on).
  void handover(MPI_Comm group);

  /// Make this rank's earlier stores visible, then set *flag = value (release).
  void publish(int64_t* flag, int64_t value) {
    MPI_Win_sync(win_);
    __atomic_store_n(flag, value, __ATOMIC_RELEASE);
    MPI_Win_sync(win_);
  }
  static int64_t read_flag(const int64_t* flag) { return __atomic_load_n(flag, __ATOMIC_ACQUIRE); }

  /// Wake every rank blocked in wait_until on `word` (bump it, then FUTEX_WAKE on Linux).
  static void wake_all(int32_t* word) {
    __atomic_add_fetch(word, 1, __ATOMIC_RELEASE);
#ifdef __linux__
    syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
#endif
  }

  enum class Wait { Auto, Spin, Yield, Sleep };
  /// Poll until done() is true (done() reads flags with read_flag); afterwards the stores published before
  /// those flags are visible. Returns the seconds waited. With `wake` (a word the publisher passes to
  /// wake_all after publishing), the sleeping phase blocks in the kernel (futex on the shared page) until
  /// woken, with a 2 ms timeout as a safety net; without it, it naps.
  template <class Pred> double wait_until(Pred done, Wait policy, int32_t* wake = nullptr) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    for (;;) {
      // Read the wake word before the flag: a wake_all after this read changes it, so the futex wait below
      // returns at once instead of missing that wake-up.
      const int32_t seen = wake ? __atomic_load_n(wake, __ATOMIC_ACQUIRE) : 0;
      MPI_Win_sync(win_);
      if (done()) break;
      const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
      if (policy == Wait::Spin || waited < 20e-6) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else if (policy == Wait::Yield || (policy == Wait::Auto && waited < 1e-3)) {
        sched_yield();
      } else {
#ifdef __linux__
        if (wake) {
          struct timespec ts = {0, 2000000};
          syscall(SYS_futex, wake, FUTEX_WAIT, seen, &ts, nullptr, 0);
          continue;
        }
#endif
        // Back off: sleep ~5 % of the time waited so far (50 us .. 1 ms), so a long CPU batch is not
        // interrupted by thousands of wake-ups, and a wait overshoots by at most ~5 % (or 50 us).
        const double nap = std::min(1e-3, std::max(50e-6, 0.05 * waited));
        std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(nap * 1e6)));
      }
    }
    MPI_Win_sync(win_);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  }

private:
  MPI_Win win_ = MPI_WIN_NULL;
  char* base_ = nullptr;
  size_t bytes_ = 0;
  int model_ = -1;
};

}  // namespace mpi
}  // namespace fkb
