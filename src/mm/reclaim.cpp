// Reclaim (R9): the memory limit of the engine's page cache. Clean, unlocked
// pages not under write-back are evicted — unmapped from every view and their
// frames punched — under the page lock taken with a try-lock, after checking
// again under it that the page is still clean (races E1, E2).
//
// Which pages go (the policy, DESIGN R9, issue 16 item 4): S3-FIFO (Yang et
// al., SOSP 2023) per File. A page enters the small FIFO queue when it is
// cached; at the small queue's head a page accessed since it entered moves
// to the main queue, one not accessed is evicted and remembered as a ghost
// (cached again within about the cache's size of such evictions, it enters
// main directly). Main is a FIFO with reinsertion (CLOCK): a page accessed
// since its last look goes round again. Evictions come from small while it
// holds at least a tenth of the File's cached pages: a scan's pages pass
// through small and leave from it, and the hot pages in main stay.
//
// Stream pages first. A page a sequential stream read (PG_stream) is in a
// third FIFO, evicted before small and main (every File's, before any File's
// S3-FIFO queues): a scan's pages are used once. The stream's own faults on
// it are not a reuse (the kernel's VM_SEQ_READ); another access sends it to
// main. Mapped, it goes unsampled if it was cached near the limit (the
// pressure is the streams', PG_credit), else it is sampled like a small-queue
// page.
//
// Access information. A fault on a cached page and an API read are accesses
// (PG_referenced); a page that stays mapped is touched with no fault. So a
// mapped page is sampled before it can be judged unused: its PTEs are zapped
// in every shared view (MADV_DONTNEED: the frame stays cached, a WP-registered
// view keeps a WP marker) and PG_sampled set; its next access is a MINOR
// fault, a hit, which sets PG_referenced; the install clears PG_sampled.
// (PAGEMAP_SCAN has no accessed category on 6.18 and page_idle is not built
// here: DESIGN section 2; costs, docs/MEASUREMENTS.md M5.1: ~1-4 us per zap, ~30 us per
// refault.) A sampled page is requeued at its queue's tail and judged at its
// next turn. Private views are not sampled (MADV_DONTNEED would drop their
// copy-on-write copies, F5): accesses through them go unseen.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <numeric>
#include <span>
#include <vector>

#include "mm/engine_core.hpp"
#include "faultline/constants.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "mm/runs.hpp"
#include "os/zap.hpp"
#include "testing/sched.hpp"

