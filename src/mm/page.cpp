#include "mm/page.hpp"

#include "testing/sched.hpp"

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace faultline::detail {

namespace {
long futex(std::atomic<uint32_t>* word, int op, uint32_t val) {
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op | FUTEX_PRIVATE_FLAG, val,
                   nullptr, nullptr, 0);
}
}  // namespace

void Page::sleep_on(uint32_t seen) { futex(&flags, FUTEX_WAIT, seen); }

void Page::wake_all() { futex(&flags, FUTEX_WAKE, INT_MAX); }

void Page::lock() {
  bool announced = false;
  for (;;) {
    uint32_t f = flags.load(std::memory_order_relaxed);
    if (!(f & PG_locked)) {
      if (flags.compare_exchange_weak(f, f | PG_locked, std::memory_order_acquire,
                                      std::memory_order_relaxed))
        return;
      continue;
    }
    // Announce a sleeper, then sleep until the word changes.
    if (!(f & PG_waiters) &&
        !flags.compare_exchange_weak(f, f | PG_waiters, std::memory_order_relaxed,
                                     std::memory_order_relaxed))
      continue;
    // The race harness's wait point: the lock was seen held, this thread is
    // about to sleep (a race test waits for it to prove where a thread is).
    if (!announced) FL_POINT("wait.page_lock");
    announced = true;
    sleep_on(f | PG_waiters);
  }
}

void bug(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "faultline: BUG at %s:%d: %s\n", file, line, cond);
  std::abort();
}

void Page::unlock() {
  const uint32_t old = flags.fetch_and(~(PG_locked | PG_waiters), std::memory_order_release);
  FL_BUG_ON(!(old & PG_locked));  // unlock_page of a page nobody locked
  if (old & PG_waiters) wake_all();
}

void Page::wait_clear(uint32_t f) {
  bool announced = false;
  for (;;) {
    uint32_t v = flags.load(std::memory_order_acquire);
    if (!(v & f)) return;
    if (!(v & PG_waiters) &&
        !flags.compare_exchange_weak(v, v | PG_waiters, std::memory_order_relaxed,
                                     std::memory_order_relaxed))
      continue;
    if (!announced) FL_POINT(f == PG_writeback ? "wait.writeback" : "wait.page_flag");
    announced = true;
    sleep_on(v | PG_waiters);
  }
}

void Page::clear_and_wake(uint32_t f) {
  const uint32_t old = flags.fetch_and(~(f | PG_waiters), std::memory_order_acq_rel);
  if (old & PG_waiters) wake_all();
}

}  // namespace faultline::detail
