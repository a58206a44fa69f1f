// The fault path: userfaultfd MISSING / MINOR / WP events on a File's views.
//
// Read fault (DESIGN section 2): lock the faulting page (R1), recheck that it
// is still this page and below EOF (R2), try-lock a window of neighbours
// (R12), fill what is not uptodate (R10), recheck EOF, install with
// UFFDIO_CONTINUE (write-protected where the first store must be noticed),
// and only then unlock.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <shared_mutex>
#include <sys/mman.h>
#include <vector>

#include "mm/engine_core.hpp"
#include "faultline/constants.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "testing/sched.hpp"
#include "os/uffd.hpp"

namespace faultline::detail {

namespace {
// The faulting page as page_mkwrite sees it (Backend::MkwritePage).
class MkwriteRef final : public Backend::MkwritePage {
 public:
  MkwriteRef(Page* p, uint64_t off, size_t size) : p_(p), off_(off), size_(size) {}
  uint64_t offset() const override { return off_; }
  size_t size() const override { return size_; }
  void lock() override {
    if (!locked_) p_->lock();
    locked_ = true;
  }
  bool locked() const override { return locked_; }

 private:
  Page* p_;
  uint64_t off_;
  size_t size_;
  bool locked_ = false;
};
}  // namespace

void FileImpl::wake(MappingImpl& m, uintptr_t addr) {
  m.uffd->wake(addr & ~(uintptr_t{page_size()} - 1), page_size());
}

void FileImpl::send_sigbus(MappingImpl& m, uintptr_t addr) {
  const uintptr_t a = addr & ~(uintptr_t{page_size()} - 1);
  const uint64_t pg = m.pgoff + ((a - m.start) >> page_shift_);
  // Recorded first, so no fault-around in another handler installs over the
  // poison between the ioctl and the record.
  count(&Counters::sigbus_sent);
  {
    std::lock_guard g(m.poison_mu);
    m.poisoned.insert(pg);
  }
  // R5 (W10): after a refused page_mkwrite no store may go through, so a
  // present PTE (a store to an installed page) goes first: MADV_DONTNEED (the
  // frame stays in the memfd; it leaves a WP marker), then the marker is
  // cleared (POISON refuses any PTE marker, DESIGN section 2) without waking
  // the thread, then POISON. Un-protecting first would open the present page
  // to every other thread's stores, with no event, until the DONTNEED.
  // (No PTE: the DONTNEED is a no-op. A failed madvise leaves the PTE: the
  // POISON below then gets EEXIST and the page is zapped again there.)
  if (FL_RULE(5) && m.shared) ::madvise(reinterpret_cast<void*>(a), page_size(), MADV_DONTNEED);
  if (m.tracks_writes()) m.uffd->writeprotect(a, page_size(), false, true);
  FL_POINT("sigbus.before_poison");
  int e = m.uffd->poison(a, page_size());
  if (e == EEXIST && m.shared) {
    // A present PTE (a store to an installed page was refused): drop this
    // view's PTE — the frame stays in the memfd — then poison.
    ::madvise(reinterpret_cast<void*>(a), page_size(), MADV_DONTNEED);
    if (m.tracks_writes()) m.uffd->writeprotect(a, page_size(), false, true);
    e = m.uffd->poison(a, page_size());
  }
  if (e != 0) {
    {
      std::lock_guard g(m.poison_mu);
      m.poisoned.erase(pg);
    }
    count(&Counters::sigbus_sent, static_cast<uint64_t>(-1));  // not sent after all
    wake(m, addr);
  }
}

void FileImpl::handle_fault(MappingImpl& m, uintptr_t addr, uint64_t flags) {
  const uint64_t pg = m.pgoff + ((addr - m.start) >> page_shift_);
  if (flags & UFFD_PAGEFAULT_FLAG_WP) {
    count(&Counters::wp_faults);
    wp_fault(m, pg, addr);
    return;
  }
  const bool minor = flags & UFFD_PAGEFAULT_FLAG_MINOR;
  count(minor ? &Counters::minor_faults : &Counters::missing_faults);
  if ((flags & UFFD_PAGEFAULT_FLAG_WRITE) && m.tracks_writes() && core->throttle_stores()) {
    // Past the hard dirty limit a store that needs a page installed is not
    // served now: its thread's wake is deferred to the flusher, which wakes it
    // after write-back; the store then faults again (the kernel's
    // balance_dirty_pages, R6: never under a page lock, never by parking a
    // handler thread). Not while write-back makes no progress (a failing
    // backend): the store would fault again forever.
    count(&Counters::stores_throttled);
    core->defer_wake(m.uffd, addr & ~(uintptr_t{page_size()} - 1), page_size());
    return;
  }
  read_fault(m, pg, addr, (flags & UFFD_PAGEFAULT_FLAG_WRITE) && m.tracks_writes(), minor);
}

uint64_t FileImpl::write_around_pages(MappingImpl& m, uint64_t pg, bool stream) {
  // The limit is in 4 KiB pages; a File with larger pages gets the same bytes.
  const uint64_t max = std::max<uint64_t>(
      1, (core->cfg.write_around_max_pages * kBasePageSize) >> page_shift_);
  const int advice = m.advice.load(std::memory_order_relaxed);
  uint64_t n = 1;
  if (advice == static_cast<int>(Advice::Random)) {
    n = 1;
  } else if (advice == static_cast<int>(Advice::Sequential)) {
    n = max;
  } else if (const uint64_t next = m.wa_next.load(std::memory_order_relaxed);
             next != ~uint64_t{0} && pg > m.wa_start.load(std::memory_order_relaxed) &&
             (pg <= next || stream)) {
    // The store stream continues inside or right after the last window (or,
    // `stream`, the storing fault continues the view's sequential readahead
    // stream past it): grow. Continuing the readahead stream grows it faster
    // (x4): with no write-protect faults in between (async mode, or pages
    // the stream made writable), doubling would take ten faults to reach a
    // useful size.
    n = std::min<uint64_t>(max, (stream ? 4 : 2) *
                                    std::max<uint64_t>(1, m.wa_pages.load(std::memory_order_relaxed)));
  }
  // Bound by the view and EOF.
  n = std::max<uint64_t>(1, std::min<uint64_t>({n, m.pgoff + m.npages - pg,
                                                 eof_pages() > pg ? eof_pages() - pg : 1}));
  m.wa_pages.store(static_cast<uint32_t>(n), std::memory_order_relaxed);
  m.wa_start.store(pg, std::memory_order_relaxed);
  m.wa_next.store(pg + n, std::memory_order_relaxed);
  return n;
}

FileImpl::WriteAround FileImpl::mkwrite_ahead(uint64_t first, uint64_t n, bool notify) {
  WriteAround wa;
  wa.first = first;
  for (uint64_t k = first; k < first + n; ++k) {
    Page* q = index_.get(k);
    const uint32_t gen = q->gen.load(std::memory_order_acquire);
    // A page dirty now needs no page_mkwrite, but that is an unlocked look
    // that write-back can falsify before the page is locked: it is then only
    // kept writable if it is still dirty under its lock (R5).
    const bool dirty = notify && q->test(PG_dirty);
    if (notify && !dirty) {
      MkwriteRef ref(q, k << page_shift_, page_size());
      const int e = backend().page_mkwrite(ref);  // R5: with the page unlocked
      if (ref.locked()) q->unlock();
      if (e < 0) break;  // no SIGBUS: no store has happened there yet
    }
    wa.gens.push_back(gen);
    wa.no_mkwrite.push_back(dirty);
  }
  return wa;
}

bool FileImpl::read_around(MappingImpl& m, uint64_t pg, bool cached) {
  // The kernel's mmap_miss (mm/filemap.c do_sync_mmap_readahead /
  // filemap_map_pages, with its 6.9 fix): a non-sequential fault that must
  // read counts a miss, one that finds its page cached a hit; past
  // kMmapLotsaMiss net misses the fault reads only its own page. The
  // neighbours a read-around fault reads stay unmapped (install_window
  // without kMapFilled), so a later touch of one faults and counts its hit:
  // fault-around maps every page it fills, and a mapped page is never heard
  // of again. Benign races: a hint shared by the view's faulting threads.
  const uint64_t fa = fault_around_pages();
  const uint64_t window = pg / fa;
  const uint64_t last = m.last_around.exchange(window, std::memory_order_relaxed);
  uint32_t miss = m.mmap_miss.load(std::memory_order_relaxed);
  // With read-around off there are no unmapped neighbours to hit; a miss in
  // the window of the view's previous random fault is the hit read-around
  // would have had (local access came back), so it counts as one.
  const bool would_hit = !cached && miss > kMmapLotsaMiss && window == last;
  if (cached || would_hit) {
    count(&Counters::readaround_hits);
    if (miss) m.mmap_miss.store(miss - 1, std::memory_order_relaxed);
    return false;  // cached: nothing to read; would_hit: off until the count drops
  }
  count(&Counters::readaround_misses);
  if (miss < kMmapLotsaMiss * 10) m.mmap_miss.store(++miss, std::memory_order_relaxed);
  if (miss > kMmapLotsaMiss) {
    count(&Counters::readaround_off);
    return false;
  }
  return true;
}

void FileImpl::read_fault(MappingImpl& m, uint64_t pg, uintptr_t addr, bool write, bool minor) {
  // Choose the window: a fault right after the stream's last window, or inside
  // a stream window (readahead in flight, or a page another handler skipped),
  // continues the stream and grows it; anything else gets an aligned
  // fault-around window, read whole or not by the adaptive read-around.
  const uint64_t fa = fault_around_pages();  // in this File's pages (2 MiB frames: fewer)
  const int advice = m.advice.load(std::memory_order_relaxed);
  const uint64_t ra_start = m.ra_start.load(std::memory_order_relaxed);
  const uint64_t ra_next = m.ra_next.load(std::memory_order_relaxed);
  const bool sequential =
      advice == static_cast<int>(Advice::Sequential) ||
      (advice == static_cast<int>(Advice::Normal) && ra_next != ~uint64_t{0} &&
       (pg == ra_next ||
        (m.ra_stream.load(std::memory_order_relaxed) && pg >= ra_start && pg < ra_next)));
  uint64_t ws, we;
  // What the window does with the neighbours of pg (install_window).
  unsigned around = kFillAndMap;
  // The stream's window for the next fault's sequential check.
  uint64_t stream_ws = 0, stream_we = 0;
  if (sequential) {
    const uint64_t cur = advice == static_cast<int>(Advice::Sequential)
                             ? readahead_max_pages()
                             : std::max<uint64_t>(fa, m.ra_pages.load(std::memory_order_relaxed));
    const uint64_t next = std::min<uint64_t>(readahead_max_pages(), cur * 2);
    m.ra_pages.store(static_cast<uint32_t>(next), std::memory_order_relaxed);
    ws = pg;
    we = pg + std::max<uint64_t>(next, 1);
  } else {
    m.ra_pages.store(static_cast<uint32_t>(fa), std::memory_order_relaxed);
    ws = pg - (pg % fa);
    we = ws + fa;
    const Page* cached = index_.find(pg);
    const bool hit = cached && cached->test(PG_uptodate);
    // Random advice: only the faulting page is read (the cached neighbours
    // are still mapped, as the kernel's fault-around does under MADV_RANDOM).
    const bool whole = advice == static_cast<int>(Advice::Normal) && read_around(m, pg, hit);
    if (whole) {
      // Read the window, map the faulting page and what was cached before;
      // the pages read for it are probes (a later fault on one is a hit).
      around = kFillAround;
      // Read-around: let the backend fetch the neighbourhood in the
      // background (a later fault nearby then fills from a warm source).
      // 2 MiB Files read it into their frames instead (fault_around_pages()).
      const uint64_t ra = (core->cfg.read_around_pages * kBasePageSize) >> page_shift_;
      if (!huge() && ra > fa) {
        const uint64_t rs = pg - (pg % ra);
        const uint64_t eof = eof_pages();
        if (rs < eof) backend().will_need(rs << page_shift_, (std::min(rs + ra, eof) - rs) << page_shift_);
      }
    } else {
      around = kMapCached;  // read pg alone (if not cached), map the cached window
    }
    // A fault that read only its page continues a stream at pg + 1.
    if (!whole && !hit) stream_ws = pg, stream_we = pg + 1;
  }
  ws = std::max(ws, m.pgoff);
  we = std::min(we, m.pgoff + m.npages);

  WriteAround wa, ra_wa;
  // page_mkwrite only in page_mkwrite mode: async dirty tracking has no
  // per-page notification (a storing fault still installs its page writable
  // and dirty, R6).
  const bool notify = write && !m.async_wp();
  // No speculative dirtying past the hard dirty limit.
  if (write && !core->over_dirty_limit()) {
    // Write-around: a sequential store stream gets the following pages
    // writable and dirty in this round trip (page_mkwrite for each first,
    // unlocked, R5). The window covers them. Installing them writable now
    // matters: a store to a page installed write-protected costs a fault even
    // after the engine lifts the protection (DESIGN section 2), and in async
    // mode a fault of its own.
    // The store stream continues the readahead stream only when this fault
    // is at the page right after the last window (not merely inside it).
    const uint64_t n = write_around_pages(m, pg, sequential && pg == ra_next);
    if (n > 1) {
      wa = mkwrite_ahead(pg + 1, n - 1, notify);
      we = std::max<uint64_t>(we, pg + 1 + wa.gens.size());
      // A store stream whose write-around reached the end of the window
      // continues into the readahead window below: up to as many pages again
      // are installed writable and dirty there (R12: bounded and counted).
      // page_mkwrite now, before any lock (R5; and never under the
      // invalidate_lock: a backend may need it). Unused if the readahead does
      // not happen: a reservation for a page never dirtied, at most n pages.
      if (sequential && wa.gens.size() == n - 1 && we < m.pgoff + m.npages) {
        const uint64_t ra_end = std::min<uint64_t>(we + (we - ws), m.pgoff + m.npages);
        ra_wa = mkwrite_ahead(we, std::min<uint64_t>(ra_end - we, n), notify);
        m.wa_start.store(we, std::memory_order_relaxed);
        m.wa_next.store(we + ra_wa.gens.size(), std::memory_order_relaxed);
      }
    }
  }
  uint32_t mkwrite_gen = 0;
  if (notify) {
    // R5: page_mkwrite is called with the page unlocked. A backend that
    // returns it locked gets it unlocked again here: the fault path must take
    // the invalidate_lock before any page lock, and rechecks under its own.
    Page* wp = index_.get(pg);
    // R5: the page page_mkwrite is told about, checked again under the lock.
    mkwrite_gen = wp->gen.load(std::memory_order_acquire);
    MkwriteRef ref(wp, pg << page_shift_, page_size());
    const int e = backend().page_mkwrite(ref);
    if (ref.locked()) wp->unlock();
    if (e < 0) {
      count(&Counters::mkwrite_errors);
      send_sigbus(m, addr);
      return;
    }
  }
  FL_POINT("fault.after_mkwrite");
  // The memory limit (issue 16): the frames this fill needs are charged
  // before any lock is taken; a fault that would pass the limit reclaims (or
  // waits for reclaim) first and never pushes the cache over it. With less
  // room the window shrinks (the faulting page is always charged when it
  // must be read; a fault on a cached page charges nothing, or at the limit
  // it would evict a page for nothing, even the one it installs). Without
  // read-around only the faulting page is filled, and charged.
  const Page* fp = index_.find(pg);
  const bool pg_missing = !fp || !fp->test(PG_uptodate);
  const uint64_t budget =
      charge((around & kFillAround) ? count_missing(ws, std::max(we, pg + 1)) : count_missing(pg, pg + 1),
             pg_missing ? 1 : 0, /*may_wait=*/true);
  struct Uncharge {
    FileImpl* f;
    uint64_t n;
    ~Uncharge() { f->uncharge(n); }
  } uncharge_at_end{this, budget};
  // R1b: fills exclude truncate / punch / invalidate (invalidate_lock shared)
  // and (R1a) the faulting page stays locked from lookup until its PTE is in.
  std::shared_lock<SleepingRwLock> inval(invalidate_lock_, std::defer_lock);
  Page* p = index_.get(pg);
  for (;;) {
    const uint32_t gen = p->gen.load(std::memory_order_acquire);
    FL_POINT("fault.before_lock");
    if (FL_GUARD(1, 'b')) inval.lock();  // R1b
    if (!FL_GUARD(1, 'a')) break;
    p->lock();  // R1a
    if (FL_RULE(2) && p->gen.load(std::memory_order_acquire) != gen) {  // R2: not the same page
      p->unlock();
      if (inval.owns_lock()) inval.unlock();
      count(&Counters::fault_retries);
      continue;
    }
    break;
  }
  if (FL_RULE(2) && pg >= eof_pages()) {  // R2: past EOF — the refault meets the memfd's end
    if (FL_GUARD(1, 'a')) p->unlock();
    count(&Counters::fault_retries);
    wake(m, addr);
    return;
  }
  if (notify && FL_RULE(5) && p->gen.load(std::memory_order_acquire) != mkwrite_gen) {
    // R5: the page page_mkwrite accepted was dropped since (punch,
    // invalidate, reclaim): the store retries the whole fault, and the new
    // page gets its own page_mkwrite (the kernel's VM_FAULT_NOPAGE).
    if (FL_GUARD(1, 'a')) p->unlock();
    count(&Counters::fault_retries);
    wake(m, addr);
    return;
  }
  // Write-around into the readahead window happens after the storing thread
  // is woken: counted from before the wake, so a sync waits for it.
  const LateDirtying late(this, !ra_wa.gens.empty());
  // Hit ratio (Stats::cache_hits / cache_misses): the faulting page was cached.
  // A hit is an access reclaim must see (R9: a page it sampled faults here).
  if (p->test(PG_uptodate)) {
    count(&Counters::cache_hits);
    p->set(PG_referenced);
  } else {
    count(&Counters::cache_misses);
  }
  const bool installed = install_window(m, ws, we, pg, write, minor, false,
                                        wa.gens.empty() ? nullptr : &wa, budget, around);
  if (!installed) return;
  m.ra_start.store(stream_we ? stream_ws : ws, std::memory_order_relaxed);
  m.ra_next.store(stream_we ? stream_we : we, std::memory_order_relaxed);
  m.ra_stream.store(sequential, std::memory_order_relaxed);
  if (sequential && we < m.pgoff + m.npages && we < eof_pages()) {
    // Asynchronous readahead: the faulting thread already runs; fill and map
    // the next window now, so the stream rarely waits for a round trip.
    const uint64_t next_we = std::min<uint64_t>(we + (we - ws), m.pgoff + m.npages);
    // Within the memory limit without waiting (the invalidate_lock is held):
    // no room, no readahead.
    const uint64_t need = count_missing(we, next_we);
    const uint64_t ra_budget = charge(need, 0, /*may_wait=*/false);
    const Uncharge ra_uncharge{this, ra_budget};
    if ((need == 0 || ra_budget > 0) && (!FL_GUARD(1, 'c') || index_.get(we)->trylock())) {  // R1c (R12: try-lock)
      // readahead: a failed fill of `we` must not poison a page nobody touched.
      if (install_window(m, we, next_we, we, false, false, /*readahead=*/true,
                         ra_wa.gens.empty() ? nullptr : &ra_wa, ra_budget))
        m.ra_next.store(next_we, std::memory_order_relaxed);
    }
  }
  if (write) {
    // R6: the time update (mtime) for a store that arrived as a MISSING /
    // MINOR fault (and its write-around): after the unlock, never under a
    // page lock (W5), as on the write-protect path; and outside the
    // invalidate_lock, as page_mkwrite (a backend's time update may need it).
    if (inval.owns_lock()) inval.unlock();
    backend().update_time();
    FL_POINT("fault.after_time_update");
  }
}

uint64_t FileImpl::count_missing(uint64_t ws, uint64_t we) {
  we = std::min(we, eof_pages());
  uint64_t n = 0;
  for (uint64_t k = ws; k < we; ++k) {
    const Page* p = index_.find(k);
    if (!p || !p->test(PG_uptodate)) ++n;
  }
  return n;
}

uint64_t FileImpl::charge(uint64_t pages, uint64_t min, bool may_wait) {
  const unsigned s = page_shift_ - kBasePageShift;
  const uint64_t got = core->charge(pages << s, min << s, may_wait);
  // Whole pages of this File only (a 2 MiB frame is 512 4 KiB pages): what
  // the limit trimmed to less than a frame goes back now, or it would stay
  // charged for good (uncharge() gives back whole pages).
  core->uncharge(got & ((uint64_t{1} << s) - 1));
  return got >> s;
}

void FileImpl::uncharge(uint64_t pages) { core->uncharge(pages << (page_shift_ - kBasePageShift)); }

bool FileImpl::install_window(MappingImpl& m, uint64_t ws, uint64_t we, uint64_t must, bool write,
                              bool minor, bool readahead, const WriteAround* wa,
                              uint64_t fill_budget, unsigned around) {
  // `must` is locked by the caller (R1a; readahead's first page R1c). R12 and
  // R1c: the others only try-locked, ascending, and held until installed.
  const uint64_t n = we - ws;
  std::vector<Page*> pages(n, nullptr);
  std::vector<uint32_t> gens(n, 0);
  std::vector<char> held(n, 0);
  pages[must - ws] = index_.get(must);
  held[must - ws] = readahead ? FL_GUARD(1, 'c') : FL_GUARD(1, 'a');
  for (uint64_t i = 0; i < n; ++i) {
    if (ws + i == must) continue;
    Page* q = index_.get(ws + i);
    if (!FL_GUARD(1, 'c')) {
      pages[i] = q;  // breaker R1c: a neighbour filled and installed unlocked
    } else if (q->trylock()) {
      pages[i] = q;
      held[i] = 1;
    }
  }
  for (uint64_t i = 0; i < n; ++i)
    if (pages[i]) gens[i] = pages[i]->gen.load(std::memory_order_acquire);
  auto drop = [&](uint64_t i) {
    if (held[i]) pages[i]->unlock();
    pages[i] = nullptr;
  };
  // R2: EOF again, now that the window is locked (truncate sets i_size before
  // it locks pages, R3).
  uint64_t eof = eof_pages();
  if (FL_RULE(2))
    for (uint64_t i = 0; i < n; ++i)
      if (pages[i] && ws + i >= eof) drop(i);
  bool must_error = false;

  FL_POINT("fault.before_fill");
  // Fill contiguous runs of locked pages that are not uptodate (R10: the
  // index's flag decides, never MISSING vs MINOR).
  auto needs_fill = [&](uint64_t i) {
    if (pages[i]->test(PG_uptodate)) return false;
    if (!FL_RULE(10) && minor && ws + i == must) return false;  // breaker: "MINOR = filled"
    return true;
  };
  // Without kFillAround only the faulting page is read: the neighbours that
  // are not uptodate are left out.
  if (!(around & kFillAround))
    for (uint64_t i = 0; i < n; ++i)
      if (ws + i != must && pages[i] && needs_fill(i)) drop(i);
  // Pages this window fills (without kMapFilled they stay unmapped).
  std::vector<char> filled(n, 0);
  // The memory limit: fill no more pages than were charged, the faulting page
  // first (a fault always gets its page; readahead may get nothing).
  uint64_t late_charge = 0;  // the faulting page, cached at the look and evicted since
  if (fill_budget != ~uint64_t{0}) {
    uint64_t left = fill_budget;
    const uint64_t mi = must - ws;
    if (pages[mi] && needs_fill(mi)) {
      if (left) --left;
      else if (readahead) drop(mi);
      // Charged now (reclaim evicts sampled pages whose touch is this fault):
      // try-locks only under these locks, over by this page at worst.
      else late_charge = charge(1, 1, /*may_wait=*/false);
    }
    for (uint64_t i = 0; i < n; ++i) {
      if (i == mi || !pages[i] || !needs_fill(i)) continue;
      if (left) --left;
      else drop(i);
    }
  }
  for (uint64_t i = 0; i < n;) {
    if (!pages[i] || !needs_fill(i)) {
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && pages[j] && needs_fill(j)) ++j;
    const auto t_fill = std::chrono::steady_clock::now();
    const int fill_err = fill(ws + i, j - i);
    count(&Counters::fill_ns, ns_since(t_fill));
    if (fill_err == 0) {
      count(&Counters::pages_filled, j - i);
      for (uint64_t k = i; k < j; ++k) {
        pages[k]->clear(PG_error);
        mark_uptodate(ws + k, pages[k]);
        filled[k] = 1;
      }
    } else {
      // A run failed. Like the kernel after a failed readahead, retry only the
      // faulting page on its own (one bad page must not fail the access to a
      // good one), unless the backend is unreachable (a retry would wait for
      // its timeout again). The neighbours are just not installed.
      count(&Counters::read_errors);
      const bool unreachable =
          fill_err == -ETIMEDOUT || fill_err == -ENOTCONN || fill_err == -ESHUTDOWN;
      for (uint64_t k = i; k < j; ++k) {
        if (ws + k != must) {
          drop(k);
          continue;
        }
        if (j - i > 1 && !unreachable && fill(must, 1) == 0) {
          count(&Counters::pages_filled);
          pages[k]->clear(PG_error);
          mark_uptodate(ws + k, pages[k]);
          continue;
        }
        pages[k]->set(PG_error);
        must_error = true;
      }
    }
    i = j;
  }
  FL_POINT("fault.after_fill");
  // R2: before installing, under the locks, EOF once more.
  eof = eof_pages();
  if (FL_RULE(2))
    for (uint64_t i = 0; i < n; ++i)
      if (pages[i] && ws + i >= eof && !(ws + i == must && must_error)) drop(i);
  // R10: map only pages that are in the index (same generation) and uptodate.
  // Pages this view answered with POISON keep raising SIGBUS until the range
  // is invalidated, punched or truncated: CONTINUE would replace the poison
  // marker, so fault-around skips them.
  std::vector<bool> poisoned;
  {
    std::lock_guard g(m.poison_mu);
    if (!m.poisoned.empty()) {
      poisoned.assign(n, false);
      for (auto it = m.poisoned.lower_bound(ws); it != m.poisoned.end() && *it < we; ++it)
        poisoned[*it - ws] = true;
    }
  }
  // Read-around probes: pages filled here for a fault that maps only its own
  // page and what was cached before (and its write-around) stay unmapped.
  auto probe = [&](uint64_t i) {
    return !(around & kMapFilled) && filled[i] && ws + i != must && !(wa && wa->covers(ws + i));
  };
  auto installable = [&](uint64_t i) {
    if (!pages[i] || (ws + i == must && must_error)) return false;
    if (!poisoned.empty() && poisoned[i]) return false;
    if (probe(i)) return false;
    if (!FL_RULE(10)) return true;
    return pages[i]->test(PG_uptodate) && pages[i]->gen.load(std::memory_order_acquire) == gens[i];
  };

  // Install runs of uptodate pages with one CONTINUE each; the mode is passed
  // explicitly every time (WP markers stick).
  if (write && installable(must - ws)) {
    // R7 (W11): stable pages — a store arriving as a MISSING/MINOR fault
    // waits for write-back of its page to end, as on the WP path.
    wait_stable(pages[must - ws]);
    // R6: the page is marked dirty and made writable under its lock.
    mark_dirty(pages[must - ws]);
  }
  if (wa) {
    // Write-around pages whose page_mkwrite succeeded and that are still the
    // same page (R5 recheck, under their locks): dirty now, writable below.
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t k = ws + i;
      if (!wa->covers(k) || !installable(i)) continue;
      if (pages[i]->gen.load(std::memory_order_acquire) != wa->gens[k - wa->first]) continue;
      // R5: no page_mkwrite was called because it was dirty: only if it
      // still is (write-back may have cleaned it meanwhile); else it is
      // installed write-protected and its first store faults.
      if (wa->no_mkwrite[k - wa->first] && !pages[i]->test(PG_dirty)) continue;
      // Stable pages: a page under write-back is not made writable (W8).
      if (stable_pages_ && pages[i]->test(PG_writeback)) continue;
      if (mark_dirty(pages[i])) count(&Counters::pages_write_around);
    }
  }
  auto wp_mode = [&](uint64_t i) {
    if (!m.tracks_writes()) return false;
    if (ws + i == must && write) return false;
    // R7 (W11): a page under write-back (redirtied meanwhile) is installed
    // write-protected with stable pages: its first store faults and waits.
    if (stable_pages_ && FL_GUARD(7, 'c') && pages[i]->test(PG_writeback)) return true;
    return !pages[i]->test(PG_dirty);  // clean pages: the first store must fault
  };
  FL_POINT("fault.before_install");
  // Mapped again: reclaim samples a page before it judges it unused (R9).
  for (uint64_t i = 0; i < n; ++i)
    if (installable(i)) pages[i]->clear(PG_sampled);
  bool must_installed = false;
  uint64_t mapped_around = 0;
  for (uint64_t i = 0; i < n;) {
    if (!installable(i)) {
      ++i;
      continue;
    }
    const bool mode = wp_mode(i);
    uint64_t j = i + 1;
    while (j < n && installable(j) && wp_mode(j) == mode) ++j;
    uint64_t done = 0;
    const uint64_t len = (j - i) << page_shift_;
    while (done < len) {
      const auto t_install = std::chrono::steady_clock::now();
      const auto r = m.uffd->continue_range(m.addr_of(ws + i) + done, len - done, mode);
      count(&Counters::install_ns, ns_since(t_install));
      if (r.err == 0) {
        count(&Counters::pages_installed, (len - done) >> page_shift_);
        done = len;
      } else if (r.err == EAGAIN && r.done > 0) {  // stopped at a page already mapped
        count(&Counters::pages_installed, static_cast<uint64_t>(r.done) >> page_shift_);
        done += static_cast<uint64_t>(r.done);
      } else if (r.err == EEXIST || r.err == EAGAIN) {  // this page is mapped: skip it
        done += page_size();
      } else {
        break;  // EINVAL past the memfd's end, EFAULT a hole, ENOENT view gone
      }
    }
    // EEXIST counts: the page is mapped in this view either way.
    if (must >= ws + i && must < ws + j && ((must - ws - i) << page_shift_) < done)
      must_installed = true;
    mapped_around += (std::min<uint64_t>(done >> page_shift_, j - i)) -
              ((must >= ws + i && must < ws + j && must_installed) ? 1 : 0);
    i = j;
  }
  count(&Counters::pages_fault_around, mapped_around);
  if (!(around & kMapFilled)) {
    uint64_t probes = 0;
    for (uint64_t i = 0; i < n; ++i) probes += pages[i] && probe(i);
    count(&Counters::pages_read_around, probes);
  }

