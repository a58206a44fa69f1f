// Dropping pages: truncate (R3), punch_hole and invalidate (R4), and changes
// made underneath by another machine (Backend::ChangeSink).
#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <shared_mutex>
#include <sys/mman.h>
#include <unistd.h>

#include "mm/engine_core.hpp"
#include "faultline/constants.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "mm/runs.hpp"
#include "testing/sched.hpp"
#include "os/sys_error.hpp"
#include "os/zap.hpp"

// Lock order here (DESIGN section 5): i_rwsem_ (size lock) -> invalidate_lock
// -> page locks, ascending (shrink_cache's partial EOF page is the one
// exception, explained there) -> rmap lock -> a view's poison_mu.

namespace faultline::detail {

namespace {
constexpr uint64_t kDropRunPages = 256;  // pages locked and punched per run

// Named guards (DESIGN section 3): each holds while its rule's guard is on;
// a race test's breaker switches it off.
/// R3 (F11, F12): a shrink sets i_size and drops the pages past it under
/// their locks before the memfd shrinks. Breaker: the memfd first, then the
/// index and the size, no page lock.
inline bool size_and_pages_first() { return FL_RULE(3); }
/// R4 (F1, F7, W9): punch and invalidate drop each page under its lock and
/// hold the invalidate_lock, so no fill reads old data back in. Breaker:
/// neither lock.
inline bool drop_under_page_lock() { return FL_RULE(4); }
/// R4's invalidate_lock, exclusive (ExclusiveLock(l, rule_on)).
inline bool fills_locked_out() { return FL_RULE(4); }
/// R7b (F7): invalidate's launder write-protects every view before it copies
/// out (a store after the copy would land in a frame about to be dropped).
inline bool launder_mkclean_first() { return FL_GUARD(7, 'b'); }
}  // namespace

void FileImpl::drop_page(Page* p) {
  p->gen.fetch_add(1, std::memory_order_acq_rel);
  clear_dirty(p);
  if (p->test_and_clear(PG_uptodate)) {
    nr_cached_.fetch_sub(1, std::memory_order_relaxed);
    core->nr_cached.fetch_sub(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  }
  // Reclaim's state (its queue entry goes stale: the generation). PG_main
  // and nr_main_, PG_stream and nr_stream_ change together.
  if (p->test_and_clear(PG_main)) nr_main_.fetch_sub(1, std::memory_order_relaxed);
  if (p->test_and_clear(PG_stream)) nr_stream_.fetch_sub(1, std::memory_order_relaxed);
  p->clear(PG_error | PG_referenced | PG_sampled | PG_ghost | PG_readahead | PG_zapped | PG_credit);
}

void FileImpl::clear_poison(uint64_t first, uint64_t last) {
  // Exactly the poisoned pages: a wider MADV_DONTNEED in a private view would
  // drop the process's own copies (F5). R15: no view here is unmapped yet.
  MutexLock g(rmap_mu_, kRmapWait);
  for (MappingImpl* m : rmap_) {
    MutexLock pg(m->poison_mu);
    for (auto it = m->poisoned.lower_bound(first); it != m->poisoned.end() && *it < last;) {
      // Result discarded: the zap of a live, page-aligned view fails only
      // where the kernel lacks MADV_DONTNEED_LOCKED (before 5.18) and the
      // view is mlock()ed: the poison then stays until the view is unmapped.
      if (*it >= m->pgoff && *it < m->pgoff + m->npages)
        (void)zap_ptes(reinterpret_cast<void*>(m->addr_of(*it)), page_size());
      it = m->poisoned.erase(it);
    }
  }
}

void FileImpl::punch_frames(uint64_t pg, uint64_t n, bool keep_poison) {
  // PUNCH_HOLE zaps the PTEs in every view and keeps private copy-on-write
  // copies (R4; DESIGN section 2). It does not clear poison: do that exactly
  // (not for reclaim: evicting a page does not end a view's SIGBUS).
  // Result discarded on purpose: PUNCH_HOLE on our memfd fails only for
  // F_SEAL_WRITE / F_SEAL_FUTURE_WRITE seals (shmem_fallocate,
  // hugetlbfs_punch_hole), which the engine never sets; a misaligned 2 MiB
  // range cannot reach here (callers pass whole frames).
  ::fallocate(memfd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              static_cast<off_t>(pg << page_shift_), static_cast<off_t>(n << page_shift_));
  if (!keep_poison) clear_poison(pg, pg + n);
}

int FileImpl::zero_frame_range(uint64_t from, uint64_t to) {
  if (to <= from) return 0;
  if (huge()) {
    // hugetlb frames take no write(2): zero in place through the alias view.
    // The page is locked and uptodate, so its frame exists (no allocation).
    std::memset(alias_ + from, 0, to - from);
    return 0;
  }
  std::vector<std::byte> z(to - from);
  return ::pwrite(memfd_, z.data(), z.size(), static_cast<off_t>(from)) ==
                 static_cast<ssize_t>(z.size())
             ? 0
             : -errno;
}

int FileImpl::launder_locked(uint64_t pg, uint64_t n) {
  // R7 order under the page locks: write-protect in every view, then clear
  // dirty, then copy out. A failure redirties (nothing is lost) and is
  // recorded for sync (R8).
  // A view still writable: the page cannot be made clean, so it is kept
  // (reported as not laundered, R4) and the error goes to errseq (R8).
  if (launder_mkclean_first()) {  // R7b
    if (int e = mkclean(pg, n)) {
      record_wb_error(e);
      return e;
    }
  }
  for (uint64_t i = 0; i < n; ++i) {
    Page* p = index_.find(pg + i);
    FL_BUG_ON(drop_under_page_lock() && !p->locked());  // R4, R7: laundered under its lock
    clear_dirty(p);
  }
  const uint64_t off = pg << page_shift_;
  const uint64_t size = i_size();
  if (off >= size) return 0;
  const uint64_t len = std::min<uint64_t>(n << page_shift_, size - off);
  // Locked and write-protected in every view (2 MiB frames are written in place).
  const int err = write_out(pg, n, len);
  if (!err) count(&Counters::pages_laundered, n);
  return err;
}

template <class Fn>
void FileImpl::for_each_locked_run(uint64_t first, uint64_t last, const char* point, Fn&& fn) {
  uint64_t pg = first;
  while (pg < last) {
    // Skip ranges never cached (no slot): nothing to drop there, and the
    // invalidate_lock keeps fills out until we are done.
    uint64_t next = last;
    index_.for_each(pg, last, [&](uint64_t i, Page& p) {
      if (!(p.flags.load(std::memory_order_acquire) & (PG_uptodate | PG_dirty | PG_error)))
        return true;
      next = i;
      return false;
    });
    if (next >= last) break;
    pg = next;
    const uint64_t n = std::min<uint64_t>(kDropRunPages, last - pg);
    std::vector<Page*> run(n);
    std::vector<PageLock> locks;
    locks.reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      run[i] = index_.get(pg + i);
      if (drop_under_page_lock()) locks.emplace_back(run[i]);  // R4: ascending, sleeping
    }
    if (point) FL_POINT(point);
    for (Page* p : run) p->wait_clear(PG_writeback);
    fn(pg, std::span<Page* const>(run));
    pg += n;
  }  // each run's locks end with it (waiters recheck: R2)
}

void FileImpl::dirty_written_locked(uint64_t pg, std::span<Page* const> run) {
  if (!async_) return;
  // R4/R7 (async): pages written through a view are dirty too. Their PTEs
  // are zapped here, under the locks, so no store slips between the check
  // and the drop (it faults and waits for the lock).
  const uint64_t eof = eof_pages();
  MutexLock g(rmap_mu_, kRmapWait);
  for (MappingImpl* m : rmap_) {
    if (!m->async_wp()) continue;
    for (uint64_t k : zap_written(*m, pg, pg + run.size()))
      if (k < eof && run[k - pg]->test(PG_uptodate)) mark_dirty(run[k - pg]);
  }
}

void FileImpl::drop_and_punch(uint64_t pg, std::span<Page* const> run,
                              const std::vector<bool>& keep, Counter counter) {
  for_each_run(
      run.size(), [&](uint64_t i) { return keep.empty() || !keep[i]; },
      [&](uint64_t i, uint64_t j) {
        for (uint64_t k = i; k < j; ++k) {
          FL_BUG_ON(drop_under_page_lock() && !run[k]->locked());  // R4
          drop_page(run[k]);
        }
        punch_frames(pg + i, j - i);
        count(counter, j - i);
      });
}

void FileImpl::truncate_pages(uint64_t first, uint64_t last) {
  for_each_locked_run(first, last, "punch.before_drop", [&](uint64_t pg, std::span<Page* const> run) {
    drop_and_punch(pg, run, {}, &Counters::pages_punched);
  });
}

std::vector<bool> FileImpl::launder_dirty(uint64_t pg, std::span<Page* const> run,
                                          std::vector<uint64_t>* failed) {
  std::vector<bool> keep(run.size(), false);
  for_each_run(
      run.size(), [&](uint64_t i) { return run[i]->test(PG_dirty); },
      [&](uint64_t i, uint64_t j) {
        if (launder_locked(pg + i, j - i) != 0) {
          // The run failed as a whole: retry page by page (the kernel launders
          // per folio), so only pages that cannot be written are kept/reported.
          for (uint64_t k = i; k < j; ++k) {
            if (j - i > 1 && launder_locked(pg + k, 1) == 0) continue;
            keep[k] = true;
            failed->push_back((pg + k) << page_shift_);
          }
        }
        FL_POINT("invalidate.after_launder");
      });
  return keep;
}

void FileImpl::invalidate_pages(uint64_t first, uint64_t last, std::vector<uint64_t>* failed) {
  for_each_locked_run(first, last, "invalidate.before_drop",
                      [&](uint64_t pg, std::span<Page* const> run) {
                        dirty_written_locked(pg, run);
                        if (async_) FL_POINT("async.after_scan");
                        const std::vector<bool> keep = launder_dirty(pg, run, failed);
                        drop_and_punch(pg, run, keep, &Counters::pages_invalidated);
                      });
}

void FileImpl::invalidate_remote_pages(uint64_t first, uint64_t last) {
  for_each_locked_run(first, last, nullptr, [&](uint64_t pg, std::span<Page* const> run) {
    dirty_written_locked(pg, run);
    if (async_) FL_POINT("async.after_scan");
    // Dirty pages stay (a conflict with the change: ours win, written later).
    std::vector<bool> keep(run.size());
    uint64_t conflicts = 0;
    for (size_t i = 0; i < run.size(); ++i) {
      keep[i] = run[i]->test(PG_dirty);
      conflicts += keep[i] ? 1 : 0;
    }
    if (conflicts) count(&Counters::invalidate_conflicts, conflicts);
    drop_and_punch(pg, run, keep, &Counters::pages_invalidated);
  });
}

int FileImpl::zero_partial_page(uint64_t from, uint64_t to) {
  // Not dropped: the page keeps its frame, the bytes zeroed in place under
  // its lock once its write-back has ended.
  PageLock lock(index_.get(from >> page_shift_));
  lock.page()->wait_clear(PG_writeback);
  return lock.page()->test(PG_uptodate) ? zero_frame_range(from, to) : 0;
}

Status FileImpl::shrink_cache(uint64_t new_size) {
  // R3, for truncate and a remote resize alike; i_rwsem_ and the
  // invalidate_lock are held exclusively by the caller.
  const uint64_t ps = page_size();
  const uint64_t keep_pages = (new_size + ps - 1) >> page_shift_;
  const uint64_t old_pages = eof_pages();
  const bool r3 = size_and_pages_first();
  // R3: the engine's size first: faults past it fail their R2 recheck.
  if (r3) i_size_.store(new_size, std::memory_order_release);
  FL_POINT("truncate.after_size");
  // Lock every cached page past the new EOF in index order, wait for its
  // write-back, drop it; they stay locked until the memfd has shrunk.
  std::vector<PageLock> locked;
  if (r3) {
    index_.for_each(keep_pages, old_pages, [&](uint64_t, Page& p) {
      locked.emplace_back(&p);
      p.wait_clear(PG_writeback);
      drop_page(&p);
      return true;
    });
  }
  // The partial last page keeps its frame, tail zeroed (its bytes past EOF
  // never reach the backend: write-back stops at i_size). The one exception
  // to ascending page order: it is locked below the pages held above; no
  // path can hold it and wait for them (DESIGN section 5).
  const int zero_err =
      (new_size & (ps - 1)) ? zero_partial_page(new_size, keep_pages << page_shift_) : 0;
  FL_POINT("truncate.before_shrink");
  // Shrinking the memfd unmaps every view, private copy-on-write copies
  // included, frees the frames and clears poison past the new end.
  const int rc = ::ftruncate(memfd_, static_cast<off_t>(keep_pages << page_shift_));
  const int ftr_err = rc == 0 ? 0 : -errno;
  if (!r3) {
    // Breaker R3: the index and the size change after the memfd shrank.
    index_.for_each(keep_pages, old_pages, [&](uint64_t, Page& p) {
      drop_page(&p);
      return true;
    });
    i_size_.store(new_size, std::memory_order_release);
  }
  forget_poison_from(keep_pages);
  count(&Counters::pages_truncated, locked.size());
  locked.clear();  // unlocked: waiters recheck and see EOF
  clear_poison(keep_pages ? keep_pages - 1 : 0, keep_pages);
  if (ftr_err) return {ftr_err, "faultline: ftruncate(memfd)"};
  if (zero_err) return {zero_err, "faultline: zeroing the new EOF page"};
  return {};
}

void FileImpl::forget_poison_from(uint64_t pg) {
  // Poison records past the new end are gone with the PTEs.
  MutexLock g(rmap_mu_);
  for (MappingImpl* m : rmap_) {
    MutexLock pm(m->poison_mu);
    m->poisoned.erase(m->poisoned.lower_bound(pg), m->poisoned.end());
  }
}

Status FileImpl::truncate(uint64_t new_size) {
  if (!backend().writable()) return {-EROFS, "faultline: truncate of read-only " + key};
  if ((new_size >> page_shift_) >= PageIndex::kMaxPages)
    return {-EFBIG, "faultline: truncate beyond the largest file size"};
  ExclusiveLock size_guard(i_rwsem_);
  ExclusiveLock inval(invalidate_lock_);
  const bool shrink = new_size < i_size();
  // R3 (F11): a shrink drops the cache before the backend shrinks; a growth
  // grows the backend first.
  if (shrink) {
    if (Status s = shrink_cache(new_size); !s.ok()) return s;
  }
  if (int e = backend().truncate(new_size); e < 0)
    return {e, "faultline: backend truncate of " + key};
  if (!shrink) return extend(new_size);  // zeroes the old EOF page's tail; the new range reads zeros
  return {};
}

Status FileImpl::punch_hole(uint64_t off, uint64_t len) {
  if (len == 0) return {-EINVAL, "faultline: punch_hole of zero length"};
  if (off + len < off) return {-EINVAL, "faultline: punch_hole range overflows"};
  if (!backend().writable()) return {-EROFS, "faultline: punch_hole of read-only " + key};
  if (!backend().can_punch_hole())
    return {-EOPNOTSUPP, "faultline: the backend of " + key + " cannot punch holes"};
  ExclusiveLock size_guard(i_rwsem_);
  // R4: no fill brings old data back meanwhile.
  ExclusiveLock inval(invalidate_lock_, fills_locked_out());
  const uint64_t size = i_size();
  const uint64_t end = std::min<uint64_t>(off + len, size);
  if (off >= end) return {};
  const uint64_t ps = page_size();
  const uint64_t first_full = (off + ps - 1) >> page_shift_;
  const uint64_t end_full = end == size ? (end + ps - 1) >> page_shift_ : end >> page_shift_;
  // Partial pages at the ends are zeroed in place, not dropped.
  int e = 0;
  if (first_full > end_full) {  // inside one page
    e = zero_partial_page(off, end);
  } else {
    if (off & (ps - 1)) e = zero_partial_page(off, first_full << page_shift_);
    if (!e && end_full << page_shift_ < end) e = zero_partial_page(end_full << page_shift_, end);
    if (!e) truncate_pages(first_full, end_full);
  }
  if (e) return {e, "faultline: zeroing a partial page of a punched range"};
  // Poison on pages truncate_pages skipped (never cached: a refused
  // page_mkwrite on a hole) and on the partial end pages goes too, as
  // file.hpp promises.
  clear_poison(off >> page_shift_, (end + ps - 1) >> page_shift_);
  // The pages are unlocked, the backend not yet punched: only the
  // invalidate_lock (R4 here, R1b in the fault path) keeps a fill from
  // reading the old data back in now (race F1).
  FL_POINT("punch.before_backend");
  if (int be = backend().punch_hole(off, end - off); be < 0)
    return {be, "faultline: backend punch_hole of " + key};
  return {};
}

Status FileImpl::invalidate(uint64_t off, uint64_t len, std::vector<uint64_t>& failed) {
  if (len == 0) return {-EINVAL, "faultline: invalidate of zero length"};
  if (off + len < off) return {-EINVAL, "faultline: invalidate range overflows"};
  SharedLock size_guard(i_rwsem_);
  ExclusiveLock inval(invalidate_lock_, fills_locked_out());  // R4
  const auto [first, last] = pages_of(off, len);  // invalidate(0, UINT64_MAX): all (defect 5)
  invalidate_pages(first, last, &failed);
  clear_poison(first, last);  // also pages invalidate_pages skipped (never cached)
  return {};
}

void FileImpl::remote_changed(uint64_t off, uint64_t len) {
  FL_POINT("remote.changed");  // on the backend's thread (defect 8's test parks it here)
  if (len == 0) return;
  SharedLock size_guard(i_rwsem_);
  ExclusiveLock inval(invalidate_lock_);
  const auto [first, last] = pages_of(off, len);  // a sink's "everything": clamped (defect 5)
  invalidate_remote_pages(first, last);
}

void FileImpl::remote_resized(uint64_t new_size) {
  // Another engine changed the size: follow it with truncate's steps under
  // the same locks (R3: shrink_cache drops the pages past the new EOF under
  // their locks, zeroes the partial page's tail, shrinks the memfd, forgets
  // poison past the end, so a later regrowth faults normally; extend zeroes
  // the old EOF page's tail). Deliberate differences: the backend is not
  // touched (it has the new size already); a size past the page index is
  // ignored, and a failure logged (nobody called us: we run on the
  // backend's thread).
  if (!fits_index(new_size, page_shift_)) {
    core->log("faultline: " + key + " was resized underneath to " + std::to_string(new_size) +
              " bytes, more than the largest file size: ignored");
    return;
  }
  ExclusiveLock size_guard(i_rwsem_);
  ExclusiveLock inval(invalidate_lock_);
  // (extend: nothing when the size is unchanged)
  const Status s = new_size < i_size() ? shrink_cache(new_size) : extend(new_size);
  if (!s.ok())
    core->log("faultline: following a remote resize of " + key + " failed: " + s.what() + ": " +
              std::generic_category().message(-s.err()));
}

}  // namespace faultline::detail
