// Internal: annotated locks for the File and engine state (LevelDB's
// port::Mutex / MutexLock / CondVar): a std::mutex the thread-safety analysis
// knows as a capability (src/mm/thread_annotations.hpp), its RAII guard, and
// a condition variable waiting on it.
//
// AssertHeld() tells the analysis the lock is held (where it cannot see the
// acquisition) and, in debug and test builds (where FL_BUG_ON is on), checks
// that the calling thread holds it.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "mm/bug.hpp"
#include "mm/thread_annotations.hpp"
#include "testing/sched.hpp"

namespace faultline::detail {

/// Which thread holds a lock exclusively, for AssertHeld (debug and test
/// builds only, like FL_BUG_ON; empty otherwise). Written by the holder only.
class LockOwner {
 public:
#if defined(FAULTLINE_TESTING) || !defined(NDEBUG)
  void acquired() { owner_.store(std::this_thread::get_id(), std::memory_order_relaxed); }
  void releasing() { owner_.store(std::thread::id(), std::memory_order_relaxed); }
  bool mine() const { return owner_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }

 private:
  std::atomic<std::thread::id> owner_{};
#else
  void acquired() {}
  void releasing() {}
  bool mine() const { return true; }
#endif
};

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() {
    mu_.lock();
    owner_.acquired();
  }
  /// lock() for a lock whose wait a race test observes: when the lock is
  /// held (this thread is about to sleep), passes the schedule point
  /// `wait_point` first (testing::wait_reached).
  void lock(const char* wait_point) ACQUIRE() {
    if (try_lock()) return;
    FL_POINT(wait_point);
    (void)wait_point;
    lock();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    if (!mu_.try_lock()) return false;
    owner_.acquired();
    return true;
  }
  void unlock() RELEASE() {
    owner_.releasing();
    mu_.unlock();
  }
  void AssertHeld() const ASSERT_CAPABILITY(this) { FL_BUG_ON(!owner_.mine()); }

 private:
  friend class CondVar;
  std::mutex mu_;
  LockOwner owner_;
};

/// Holds a Mutex for its scope; unlock() / lock() in between (the guard
/// releases it at the end only if held then).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  /// Passes the schedule point `wait_point` before sleeping (Mutex::lock).
  MutexLock(Mutex& mu, const char* wait_point) ACQUIRE(mu) : mu_(mu) { mu_.lock(wait_point); }
  /// Takes over a lock the caller holds (after a successful try_lock).
  MutexLock(Mutex& mu, std::adopt_lock_t) REQUIRES(mu) : mu_(mu) {}
  ~MutexLock() RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() RELEASE() {
    mu_.unlock();
    held_ = false;
  }
  void lock() ACQUIRE() {
    mu_.lock();
    held_ = true;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

/// A condition variable whose waits name the Mutex they release (held by the
/// caller, as the analysis checks).
class CondVar {
 public:
  void wait(Mutex& mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> l(mu.mu_, std::adopt_lock);
    mu.owner_.releasing();
    cv_.wait(l);
    mu.owner_.acquired();
    l.release();
  }
  template <class Rep, class Period>
  std::cv_status wait_for(Mutex& mu, const std::chrono::duration<Rep, Period>& d) REQUIRES(mu) {
    std::unique_lock<std::mutex> l(mu.mu_, std::adopt_lock);
    mu.owner_.releasing();
    const std::cv_status s = cv_.wait_for(l, d);
    mu.owner_.acquired();
    l.release();
    return s;
  }
  // The predicate waits: `pred` runs with mu held, and says so itself (a
  // lambda annotated REQUIRES(that lock)); the analysis cannot tie the
  // parameter mu to the lambda's capability, hence off for these two loops.
  template <class Pred>
  void wait(Mutex& mu, Pred pred) REQUIRES(mu) NO_THREAD_SAFETY_ANALYSIS {
    while (!pred()) wait(mu);
  }
  /// Until pred() or `d` passed; returns pred() (std::condition_variable's).
  template <class Rep, class Period, class Pred>
  bool wait_for(Mutex& mu, const std::chrono::duration<Rep, Period>& d, Pred pred) REQUIRES(mu)
      NO_THREAD_SAFETY_ANALYSIS {
    const auto deadline = std::chrono::steady_clock::now() + d;
    while (!pred()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return pred();
      wait_for(mu, deadline - now);
    }
    return true;
  }
  void notify_one() { cv_.notify_one(); }
  void notify_all() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace faultline::detail
