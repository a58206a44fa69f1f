// Internal: struct page — per-page metadata and the page lock.
//
// The flags word holds the lock bit, a waiters bit and the page state; the page
// lock is a sleeping lock on a futex of that word (waiters sleep in the kernel,
// unlock wakes them; no busy spin), like the kernel's page_waitqueue.
// Pages live in fixed slots of the PageIndex for the File's lifetime; a page
// "dropped" from the cache (truncate, punch, invalidate) has its state cleared
// and its generation bumped, so a path that looked a page up before taking its
// lock can tell it is no longer the same page (DESIGN R2).
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <utility>

#include "mm/bug.hpp"

namespace faultline::detail {

enum PageFlag : uint32_t {
  PG_locked = 1u << 0,
  PG_waiters = 1u << 1,
  PG_uptodate = 1u << 2,
  PG_dirty = 1u << 3,
  PG_writeback = 1u << 4,
  PG_error = 1u << 5,
  // Reclaim's policy state (S3-FIFO with access sampling, src/reclaim.cpp, R9):
  PG_referenced = 1u << 6,  // accessed (a fault hit, an API read) since reclaim last looked
  PG_main = 1u << 7,        // in the main queue (else the small one, or the stream one: PG_stream)
  PG_sampled = 1u << 8,     // mapped in no shared view since it was cached or sampled
  PG_ghost = 1u << 9,       // evicted from the small queue at evicted_at (not cached)
  // The readahead marker (the kernel's PG_readahead): the first page of a
  // window read ahead of a stream; the fault that meets it continues the
  // stream (src/mm/fault.cpp readahead, DESIGN section 2).
  PG_readahead = 1u << 10,
  // Unmapped by reclaim's sampling (sample_pages) since its last install: its
  // next fault is that sample's answer, not a read-around hit (fault.cpp
  // choose_fault_around: the view's mmap_miss ignores it).
  PG_zapped = 1u << 11,
  // Cached by a sequential stream (its fault's window or its readahead) and
  // used since by nothing but that stream: in the stream queue, evicted first
  // (reclaim.cpp, R9; the kernel does not count a reference through a
  // sequentially read mapping, VM_SEQ_READ in mm/rmap.c folio_referenced_one).
  PG_stream = 1u << 12,
  // A stream page cached past 3/4 of the limit: the pressure is the streams'
  // own, and reclaim evicts it mapped, unsampled (R9).
  PG_credit = 1u << 13,
};

struct Page {
  std::atomic<uint32_t> flags{0};
  std::atomic<uint32_t> gen{0};  // bumped each time the page is dropped from the cache
  std::atomic<uint32_t> dirtied_at{0};  // engine clock (ms) when it last became dirty
  std::atomic<uint32_t> evicted_at{0};  // PG_ghost: the File's small-queue eviction count then

  bool test(uint32_t f) const { return flags.load(std::memory_order_acquire) & f; }
  void set(uint32_t f) { flags.fetch_or(f, std::memory_order_acq_rel); }
  void clear(uint32_t f) { flags.fetch_and(~f, std::memory_order_acq_rel); }
  /// Sets f; returns whether it was already set (the kernel's TestSetPage*).
  bool test_and_set(uint32_t f) { return flags.fetch_or(f, std::memory_order_acq_rel) & f; }
  /// Clears f; returns whether it was set (the kernel's TestClearPage*).
  bool test_and_clear(uint32_t f) { return flags.fetch_and(~f, std::memory_order_acq_rel) & f; }

  bool locked() const { return test(PG_locked); }
  bool trylock() {
    return !(flags.fetch_or(PG_locked, std::memory_order_acquire) & PG_locked);
  }
  void lock();
  void unlock();
  /// Sleeps until bit `f` is clear (used for PG_writeback).
  void wait_clear(uint32_t f);
  /// Clears `f` and wakes sleepers (end of writeback).
  void clear_and_wake(uint32_t f);

 private:
  void sleep_on(uint32_t seen);
  void wake_all();
};

static_assert(sizeof(Page) <= 64, "per-page metadata must stay within 64 bytes");

/// The page lock held for a scope (lock_page ... unlock_page): every return
/// and throw between them unlocks. Constructed from a Page* it locks (sleeps);
/// with std::try_to_lock it try-locks (check it with bool()); with
/// std::adopt_lock it takes over a lock the caller holds. release() hands the
/// lock back to the caller (it stays locked); unlock() ends it early.
class PageLock {
 public:
  PageLock() = default;
  explicit PageLock(Page* p) : p_(p) { p_->lock(); }
  PageLock(Page* p, std::try_to_lock_t) : p_(p->trylock() ? p : nullptr) {}
  PageLock(Page* p, std::adopt_lock_t) : p_(p) { FL_BUG_ON(!p->locked()); }
  PageLock(const PageLock&) = delete;
  PageLock& operator=(const PageLock&) = delete;
  PageLock(PageLock&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PageLock& operator=(PageLock&& o) noexcept {
    if (this != &o) {
      unlock();
      p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  ~PageLock() { unlock(); }

  explicit operator bool() const { return p_ != nullptr; }
  Page* page() const { return p_; }
  Page* release() { return std::exchange(p_, nullptr); }
  void unlock() {
    if (p_) std::exchange(p_, nullptr)->unlock();
  }

 private:
  Page* p_ = nullptr;
};

}  // namespace faultline::detail
