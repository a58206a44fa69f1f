// Internal: the File's reader/writer locks (the kernel's i_rwsem and
// invalidate_lock) with the race harness's wait points.
//
// A std::shared_mutex whose lock() / lock_shared() first try the lock and,
// when that fails (the lock was seen held: the thread is about to sleep),
// pass a schedule point named after the wait (e.g. wait.invalidate_lock.
// exclusive). A race test waits for that point to prove where its second
// thread is (testing::wait_reached). Without FAULTLINE_TESTING these are a
// plain std::shared_mutex's calls.
#pragma once
#include <shared_mutex>

#include "testing/sched.hpp"

namespace faultline::detail {

class SleepingRwLock {
 public:
  SleepingRwLock(const char* exclusive_wait, const char* shared_wait)
      : exclusive_wait_(exclusive_wait), shared_wait_(shared_wait) {}
  SleepingRwLock(const SleepingRwLock&) = delete;
  SleepingRwLock& operator=(const SleepingRwLock&) = delete;

  void lock() {
#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
    if (m_.try_lock()) return;
    FL_POINT(exclusive_wait_);
#endif
    m_.lock();
  }
  void lock_shared() {
#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
    if (m_.try_lock_shared()) return;
    FL_POINT(shared_wait_);
#endif
    m_.lock_shared();
  }
  bool try_lock() { return m_.try_lock(); }
  bool try_lock_shared() { return m_.try_lock_shared(); }
  void unlock() { m_.unlock(); }
  void unlock_shared() { m_.unlock_shared(); }

 private:
  std::shared_mutex m_;
  [[maybe_unused]] const char* exclusive_wait_;
  [[maybe_unused]] const char* shared_wait_;
};

}  // namespace faultline::detail
