// Internal: the File's reader/writer locks (the kernel's i_rwsem and
// invalidate_lock) with the race harness's wait points; also the engine's
// view registry lock (EngineCore::maps_mu_, no wait points).
//
// A std::shared_mutex whose lock() / lock_shared() first try the lock and,
// when that fails (the lock was seen held: the thread is about to sleep),
// pass a schedule point named after the wait (e.g. wait.invalidate_lock.
// exclusive). A race test waits for that point to prove where its second
// thread is (testing::wait_reached). Without FAULTLINE_TESTING these are a
// plain std::shared_mutex's calls.
//
// A capability of the thread-safety analysis (src/mm/thread_annotations.hpp),
// shared and exclusive; ExclusiveLock / SharedLock are its RAII guards.
#pragma once
#include <mutex>
#include <shared_mutex>

#include "mm/mutex.hpp"
#include "mm/thread_annotations.hpp"
#include "testing/sched.hpp"

namespace faultline::detail {

class CAPABILITY("rwlock") SleepingRwLock {
 public:
  SleepingRwLock(const char* exclusive_wait, const char* shared_wait)
      : exclusive_wait_(exclusive_wait), shared_wait_(shared_wait) {}
  /// A reader/writer lock with no wait points (no race test waits on it:
  /// EngineCore::maps_mu_).
  SleepingRwLock() : SleepingRwLock(nullptr, nullptr) {}
  SleepingRwLock(const SleepingRwLock&) = delete;
  SleepingRwLock& operator=(const SleepingRwLock&) = delete;

  void lock() ACQUIRE() {
#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
    if (m_.try_lock()) {
      owner_.acquired();
      return;
    }
    if (exclusive_wait_) FL_POINT(exclusive_wait_);
#endif
    m_.lock();
    owner_.acquired();
  }
  void lock_shared() ACQUIRE_SHARED() {
#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
    if (m_.try_lock_shared()) return;
    if (shared_wait_) FL_POINT(shared_wait_);
#endif
    m_.lock_shared();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    if (!m_.try_lock()) return false;
    owner_.acquired();
    return true;
  }
  bool try_lock_shared() TRY_ACQUIRE_SHARED(true) { return m_.try_lock_shared(); }
  void unlock() RELEASE() {
    owner_.releasing();
    m_.unlock();
  }
  void unlock_shared() RELEASE_SHARED() { m_.unlock_shared(); }
  /// Held exclusively by this thread (checked in debug and test builds).
  void AssertHeld() const ASSERT_CAPABILITY(this) { FL_BUG_ON(!owner_.mine()); }
  /// Held, at least shared (for the analysis only: a shared hold has no owner).
  void AssertReaderHeld() const ASSERT_SHARED_CAPABILITY(this) {}

 private:
  std::shared_mutex m_;
  LockOwner owner_;
  [[maybe_unused]] const char* exclusive_wait_;
  [[maybe_unused]] const char* shared_wait_;
};

/// Holds a SleepingRwLock exclusively for its scope (std::defer_lock: not
/// yet; lock() / unlock() in between).
class SCOPED_CAPABILITY ExclusiveLock {
 public:
  explicit ExclusiveLock(SleepingRwLock& l) ACQUIRE(l) : l_(l), held_(true) { l_.lock(); }
  /// A lock a protocol rule takes: `rule_on` is the rule's guard (FL_RULE /
  /// FL_GUARD, e.g. truncate.cpp fills_locked_out()), false only while a race
  /// test breaks that rule (test builds), and then the lock is not taken. The
  /// analysis checks the production build, where the guard is always true:
  /// it counts the lock as held from here.
  ExclusiveLock(SleepingRwLock& l, bool rule_on) ACQUIRE(l) : l_(l), held_(rule_on) {
    if (held_) l_.lock();
  }
  ExclusiveLock(SleepingRwLock& l, std::defer_lock_t) EXCLUDES(l) : l_(l), held_(false) {}
  ~ExclusiveLock() RELEASE() {
    if (held_) l_.unlock();
  }
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;
  void lock() ACQUIRE() {
    FL_BUG_ON(held_);
    l_.lock();
    held_ = true;
  }
  /// Releases it if held (not taken under a rule's breaker: nothing to release).
  void unlock() RELEASE() {
    if (held_) l_.unlock();
    held_ = false;
  }

 private:
  SleepingRwLock& l_;
  bool held_;
};

/// Holds a SleepingRwLock shared for its scope (as ExclusiveLock).
class SCOPED_CAPABILITY SharedLock {
 public:
  explicit SharedLock(SleepingRwLock& l) ACQUIRE_SHARED(l) : l_(l), held_(true) {
    l_.lock_shared();
  }
  SharedLock(SleepingRwLock& l, std::defer_lock_t) EXCLUDES(l) : l_(l), held_(false) {}
  ~SharedLock() RELEASE() {
    if (held_) l_.unlock_shared();
  }
  SharedLock(const SharedLock&) = delete;
  SharedLock& operator=(const SharedLock&) = delete;
  void lock() ACQUIRE_SHARED() {
    l_.lock_shared();
    held_ = true;
  }
  void unlock() RELEASE() {
    l_.unlock_shared();
    held_ = false;
  }

 private:
  SleepingRwLock& l_;
  bool held_;
};

}  // namespace faultline::detail