namespace faultline::detail {

namespace {
constexpr uint64_t kReclaimBatchPages = 256;  // candidates taken per look at a queue
constexpr uint32_t kBusy = PG_locked | PG_dirty | PG_writeback;
/// S3-FIFO: evict from the small queue while it holds >= 1/kSmallShare of the
/// cached pages (the paper's 10%).
constexpr uint64_t kSmallShare = 10;

// Whether reclaim may take the page: uptodate, and not locked, dirty or under
// write-back (R9). (PG_error on an uptodate clean page: an earlier write-back
// failed and a later one succeeded — the backend has the data.)
bool evictable(uint32_t flags) { return (flags & PG_uptodate) && !(flags & kBusy); }

/// MADV_DONTNEED of every range in `zap` (MADV_DONTNEED_LOCKED, src/os/zap.hpp:
/// a view the user mlock()ed is sampled too; plain MADV_DONTNEED refused it
/// with EINVAL, so its pages were never seen used): one process_madvise(2) call per
/// kIovMax ranges (Linux 6.13+ allows any advice on the caller's own
/// process; 6.16+ flushes the TLB once per call, not once per range), else
/// (an older kernel) one madvise per range. The process is named by the
/// sentinel PIDFD_SELF_THREAD_GROUP: -10001 in the uapi of later kernels
/// (linux/fcntl.h, 6.18), but -20000 in 6.15's (linux/pidfd.h), the first
/// kernel with the sentinels: there, and before it, -10001 is no pidfd
/// (EBADF) and the zaps go range by range. Zapping a range twice is
/// harmless (the pages are locked: nothing maps them again meanwhile), so
/// a short or failed batch is redone range by range. False if a range failed.
bool madvise_dontneed(std::span<const iovec> zap) {
  constexpr size_t kIovMax = 1024;                     // UIO_MAXIOV
  constexpr int kPidfdSelfProcess = -10001;  // PIDFD_SELF_THREAD_GROUP (after 6.15: above)
  static std::atomic<bool> batch_works{true};
  bool ok = true;
  for (size_t at = 0; at < zap.size(); at += kIovMax) {
    const std::span<const iovec> part = zap.subspan(at, std::min(kIovMax, zap.size() - at));
    if (part.size() > 1 && batch_works.load(std::memory_order_relaxed)) {
      size_t bytes = 0;
      for (const iovec& v : part) bytes += v.iov_len;
      const long r = ::syscall(SYS_process_madvise, kPidfdSelfProcess, part.data(), part.size(),
                               MADV_DONTNEED_LOCKED, 0u);
      if (r >= 0 && static_cast<size_t>(r) == bytes) continue;
      if (r < 0 && (errno == EBADF || errno == EINVAL || errno == ENOSYS || errno == EPERM))
        batch_works.store(false, std::memory_order_relaxed);  // not on this kernel
    }
    for (const iovec& v : part) ok &= zap_ptes(v.iov_base, v.iov_len) == 0;
  }
  return ok;
}

/// R9 (E1, E2): reclaim takes each picked page with a try-lock and checks it
/// again under the lock before it evicts it. Breaker: the picked pages are
/// dropped and punched as they were seen, with no lock and no recheck.
inline bool evict_under_trylock() { return FL_RULE(9); }
}  // namespace

void FileImpl::mark_uptodate(uint64_t pg, Page* p, bool stream) {
  if (p->test_and_set(PG_uptodate)) {
    p->set(PG_referenced);  // cached already: written or read again, an access
    return;
  }
  const uint64_t cached = nr_cached_.fetch_add(1, std::memory_order_relaxed) + 1;
  core->nr_cached.fetch_add(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  // New in the cache: not accessed since (the access that brought it in is
  // not a reuse), and mapped nowhere yet (the fault path clears PG_sampled
  // when it installs it). A ghost evicted from the small queue within about
  // the cache's size of evictions goes to main (S3-FIFO).
  const bool ghost =
      p->test_and_clear(PG_ghost) &&
      small_evicted_.load(std::memory_order_relaxed) - p->evicted_at.load(std::memory_order_relaxed) <=
          std::max<uint64_t>(cached, kReclaimBatchPages);
  p->clear(PG_referenced);
  p->set(PG_sampled);
  // A page read by a stream goes to the stream queue (a ghost read again is
  // a reuse all the same: main). Near the limit the pressure is the
  // streams' own: reclaim may evict the page mapped, unsampled (PG_credit).
  stream = stream && !ghost;
  if (stream && core->near_memory_limit()) p->set(PG_credit);
  else p->clear(PG_credit);
  // PG_main / nr_main_ and PG_stream / nr_stream_ change together (atomic
  // flag transitions).
  if (ghost) {
    if (!p->test_and_set(PG_main)) nr_main_.fetch_add(1, std::memory_order_relaxed);
  } else if (p->test_and_clear(PG_main)) {
    nr_main_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (stream) {
    if (!p->test_and_set(PG_stream)) nr_stream_.fetch_add(1, std::memory_order_relaxed);
  } else if (p->test_and_clear(PG_stream)) {
    nr_stream_.fetch_sub(1, std::memory_order_relaxed);
  }
  {
    MutexLock g(lru_mu_);
    lru_queue(ghost ? Lru::kMain : stream ? Lru::kStream : Lru::kSmall)
        .push_back({pg, p->gen.load(std::memory_order_acquire)});
    // Entries of pages dropped by truncate / punch / invalidate stay until
    // reclaim pops them; without a memory limit nothing does: keep the queues
    // within a few times the cached pages.
    if (small_.size() + main_.size() + stream_.size() > 2 * cached + 1024) {
      for (auto* q : {&small_, &main_, &stream_}) {
        std::erase_if(*q, [&](const LruEntry& e) {
          const Page* x = index_.find(e.pg);
          return !x || x->gen.load(std::memory_order_acquire) != e.gen || !x->test(PG_uptodate);
        });
      }
      // Renumbered: aging starts over at the head (0: the head, whatever
      // entries a reclaim between its pop and its unpop puts back before
      // it), and a pass in progress does not move the cursor.
      age_pos_ = 0;
      ++age_epoch_;
    }
  }
  core->note_cached();
}

std::vector<FileImpl::LruEntry> FileImpl::lru_pop(Lru which, size_t max) {
  std::vector<LruEntry> out;
  MutexLock g(lru_mu_);
  auto& q = lru_queue(which);
  while (out.size() < max && !q.empty()) {
    const LruEntry e = q.front();
    q.pop_front();
    if (which == Lru::kSmall) ++small_head_;
    const Page* p = index_.find(e.pg);
    // Dropped (and maybe cached again, with an entry of its own) since: stale.
    if (!p || p->gen.load(std::memory_order_acquire) != e.gen || !p->test(PG_uptodate)) continue;
    out.push_back(e);
  }
  return out;
}

std::vector<FileImpl::LruEntry> FileImpl::lru_age_batch(uint64_t& pos, uint64_t& epoch,
                                                        uint64_t ahead, size_t max) {
  MutexLock g(lru_mu_);
  if (epoch != age_epoch_) pos = 0, epoch = age_epoch_;  // renumbered: pos means nothing now
  pos = std::max({pos, age_pos_, small_head_});
  const uint64_t end = small_head_ + std::min<uint64_t>(ahead, small_.size());
  if (pos >= end) return {};
  const auto from = small_.begin() + static_cast<ptrdiff_t>(pos - small_head_);
  return std::vector<LruEntry>(from, from + static_cast<ptrdiff_t>(std::min<uint64_t>(max, end - pos)));
}

void FileImpl::lru_aged_to(uint64_t pos, uint64_t epoch) {
  MutexLock g(lru_mu_);
  if (epoch == age_epoch_) age_pos_ = pos;
}

void FileImpl::lru_push(Lru which, const std::vector<LruEntry>& es) {
  if (es.empty()) return;
  MutexLock g(lru_mu_);
  auto& q = lru_queue(which);
  q.insert(q.end(), es.begin(), es.end());
}

void FileImpl::lru_unpop(Lru which, const std::vector<LruEntry>& es) {
  if (es.empty()) return;
  MutexLock g(lru_mu_);
  auto& q = lru_queue(which);
  q.insert(q.begin(), es.begin(), es.end());
  if (which == Lru::kSmall) small_head_ -= std::min<uint64_t>(small_head_, es.size());
}

void FileImpl::zap_unpoisoned(MappingImpl& m, uint64_t lo, uint64_t hi, std::vector<iovec>& zap) {
  // Around the pages this view answered with POISON: MADV_DONTNEED would
  // clear the poison (the page must keep raising SIGBUS).
  MutexLock pm(m.poison_mu);
  uint64_t from = lo;
  for (auto it = m.poisoned.lower_bound(lo); from < hi;) {
    const uint64_t to = (it == m.poisoned.end() || *it >= hi) ? hi : *it;
    if (to > from)
      zap.push_back({reinterpret_cast<void*>(m.addr_of(from)),
                     static_cast<size_t>((to - from) << page_shift_)});
    if (to >= hi) break;
    from = to + 1;
    ++it;
  }
}

std::vector<bool> FileImpl::sample_unmap(const std::vector<uint64_t>& pg,
                                         std::vector<bool>& mapped) {
  // The pages are locked (R9's try-locks) and clean. R15: the views are
  // walked under the rmap lock (no range another mmap may own).
  std::vector<bool> written(pg.size(), false);
  mapped.assign(pg.size(), false);
  const uint64_t eof = eof_pages();
  auto consecutive = [&](uint64_t k, uint64_t l) { return pg[l] == pg[k] + 1; };
  std::vector<iovec> zap;  // zapped together below, still under the rmap lock (R15)
  MutexLock g(rmap_mu_, kRmapWait);
  for (MappingImpl* m : rmap_) {
    if (!m->shared) continue;  // F5: DONTNEED would drop private copies
    const uint64_t vlo = m->pgoff, vhi = m->pgoff + m->npages;
    for_each_run(pg.size(), [](uint64_t) { return true; }, consecutive, [&](uint64_t a, uint64_t b) {
      const uint64_t lo = std::max(pg[a], vlo), hi = std::min(pg[b - 1] + 1, vhi);
      if (lo >= hi) return;
      for (uint64_t k = lo; k < hi; ++k) mapped[a + (k - pg[a])] = true;
      if (!m->async_wp()) {
        zap_unpoisoned(*m, lo, hi, zap);
        return;
      }
      // R7 (async): a store through this view left no trace but its PTE;
      // the zap tells which were written (zap_written zaps present PTEs
      // only: poison markers stay): those pages are dirty and stay.
      for (uint64_t k : zap_written(*m, lo, hi)) {
        if (k >= eof) continue;
        mark_dirty(index_.find(k));
        written[a + (k - pg[a])] = true;
      }
    });
  }
  // Result discarded: a zap that fails leaves the PTEs, so the page's
  // accesses go unseen and it may be judged unused (evicted: clean, its data
  // is in the backend). Nothing is lost.
  (void)madvise_dontneed(zap);
  return written;
}

// One batch of queue entries as shrink sorts them (an unlocked look).
struct FileImpl::ReclaimBatch {
  Lru queue = Lru::kSmall;  // popped from
  bool from_small() const { return queue == Lru::kSmall; }
  std::vector<LruEntry> back;      // to the queue's tail: busy, sampled, or kept
  std::vector<LruEntry> to_main;   // accessed since their last look
  std::vector<LruEntry> sample;    // mapped, maybe used unseen: sample first
  std::vector<LruEntry> evict;     // candidates, checked again under the lock
  std::vector<LruEntry> unlooked;  // enough candidates: back to the head
  // Eviction: the candidates locked and rechecked (R9), ascending.
  std::vector<Page*> held;
  std::vector<uint64_t> held_pg;
  std::vector<PageLock> locks;  // empty under breaker R9
};

void FileImpl::sort_candidates(ReclaimBatch& b, const std::vector<LruEntry>& es, uint64_t room,
                               uint64_t& sample_budget) {
  // An unlocked look: the flags decide again under the lock (R9). Unsampled
  // pages get sampled now; in main past the budget they wait for a later
  // call (the stream queue's likewise); a stream page cached near the limit
  // (PG_credit) goes mapped, unsampled: used once, by its stream.
  const bool from_main = b.queue == Lru::kMain, from_stream = b.queue == Lru::kStream;
  for (const LruEntry& e : es) {
    if (b.evict.size() >= room) {
      b.unlooked.push_back(e);  // enough candidates: back to the head, in order
      continue;
    }
    Page* p = index_.find(e.pg);
    const uint32_t f = p->flags.load(std::memory_order_acquire);
    if (!evictable(f)) {
      b.back.push_back(e);  // locked, dirty or under write-back: later
    } else if (f & PG_referenced) {
      // Accessed since its last look: small -> main (promotion), stream ->
      // main (used by something other than its stream: a fault of another
      // view or thread, an API read), main: once more round.
      p->clear(PG_referenced);
      if (from_stream && p->test_and_clear(PG_stream)) nr_stream_.fetch_sub(1, std::memory_order_relaxed);
      p->clear(PG_credit);
      if (!from_main && !p->test_and_set(PG_main)) nr_main_.fetch_add(1, std::memory_order_relaxed);
      b.to_main.push_back(e);
    } else if (f & PG_sampled) {
      b.evict.push_back(e);  // mapped nowhere since it was cached, or sampled
    } else if (from_stream && (f & PG_credit)) {
      b.evict.push_back(e);
    } else if (sample_budget > 0 || b.from_small()) {
      // The small queue samples past the budget too: a mapped
      // page evicted unseen is a guess, and a wrong one costs a miss (a read,
      // ~100x a zap). Cached before the first eviction, a whole hot set sits
      // in small, unsampled; evicting the pages past the budget flushed it
      // when a scan came (bench --out-of-core scan+hot: hot_kept 0.005). Each
      // page is sampled at most once per trip through its queue, so the cost
      // stays one zap per eviction once the queue has gone round.
      if (sample_budget > 0) --sample_budget;
      b.sample.push_back(e);
    } else {
      b.back.push_back(e);
    }
  }
}

void FileImpl::sample_pages(ReclaimBatch& b) {
  if (b.sample.empty()) return;
  // Under the page locks (try-locked, R9: a locked page is being filled,
  // installed, dirtied or dropped), zap the PTEs so the next access faults;
  // then back to the queue's tail.
  std::sort(b.sample.begin(), b.sample.end(),
            [](const LruEntry& x, const LruEntry& y) { return x.pg < y.pg; });
  std::vector<PageLock> held;
  std::vector<uint64_t> held_pg;
  for (const LruEntry& e : b.sample) {
    PageLock lock(index_.find(e.pg), std::try_to_lock);
    if (!lock) continue;
    const uint32_t f = lock.page()->flags.load(std::memory_order_acquire) & ~PG_locked;
    if (!evictable(f) || lock.page()->gen.load(std::memory_order_acquire) != e.gen) continue;
    held.push_back(std::move(lock));
    held_pg.push_back(e.pg);
  }
  // A page in no shared view (its view unmapped, or private views only) has
  // no PTE to zap: marked sampled all the same (its next access faults), but
  // not counted as sampled.
  std::vector<bool> mapped;
  const std::vector<bool> written = sample_unmap(held_pg, mapped);
  for (size_t i = 0; i < held.size(); ++i) {
    held[i].page()->set(PG_zapped);
    if (!written[i]) held[i].page()->set(PG_sampled);
  }
  count(&Counters::pages_sampled,
        static_cast<uint64_t>(std::count(mapped.begin(), mapped.end(), true)));
  held.clear();  // unlocks
  b.back.insert(b.back.end(), b.sample.begin(), b.sample.end());
}

void FileImpl::lock_for_eviction(ReclaimBatch& b) {
  // Lock what can be locked without waiting, and recheck under the lock that
  // it is the same page (generation), still clean, uptodate, not under
  // write-back and not accessed since the look (a fault sets PG_referenced;
  // an install clears PG_sampled, which a stream page cached near the limit,
  // PG_credit, does not need). Ascending page order.
  std::vector<size_t> order(b.evict.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t x, size_t y) { return b.evict[x].pg < b.evict[y].pg; });
  for (size_t i : order) {
    const LruEntry& e = b.evict[i];
    Page* p = index_.find(e.pg);
    if (evict_under_trylock()) {  // R9
      PageLock lock(p, std::try_to_lock);
      if (!lock) {
        b.back.push_back(e);
        continue;
      }
      const uint32_t f = p->flags.load(std::memory_order_acquire) & ~PG_locked;
      if (p->gen.load(std::memory_order_acquire) != e.gen)
        continue;  // dropped (maybe cached again: its new entry is queued)
      const bool unsampled_ok = b.queue == Lru::kStream && (f & PG_credit);
      if (!evictable(f) || (f & PG_referenced) || (!unsampled_ok && !(f & PG_sampled))) {
        b.back.push_back(e);
        continue;
      }
      b.locks.push_back(std::move(lock));
    }
    b.held.push_back(p);
    b.held_pg.push_back(e.pg);
  }
}

uint64_t FileImpl::evict_pages(ReclaimBatch& b) {
  if (b.evict.empty()) return 0;
  FL_POINT("reclaim.after_pick");
  lock_for_eviction(b);
  const std::vector<Page*>& held = b.held;
  const std::vector<uint64_t>& held_pg = b.held_pg;
  const bool r9 = evict_under_trylock();
  auto consecutive = [&](uint64_t k, uint64_t l) { return held_pg[l] == held_pg[k] + 1; };
  auto all = [](uint64_t) { return true; };
  // R9 (async): a store through a view leaves no trace but the PTE; zap the
  // PTEs under the locks and read the written ones off the zap (as
  // invalidate, R4): those pages are dirty, not evicted.
  for_each_run(held.size(), all, consecutive, [&](uint64_t a, uint64_t e) {
    dirty_written_locked(held_pg[a], std::span<Page* const>(held).subspan(a, e - a));
  });
  // Drop and punch runs of contiguous pages (the punch unmaps them from
  // every view; private copies stay, R4), then unlock. Pages evicted from
  // the small queue are remembered (ghosts). A page dirty now stays.
  // (Breaker R9: the pages picked are dropped as they were seen.)
  auto keep = [&](uint64_t k) { return r9 && held[k]->test(PG_dirty); };
  for (size_t k = 0; k < held.size(); ++k)
    if (keep(k)) b.back.push_back({held_pg[k], held[k]->gen.load(std::memory_order_acquire)});
  uint64_t freed = 0;
  auto evict = [&](uint64_t k) { return !keep(k); };
  for_each_run(held.size(), evict, consecutive, [&](uint64_t a, uint64_t e) {
    for (uint64_t k = a; k < e; ++k) {
      FL_BUG_ON(r9 && !held[k]->locked());  // R9: evicted under its lock
      drop_page(held[k]);
      if (b.from_small()) {
        held[k]->evicted_at.store(small_evicted_.fetch_add(1, std::memory_order_relaxed),
                                  std::memory_order_relaxed);
        held[k]->set(PG_ghost);
      }
    }
    FL_POINT("reclaim.before_punch");
    punch_frames(held_pg[a], e - a, /*keep_poison=*/true);
    count(&Counters::reclaim_runs);
    freed += e - a;
  });
  b.locks.clear();  // unlocks
  return freed;
}

void FileImpl::age(uint64_t ahead) {
  // The pages reclaim will judge next are at the small queue's head. A mapped
  // one is touched without faults, so unsampled it cannot show an access;
  // sampled now, in place (the queue's order stays), it has until reclaim
  // reaches it to take the minor fault that marks it referenced. A hot set
  // cached before the first eviction (all of it in small) is then promoted
  // to main when reclaim starts, instead of being sampled by the fault that
  // needs room and judged one trip through small later, when a thread slowed
  // by those very minor faults may not have touched it again (bench
  // --out-of-core scan+hot). Each page is sampled at most once until it is
  // accessed or evicted (sampled and referenced pages are skipped).
  if (!reclaim_mu_.try_lock()) return;  // reclaim is at it: it samples
  MutexLock one(reclaim_mu_, std::adopt_lock);
  // Incremental: each pass goes on from where the last one stopped (a
  // cursor into the small queue), copying one batch of entries at a time
  // under lru_mu_, so a pass over a queue already aged copies nothing. The
  // cursor stops at the first page a pass wanted but could not try-lock (a
  // handler still holds it): the next pass starts there.
  if (ahead == 0) return;
  auto wanted = [&](const LruEntry& e) {
    const Page* p = index_.find(e.pg);
    if (!p || p->gen.load(std::memory_order_acquire) != e.gen) return false;  // stale
    // Locked (a handler installing it): wanted all the same; the try-lock
    // decides, and the cursor stops there if it fails.
    const uint32_t f = p->flags.load(std::memory_order_acquire) & ~PG_locked;
    return evictable(f) && !(f & (PG_referenced | PG_sampled));
  };
  uint64_t pos = 0, stop = ~uint64_t{0}, epoch = ~uint64_t{0};
  for (;;) {
    const uint64_t was = epoch;
    const std::vector<LruEntry> es = lru_age_batch(pos, epoch, ahead, kReclaimBatchPages);
    if (epoch != was) stop = ~uint64_t{0};  // renumbered: a stop found before means nothing now
    if (es.empty()) break;
    FL_POINT("age.batch");  // tests: a batch copied
    ReclaimBatch b;
    for (const LruEntry& e : es)
      if (wanted(e)) b.sample.push_back(e);
    sample_pages(b);  // try-locks, zaps, sets PG_sampled; the entries stay queued
    // Still wanted: its try-lock failed (an async view's written page is
    // dirty now: not wanted).
    for (size_t i = 0; i < es.size() && stop == ~uint64_t{0}; ++i)
      if (wanted(es[i])) stop = pos + i;
    pos += es.size();
  }
  lru_aged_to(std::min(stop, pos), epoch);
}

std::vector<FileImpl::LruEntry> FileImpl::pop_batch(ReclaimBatch& b, const uint64_t idle[2],
                                                    uint64_t visits) {
  // S3-FIFO: evict from small while it holds >= 1/kSmallShare of the cached
  // pages. A queue gone round with no progress is left for the other one;
  // both so, or both empty: nothing (the call ends).
  // (The stream queue's pages are not the small queue's share.)
  const uint64_t cached = nr_cached_.load(std::memory_order_relaxed);
  const uint64_t fifo = cached - std::min(nr_stream_.load(std::memory_order_relaxed), cached);
  const uint64_t nmain = std::min(nr_main_.load(std::memory_order_relaxed), fifo);
  bool small = (fifo - nmain) * kSmallShare >= fifo;
  auto stuck = [&](bool main) {
    MutexLock g(lru_mu_);
    return idle[main] >= (main ? main_ : small_).size();
  };
  if (stuck(!small)) small = !small;
  if (stuck(!small)) return {};
  const size_t take = static_cast<size_t>(std::min<uint64_t>(kReclaimBatchPages, visits));
  auto queue = [](bool sm) { return sm ? Lru::kSmall : Lru::kMain; };
  std::vector<LruEntry> es = lru_pop(queue(small), take);
  if (es.empty()) {
    small = !small;
    es = lru_pop(queue(small), take);
  }
  b.queue = queue(small);
  return es;
}

uint64_t FileImpl::shrink(uint64_t want, bool streams) {
  if (!reclaim_mu_.try_lock()) return 0;  // another reclaim is at it
  MutexLock one(reclaim_mu_, std::adopt_lock);
  if (want == 0) return 0;
  const uint64_t freed = streams ? shrink_streams(want) : shrink_fifo(want);
  count(&Counters::pages_reclaimed, freed);
  return freed;
}

uint64_t FileImpl::reclaim_batch(ReclaimBatch& b, const std::vector<LruEntry>& es, uint64_t room,
                                 uint64_t& sample_budget, bool& progress) {
  // Sorted by an unlocked look; the entries not looked at back at the head,
  // the accessed ones to main, the mapped ones sampled, the candidates
  // evicted under their try-locks (R9), the rest back at the tail.
  sort_candidates(b, es, room, sample_budget);
  lru_unpop(b.queue, b.unlooked);
  lru_push(Lru::kMain, b.to_main);
  sample_pages(b);
  const uint64_t evicted = evict_pages(b);
  lru_push(b.queue, b.back);
  progress = !b.to_main.empty() || !b.sample.empty() || evicted > 0;
  return evicted;
}

uint64_t FileImpl::shrink_streams(uint64_t want) {
  // Pages read by sequential streams go first, oldest first: a scan's pages
  // are used once, and a hot set cached beside it is neither evicted nor
  // sampled (each sample costs the hot thread a minor fault: bench
  // --out-of-core scan+hot). A mapped stream page is evicted unsampled if it
  // was cached near the limit (PG_credit: the pressure is the streams');
  // else it is sampled first like a small-queue page (a file read through
  // once and then used in place keeps what it uses), at most 2 x want + a
  // batch per call, as main. Each entry is looked at once per call: a page
  // sampled here is judged by a later call, after its view had the time to
  // touch it.
  uint64_t freed = 0, visits, idle = 0, sample_budget = 2 * want + kReclaimBatchPages;
  {
    MutexLock g(lru_mu_);
    visits = stream_.size();
  }
  while (freed < want && visits > 0) {
    ReclaimBatch b;
    b.queue = Lru::kStream;
    const size_t take = static_cast<size_t>(std::min<uint64_t>(kReclaimBatchPages, visits));
    const std::vector<LruEntry> es = lru_pop(Lru::kStream, take);
    if (es.empty()) break;
    visits -= std::min<uint64_t>(visits, es.size());
    bool progress = false;
    freed += reclaim_batch(b, es, want - freed, sample_budget, progress);
    idle = progress ? 0 : idle + (es.size() - b.unlooked.size());
    MutexLock g(lru_mu_);
    if (idle >= stream_.size()) break;  // gone round without progress
  }
  return freed;
}

uint64_t FileImpl::shrink_fifo(uint64_t want) {
  uint64_t freed = 0;
  // Bounds per call: each queued page is looked at about three times at most
  // (promote or sample, then evict), and at most 2 x want + a batch pages of
  // main are sampled (zaps cost ~1-4 us each; direct reclaim runs on the
  // fault path). The small queue samples what it must (sort_candidates).
  uint64_t visits, sample_budget = 2 * want + kReclaimBatchPages;
  {
    MutexLock g(lru_mu_);
    visits = 3 * (small_.size() + main_.size()) + kReclaimBatchPages;
  }
  // Entries looked at in a row without progress (everything locked, dirty or
  // under write-back), per queue (small, main): a queue gone round so is
  // left for the other one in this call.
  uint64_t idle[2] = {0, 0};
  while (freed < want && visits > 0) {
    ReclaimBatch b;
    const std::vector<LruEntry> es = pop_batch(b, idle, visits);
    if (es.empty()) break;
    visits -= std::min<uint64_t>(visits, es.size());
    bool progress = false;
    freed += reclaim_batch(b, es, want - freed, sample_budget, progress);
    uint64_t& idle_here = idle[!b.from_small()];
    idle_here = progress ? 0 : idle_here + (es.size() - b.unlooked.size());
  }
  return freed;
}

void EngineCore::note_cached() {
  const uint64_t c = nr_cached.load(std::memory_order_relaxed);
  for (uint64_t peak = peak_cached.load(std::memory_order_relaxed);
       c > peak && !peak_cached.compare_exchange_weak(peak, c, std::memory_order_relaxed);) {
  }
  if (over_memory_limit() && !reclaim_kicked_.exchange(true, std::memory_order_relaxed))
    kick_flusher();
}

void EngineCore::age() {
  // Past 3/4 of the limit (reclaim is coming): each File samples the pages
  // its reclaim will judge next, a quarter of the limit's worth.
  // Stream pages do not count: reclaim takes them first, and a scan beside a
  // hot set would otherwise have the hot set sampled (a minor fault per page
  // for the hot thread) for nothing.
  const uint64_t limit = cfg.memory_limit_pages;
  if (!near_memory_limit()) return;
  std::vector<std::shared_ptr<FileImpl>> files = live_files();
  uint64_t stream = 0;
  for (auto& f : files) stream += f->nr_stream() * (f->page_size() / kBasePageSize);
  const uint64_t used = nr_cached.load(std::memory_order_relaxed) + nr_charged.load(std::memory_order_relaxed);
  if (used - std::min(used, stream) > limit - limit / 4)
    for (auto& f : files) f->age(limit / 4 / (f->page_size() / kBasePageSize));
  files.clear();  // a File may be freed here
}

uint64_t EngineCore::reclaim(uint64_t pages, bool round_down) {
  std::vector<std::shared_ptr<FileImpl>> files = live_files();
  uint64_t freed = 0;
  if (!files.empty()) {
    // Round robin: each call starts with the next File.
    // Every File's stream pages first, then S3-FIFO File by File (R9).
    const size_t start = reclaim_rr_.fetch_add(1, std::memory_order_relaxed) % files.size();
    for (const bool streams : {true, false}) {
      for (size_t k = 0; k < files.size() && freed < pages; ++k) {
        FileImpl& f = *files[(start + k) % files.size()];
        const uint64_t per = f.page_size() / kBasePageSize;  // 4 KiB pages per page of f
        const uint64_t want = (pages - freed + (round_down ? 0 : per - 1)) / per;
        freed += f.shrink(want, streams) * per;
      }
    }
  }
  files.clear();  // a File may be freed here
  reclaim_kicked_.store(false, std::memory_order_relaxed);
  if (freed > 0) note_progress();  // fills waiting for room (charge)
  return freed;
}

}  // namespace faultline::detail
