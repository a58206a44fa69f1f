// Write-back (R7, R8): dirty accounting, mkclean, copying dirty runs out to
// the backend, the write-back error sequence.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unistd.h>

#include "mm/engine_core.hpp"
#include "faultline/constants.hpp"
#include "mm/file_impl.hpp"

#include <shared_mutex>
#include "mm/mapping_impl.hpp"
#include "testing/sched.hpp"
#include "os/aligned_buffer.hpp"
#include "os/pagemap_scan.hpp"
#include "os/uffd.hpp"
#include <cerrno>
#include <sys/ioctl.h>
#include <sys/mman.h>

namespace faultline::detail {

namespace {
constexpr uint64_t kWritebackBatchPages = 256;  // pages per backend write
// Runs written from the frames themselves (2 MiB Files: no copy) are longer:
// one O_DIRECT write of 8 MiB took 264 ms per GiB here, of 2 MiB 324 ms.
constexpr uint64_t kWritebackInPlaceBytes = uint64_t{8} << 20;

/// The calling thread's write-back buffer of at least n bytes (nullptr when
/// it cannot be had). 4 KiB frames are copied out of the memfd into it (they
/// are not mapped in the engine); it is base-page aligned so that the backend
/// may write it to the device with O_DIRECT (Backend::write_aligned).
std::byte* wb_buffer(size_t n) {
  thread_local AlignedBuffer b;
  return b.get(n);
}

// Named guards (DESIGN section 3): each holds while its rule's guard is on;
// a race test's breaker switches it off.
/// R7a (W3, W8): write-back write-protects every view before it copies the
/// pages out. Breaker: copy and write first, write-protect afterwards.
inline bool mkclean_before_copy() { return FL_GUARD(7, 'a'); }
/// R7d (W9): a view's teardown keeps invalidate, remote changes and syncs'
/// scans out from its zap until the written pages are dirty.
/// (The invalidate_lock, exclusive: ExclusiveLock(l, rule_on).)
inline bool invalidate_held_off() { return FL_GUARD(7, 'd'); }
/// R8 (W7): write-back errors are a sequence every handle reports once
/// (errseq). Breaker: one error slot, cleared by whoever reports it first.
inline bool errseq_per_handle() { return FL_RULE(8); }
}  // namespace

bool FileImpl::mark_dirty(Page* p) {
  if (p->test_and_set(PG_dirty)) return false;
  p->dirtied_at.store(core->now_ms(), std::memory_order_relaxed);
  nr_dirty_.fetch_add(1, std::memory_order_relaxed);
  // The engine-wide count (dirty limits, Engine::stats) is in 4 KiB pages.
  core->nr_dirty.fetch_add(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  count(&Counters::pages_dirtied);
  return true;
}

bool FileImpl::clear_dirty(Page* p) {
  if (!p->test_and_clear(PG_dirty)) return false;
  nr_dirty_.fetch_sub(1, std::memory_order_relaxed);
  core->nr_dirty.fetch_sub(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  return true;
}

int FileImpl::mkclean(uint64_t pg, uint64_t n) {
  // R7: write-protect the pages in every view that can store to them before
  // dirty is cleared, so a later store faults and redirties. A view that
  // cannot be protected (ENOMEM for page tables ...) leaves the pages
  // writable there: the caller must not clear dirty (the error is returned).
  // ENOENT: no registered view there (R15 keeps munmapped views out of the
  // reverse map, so a reused range is never write-protected; kept defensive).
  int err = 0;
  MutexLock g(rmap_mu_, kRmapWait);
  for (MappingImpl* m : rmap_) {
    if (!m->tracks_writes()) continue;
    const uint64_t a = std::max(pg, m->pgoff), b = std::min(pg + n, m->pgoff + m->npages);
    if (a >= b) continue;
    // Async views: the pages are dirty and locked, so a plain protect is the
    // scan's re-protection (stores after it are found by the next scan).
    int e = -FL_FAIL("mkclean.writeprotect");
    if (!e) e = m->uffd->writeprotect(m->addr_of(a), (b - a) << page_shift_, true, true);
    if (e && e != -ENOENT && !err) err = e;
  }
  if (err) core->log(std::string("faultline: write-protecting a view of ") + key + " failed (" +
                     std::strerror(-err) + "): its pages stay dirty");
  return err;
}

template <class Fn>
int FileImpl::scan_view(MappingImpl& m, uint64_t first, uint64_t last, uint64_t want, bool protect,
                        Fn&& fn) {
  const uint64_t a = std::max(first, m.pgoff), b = std::min(last, m.pgoff + m.npages);
  if (a >= b) return 0;
  constexpr uint64_t kVec = 256;
  page_region vec[kVec];
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  // CHECK_WPASYNC: EPERM unless the range is WP_ASYNC-registered (never scan
  // and re-protect anything else).
  arg.flags = PM_SCAN_CHECK_WPASYNC | (protect ? PM_SCAN_WP_MATCHING : 0);
  arg.start = m.addr_of(a);
  arg.end = m.addr_of(b);
  arg.vec = reinterpret_cast<uintptr_t>(vec);
  arg.vec_len = kVec;
  arg.category_anyof_mask = want;
  arg.return_mask = want;
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t calls = 0;
  int err = 0;
  for (;;) {
    const int r = ::ioctl(core->pagemap_fd(), PAGEMAP_SCAN, &arg);
    ++calls;
    if (r < 0) {
      if (errno == EINTR) continue;
      err = -errno;
      break;
    }
    for (int i = 0; i < r; ++i)
      fn(m.pgoff + ((vec[i].start - m.start) >> page_shift_),
         (vec[i].end - vec[i].start) >> page_shift_, vec[i].categories);
    // The walk stops early when vec is full (and protects nothing past it).
    if (arg.walk_end == 0 || arg.walk_end >= arg.end) break;
    arg.start = arg.walk_end;
  }
  count(&Counters::pagemap_scans, calls);
  count(&Counters::pagemap_scan_pages, b - a);
  count(&Counters::pagemap_scan_ns, ns_since(t0));
  if (err) core->log(std::string("faultline: PAGEMAP_SCAN of a view of ") + key + " failed: " +
                     std::strerror(-err));
  return err;
}

std::vector<std::pair<uint64_t, uint64_t>> FileImpl::written_hint(uint64_t first, uint64_t last) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  {
    MutexLock g(rmap_mu_);
    for (MappingImpl* m : rmap_) {
      if (!m->async_wp()) continue;
      scan_view(*m, first, last, PAGE_IS_WRITTEN, false,
                [&](uint64_t pg, uint64_t n, uint64_t) { runs.emplace_back(pg, pg + n); });
    }
  }
  std::sort(runs.begin(), runs.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (auto& r : runs) {
    if (!merged.empty() && r.first <= merged.back().second)
      merged.back().second = std::max(merged.back().second, r.second);
    else
      merged.push_back(r);
  }
  return merged;
}

uint64_t FileImpl::harvest_locked(uint64_t pg, uint64_t n) {
  uint64_t found = 0;
  // R7 (async): under the page locks, one scan per view re-protects the
  // written pages and reports them atomically; they become dirty here.
  const uint64_t eof = eof_pages();
  MutexLock g(rmap_mu_);
  for (MappingImpl* m : rmap_) {
    if (!m->async_wp()) continue;
    scan_view(*m, pg, pg + n, PAGE_IS_WRITTEN, true, [&](uint64_t s, uint64_t k, uint64_t) {
      count(&Counters::pages_scan_written, k);
      found += k;
      for (uint64_t i = s; i < s + k; ++i) {
        Page* p = index_.find(i);
        if (p && i < eof && p->test(PG_uptodate)) mark_dirty(p);
      }
    });
  }
  return found;
}

void FileImpl::harvest(uint64_t first, uint64_t last) {
  uint64_t found = 0;
  for (auto [s, e] : written_hint(first, last)) {
    s = std::max(s, first);
    e = std::min(e, last);
    while (s < e) {
      // R12: the first page sleeps, the rest are try-locked.
      LockedRun run(*this, s, std::min<uint64_t>(kWritebackBatchPages, e - s));
      found += harvest_locked(s, run.size());
      s += run.size();
    }
  }
  // The time update (mtime) for stores that never reached the engine: once,
  // after the unlocks, never under a page lock (R6, W5).
  if (found) backend().update_time();
}

std::vector<uint64_t> FileImpl::zap_written(MappingImpl& m, uint64_t first, uint64_t last) {
  // Scan-then-zap would lose a store landing between the two (WP_ASYNC lets
  // it through with no event). Instead: note the present PTEs, zap them
  // (MADV_DONTNEED: the frames stay), and look at what the zap left: a
  // write-protected PTE leaves a WP marker (DESIGN section 2), a written one
  // leaves nothing. After the zap every store faults to the engine (and waits
  // for the page lock the caller holds).
  std::vector<std::pair<uint64_t, uint64_t>> present;
  scan_view(m, first, last, PAGE_IS_PRESENT, false,
            [&](uint64_t pg, uint64_t n, uint64_t) { present.emplace_back(pg, pg + n); });
  std::vector<uint64_t> written;
  if (present.empty()) return written;
  // Result discarded safely: a zap that failed leaves its PTEs present with no
  // WP marker, which the check below counts as written: the page stays dirty
  // (R7: never lost, at worst written back once more).
  for (auto [a, b] : present)
    ::madvise(reinterpret_cast<void*>(m.addr_of(a)), (b - a) << page_shift_, MADV_DONTNEED);
  std::vector<std::pair<uint64_t, uint64_t>> markers;
  scan_view(m, present.front().first, present.back().second, PAGE_IS_SWAPPED, false,
            [&](uint64_t pg, uint64_t n, uint64_t) { markers.emplace_back(pg, pg + n); });
  size_t j = 0;
  for (auto [a, b] : present) {
    for (uint64_t pg = a; pg < b; ++pg) {
      while (j < markers.size() && markers[j].second <= pg) ++j;
      const bool marker = j < markers.size() && markers[j].first <= pg;
      if (!marker) written.push_back(pg);
    }
  }
  count(&Counters::pages_scan_written, written.size());
  return written;
}

void FileImpl::harvest_view(MappingImpl& m) {
  // The zap below runs without the page locks, and its record of the written
  // pages lives only here until they are marked dirty. R7 (async, W9): the
  // invalidate_lock is held exclusively across the zap and the dirtying, so
  // invalidate / a remote change (which would find no written PTE and drop
  // the clean page) and a sync's scan (which would find nothing to write)
  // wait until those pages are dirty. Reclaim must not evict one of them
  // meanwhile either: it only try-locks reclaim_mu_ (it skips this File).
  // Order: invalidate_lock -> reclaim_mu_ -> page locks.
  ExclusiveLock inval(invalidate_lock_, invalidate_held_off());  // R7d
  MutexLock no_reclaim(reclaim_mu_);
  const std::vector<uint64_t> written = zap_written(m, m.pgoff, m.pgoff + m.npages);
  FL_POINT("teardown.after_zap");
  for (uint64_t pg : written) {
    Page* p = index_.find(pg);
    if (!p) continue;
    PageLock lock(p);
    if (p->test(PG_uptodate) && pg < eof_pages()) mark_dirty(p);
  }
}

void FileImpl::record_wb_error(int neg_errno) {
  const uint64_t err = static_cast<uint64_t>(-neg_errno);
  if (!errseq_per_handle()) {
    // Breaker: the pre-errseq scheme — one error slot, cleared by whoever
    // reports it first.
    wb_err_.store(static_cast<uint64_t>(err & 0xffff) | (uint64_t{1} << 63));
    return;
  }
  // R8: errseq — bump the sequence so every handle's cursor sees a change.
  // A new error is not seen by anyone yet (SEEN clear).
  uint64_t v = wb_err_.load();
  while (!wb_err_.compare_exchange_weak(v, (((v >> 16) + 1) << 16) | (err & (kErrseqSeen - 1)))) {
  }
}

uint64_t FileImpl::errseq_sample() const {
  const uint64_t v = wb_err_.load(std::memory_order_acquire);
  if (!errseq_per_handle()) return v;
  // R8: an error no handle has reported yet is reported to a handle opened
  // after it (the kernel's errseq_sample returns 0 then).
  if (v != 0 && !(v & kErrseqSeen)) return 0;
  return v & ~kErrseqSeen;
}

int FileImpl::check_wb_error(std::atomic<uint64_t>& cursor) {
  if (!errseq_per_handle()) {
    const uint64_t v = wb_err_.exchange(0);
    return (v >> 63) ? -static_cast<int>(v & 0xffff) : 0;
  }
  // R8: report an error this cursor has not seen, once: several threads may
  // sync through one handle at once, and only the one that advances the
  // cursor reports it (the kernel's errseq_check_and_advance under f_lock).
  const uint64_t now = wb_err_.load(std::memory_order_acquire);
  const uint64_t cur = now & ~kErrseqSeen;
  uint64_t seen = cursor.load(std::memory_order_acquire);
  if (cur == seen) return 0;
  if (!cursor.compare_exchange_strong(seen, cur, std::memory_order_acq_rel)) return 0;
  // R8: now seen: a handle opened later starts after it (a newer error, if
  // one came meanwhile, stays unseen).
  uint64_t v = now;
  if (!(v & kErrseqSeen)) wb_err_.compare_exchange_strong(v, now | kErrseqSeen);
  return -errseq_errno(now);
}

int FileImpl::copy_out(uint64_t pg, uint64_t len, const std::byte** data) {
  const uint64_t off = pg << page_shift_;
  if (huge()) {
    *data = alias_ + off;  // no copy: a 2 MiB run may be hundreds of MiB
    return 0;
  }
  std::byte* buf = wb_buffer(len);
  *data = buf;
  if (!buf) return -ENOMEM;  // the pages stay dirty, the error is reported
  const ssize_t r = ::pread(memfd_, buf, len, static_cast<off_t>(off));
  return r == static_cast<ssize_t>(len) ? 0 : r < 0 ? -errno : -EIO;
}

int FileImpl::write_copy(uint64_t pg, uint64_t n, const std::byte* data, uint64_t len, int err) {
  const uint64_t off = pg << page_shift_;
  if (!err) {
    const std::span<const std::byte> bytes(data, len);
    // The backend may write an aligned run straight to the device (O_DIRECT:
    // 2 MiB frames from the frame itself, 4 KiB ones from the aligned copy),
    // so write-back does not fill the kernel's cache with the file beside our
    // frames (issue 16: the memory limit bounds both), as fills read it.
    int w = backend().write_aligned(off, bytes);
    if (w == -EOPNOTSUPP) w = backend().write(off, bytes);
    if (w < 0) err = w;
  }
  if (err) {
    // The pages stay dirty (retried by the next write-back) and the error
    // goes to the File's errseq (R8): never silently dropped.
    count(&Counters::write_errors);
    record_wb_error(err);
    for (uint64_t i = 0; i < n; ++i) {
      Page* p = index_.find(pg + i);
      mark_dirty(p);
      p->set(PG_error);
    }
  } else {
    count(&Counters::bytes_written, len);
    count(&Counters::pages_written_back, n);
  }
  return err;
}

int FileImpl::write_out(uint64_t pg, uint64_t n, uint64_t len) {
  const std::byte* data = nullptr;
  const int err = copy_out(pg, len, &data);
  return write_copy(pg, n, data, len, err);
}

int FileImpl::writeback_size() {
  // Size changes hold i_rwsem_ exclusively: the size read here stays valid.
  SharedLock size_guard(i_rwsem_);
  const int64_t bs = backend().size();
  if (bs < 0 || static_cast<uint64_t>(bs) >= i_size()) return 0;
  if (int e = backend().truncate(i_size()); e < 0) {
    record_wb_error(e);
    return e;
  }
  return 0;
}

int FileImpl::writeback_all() {
  // Data, then the size: an extend whose tail pages never went out (punched,
  // invalidated, failed) reaches the backend only through writeback_size.
  const int e = writeback(0, PageIndex::kMaxPages);
  const int s = writeback_size();
  return e ? e : s;
}

void FileImpl::writeback_expired(uint32_t expire_ms) {
  if (async_) {
    const uint32_t now = core->now_ms();
    if (now - harvested_ms_.load(std::memory_order_relaxed) >= expire_ms) {
      harvested_ms_.store(now, std::memory_order_relaxed);
      writeback(0, PageIndex::kMaxPages);  // harvest, then everything (the File expired)
      return;
    }
  }
  if (nr_dirty() == 0) return;
  // Only pages dirty for longer than the expiry; no harvest (async: above).
  const uint32_t min_age = std::max<uint32_t>(1, expire_ms);
  writeback(0, PageIndex::kMaxPages, min_age, /*harvest_written=*/false);
}

unsigned FileImpl::begin_late_dirtying() {
  for (;;) {
    const uint64_t e = late_epoch_.load(std::memory_order_seq_cst);
    const unsigned slot = e & 1;
    late_dirtying_[slot].fetch_add(1, std::memory_order_seq_cst);
    if (late_epoch_.load(std::memory_order_seq_cst) == e) return slot;
    end_late_dirtying(slot);  // a sync flipped the epoch meanwhile: the other slot
  }
}

void FileImpl::end_late_dirtying(unsigned slot) {
  if (late_dirtying_[slot].fetch_sub(1, std::memory_order_seq_cst) == 1)
    late_dirtying_[slot].notify_all();
}

void FileImpl::wait_late_dirtying() {
  // Faults that began before this flip count in the old slot; later ones in
  // the new one (a store after sync began is not sync's to write). One sync
  // at a time: another flip now would make the new faults count in the slot
  // waited for here, which they could then hold off forever.
  MutexLock one_sync(late_sync_mu_);
  const unsigned slot = late_epoch_.fetch_add(1, std::memory_order_seq_cst) & 1;
  uint32_t v = late_dirtying_[slot].load(std::memory_order_seq_cst);
  if (v == 0) return;
  FL_POINT("wait.late_dirtying");
  for (; v != 0; v = late_dirtying_[slot].load(std::memory_order_seq_cst))
    late_dirtying_[slot].wait(v, std::memory_order_seq_cst);
}

std::vector<PageLock> FileImpl::lock_dirty_run(uint64_t pg, uint64_t last) {
  // At most 1 MiB worth of pages per backend write (8 MiB written in place
  // from 2 MiB frames), at least one page.
  const uint64_t batch = std::max<uint64_t>(
      1, (huge() ? kWritebackInPlaceBytes : kWritebackBatchPages << kBasePageShift) >> page_shift_);
  std::vector<PageLock> run;
  run.emplace_back(index_.get(pg));  // R12: the first page sleeps, the rest are try-locked
  while (run.size() < batch && pg + run.size() < last) {
    Page* p = index_.find(pg + run.size());
    if (!p || !p->test(PG_dirty)) break;
    PageLock l(p, std::try_to_lock);
    if (!l) break;
    run.push_back(std::move(l));
  }
  // Data integrity: wait for write-backs already in flight (page lock held;
  // ending write-back never takes it).
  for (const PageLock& l : run) l.page()->wait_clear(PG_writeback);
  // Only the dirty prefix below EOF goes out; the rest is unlocked.
  const uint64_t eof = eof_pages();
  size_t n = 0;
  while (n < run.size() && run[n].page()->test(PG_dirty) && pg + n < eof) ++n;
  run.resize(n);
  return run;
}

int FileImpl::writeback_run(uint64_t pg, std::vector<PageLock>& run) {
  const uint64_t n = run.size();
  const bool protect_first = mkclean_before_copy();  // R7a
  // R7: write-protect in every view, then clear dirty — only if every view
  // is protected: else a later store through a still-writable PTE would
  // never be written (the pages go out now and stay dirty; sync reports).
  const int wp_err = protect_first ? mkclean(pg, n) : 0;
  for (const PageLock& l : run) {
    FL_BUG_ON(!l.page()->locked());  // R7: dirty is cleared under the page lock
    if (!wp_err) clear_dirty(l.page());
    l.page()->set(PG_writeback);
  }
  const uint64_t off = pg << page_shift_;
  const uint64_t len = std::min<uint64_t>(n << page_shift_, i_size() - off);  // never past EOF
  std::vector<Page*> pages(n);
  for (uint64_t i = 0; i < n; ++i) pages[i] = run[i].page();
  if (protect_first) run.clear();  // unlocks
  // Copied out with the pages unlocked under PG_writeback (R7): a store now
  // faults and redirties (or waits, stable pages). 2 MiB frames are written
  // straight from the alias view, as the kernel writes from the page itself:
  // a store racing with the write redirties the page, which is written once
  // more (W8); with stable pages it waits. (The copy cost 4-9x here: msync
  // of 1 GiB of 2 MiB frames 2,050 -> 210 ms.)
  const std::byte* data = nullptr;
  int err = copy_out(pg, len, &data);
  FL_POINT("writeback.after_copy");
  FL_POINT("writeback.before_write");
  err = write_copy(pg, n, data, len, err);
  // The data is out (2 MiB frames: written from the frame itself, so only
  // now is a store too late for this write-back).
  FL_POINT("writeback.after_write");
  if (!protect_first) {
    // Breaker R7a: copy out and write first, write-protect afterwards.
    (void)mkclean(pg, n);  // breaker R7a: its result does not matter
    run.clear();
  }
  if (wp_err) record_wb_error(wp_err);  // R8: reported by sync, never silently dropped
  for (Page* p : pages) p->clear_and_wake(PG_writeback);
  return err ? err : wp_err;  // the pages stay dirty: retried next time
}

int FileImpl::writeback(uint64_t first, uint64_t last, uint32_t min_age_ms, bool harvest_written) {
  const uint32_t now = core->now_ms();
  auto old_enough = [&](const Page& p) {
    return min_age_ms == 0 ||
           static_cast<uint32_t>(now - p.dirtied_at.load(std::memory_order_relaxed)) >= min_age_ms;
  };
  // A sync (not the flusher's expiry) writes what a fault dirties for a store
  // whose thread it already woke: nothing stays dirty with no store since.
  if (min_age_ms == 0) wait_late_dirtying();
  // Async dirty tracking: pages written through a view become dirty first
  // (under their locks, scan + re-protect: R7).
  if (async_ && harvest_written) {
    // R7 (async, W9): not while a view's teardown has zapped written PTEs
    // whose pages are not dirty yet (it holds the invalidate_lock exclusive).
    SharedLock inval(invalidate_lock_);
    harvest(first, last);
  }
  int first_err = 0;
  for (uint64_t pg = first; pg < last;) {
    // Find the next dirty page (old enough, for the flusher's expiry).
    uint64_t next = ~uint64_t{0};
    index_.for_each(pg, last, [&](uint64_t i, Page& p) {
      if (!p.test(PG_dirty) || !old_enough(p)) return true;
      next = i;
      return false;
    });
    if (next == ~uint64_t{0}) break;
    pg = next;
    std::vector<PageLock> run = lock_dirty_run(pg, last);
    if (run.empty()) {
      ++pg;
      continue;
    }
    const uint64_t n = run.size();
    if (const int err = writeback_run(pg, run); err && !first_err) first_err = err;
    pg += n;
  }
  // Wait for write-backs others started in the range (data integrity).
  if (min_age_ms == 0)
    index_.for_each(first, last, [&](uint64_t, Page& p) {
      p.wait_clear(PG_writeback);
      return true;
    });
  return first_err;
}

}  // namespace faultline::detail
