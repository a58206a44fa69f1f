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
#include "testing/sched.hpp"
#include "os/sys_error.hpp"

namespace faultline::detail {

namespace {
constexpr uint64_t kDropRunPages = 256;  // pages locked and punched per run
}

void FileImpl::drop_page(Page* p) {
  p->gen.fetch_add(1, std::memory_order_acq_rel);
  clear_dirty(p);
  if (p->test_and_clear(PG_uptodate)) {
    nr_cached_.fetch_sub(1, std::memory_order_relaxed);
    core->nr_cached.fetch_sub(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  }
  // Reclaim's state (its queue entry goes stale: the generation). PG_main
  // and nr_main_ change together.
  if (p->test_and_clear(PG_main)) nr_main_.fetch_sub(1, std::memory_order_relaxed);
  p->clear(PG_error | PG_referenced | PG_sampled | PG_ghost);
}

void FileImpl::clear_poison(uint64_t first, uint64_t last) {
  // Exactly the poisoned pages: a wider MADV_DONTNEED in a private view would
  // drop the process's own copies (F5). R15: no view here is unmapped yet.
  auto g = lock_rmap();
  for (MappingImpl* m : rmap_) {
    std::lock_guard pg(m->poison_mu);
    for (auto it = m->poisoned.lower_bound(first); it != m->poisoned.end() && *it < last;) {
      // Result discarded: DONTNEED of a live, page-aligned view fails only
      // for a VM_LOCKED range (a view the user mlock()ed): the poison then
      // stays until the view is unmapped (a known limitation).
      if (*it >= m->pgoff && *it < m->pgoff + m->npages)
        ::madvise(reinterpret_cast<void*>(m->addr_of(*it)), page_size(), MADV_DONTNEED);
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
             : errno;
}

int FileImpl::launder_locked(uint64_t pg, uint64_t n) {
  // R7 order under the page locks: write-protect in every view, then clear
  // dirty, then copy out. A failure redirties (nothing is lost) and is
  // recorded for sync (R8).
  // R7b (breaker: a store after the copy lands in a frame about to be
  // dropped). A view still writable: the page cannot be made clean, so it is
  // kept (reported as not laundered, R4) and the error goes to errseq (R8).
  if (FL_GUARD(7, 'b')) {
    if (int e = mkclean(pg, n)) {
      record_wb_error(e);
      return e;
    }
  }
  for (uint64_t i = 0; i < n; ++i) clear_dirty(index_.find(pg + i));
  const uint64_t off = pg << page_shift_;
  const uint64_t size = i_size();
  if (off >= size) return 0;
  const uint64_t len = std::min<uint64_t>(n << page_shift_, size - off);
  // Locked and write-protected in every view (2 MiB frames are written in place).
  const int err = write_out(pg, n, len);
  if (!err) count(&Counters::pages_laundered, n);
  return err;
}

void FileImpl::drop_range(uint64_t first, uint64_t last, bool launder, bool keep_dirty,
                          std::vector<uint64_t>* failed, const char* point) {
  // R4: per page, under its lock: wait for write-back, launder if asked, drop
  // from the index, punch the frame (unmapping it from every view), unlock.
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
    std::vector<Page*> run;
    for (uint64_t i = 0; i < n; ++i) {
      Page* p = index_.get(pg + i);
      if (FL_RULE(4)) p->lock();  // R4: ascending, sleeping
      run.push_back(p);
    }
    if (point) FL_POINT(point);
    for (Page* p : run) p->wait_clear(PG_writeback);
    if (async_ && (launder || keep_dirty)) {
      // R4/R7 (async): pages written through a view are dirty too. Their
      // PTEs are zapped here, under the locks, so no store slips between
      // the check and the drop (it faults and waits for the lock).
      const uint64_t eof = eof_pages();
      std::lock_guard g(rmap_mu_);
      for (MappingImpl* m : rmap_) {
        if (!m->async_wp()) continue;
        for (uint64_t k : zap_written(*m, pg, pg + n))
          if (k < eof && run[k - pg]->test(PG_uptodate)) mark_dirty(run[k - pg]);
      }
      FL_POINT("async.after_scan");
    }
    // Launder dirty sub-runs first (invalidate), or keep them (remote change).
    std::vector<bool> keep(n, false);
    for (uint64_t i = 0; i < n;) {
      if (!run[i]->test(PG_dirty)) {
        ++i;
        continue;
      }
      uint64_t j = i + 1;
      while (j < n && run[j]->test(PG_dirty)) ++j;
      if (keep_dirty) {
        count(&Counters::invalidate_conflicts, j - i);
        for (uint64_t k = i; k < j; ++k) keep[k] = true;
      } else if (launder) {
        if (launder_locked(pg + i, j - i) != 0) {
          // The run failed as a whole: retry page by page (the kernel launders
          // per folio), so only pages that cannot be written are kept/reported.
          for (uint64_t k = i; k < j; ++k) {
            if (j - i > 1 && launder_locked(pg + k, 1) == 0) continue;
            keep[k] = true;
            if (failed) failed->push_back((pg + k) << page_shift_);
          }
        }
        FL_POINT("invalidate.after_launder");
      }
      i = j;
    }
    // Drop and punch the runs we do not keep.
    for (uint64_t i = 0; i < n;) {
      if (keep[i]) {
        ++i;
        continue;
      }
      uint64_t j = i + 1;
      while (j < n && !keep[j]) ++j;
      for (uint64_t k = i; k < j; ++k) drop_page(run[k]);
      punch_frames(pg + i, j - i);
      count(launder || keep_dirty ? &Counters::pages_invalidated : &Counters::pages_punched,
            j - i);
      i = j;
    }
    if (FL_RULE(4))
      for (Page* p : run) p->unlock();
    pg += n;
  }
}

void FileImpl::shrink_cache(uint64_t new_size) {
  // R3, for truncate and a remote resize alike; i_rwsem_ and the
  // invalidate_lock are held exclusively by the caller.
  const uint64_t ps = page_size();
  const uint64_t keep_pages = (new_size + ps - 1) >> page_shift_;
  const uint64_t old_pages = eof_pages();
  if (FL_RULE(3)) {
    // R3: the engine's size first: faults past it fail their R2 recheck.
    i_size_.store(new_size, std::memory_order_release);
  }
  FL_POINT("truncate.after_size");
  // Lock every cached page past the new EOF in index order, wait for its
  // write-back, drop it; they stay locked until the memfd has shrunk.
  std::vector<Page*> locked;
  if (FL_RULE(3)) {
    index_.for_each(keep_pages, old_pages, [&](uint64_t, Page& p) {
      p.lock();
      p.wait_clear(PG_writeback);
      drop_page(&p);
      locked.push_back(&p);
      return true;
    });
  }
  // The partial last page keeps its frame, tail zeroed (its bytes past EOF
  // never reach the backend: write-back stops at i_size).
  int zero_err = 0;
  if (new_size & (ps - 1)) {
    Page* p = index_.get(new_size >> page_shift_);
    p->lock();
    p->wait_clear(PG_writeback);
    if (p->test(PG_uptodate)) zero_err = zero_frame_range(new_size, keep_pages << page_shift_);
    p->unlock();
  }
  FL_POINT("truncate.before_shrink");
  // Shrinking the memfd unmaps every view, private copy-on-write copies
  // included, frees the frames and clears poison past the new end.
  const int rc = ::ftruncate(memfd_, static_cast<off_t>(keep_pages << page_shift_));
  const int ftr_err = rc == 0 ? 0 : errno;
  if (!FL_RULE(3)) {
    index_.for_each(keep_pages, old_pages, [&](uint64_t, Page& p) {
      drop_page(&p);
      return true;
    });
    i_size_.store(new_size, std::memory_order_release);
  }
  {
    // Poison records past the new end are gone with the PTEs.
    std::lock_guard g(rmap_mu_);
    for (MappingImpl* m : rmap_) {
      std::lock_guard pg(m->poison_mu);
      m->poisoned.erase(m->poisoned.lower_bound(keep_pages), m->poisoned.end());
    }
  }
  count(&Counters::pages_truncated, locked.size());
  for (Page* p : locked) p->unlock();  // waiters recheck and see EOF
  clear_poison(keep_pages ? keep_pages - 1 : 0, keep_pages);
  if (ftr_err) throw_errno(ftr_err, "faultline: ftruncate(memfd)");
  if (zero_err) throw_errno(zero_err, "faultline: zeroing the new EOF page");
}

void FileImpl::truncate(uint64_t new_size) {
  if (!backend().writable()) throw_errno(EROFS, "faultline: truncate of read-only " + key);
  if ((new_size >> page_shift_) >= PageIndex::kMaxPages)
    throw_errno(EFBIG, "faultline: truncate beyond the largest file size");
  std::unique_lock size_guard(i_rwsem_);
  std::unique_lock inval(invalidate_lock_);
  const uint64_t old = i_size();
  if (new_size >= old) {
    if (int e = backend().truncate(new_size); e < 0)
      throw_errno(-e, "faultline: backend truncate of " + key);
    extend(new_size);  // zeroes the old EOF page's tail; the new range reads zeros
    return;
  }
  shrink_cache(new_size);
  if (int e = backend().truncate(new_size); e < 0)
    throw_errno(-e, "faultline: backend truncate of " + key);
}

void FileImpl::punch_hole(uint64_t off, uint64_t len) {
  if (len == 0) throw_errno(EINVAL, "faultline: punch_hole of zero length");
  if (off + len < off) throw_errno(EINVAL, "faultline: punch_hole range overflows");
  if (!backend().writable()) throw_errno(EROFS, "faultline: punch_hole of read-only " + key);
  if (!backend().can_punch_hole())
    throw_errno(EOPNOTSUPP, "faultline: the backend of " + key + " cannot punch holes");
  std::unique_lock size_guard(i_rwsem_);
  std::unique_lock inval(invalidate_lock_, std::defer_lock);
  if (FL_RULE(4)) inval.lock();  // R4: no fill brings old data back meanwhile
  const uint64_t size = i_size();
  const uint64_t end = std::min<uint64_t>(off + len, size);
  if (off >= end) return;
  const uint64_t ps = page_size();
  const uint64_t first_full = (off + ps - 1) >> page_shift_;
  const uint64_t end_full = end == size ? (end + ps - 1) >> page_shift_ : end >> page_shift_;
  // Partial pages at the ends are zeroed in place, not dropped.
  auto zero_partial = [&](uint64_t pg, uint64_t from, uint64_t to) {
    Page* p = index_.get(pg);
    p->lock();
    p->wait_clear(PG_writeback);
    int e = 0;
    if (p->test(PG_uptodate)) e = zero_frame_range(from, to);
    p->unlock();
    if (e) throw_errno(e, "faultline: zeroing a partial page of a punched range");
  };
  if (first_full > end_full) {  // inside one page
    zero_partial(off >> page_shift_, off, end);
  } else {
    if (off & (ps - 1)) zero_partial(off >> page_shift_, off, first_full << page_shift_);
    if (end_full << page_shift_ < end) zero_partial(end_full, end_full << page_shift_, end);
    drop_range(first_full, end_full, /*launder=*/false, /*keep_dirty=*/false, nullptr,
               "punch.before_drop");
  }
  // Poison on pages drop_range skipped (never cached: a refused page_mkwrite
  // on a hole) and on the partial end pages goes too, as file.hpp promises.
  clear_poison(off >> page_shift_, (end + ps - 1) >> page_shift_);
  // The pages are unlocked, the backend not yet punched: only the
  // invalidate_lock (R4 here, R1b in the fault path) keeps a fill from
  // reading the old data back in now (race F1).
  FL_POINT("punch.before_backend");
  if (int e = backend().punch_hole(off, end - off); e < 0)
    throw_errno(-e, "faultline: backend punch_hole of " + key);
}

std::vector<uint64_t> FileImpl::invalidate(uint64_t off, uint64_t len) {
  if (len == 0) throw_errno(EINVAL, "faultline: invalidate of zero length");
  if (off + len < off) throw_errno(EINVAL, "faultline: invalidate range overflows");
  std::shared_lock size_guard(i_rwsem_);
  std::unique_lock inval(invalidate_lock_, std::defer_lock);
  if (FL_RULE(4)) inval.lock();
  std::vector<uint64_t> failed;
  const auto [first, last] = pages_of(off, len);  // invalidate(0, UINT64_MAX): all (defect 5)
  drop_range(first, last, /*launder=*/true, /*keep_dirty=*/false, &failed,
             "invalidate.before_drop");
  clear_poison(first, last);  // also pages drop_range skipped (never cached)
  return failed;
}

void FileImpl::remote_changed(uint64_t off, uint64_t len) {
  FL_POINT("remote.changed");  // on the backend's thread (defect 8's test parks it here)
  if (len == 0) return;
  std::shared_lock size_guard(i_rwsem_);
  std::unique_lock inval(invalidate_lock_);
  const auto [first, last] = pages_of(off, len);  // a sink's "everything": clamped (defect 5)
  drop_range(first, last, /*launder=*/false, /*keep_dirty=*/true, nullptr, nullptr);
}

void FileImpl::remote_resized(uint64_t new_size) {
  // Another engine changed the size: follow it without touching the backend.
  if (!fits_index(new_size, page_shift_)) {
    core->log("faultline: " + key + " was resized underneath to " + std::to_string(new_size) +
              " bytes, more than the largest file size: ignored");
    return;
  }
  std::unique_lock size_guard(i_rwsem_);
  std::unique_lock inval(invalidate_lock_);
  const uint64_t old = i_size();
  try {
    if (new_size > old) extend(new_size);  // zeroes the old EOF page's tail
    // R3: the same sequence as truncate (size first, pages dropped under
    // their locks, the partial page's tail zeroed, the memfd shrunk, poison
    // records past the end forgotten), so a later regrowth faults normally.
    else if (new_size < old) shrink_cache(new_size);
  } catch (const std::system_error& e) {
    core->log(std::string("faultline: following a remote resize of ") + key + " failed: " +
              e.what());
  }
}

}  // namespace faultline::detail