  // Error on the faulting page: SIGBUS for this access, the rest of the file
  // keeps working.
  if (must_error && !readahead) send_sigbus(m, m.addr_of(must));
  for (uint64_t i = 0; i < n; ++i)
    if (pages[i]) drop(i);  // R1: unlock only after the PTEs are in
  if (!must_installed && !must_error) wake(m, m.addr_of(must));
  uncharge(late_charge);
  return must_installed;
}


void FileImpl::wait_stable(Page* p) {
  // R7: with stable pages a store to a page under write-back waits until it
  // ends (the kernel's folio_wait_stable), holding the page lock (ending
  // write-back never takes it).
  if (stable_pages_ && FL_GUARD(7, 'c')) p->wait_clear(PG_writeback);  // R7c
}

void FileImpl::write_around_after_wp(MappingImpl& m, uint64_t pg) {
  // Write-around for stores to pages installed write-protected: page_mkwrite
  // for the following pages (unlocked, R5), then under each page's lock
  // (try-locked, R12) recheck, mark dirty and make writable (R6).
  const uint64_t n = write_around_pages(m, pg);
  if (n <= 1 || core->over_dirty_limit()) return;
  const WriteAround wa = mkwrite_ahead(pg + 1, n - 1);
  uint64_t run_start = 0, run_len = 0;
  auto flush_run = [&] {
    if (run_len) m.uffd->writeprotect(m.addr_of(run_start), run_len << page_shift_, false, true);
    run_len = 0;
  };
  std::vector<Page*> locked;
  for (uint64_t i = 0; i < wa.gens.size(); ++i) {
    const uint64_t k = wa.first + i;
    Page* q = index_.get(k);
    if (!q->trylock()) break;
    locked.push_back(q);
    if (q->gen.load(std::memory_order_acquire) != wa.gens[i] || !q->test(PG_uptodate) ||
        k >= eof_pages() || (stable_pages_ && q->test(PG_writeback)) ||
        (wa.no_mkwrite[i] && !q->test(PG_dirty)))  // R5: cleaned since, no page_mkwrite
      break;
    if (mark_dirty(q)) count(&Counters::pages_write_around);
    if (!run_len) run_start = k;
    ++run_len;
  }
  flush_run();
  for (Page* q : locked) q->unlock();
}

