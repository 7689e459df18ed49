// How many threads one CPU call may use, so that FKB's own threading composes with the caller's.
//
// A GCM often runs its physics inside its own OpenMP `parallel do` over chunks of columns, or from threads
// of its own. If every such call then opened a team of `threads` OpenMP threads, a 32-core node would run
// 32 x 32 threads. Instead a call made inside an active parallel region, or while another FKB CPU call is
// in flight in the process, uses `nested_threads` threads (default 1). Which case applies only changes how
// many threads share the blocks of a call, never how the columns are split into blocks, so the result is
// the same bit for bit either way.
#pragma once

namespace fkb::cpu {

/// Counts the CPU calls in flight in the process for as long as it lives.
class CallScope {
 public:
  CallScope() noexcept;
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;
  /// Threads this call may use: `configured` (the plan's threads) when it runs alone at the top level,
  /// else min(configured, nested) (at least 1).
  int threads(int configured, int nested) const noexcept;

 private:
  bool concurrent_ = false;
};

}  // namespace fkb::cpu