void FileImpl::wp_fault(MappingImpl& m, uint64_t pg, uintptr_t addr) {
  Page* p = index_.find(pg);
  if (!p) {
    wake(m, addr);
    return;
  }
  const uintptr_t a = addr & ~(uintptr_t{page_size()} - 1);
  const uint32_t gen = p->gen.load(std::memory_order_acquire);
  // R5: page_mkwrite with the page unlocked; the backend may refuse, or take
  // the page lock and return with it held.
  MkwriteRef ref(p, pg << page_shift_, page_size());
  FL_POINT("wp.before_mkwrite");
  const int e = backend().page_mkwrite(ref);
  if (e < 0 && FL_RULE(5)) {
    // W6: SIGBUS for the store; the page stays clean and write-protected.
    if (ref.locked()) p->unlock();
    count(&Counters::mkwrite_errors);
    send_sigbus(m, addr);
    return;
  }
  FL_POINT("wp.before_lock");
  if (!ref.locked() || !FL_RULE(5)) p->lock();  // R5: never lock twice (W4)
  // R5: recheck under the lock — still this page, uptodate, below EOF — else
  // let the access retry the whole fault (VM_FAULT_NOPAGE).
  if (FL_RULE(5) && (p->gen.load(std::memory_order_acquire) != gen || !p->test(PG_uptodate) ||
                     pg >= eof_pages())) {
    p->unlock();
    count(&Counters::fault_retries);
    wake(m, addr);
    return;
  }
  // Stable pages: a store to a page under write-back waits until it ends
  // (the kernel's wait_for_stable_page); otherwise the page is redirtied and
  // written once more (W8).
  wait_stable(p);
  // R6: mark dirty and make the PTE writable under the lock, then unlock.
  mark_dirty(p);
  if (!FL_RULE(6)) {
    // Breaker: the time update under the page lock (W5), and the unlock
    // before the PTE is writable (W2).
    FL_POINT("wp.before_time_update");
    backend().update_time();
    p->unlock();
    FL_POINT("wp.before_unprotect");
    m.uffd->writeprotect(a, page_size(), false);
    return;
  }
  FL_POINT("wp.before_unprotect");
  // Past the hard dirty limit the storing thread is throttled: its wake is
  // deferred to the flusher (never a sleeping handler, never under the lock).
  // (Not while write-back makes no progress: its mkclean would protect the
  // page again before the deferred wake, and the store would fault forever.)
  const bool throttle = core->throttle_stores();
  if (throttle) count(&Counters::stores_throttled);
  {
    const LateDirtying late(this, true);  // before the wake: sync waits for it
    m.uffd->writeprotect(a, page_size(), false, /*dontwake=*/throttle);
    p->unlock();
    if (throttle) core->defer_wake(m.uffd, a, page_size());
    FL_POINT("wp.after_wake");
    write_around_after_wp(m, pg);
  }
  // R6: time update after the unlock, never under the page lock (W5).
  FL_POINT("wp.before_time_update");
  backend().update_time();
}

}  // namespace faultline::detail
