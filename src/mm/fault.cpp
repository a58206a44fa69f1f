// The fault path: userfaultfd MISSING / MINOR / WP events on a File's views.
//
// Read fault (DESIGN section 2), along the kernel's seams: the policy first,
// with no lock held — the window (fault-around, adaptive read-around, the
// readahead stream), write-around and its page_mkwrite calls (R5), the frames
// to charge under the memory limit; then the locked install: lock the faulting
// page (R1a) under the invalidate_lock (R1b), recheck it (R2, R5), try-lock the
// window's other pages (R1c, R12), recheck EOF (R2), fill what is not uptodate
// (R10), recheck EOF, install with UFFDIO_CONTINUE (write-protected where the
// first store must be noticed), and only then unlock (R1). A shared view's
// pages not in the memfd are filled and installed by one UFFDIO_COPY
// (fill_copy), their threads woken after the recheck (wake_copied).
//
// Lock order (DESIGN section 5): invalidate_lock (shared) -> the faulting page
// (sleeping) -> the window's other pages (try-lock, ascending) -> a view's
// poison_mu. Nothing sleeps on a page lock holding a try-locked one.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <vector>

#include "mm/engine_core.hpp"
#include "faultline/constants.hpp"
#include "mm/bug.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "mm/runs.hpp"
#include "testing/sched.hpp"
#include "os/pagemap_scan.hpp"
#include "os/uffd.hpp"
#include "os/zap.hpp"

namespace faultline::detail {

namespace {
/// Times in a row a SIGBUS may fail to be sent at one page of a view (its
/// thread woken to fault again each time) before the thread is left blocked
/// (send_sigbus).
constexpr uint32_t kSigbusTries = 8;

// Rule guards (DESIGN section 3). Each is true while its rule's guard is on:
// always, unless a race test broke that rule (FAULTLINE_BREAK; constant true
// without FAULTLINE_TESTING). Under a breaker only the line that asks changes.
/// R1a: the faulting page is locked from lookup until its PTE is in.
inline bool lock_faulting_page() { return FL_GUARD(1, 'a'); }
/// R1b: a fill holds the invalidate_lock shared (no truncate, punch or
/// invalidate between its read of the backend and its install).
inline bool fill_under_invalidate_lock() { return FL_GUARD(1, 'b'); }
/// R1c: the window's other pages are try-locked and held until installed.
inline bool lock_window_pages() { return FL_GUARD(1, 'c'); }
/// R2: under the page lock, recheck that it is the same page, below EOF.
inline bool recheck_under_lock() { return FL_RULE(2); }
/// R5: under the page lock, recheck the page page_mkwrite was called for.
inline bool recheck_mkwrite_page() { return FL_RULE(5); }
/// R5: a refused page_mkwrite gives the store SIGBUS (W6).
inline bool honour_mkwrite_refusal() { return FL_RULE(5); }
/// R5: a page page_mkwrite returned locked is not locked again (W4).
inline bool keep_mkwrite_lock() { return FL_RULE(5); }
/// R5 (W10): SIGBUS removes a present PTE before it clears the WP marker.
inline bool zap_before_unprotect() { return FL_RULE(5); }
/// R6: the PTE is made writable before the unlock, the time updated after.
inline bool unprotect_before_unlock() { return FL_RULE(6); }
/// R7c: with stable pages every store waits for write-back to end.
inline bool stable_pages_wait() { return FL_GUARD(7, 'c'); }
/// R10: uptodate is the index's flag, never inferred from a MINOR fault.
inline bool uptodate_from_index() { return FL_RULE(10); }

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

// What a window does with its pages other than the faulting one:
// kFillAround fills those not uptodate (else they are left out: only cached
// neighbours are mapped, the kernel's filemap_map_pages), and kMapFilled maps
// the ones it filled (else they stay cached but unmapped: read-around probes,
// whose later faults tell whether reading around pays, DESIGN section 2
// "Adaptive read-around").
enum Around : unsigned { kMapCached = 0, kFillAround = 1, kMapFilled = 2, kFillAndMap = 3 };
}  // namespace

// Frames charged under the memory limit (issue 16) for a scope: the fill's
// pages are cached (counted by nr_cached) by its end.
class FileImpl::Charge {
 public:
  Charge(FileImpl* f, uint64_t pages) : f_(f), pages_(pages) {}
  Charge(const Charge&) = delete;
  Charge& operator=(const Charge&) = delete;
  ~Charge() { f_->uncharge(pages_); }
  uint64_t pages() const { return pages_; }
  void add(uint64_t n) { pages_ += n; }
  // Given back now: the fill's pages are cached (nr_cached) already.
  void release() {
    f_->uncharge(pages_);
    pages_ = 0;
  }

 private:
  FileImpl* f_;
  uint64_t pages_;
};

// Pages [first, first + gens.size()) after a storing fault's page whose
// page_mkwrite succeeded (generation at that time), to be made writable and
// dirty with it (write-around, R5/R12).
struct FileImpl::WriteAround {
  uint64_t first = 0;
  std::vector<uint32_t> gens;
  std::vector<bool> no_mkwrite;  // skipped page_mkwrite: the page was dirty then
  bool covers(uint64_t pg) const { return pg >= first && pg < first + gens.size(); }
};

// One fault's context (the kernel's struct vm_fault): the event, then what the
// policy decides before any lock is taken.
struct FileImpl::VmFault {
  MappingImpl& m;
  const uint64_t pg;     // the faulting page
  const uintptr_t addr;  // the faulting address
  const bool write;      // a store the view must notice (shared, writable)
  const bool minor;      // MINOR: the frame is present (which says nothing of uptodate, R10)
  const bool notify;     // page_mkwrite mode (not async dirty tracking)
  // The policy's decisions:
  bool sequential = false;   // the fault continues a readahead stream (this thread's, or a marker's)
  bool marker = false;       // it met a readahead marker (PG_readahead): its window was read ahead
  uint64_t ra_size = 0;      // the stream's next window, read ahead behind this one
  uint64_t ra_next = 0;      // the stream position (this thread's, in this view) at the look
  MappingImpl::Stream st{};  // this thread's stream in the view, published before the install
  uint64_t ws = 0, we = 0;   // the window [ws, we), inside the view
  unsigned around = kFillAndMap;
  uint64_t stream_ws = 0, stream_we = 0;  // the stream's window for the next fault, if not [ws, we)
  WriteAround wa, ra_wa;     // write-around in the window, and into the readahead window
  uint32_t mkwrite_gen = 0;  // the faulting page's generation page_mkwrite was called for (R5)

  VmFault(MappingImpl& m_, uint64_t pg_, uintptr_t addr_, bool write_, bool minor_, bool async)
      : m(m_), pg(pg_), addr(addr_), write(write_), minor(minor_), notify(write_ && !async) {}
};

// One window being locked, filled and installed (install_window): what to do,
// decided by the policy, and the pages it holds meanwhile.
struct FileImpl::FaultWindow {
  FileImpl& f;
  MappingImpl& m;
  const uint64_t ws, we;
  const uint64_t must;      // the faulting page (readahead: its first page), locked by the caller
  const bool write = false;  // must is stored to: installed writable and dirty (R6)
  const bool minor = false;
  const bool readahead = false;  // must is not needed: no SIGBUS, no fill past the budget
  const bool install = true;  // false: fill only, map nothing (asynchronous readahead)
  const bool copy_ahead = false;  // !install: map all but `must` by UFFDIO_COPY (copy_fill)
  const bool stream = false;  // a stream's window: its fills are PG_stream (reclaim, R9)
  const WriteAround* wa = nullptr;  // pages made writable with must
  uint64_t fill_budget = ~uint64_t{0};  // pages charged under the memory limit
  unsigned around = kFillAndMap;
  VmFault* next = nullptr;  // a stream fault: its nearest readahead's first page is locked before the map
  ReadaheadWindows ra_windows{};  // the windows it reads ahead, nearest first

  // Under the locks. pages[i] null: left out (not locked, past EOF, over the
  // budget, its fill failed): not filled, not installed, unlocked.
  std::vector<Page*> pages{};
  std::vector<PageLock> locks{};
  std::vector<uint32_t> gens{};  // generation when locked (R10)
  std::vector<char> filled{};  // filled here
  std::vector<char> copied{};  // filled by UFFDIO_COPY: mapped in this view already (not woken)
  std::vector<bool> poisoned{};  // answered with POISON in this view (empty: none)
  bool must_error = false;     // must's fill failed: SIGBUS

  uint64_t size() const { return we - ws; }
  uint64_t mi() const { return must - ws; }
  bool is_must(uint64_t i) const { return ws + i == must; }
  void drop(uint64_t i) {
    locks[i].unlock();
    pages[i] = nullptr;
  }
  // Whether page i is locked by its rule (R1a for the faulting page, R1c for
  // the others and for readahead's first page) unless a breaker is on.
  bool locked_by_rule(uint64_t i) const {
    return is_must(i) && !readahead ? lock_faulting_page() : lock_window_pages();
  }
  bool needs_fill(uint64_t i) const {
    if (pages[i]->test(PG_uptodate)) return false;
    if (!uptodate_from_index() && minor && is_must(i)) return false;  // breaker: "MINOR = filled"
    return true;
  }
  // Read-around probes: pages filled here for a fault that maps only its own
  // page and what was cached before (and its write-around) stay unmapped.
  bool probe(uint64_t i) const {
    return !(around & kMapFilled) && filled[i] && !is_must(i) && !(wa && wa->covers(ws + i));
  }
  // R10: map only pages that are in the index (same generation) and
  // uptodate; never one this view answered with POISON, nor a probe.
  bool installable(uint64_t i) const {
    if (!pages[i] || (is_must(i) && must_error)) return false;
    if (!poisoned.empty() && poisoned[i]) return false;
    if (probe(i)) return false;
    if (!uptodate_from_index()) return true;
    return pages[i]->test(PG_uptodate) && pages[i]->gen.load(std::memory_order_acquire) == gens[i];
  }
  // Filled by UFFDIO_COPY, which maps as it fills (fill_copy): a page
  // needing a fill that map() would install in this view in any case — a
  // shared view of 4 KiB frames, not a read-around probe, not answered with
  // POISON here (COPY replaces the marker), not made writable and dirty now
  // (a store's page, write-around: dirty() must come first, R6).
  //
  // Asynchronous readahead (install false) copies its window too
  // (copy_ahead), all but its first page: the marker stays unmapped, so the
  // stream's fault on it starts the next window's read (DESIGN section 2,
  // "Asynchronous readahead"); the stream touches the rest with no fault.
  bool copy_fill(uint64_t i) const {
    if (!f.copy_fills_ || !m.shared || !pages[i]) return false;
    if (!install && !(copy_ahead && !is_must(i))) return false;
    if (!is_must(i) && !(around & kMapFilled)) return false;
    if (is_must(i) && (write || minor)) return false;  // MINOR: its frame is there (EEXIST)
    if (wa && wa->covers(ws + i)) return false;
    return poisoned.empty() || !poisoned[i];
  }
  // Installed write-protected: a page whose first store must be noticed.
  bool wp_mode(uint64_t i) const {
    if (!m.tracks_writes()) return false;
    if (is_must(i) && write) return false;
    // R7 (W11): a page under write-back (redirtied meanwhile) is installed
    // write-protected with stable pages: its first store faults and waits.
    if (f.stable_pages_ && stable_pages_wait() && pages[i]->test(PG_writeback)) return true;
    return !pages[i]->test(PG_dirty);  // clean pages: the first store must fault
  }

  void lock(PageLock must_lock);
  void drop_past_eof();
  void trim();
  void fill();
  void wake_copied();
  void copied_ahead();
  void fill_failed(uint64_t i, uint64_t j, int err);
  void mark_filled(uint64_t k);
  void read_poison();
  void dirty();
  bool map();
  uint64_t continue_run(uint64_t i, uint64_t j, uint64_t& installed);
};

void FileImpl::wake(MappingImpl& m, uintptr_t addr) {
  // FaultMode::FaultingThread: nobody waits on the uffd; the faulting thread
  // retries its access when its SIGBUS handler returns.
  if (m.uffd->sigbus()) return;
  // Result discarded: UFFDIO_WAKE fails only for a range it rejects (EINVAL:
  // never one aligned page; it needs no registration) or a closed uffd
  // (closing it woke every waiter): nothing to handle (engine.cpp wake_page).
  (void)m.uffd->wake(addr & ~(uintptr_t{page_size()} - 1), page_size());
}

void FileImpl::send_sigbus(MappingImpl& m, uintptr_t addr) {
  const uintptr_t a = addr & ~(uintptr_t{page_size()} - 1);
  const uint64_t pg = m.pgoff + ((a - m.start) >> page_shift_);
  // FaultMode::FaultingThread: this thread's own access; its SIGBUS handler
  // passes the signal on to the program's when the fault path returns. The
  // poison below still makes the page's next accesses raise it.
  InThreadFault* const in_thread =
      t_in_thread_fault && t_in_thread_fault->page == a ? t_in_thread_fault : nullptr;
  if (in_thread) in_thread->sigbus = true;
  // Recorded first, so no fault-around in another handler installs over the
  // poison between the ioctl and the record.
  count(&Counters::sigbus_sent);
  {
    MutexLock g(m.poison_mu);
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
  // A failed madvise must not be followed by the un-protect: it would make
  // the present PTE writable, and stores would go through with no
  // page_mkwrite and no dirtying (R5, R6). It stays protected; POISON then
  // fails and the access is retried below (a new page_mkwrite). The
  // un-protect's own failure needs nothing: the marker stays, POISON fails,
  // the page stays protected.
  // The zap is MADV_DONTNEED_LOCKED (zap_ptes): plain MADV_DONTNEED fails
  // with EINVAL in an mlock()ed view, and every retry then refused again.
  auto zap_then_unprotect = [&] {
    const bool zapped = zap_ptes(reinterpret_cast<void*>(a), page_size()) == 0;
    if (zapped && m.tracks_writes()) (void)m.uffd->writeprotect(a, page_size(), false, true);
  };
  if (m.shared && zap_before_unprotect()) {
    zap_then_unprotect();
  } else if (m.tracks_writes()) {
    // No zap (a private view, or breaker R5): the marker only. Result
    // discarded as above.
    (void)m.uffd->writeprotect(a, page_size(), false, true);
  }
  FL_POINT("sigbus.before_poison");
  int e = m.uffd->poison(a, page_size());
  if (e == -EEXIST && m.shared) {
    // A present PTE (a store to an installed page was refused): drop this
    // view's PTE — the frame stays in the memfd — then poison.
    zap_then_unprotect();
    e = m.uffd->poison(a, page_size());
  }
  uint32_t failures = 0;
  {
    MutexLock g(m.poison_mu);
    if (e == 0) {
      m.sigbus_failures.erase(pg);
    } else {
      m.poisoned.erase(pg);
      failures = ++m.sigbus_failures[pg];
      if (failures >= kSigbusTries) m.sigbus_failures.erase(pg);  // counted afresh if woken
    }
  }
  if (e == 0) return;
  if (in_thread) {
    // Sent all the same (by this thread's handler); the page's next access
    // faults and is decided again.
    MutexLock g(m.poison_mu);
    m.sigbus_failures.erase(pg);
    return;
  }
  count(&Counters::sigbus_sent, static_cast<uint64_t>(-1));  // not sent after all
  // Not sent: the thread is woken to fault again (a new page_mkwrite, or a
  // new fill). Bounded: a SIGBUS that cannot be sent kSigbusTries times in a
  // row at this page of this view is reported, and the thread is left
  // blocked in its fault (until the view's teardown wakes it, or a later
  // install of the page), rather than fault again forever, a handler
  // spinning with it.
  if (failures < kSigbusTries) {
    wake(m, addr);
    return;
  }
  {
    char at[32];
    std::snprintf(at, sizeof at, "%#lx", static_cast<unsigned long>(a));
    core->log("faultline: cannot send SIGBUS for page " + std::to_string(pg) + " of " + key +
              " (view address " + at + "): UFFDIO_POISON failed " + std::to_string(failures) +
              " times in a row (" + std::strerror(-e) +
              "); the faulting thread stays blocked until the view is unmapped");
  }
}

void FileImpl::handle_fault(MappingImpl& m, uintptr_t addr, uint64_t flags, uint32_t tid) {
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
  VmFault vmf(m, pg, addr, (flags & UFFD_PAGEFAULT_FLAG_WRITE) && m.tracks_writes(), minor,
              m.async_wp());
  vmf.st = m.stream_of(tid);
  read_fault(vmf);
}

// ---------------------------------------------------------------------------
// The policy: decided before any lock is taken.

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

int FileImpl::page_mkwrite_unlocked(Page* p, uint64_t pg) {
  // R5: page_mkwrite is called with the page unlocked. A backend that returns
  // it locked (VM_FAULT_LOCKED) gets it unlocked again here: the fault path
  // takes the invalidate_lock before any page lock, and rechecks under it.
  MkwriteRef ref(p, pg << page_shift_, page_size());
  const int e = backend().page_mkwrite(ref);
  if (ref.locked()) p->unlock();
  return e;
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
    if (notify && !dirty && page_mkwrite_unlocked(q, k) < 0)
      break;  // no SIGBUS: no store has happened there yet
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
  // neighbours a read-around fault reads stay unmapped (a window without
  // kMapFilled), so a later touch of one faults and counts its hit:
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

void FileImpl::choose_window(VmFault& vmf) {
  // A fault right after the stream's last window, or inside a stream window
  // (readahead in flight, or a page another handler skipped), continues the
  // stream and grows it; anything else gets an aligned fault-around window.
  MappingImpl& m = vmf.m;
  const uint64_t pg = vmf.pg;
  const int advice = m.advice.load(std::memory_order_relaxed);
  MappingImpl::Stream& st = vmf.st;  // this thread's stream
  const uint64_t ra_start = st.start;
  vmf.ra_next = st.next;
  // A readahead marker continues its stream whatever the view's other faults
  // did since (several streams in one view); consumed by the first fault.
  Page* const mp = advice == static_cast<int>(Advice::Random) ? nullptr : index_.find(pg);
  vmf.marker = mp && mp->test_and_clear(PG_readahead);
  // Context readahead (the kernel's page_cache_sync_ra looks for the cached
  // pages a stream leaves behind it): a miss whose page before was read by a
  // stream continues that stream though this thread's position does not
  // show it (a stream that overtook its readahead, or one another thread
  // began, past the view's 8 positions). Misses only: a
  // fault on a cached page there is a use of it (sampled, or a read-around
  // probe), not a stream's next read.
  const bool miss = !(mp && mp->test(PG_uptodate));
  const Page* const prev = advice == static_cast<int>(Advice::Normal) && miss && pg > m.pgoff
                               ? index_.find(pg - 1) : nullptr;
  const bool behind_stream =
      prev && (prev->flags.load(std::memory_order_acquire) & (PG_uptodate | PG_stream)) ==
                  (PG_uptodate | PG_stream);
  vmf.sequential =
      advice == static_cast<int>(Advice::Sequential) ||
      (advice == static_cast<int>(Advice::Normal) &&
       (vmf.marker || behind_stream ||
        (vmf.ra_next != ~uint64_t{0} &&
         (pg == vmf.ra_next ||
          (st.stream && pg >= ra_start && pg < vmf.ra_next)))));
  if (vmf.sequential) {
    const uint64_t cur = advice == static_cast<int>(Advice::Sequential)
                             ? readahead_max_pages()
                             : std::max<uint64_t>(fault_around_pages(),
                                                  st.pages);
    const uint64_t next = std::min<uint64_t>(readahead_max_pages(), cur * 2);
    st.pages = static_cast<uint32_t>(next);
    vmf.ws = pg;
    // At a marker the window is the one read ahead (cur pages, cached: a
    // hit that maps them); the stream's next window is read behind it.
    vmf.we = pg + std::max<uint64_t>(vmf.marker ? cur : next, 1);
    vmf.ra_size = std::max<uint64_t>(next, 1);
  } else {
    choose_fault_around(vmf, advice);
  }
  vmf.ws = std::max(vmf.ws, m.pgoff);
  vmf.we = std::min(vmf.we, m.pgoff + m.npages);
}

void FileImpl::choose_fault_around(VmFault& vmf, int advice) {
  // An aligned fault-around window (in this File's pages: 2 MiB frames get
  // fewer), read whole or not by the adaptive read-around.
  MappingImpl& m = vmf.m;
  const uint64_t pg = vmf.pg;
  const uint64_t fa = fault_around_pages();
  vmf.st.pages = static_cast<uint32_t>(fa);
  vmf.ws = pg - (pg % fa);
  vmf.we = vmf.ws + fa;
  const Page* cached = index_.find(pg);
  const bool hit = cached && cached->test(PG_uptodate);
  // Random advice: only the faulting page is read. A fault on a page reclaim
  // unmapped to sample it is no read-around hit: it says the page is used,
  // not that its neighbours were (counted, hot pages kept mmap_miss near 0
  // and read-around on for the cold misses between: a hot-set run read 66k
  // unused pages in 5 s and churned the hot set out, M6.9).
  const bool refault = hit && cached->test(PG_zapped);
  const bool whole = advice == static_cast<int>(Advice::Normal) && !refault && read_around(m, pg, hit);
  // A miss that reads only its page (random advice, or read-around off)
  // maps only its page: its cached neighbours were mostly mapped already,
  // and each costs a CONTINUE that finds it so (EEXIST; ~16 ioctls per miss
  // at 1/8 of the file cached, docs/MEASUREMENTS.md M6.5), or was unmapped
  // by reclaim's sampling, which a map without an access would undo. (The
  // kernel's fault-around checks the PTEs for free.) A hit still maps the
  // cached window (a read-around probe's locality, below).
  if (!whole && !hit) vmf.ws = pg, vmf.we = pg + 1;
  // Whole: read the window, map the faulting page and what was cached before;
  // the pages read for it are probes (a later fault on one is a hit). Else
  // read pg alone (if not cached) and map the cached window.
  vmf.around = whole ? kFillAround : kMapCached;
  // A fault that read only its page continues a stream at pg + 1.
  if (!whole && !hit) vmf.stream_ws = pg, vmf.stream_we = pg + 1;
  // Read-around: let the backend fetch the neighbourhood in the background
  // (a later fault nearby then fills from a warm source). 2 MiB Files read
  // it into their frames instead (fault_around_pages()).
  const uint64_t ra = (core->cfg.read_around_pages * kBasePageSize) >> page_shift_;
  if (whole && !huge() && ra > fa) {
    const uint64_t rs = pg - (pg % ra);
    const uint64_t eof = eof_pages();
    if (rs < eof) backend().will_need(rs << page_shift_, (std::min(rs + ra, eof) - rs) << page_shift_);
  }
}

void FileImpl::plan_write_around(VmFault& vmf) {
  // Write-around: a sequential store stream gets the following pages
  // writable and dirty in this round trip (page_mkwrite for each first,
  // unlocked, R5). The window covers them. Installing them writable now
  // matters: a store to a page installed write-protected costs a fault even
  // after the engine lifts the protection (DESIGN section 2), and in async
  // mode a fault of its own. The store stream continues the readahead stream
  // only when this fault is at the page right after the last window (not
  // merely inside it). page_mkwrite only in page_mkwrite mode: async dirty
  // tracking has no per-page notification.
  MappingImpl& m = vmf.m;
  const uint64_t n = write_around_pages(m, vmf.pg, vmf.sequential && vmf.pg == vmf.ra_next);
  if (n <= 1) return;
  vmf.wa = mkwrite_ahead(vmf.pg + 1, n - 1, vmf.notify);
  vmf.we = std::max<uint64_t>(vmf.we, vmf.pg + 1 + vmf.wa.gens.size());
  // A store stream whose write-around reached the end of the window
  // continues into the readahead window: up to as many pages again are
  // installed writable and dirty there (R12: bounded and counted).
  // page_mkwrite now, before any lock (R5; and never under the
  // invalidate_lock: a backend may need it). Unused if the readahead does
  // not happen: a reservation for a page never dirtied, at most n pages.
  if (vmf.sequential && vmf.wa.gens.size() == n - 1 && vmf.we < m.pgoff + m.npages) {
    const uint64_t ra_end = std::min<uint64_t>(vmf.we + (vmf.we - vmf.ws), m.pgoff + m.npages);
    vmf.ra_wa = mkwrite_ahead(vmf.we, std::min<uint64_t>(ra_end - vmf.we, n), vmf.notify);
    m.wa_start.store(vmf.we, std::memory_order_relaxed);
    m.wa_next.store(vmf.we + vmf.ra_wa.gens.size(), std::memory_order_relaxed);
  }
}

uint64_t FileImpl::count_missing(uint64_t ws, uint64_t we, bool skip_locked) {
  we = std::min(we, eof_pages());
  uint64_t n = 0;
  for (uint64_t k = ws; k < we; ++k) {
    const Page* p = index_.find(k);
    if (!p || (!p->test(PG_uptodate) && !(skip_locked && p->locked()))) ++n;
  }
  return n;
}

uint64_t FileImpl::charge(uint64_t pages, uint64_t min, bool may_wait) {
  const unsigned s = page_shift_ - kBasePageShift;
  // Whole pages of this File only (a 2 MiB frame is 512 4 KiB pages): what
  // is reserved is whole frames (uncharge() gives back whole pages).
  const uint64_t got = core->charge(pages << s, min << s, may_wait, uint64_t{1} << s);
  FL_BUG_ON(got & ((uint64_t{1} << s) - 1));
  return got >> s;
}

void FileImpl::uncharge(uint64_t pages) { core->uncharge(pages << (page_shift_ - kBasePageShift)); }

uint64_t FileImpl::charge_fault(const VmFault& vmf) {
  // The memory limit (issue 16): the frames this fill needs are charged
  // before any lock is taken; a fault that would pass the limit reclaims (or
  // waits for reclaim) first and never pushes the cache over it. With less
  // room the window shrinks (the faulting page is always charged when it
  // must be read; a fault on a cached page charges nothing, or at the limit
  // it would evict a page for nothing, even the one it installs). Without
  // read-around only the faulting page is filled, and charged.
  const Page* fp = index_.find(vmf.pg);
  const bool pg_missing = !fp || !fp->test(PG_uptodate);
  // A stream's page locked now is most likely being read ahead (the stream
  // caught up with its readahead: the fault waits on the page lock, R1c, and
  // finds it uptodate): the readahead charged it. Charging it again would
  // reclaim a window's worth for nothing. If it is not uptodate under the
  // lock after all, the window's fill is trimmed to the budget and the
  // faulting page gets room from charge_evicted (or the fault is retried).
  const bool skip_locked = vmf.sequential;
  const uint64_t want = (vmf.around & kFillAround)
                            ? count_missing(vmf.ws, std::max(vmf.we, vmf.pg + 1), skip_locked)
                            : count_missing(vmf.pg, vmf.pg + 1, skip_locked);
  const bool pg_in_flight = skip_locked && fp && fp->locked();
  return charge(want, pg_missing && !pg_in_flight ? 1 : 0, /*may_wait=*/true);
}

// ---------------------------------------------------------------------------
// The read fault: the policy, then the locked install.

void FileImpl::read_fault(VmFault& vmf) {
  MappingImpl& m = vmf.m;
  choose_window(vmf);
  // No speculative dirtying past the hard dirty limit.
  if (vmf.write && !core->over_dirty_limit()) plan_write_around(vmf);
  if (vmf.notify) {
    // R5: the page page_mkwrite is told about, checked again under the lock.
    Page* wp = index_.get(vmf.pg);
    vmf.mkwrite_gen = wp->gen.load(std::memory_order_acquire);
    if (page_mkwrite_unlocked(wp, vmf.pg) < 0) {
      count(&Counters::mkwrite_errors);
      send_sigbus(m, vmf.addr);
      return;
    }
  }
  FL_POINT("fault.after_mkwrite");
  Charge budget(this, charge_fault(vmf));
  // R1b's invalidate_lock, shared: a std::shared_lock the thread-safety
  // analysis does not see (lock_fault takes, drops and retakes it through a
  // reference; DESIGN section 5).
  std::shared_lock<SleepingRwLock> inval(invalidate_lock_, std::defer_lock);
  PageLock lock;
  for (;;) {
    if (!lock_fault(vmf, inval, lock)) return;
    if (charge_evicted(vmf, budget)) break;
    // VM_FAULT_RETRY: no room for the faulting page under the locks. Drop
    // them, wait for room (as a fault holding no lock may), do it again.
    lock.unlock();
    if (inval.owns_lock()) inval.unlock();
    count(&Counters::fault_retries);
    budget.add(charge(1, 1, /*may_wait=*/true));
  }
  // Write-around into the readahead window happens after the storing thread
  // is woken: counted from before the wake, so a sync waits for it.
  const LateDirtying late(this, !vmf.ra_wa.gens.empty());
  count_hit(vmf.pg, vmf.sequential);
  FaultWindow w{.f = *this, .m = m, .ws = vmf.ws, .we = vmf.we, .must = vmf.pg,
                .write = vmf.write, .minor = vmf.minor, .stream = vmf.sequential,
                .wa = vmf.wa.gens.empty() ? nullptr : &vmf.wa,
                .fill_budget = budget.pages(), .around = vmf.around};
  publish_stream(vmf);
  w.next = &vmf;
  if (!install_window(w, std::move(lock))) {
    // No readahead after all: the marker goes, under the lock still held,
    // and the stream has nothing read ahead.
    for (ReadaheadWindow& rw : w.ra_windows)
      if (rw.first) rw.first.page()->clear(PG_readahead);
    if (w.ra_windows.hinted) restore_ahead(vmf);
    return;
  }
  // The window's pages are cached (nr_cached): its charge ends here, before
  // the readahead below charges and fills the next window.
  budget.release();
  // Decided once, by lock_readahead: a truncate may lower EOF meanwhile (it
  // sets i_size before it waits for the invalidate_lock, R3), and a second
  // look could skip the readahead with its first page still locked (held
  // across update_time below, W5) and marked. The readahead rechecks EOF
  // under its locks (R2). Breaker R1c: no lock, one window, the same test.
  if (!lock_window_pages()) {
    if (readahead_wanted(vmf)) readahead(vmf, vmf.we, {});
  } else {
    // The windows beyond the nearest go to handler threads (queue_work),
    // which read them beside this one: two reads in flight
    // (EngineConfig::readahead_windows). The nearest is queued too
    // when the faulting thread serves its own fault (FaultMode::
    // FaultingThread: it returns now); a handler reads it itself, after the
    // others are queued. A store stream's readahead installs pages writable
    // into the thread's view with its write-around: read here, always.
    // (Refused, at close(): the nearest is read here, the others not at all.)
    const bool queue_nearest = t_in_thread_fault && vmf.ra_wa.gens.empty();
    ReadaheadWindows& ra = w.ra_windows;
    bool nearest_here = !queue_nearest;
    if (queue_nearest && ra.n > 0 && !queue_readahead(vmf, ra.w[0])) nearest_here = true;
    for (size_t i = 1; i < ra.n; ++i) (void)queue_readahead(vmf, ra.w[i]);
    if (nearest_here && ra.n > 0) readahead(vmf, ra.w[0].ws, std::move(ra.w[0].first));
  }
  if (vmf.write) {
    // R6: the time update (mtime) for a store that arrived as a MISSING /
    // MINOR fault (and its write-around): after the unlock, never under a
    // page lock (W5), as on the write-protect path; and outside the
    // invalidate_lock, as page_mkwrite (a backend's time update may need it).
    if (inval.owns_lock()) inval.unlock();
    backend().update_time();
    FL_POINT("fault.after_time_update");
  }
}

bool FileImpl::charge_evicted(const VmFault& vmf, Charge& budget) {
  // A page cached at the look charged nothing (charge_fault); if it was
  // evicted before its lock, its fill needs room now. Under the locks only
  // without waiting (direct reclaim's try-locks): none, and the fault is
  // retried (false), so the cache never passes the limit.
  if (budget.pages() > 0 || index_.get(vmf.pg)->test(PG_uptodate)) return true;
  const uint64_t got = charge(1, 0, /*may_wait=*/false);
  budget.add(got);
  return got > 0;
}

bool FileImpl::lock_fault(VmFault& vmf, std::shared_lock<SleepingRwLock>& inval, PageLock& lock) {
  // Fills exclude truncate / punch / invalidate (R1b: the invalidate_lock
  // shared), and the faulting page stays locked from here until its PTE is
  // in (R1a). Returns false when the fault ends here: its thread is woken to
  // retry the access.
  Page* p = index_.get(vmf.pg);
  for (;;) {
    const uint32_t gen = p->gen.load(std::memory_order_acquire);
    FL_POINT("fault.before_lock");
    if (fill_under_invalidate_lock()) inval.lock();  // R1b
    if (!lock_faulting_page()) break;
    lock = PageLock(p);  // R1a
    // R2: is it still the page we looked up (not dropped, and refilled)?
    if (recheck_under_lock() && p->gen.load(std::memory_order_acquire) != gen) {
      lock.unlock();
      if (inval.owns_lock()) inval.unlock();
      count(&Counters::fault_retries);
      continue;
    }
    break;
  }
  // R2: did it get truncated? Past EOF the refault meets the memfd's end.
  const bool truncated = recheck_under_lock() && vmf.pg >= eof_pages();
  // R5: the page page_mkwrite accepted was dropped since (punch, invalidate,
  // reclaim): the store retries the whole fault, and the new page gets its
  // own page_mkwrite (the kernel's VM_FAULT_NOPAGE).
  const bool dropped = vmf.notify && recheck_mkwrite_page() &&
                       p->gen.load(std::memory_order_acquire) != vmf.mkwrite_gen;
  if (truncated || dropped) {
    lock.unlock();
    count(&Counters::fault_retries);
    wake(vmf.m, vmf.addr);
    return false;
  }
  return true;
}

void FileImpl::count_hit(uint64_t pg, bool stream) {
  // Hit ratio (Stats::cache_hits / cache_misses): the faulting page was cached.
  // A hit is an access reclaim must see (R9: a page it sampled faults here),
  // but for a stream's fault on a page a stream read that was mapped nowhere
  // since it was cached (read ahead: PG_sampled and not PG_zapped): that is
  // the page's first use (PG_stream, the kernel's VM_SEQ_READ), not a reuse.
  // A page mapped before (by its stream, or unmapped by sampling since) is
  // reused by any fault on it, a stream's too: a file scanned again through
  // another view or by another thread is promoted.
  Page* p = index_.get(pg);
  if (p->test(PG_uptodate)) {
    count(&Counters::cache_hits);
    const uint32_t f = p->flags.load(std::memory_order_acquire);
    const bool first_use = stream && (f & PG_stream) && (f & PG_sampled) && !(f & PG_zapped);
    if (!first_use) p->set(PG_referenced);
  } else {
    count(&Counters::cache_misses);
  }
}

void FileImpl::publish_stream(const VmFault& vmf) {
  // This thread's stream position in the view, published before the
  // install: the install wakes the thread, which may touch the whole window
  // and fault at its end before this handler gets further (a hint; a window
  // the install then trims still counts as the stream's).
  MappingImpl& m = vmf.m;
  MappingImpl::Stream st = vmf.st;
  st.start = vmf.stream_we ? vmf.stream_ws : vmf.ws;
  st.next = vmf.stream_we ? vmf.stream_we : vmf.we;
  st.stream = vmf.sequential;
  // A fault that is no stream's ends what was read ahead for it: a stream
  // that starts again (a view scanned again) reads ahead from its start.
  if (!vmf.sequential) st.ahead = ~uint64_t{0};
  m.set_stream(st);
}

void FileImpl::restore_ahead(const VmFault& vmf) {
  MappingImpl::Stream st = vmf.m.stream_of(vmf.st.tid);
  st.ahead = vmf.st.ahead;  // as at the look: the windows this fault chose were not read
  vmf.m.set_stream(st);
}

uint64_t FileImpl::readahead_end(const MappingImpl& m) {
  return std::min<uint64_t>(m.pgoff + m.npages, eof_pages());
}

bool FileImpl::readahead_wanted(const VmFault& vmf) {
  // A stream fault whose next window starts inside the view and below EOF.
  return vmf.sequential && vmf.we < readahead_end(vmf.m);
}

FileImpl::ReadaheadWindows FileImpl::lock_readahead(VmFault& vmf) {
  // The first page of the nearest window the stream reads ahead is locked
  // (R1c; R12: a try-lock, above the window's pages) and marked after the
  // fault's fill and before its map wakes the thread: a stream that touches
  // this window faster than the readahead charges and locks would otherwise
  // reach the next window first, read it synchronously, and from then on
  // always be ahead of its readahead. With the lock taken here its fault
  // waits for the read (R1c). The windows past it are locked by their own
  // readahead when it runs (the stream reaches them only through the nearest
  // one): a handler must never wait for a page whose lock sits in the job
  // queue with no handler free to run it.
  ReadaheadWindows out;
  if (!readahead_wanted(vmf) || !lock_window_pages()) return out;
  // The readahead distance (EngineConfig::readahead_windows, the kernel's
  // async_size counted in windows): the stream keeps that many windows read
  // or being read past the one this fault maps. Those it has already,
  // [we, ahead), count; the rest follow them. (The kernel keeps one: its
  // reads go into the page cache, no copy after them. Here a window is read
  // and then copied into the frames, the device idle meanwhile; with two on
  // two handler threads one is read while the other is copied, though 4 KiB
  // frames' copies serialise on the memfd's i_rwsem: M6.16.) A store stream
  // reads one ahead (its readahead installs pages writable, in this thread).
  // Past the ramp only (the windows read ahead are the stream's whole
  // windows: a far window sized before the stream grew would leave the
  // marker faults half a window out of step).
  const uint64_t want = vmf.ra_wa.gens.empty() && vmf.ra_size >= readahead_max_pages()
                            ? core->cfg.readahead_windows
                            : 1;
  const uint64_t end = readahead_end(vmf.m);
  const uint64_t ahead = vmf.st.ahead;
  uint64_t ws = vmf.we;
  uint64_t have = 0;
  if (want > 1 && ahead != ~uint64_t{0} && ahead > vmf.we && ahead - vmf.we < want * vmf.ra_size) {
    have = (ahead - vmf.we + vmf.ra_size - 1) / vmf.ra_size;
    ws = ahead;
  }
  for (; have < want && ws < end; ++have, ws += vmf.ra_size) {
    ReadaheadWindow& rw = out.w[out.n];
    rw.ws = ws;
    if (ws == vmf.we) {
      Page* q = index_.get(ws);
      PageLock first(q, std::try_to_lock);
      if (!first) break;  // held: a fault or readahead is there already
      if (vmf.ra_wa.gens.empty() && !q->test(PG_uptodate))
        q->set(PG_readahead);  // under its lock; dropped pages lose it
      rw.first = std::move(first);
    }  // else locked by its own readahead (readahead())
    ++out.n;
  }
  if (want > 1 && out.n > 0) {
    // A hint (this thread's stream in the view), as the stream position.
    out.hinted = true;
    MappingImpl::Stream st = vmf.m.stream_of(vmf.st.tid);
    st.ahead = std::min<uint64_t>(out.w[out.n - 1].ws + vmf.ra_size, vmf.m.pgoff + vmf.m.npages);
    vmf.m.set_stream(st);
  }
  return out;
}

bool FileImpl::queue_readahead(VmFault& vmf, ReadaheadWindow& rw) {
  // A handler thread reads the window (run_work) while this thread goes on:
  // the faulting thread's own handler returns at once (FaultMode::
  // FaultingThread), a handler thread reads a nearer window meanwhile.
  PageLock& first = rw.first;
  if (!vmf.ra_wa.gens.empty()) return false;
  MappingImpl* const m = &vmf.m;
  Page* const q = first ? first.page() : nullptr;  // none: the job try-locks it (readahead())
  const uint64_t pg = vmf.pg, ws = rw.ws, ra_size = vmf.ra_size;
  const uintptr_t addr = vmf.addr;
  const bool store = vmf.write;
  // Made before anything is handed over (it may throw). It holds only the
  // view (kept by its in-flight count, as a fault's: teardown waits; the
  // File through it, so the File's last reference is never dropped on a
  // handler thread) and the locked page, both given back on every way out.
  std::function<void()> job;
  try {
    job = [m, q, pg, ws, ra_size, addr, store] {
      struct Put {
        MappingImpl* m;
        ~Put() { m->inflight.fetch_sub(1, std::memory_order_acq_rel); }  // m not touched after
      } put{m};
      PageLock held = q ? PageLock(q, std::adopt_lock) : PageLock{};
      m->file->readahead_queued(*m, pg, addr, ws, ra_size, store, std::move(held));
    };
  } catch (const std::bad_alloc&) {
    return false;  // not queued: the caller reads ahead itself (or not, a far window)
  }
  m->inflight.fetch_add(1, std::memory_order_acq_rel);
  (void)first.release();  // a page lock is a bit: any thread unlocks it
  bool queued = false;
  try {
    queued = core->queue_work(std::move(job));
  } catch (const std::bad_alloc&) {
    // Not queued: the caller reads ahead itself.
  }
  if (queued) return true;
  if (q) first = PageLock(q, std::adopt_lock);
  m->inflight.fetch_sub(1, std::memory_order_acq_rel);
  return false;
}

void FileImpl::readahead_queued(MappingImpl& m, uint64_t pg, uintptr_t addr, uint64_t ws,
                                uint64_t ra_size, bool store, PageLock first) {
  // R1b: a fill holds the invalidate_lock shared. Here the window's first
  // page came locked (R1c), so the lock order (invalidate_lock, then page
  // locks) allows a try only: a truncate, punch or invalidate holding or
  // waiting for it means no readahead (its marker goes, under the lock).
  const std::shared_lock<SleepingRwLock> inval(invalidate_lock_, std::try_to_lock);
  if (!inval.owns_lock()) {
    if (first) first.page()->clear(PG_readahead);
    return;
  }
  VmFault vmf(m, pg, addr, /*write=*/store, /*minor=*/false, m.async_wp());
  vmf.sequential = true;
  vmf.ra_size = ra_size;
  readahead(vmf, ws, std::move(first));
}

void FileImpl::readahead(VmFault& vmf, uint64_t ws, PageLock first) {
  // Asynchronous readahead (the kernel's PG_readahead / async_size): the
  // faulting thread already runs (its install woke it; the window's first
  // page was locked before, lock_readahead); this handler reads
  // the stream's next window into frames meanwhile and leaves it cached, its
  // first page marked PG_readahead and unmapped (in a shared view of 4 KiB
  // frames the others are mapped by UFFDIO_COPY as they arrive, copy_ahead;
  // but for a store stream that notices stores, whose marker fault makes
  // the window writable and dirty). The stream's fault on the
  // marker finds the window cached (a hit: it maps it) and starts the read of
  // the window after it, so the reads stay readahead_windows ahead of the touching
  // and overlap it. A fault on a page still being read waits on its page
  // lock (R1c: held until filled) and finds it uptodate. A store stream
  // (write-around into this window) has it installed writable now, as before.
  // Within the memory limit without waiting (the invalidate_lock is held):
  // no room, no readahead.
  MappingImpl& m = vmf.m;
  const uint64_t we = std::min<uint64_t>(ws + vmf.ra_size, m.pgoff + m.npages);
  const bool install = !vmf.ra_wa.gens.empty();
  // Its first page comes locked (lock_readahead, R1c) unless a breaker is
  // on, or it is a window past the nearest: try-locked here (R12, after the
  // invalidate_lock), and held by a fault or another readahead: no readahead.
  if (lock_window_pages() && !first) {
    // Queued unlocked: a truncate may have passed it since (R2, R3: i_size
    // first; it cannot run now, the invalidate_lock is held).
    if (ws >= readahead_end(m)) return;
    first = PageLock(index_.get(ws), std::try_to_lock);
    if (!first) return;
  }
  FL_POINT("readahead.before_charge");
  const uint64_t need = count_missing(ws, we);
  const Charge budget(this, charge(need, 0, /*may_wait=*/false));
  if (need != 0 && budget.pages() == 0) {
    // No room: no readahead, and no marker on a page nobody read (the next
    // fault on it would be taken for the stream's).
    if (first) first.page()->clear(PG_readahead);
    return;
  }
  // Under its lock; dropped pages lose it. Not on a page read already (a
  // window the stream read itself before this readahead ran): a later fault
  // there is no stream's marker.
  if (Page* fp = index_.get(ws); !install && !fp->test(PG_uptodate)) fp->set(PG_readahead);
  FL_POINT("readahead.after_lock");
  // A failed fill of its first page must not poison a page nobody touched.
  // Copied, but for a store stream in a view that notices stores: its
  // marker fault makes the window writable and dirty (write-around, M4.1),
  // which pages mapped write-protected already would not get.
  FaultWindow w{.f = *this, .m = m, .ws = ws, .we = we, .must = ws, .readahead = true,
                .install = install, .copy_ahead = !install && !(vmf.write && m.tracks_writes()),
                .stream = true, .wa = install ? &vmf.ra_wa : nullptr,
                .fill_budget = budget.pages()};
  const bool installed = install_window(w, std::move(first));
  if (install && installed) {
    MappingImpl::Stream st = m.stream_of(vmf.st.tid);
    st.next = we;
    m.set_stream(st);
  }
  if (!install)
    count(&Counters::async_readahead_pages,
          static_cast<uint64_t>(std::count(w.filled.begin(), w.filled.end(), 1)));
}

// ---------------------------------------------------------------------------
// The locked install.

bool FileImpl::install_window(FaultWindow& w, PageLock must_lock) {
  // Threads waiting on pages UFFDIO_COPY mapped are woken on every way out,
  // after the EOF recheck and the unlock (fill_copy runs with DONTWAKE).
  struct WakeCopied {
    FaultWindow& w;
    ~WakeCopied() { w.wake_copied(); }
  } const wake_copied{w};
  w.lock(std::move(must_lock));
  // R2: did it get truncated? EOF again, now that the window is locked
  // (truncate sets i_size before it locks pages, R3).
  if (recheck_under_lock()) w.drop_past_eof();
  FL_POINT("fault.before_fill");
  w.trim();
  w.fill();
  FL_POINT("fault.after_fill");
  // R2: before installing, under the locks, EOF once more.
  if (recheck_under_lock()) w.drop_past_eof();
  w.read_poison();
  w.dirty();
  FL_POINT("fault.before_install");
  // After the fill (a slow fill holds no other fault off the next window's
  // page) and before the map wakes the thread.
  if (w.next) w.ra_windows = lock_readahead(*w.next);
  const bool installed = w.install && w.map();
  if (!w.install) w.copied_ahead();
  // Error on the faulting page: SIGBUS for this access, the rest of the file
  // keeps working.
  if (w.must_error && !w.readahead) send_sigbus(w.m, w.m.addr_of(w.must));
  // R1: unlock only after the PTEs are in. `must` last: a fault waiting on
  // it (the stream reaching a window still being read ahead) then finds the
  // rest of the window unlocked, where its try-locks (R12) would skip pages
  // still held and map the window one page at a time.
  for (uint64_t i = 0; i < w.size(); ++i)
    if (w.pages[i] && !w.is_must(i)) w.drop(i);
  if (w.mi() < w.size() && w.pages[w.mi()]) w.drop(w.mi());
  if (w.install && !installed && !w.must_error) wake(w.m, w.m.addr_of(w.must));
  return installed;
}

void FileImpl::FaultWindow::lock(PageLock must_lock) {
  // `must` comes locked by the caller (R1a; readahead's first page R1c). R12
  // and R1c: the others only try-locked, ascending, and held until installed.
  const uint64_t n = size();
  pages.assign(n, nullptr);
  locks.resize(n);
  filled.assign(n, 0);
  copied.assign(n, 0);
  pages[mi()] = f.index_.get(must);
  locks[mi()] = std::move(must_lock);
  for (uint64_t i = 0; i < n; ++i) {
    if (is_must(i)) continue;
    Page* q = f.index_.get(ws + i);
    if (!lock_window_pages()) {
      pages[i] = q;  // breaker R1c: a neighbour filled and installed unlocked
    } else if (PageLock l(q, std::try_to_lock); l) {
      pages[i] = q;
      locks[i] = std::move(l);
    }
  }
  gens.assign(n, 0);
  for (uint64_t i = 0; i < n; ++i)
    if (pages[i]) gens[i] = pages[i]->gen.load(std::memory_order_acquire);
}

void FileImpl::FaultWindow::drop_past_eof() {
  // (A failed faulting page past EOF stays, for its SIGBUS.)
  const uint64_t eof = f.eof_pages();
  for (uint64_t i = 0; i < size(); ++i) {
    if (!pages[i] || ws + i < eof || (is_must(i) && must_error)) continue;
    // R2: a page UFFDIO_COPY mapped (fill_copy) that this recheck drops
    // leaves the view before its lock goes (its thread was not woken; it is
    // by wake_copied, and faults again). Only if EOF moved during the fill,
    // which R1b rules out (the size changes under the invalidate_lock): kept
    // so that no install outlives the recheck. A failed zap leaves the PTE
    // to truncate's unmap of every view (R3): nothing more to do.
    if (copied[i]) (void)zap_ptes(reinterpret_cast<void*>(m.addr_of(ws + i)), f.page_size());
    drop(i);
  }
}

void FileImpl::FaultWindow::trim() {
  // Without kFillAround only the faulting page is read: the neighbours that
  // are not uptodate are left out.
  if (!(around & kFillAround))
    for (uint64_t i = 0; i < size(); ++i)
      if (!is_must(i) && pages[i] && needs_fill(i)) drop(i);
  // The memory limit: fill no more pages than were charged, the faulting page
  // first (a fault always gets its page; readahead may get nothing).
  if (fill_budget == ~uint64_t{0}) return;
  // (The fault's own page always has room: read_fault charged it under its
  // lock, charge_evicted. Readahead's first page has none when it got none.)
  uint64_t left = fill_budget;
  if (pages[mi()] && needs_fill(mi())) {
    if (left) --left;
    else if (readahead) drop(mi());
  }
  for (uint64_t i = 0; i < size(); ++i) {
    if (is_must(i) || !pages[i] || !needs_fill(i)) continue;
    if (left) --left;
    else drop(i);
  }
}

void FileImpl::FaultWindow::fill() {
  // Fill contiguous runs of locked pages that are not uptodate (R10: the
  // index's flag decides, never MISSING vs MINOR). A run with pages that
  // map() installs in this view anyway goes through fill_copy: one read, and
  // those pages filled and mapped by UFFDIO_COPY (copy_fill).
  // Pages this view answered with POISON are not copied over. (A refused
  // page_mkwrite poisons without the page lock, so a marker set during the
  // fill may still be replaced: that store's retry faults on the
  // write-protected page and is refused again; loads see the right data.)
  read_poison();
  std::vector<char> how;  // allocated before any COPY (empty: none possible)
  if (f.copy_fills_ && (install || copy_ahead) && m.shared) how.assign(size(), kFillWrite);
  for (uint64_t i = 0; i < how.size(); ++i)
    if (pages[i] && needs_fill(i) && copy_fill(i)) {
      // R5/R6: a copied page is never writable while clean: no store's page
      // is copied (copy_fill), so a view that tracks writes copies WP.
      FL_BUG_ON(m.tracks_writes() && !wp_mode(i));
      how[i] = wp_mode(i) ? kFillCopyWp : kFillCopy;
    }
  for_each_run(size(), [&](uint64_t i) { return pages[i] && needs_fill(i); },
               [&](uint64_t i, uint64_t j) {
                 const bool any =
                     !how.empty() && std::any_of(how.begin() + static_cast<ptrdiff_t>(i),
                                                 how.begin() + static_cast<ptrdiff_t>(j),
                                                 [](char h) { return h != kFillWrite; });
                 const auto t_fill = std::chrono::steady_clock::now();
                 const int err = any ? f.fill_copy(m, ws + i, std::span(how).subspan(i, j - i),
                                                   std::span(copied).subspan(i, j - i))
                                     : f.fill(ws + i, j - i);
                 f.count(&Counters::fill_ns, ns_since(t_fill));
                 // On an error only the copied pages are good (mapped here).
                 for_each_run(j - i, [&](uint64_t k) { return err == 0 || copied[i + k]; },
                              [&](uint64_t a, uint64_t b) {
                                f.count(&Counters::pages_filled, b - a);
                                for (uint64_t k = i + a; k < i + b; ++k) {
                                  mark_filled(k);
                                  filled[k] = 1;
                                }
                              });
                 if (err == 0) return;
                 f.count(&Counters::read_errors);  // one failed fill, however split
                 for_each_run(j - i, [&](uint64_t k) { return !copied[i + k]; },
                              [&](uint64_t a, uint64_t b) { fill_failed(i + a, i + b, err); });
               });
}

void FileImpl::FaultWindow::wake_copied() {
  // UFFDIO_COPY ran with DONTWAKE: every thread faulting in a copied run is
  // woken here, installed or not (a thread woken on a page no longer mapped
  // faults again), as CONTINUE's own wake did before. A waiter's own handler
  // finds the page mapped (EEXIST, no wake), so this wake is its only one.
  // (FaultMode::FaultingThread: nobody waits. Results discarded as in wake().)
  if (m.uffd->sigbus() || copied.size() != size()) return;  // (lock() did not get far)
  for_each_run(size(), [&](uint64_t i) { return copied[i] != 0; }, [&](uint64_t i, uint64_t j) {
    (void)m.uffd->wake(m.addr_of(ws + i), (j - i) << f.page_shift_);
  });
}

void FileImpl::FaultWindow::copied_ahead() {
  // Asynchronous readahead maps no window, but what fill_copy mapped: as
  // map() does for what it installs, a page mapped again is sampled before
  // reclaim judges it unused (R9). Under the page locks still held.
  for (uint64_t i = 0; i < size(); ++i)
    if (pages[i] && copied[i]) {
      FL_BUG_ON(lock_window_pages() && !pages[i]->locked());  // R1: locked until its PTE is in
      pages[i]->clear(PG_sampled | PG_zapped | PG_readahead);  // a stale marker is spent too
    }
}

void FileImpl::FaultWindow::mark_filled(uint64_t k) {
  pages[k]->clear(PG_error);
  f.mark_uptodate(ws + k, pages[k], stream);
}

void FileImpl::FaultWindow::fill_failed(uint64_t i, uint64_t j, int err) {
  // Like the kernel after a failed readahead, retry only the faulting page on
  // its own (one bad page must not fail the access to a good one), unless the
  // backend is unreachable (a retry would wait for its timeout again). The
  // neighbours are just not installed. (Counted in read_errors by fill().)
  const bool unreachable = err == -ETIMEDOUT || err == -ENOTCONN || err == -ESHUTDOWN;
  for (uint64_t k = i; k < j; ++k) {
    if (!is_must(k)) {
      drop(k);
      continue;
    }
    if (j - i > 1 && !unreachable && f.fill(must, 1) == 0) {
      f.count(&Counters::pages_filled);
      mark_filled(k);
      continue;
    }
    pages[k]->set(PG_error);
    must_error = true;
  }
}

void FileImpl::FaultWindow::read_poison() {
  // Pages this view answered with POISON keep raising SIGBUS until the range
  // is invalidated, punched or truncated: CONTINUE would replace the poison
  // marker, so fault-around skips them.
  MutexLock g(m.poison_mu);
  if (m.poisoned.empty()) return;
  poisoned.assign(size(), false);
  for (auto it = m.poisoned.lower_bound(ws); it != m.poisoned.end() && *it < we; ++it)
    poisoned[*it - ws] = true;
}

void FileImpl::FaultWindow::dirty() {
  // R6: the pages installed writable are marked dirty first, under their locks.
  if (write && installable(mi())) {
    Page* p = pages[mi()];
    FL_BUG_ON(lock_faulting_page() && !p->locked());  // R6: dirty under the page lock
    // R7 (W11): stable pages — a store arriving as a MISSING/MINOR fault
    // waits for write-back of its page to end, as on the WP path.
    f.wait_stable(p);
    f.mark_dirty(p);
  }
  if (!wa) return;
  // Write-around pages whose page_mkwrite succeeded and that are still the
  // same page (R5 recheck, under their locks): dirty now, writable below.
  for (uint64_t i = 0; i < size(); ++i) {
    const uint64_t k = ws + i;
    if (!wa->covers(k) || !installable(i)) continue;
    if (pages[i]->gen.load(std::memory_order_acquire) != wa->gens[k - wa->first]) continue;
    // R5: no page_mkwrite was called because it was dirty: only if it still
    // is (write-back may have cleaned it meanwhile); else it is installed
    // write-protected and its first store faults.
    if (wa->no_mkwrite[k - wa->first] && !pages[i]->test(PG_dirty)) continue;
    // Stable pages: a page under write-back is not made writable (W8).
    if (f.stable_pages_ && pages[i]->test(PG_writeback)) continue;
    if (f.mark_dirty(pages[i])) f.count(&Counters::pages_write_around);
  }
}

bool FileImpl::FaultWindow::map() {
  // Install runs of installable pages, one CONTINUE each; the mode is passed
  // explicitly every time (WP markers stick). Returns whether `must` is
  // mapped (EEXIST counts: it is mapped in this view either way).
  // Mapped again: reclaim samples a page before it judges it unused (R9).
  // A marker mapped here is spent: the stream will not fault on it.
  for (uint64_t i = 0; i < size(); ++i)
    if (installable(i)) pages[i]->clear(PG_sampled | PG_readahead | PG_zapped);
  bool must_installed = false;
  uint64_t mapped_around = 0;
  // Pages UFFDIO_COPY mapped (fill_copy) are in already; their threads are
  // woken by install_window (wake_copied).
  for (uint64_t i = 0; i < size(); ++i) {
    if (!installable(i) || !copied[i]) continue;
    if (is_must(i)) must_installed = true;
    else ++mapped_around;
  }
  for_each_run(
      size(), [&](uint64_t i) { return installable(i) && !copied[i]; },
      [&](uint64_t a, uint64_t b) { return wp_mode(a) == wp_mode(b); },
      [&](uint64_t i, uint64_t j) {
        uint64_t installed = 0;  // by this CONTINUE (not found mapped)
        const uint64_t done = continue_run(i, j, installed);
        const bool has_must = must >= ws + i && must < ws + j;
        if (has_must && ((must - ws - i) << f.page_shift_) < done) must_installed = true;
        mapped_around += installed - ((has_must && must_installed && installed) ? 1 : 0);
      });
  f.count(&Counters::pages_fault_around, mapped_around);
  if (!(around & kMapFilled)) {
    uint64_t probes = 0;
    for (uint64_t i = 0; i < size(); ++i) probes += pages[i] && probe(i);
    f.count(&Counters::pages_read_around, probes);
  }
  return must_installed;
}

uint64_t FileImpl::FaultWindow::continue_run(uint64_t i, uint64_t j, uint64_t& installed) {
  // UFFDIO_CONTINUE of pages [i, j), all installed in one mode; returns the
  // bytes mapped (a page found mapped already counts), adds the pages it
  // installed to `installed`.
  for (uint64_t k = i; k < j; ++k)
    FL_BUG_ON(locked_by_rule(k) && !pages[k]->locked());  // R1: locked until its PTE is in
  const bool mode = wp_mode(i);
  const uint64_t len = (j - i) << f.page_shift_;
  uint64_t done = 0;
  while (done < len) {
    const auto t_install = std::chrono::steady_clock::now();
    const auto r = m.uffd->continue_range(m.addr_of(ws + i) + done, len - done, mode);
    f.count(&Counters::install_ns, ns_since(t_install));
    f.count(&Counters::install_calls);
    if (r.err == 0) {
      f.count(&Counters::pages_installed, (len - done) >> f.page_shift_);
      installed += (len - done) >> f.page_shift_;
      done = len;
    } else if (r.err == -EEXIST || r.err == -EAGAIN) {
      // Stopped at a page mapped already (EAGAIN after the pages before it;
      // EEXIST at the first): it and the mapped pages after it are skipped
      // in one look at the page table (a window mostly mapped already — the
      // marker fault of a window read ahead by UFFDIO_COPY — would otherwise
      // cost one failed CONTINUE per page). Not present (a POISON marker
      // refuses CONTINUE; mmap_changing): stepped over, one page, as before.
      // A page mapped or zapped after the look: EEXIST again, or a later
      // fault, a hit.
      if (r.done > 0) {
        f.count(&Counters::pages_installed, static_cast<uint64_t>(r.done) >> f.page_shift_);
        installed += static_cast<uint64_t>(r.done) >> f.page_shift_;
        done += static_cast<uint64_t>(r.done);
      }
      const uint64_t mapped =
          done < len ? f.mapped_prefix(m.addr_of(ws + i) + done, (len - done) >> f.page_shift_) : 0;
      if (mapped) done += mapped << f.page_shift_;
      else if (r.done <= 0) done += f.page_size();
    } else {
      break;  // EINVAL past the memfd's end, EFAULT a hole, ENOENT view gone
    }
  }
  return done;
}

uint64_t FileImpl::mapped_prefix(uintptr_t addr, uint64_t n) {
  static std::atomic<bool> unsupported{false};  // no PAGEMAP_SCAN here (ENOTTY before 6.7, EPERM, ...)
  const int fd = core->pte_fd();
  if (fd < 0 || n == 0 || unsupported.load(std::memory_order_relaxed)) return 0;
  // The first run of present PTEs (PAGEMAP_SCAN, Linux 6.7+: one region
  // of category PRESENT), if it starts at addr. (Not "the first page not
  // present": a range with no VMA reports no region either way.)
  page_region first{};
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.start = addr;
  arg.end = addr + (n << page_shift_);
  arg.vec = reinterpret_cast<uintptr_t>(&first);
  arg.vec_len = 1;
  arg.category_mask = PAGE_IS_PRESENT;
  arg.return_mask = PAGE_IS_PRESENT;
  int r;
  do r = ::ioctl(fd, PAGEMAP_SCAN, &arg);
  while (r < 0 && errno == EINTR);
  // An error tells nothing: the caller steps one page. Not asked again
  // unless it may pass (EFAULT, ENOMEM: a view going away, memory).
  if (r < 0 && errno != EFAULT && errno != ENOMEM) unsupported.store(true, std::memory_order_relaxed);
  if (r <= 0 || first.start != addr) return 0;
  return std::min<uint64_t>((first.end - addr) >> page_shift_, n);
}

// ---------------------------------------------------------------------------
// The write-protect fault (a store to a page installed write-protected).

void FileImpl::wait_stable(Page* p) {
  // R7: with stable pages a store to a page under write-back waits until it
  // ends (the kernel's folio_wait_stable), holding the page lock (ending
  // write-back never takes it).
  if (stable_pages_ && stable_pages_wait()) p->wait_clear(PG_writeback);  // R7c
}

void FileImpl::write_around_after_wp(MappingImpl& m, uint64_t pg) {
  // Write-around for stores to pages installed write-protected: page_mkwrite
  // for the following pages (unlocked, R5), then under each page's lock
  // (try-locked, R12) recheck, mark dirty and make writable (R6): the pages
  // from pg + 1 up to the first that fails.
  const uint64_t n = write_around_pages(m, pg);
  if (n <= 1 || core->over_dirty_limit()) return;
  const WriteAround wa = mkwrite_ahead(pg + 1, n - 1);
  std::vector<PageLock> locked;  // unlocked at the end, after the un-protect
  uint64_t run = 0;              // pages [wa.first, wa.first + run) made dirty
  for (; run < wa.gens.size(); ++run) {
    const uint64_t k = wa.first + run;
    Page* q = locked.emplace_back(index_.get(k), std::try_to_lock).page();
    if (!q || q->gen.load(std::memory_order_acquire) != wa.gens[run] || !q->test(PG_uptodate) ||
        k >= eof_pages() || (stable_pages_ && q->test(PG_writeback)) ||
        (wa.no_mkwrite[run] && !q->test(PG_dirty)))  // R5: cleaned since, no page_mkwrite
      break;
    if (mark_dirty(q)) count(&Counters::pages_write_around);
  }
  // Result discarded: the pages are dirty (R6: before writable), so a failed
  // un-protect only leaves them write-protected: a store to one faults and
  // wp_fault makes it writable then (nobody waits for this call: DONTWAKE).
  if (run) (void)m.uffd->writeprotect(m.addr_of(wa.first), run << page_shift_, false, true);
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
  // the page lock and return with it held (VM_FAULT_LOCKED).
  MkwriteRef ref(p, pg << page_shift_, page_size());
  FL_POINT("wp.before_mkwrite");
  const int e = backend().page_mkwrite(ref);
  if (e < 0 && honour_mkwrite_refusal()) {
    // W6: SIGBUS for the store; the page stays clean and write-protected.
    if (ref.locked()) p->unlock();
    count(&Counters::mkwrite_errors);
    send_sigbus(m, addr);
    return;
  }
  FL_POINT("wp.before_lock");
  // R5: a page returned locked is held from here, never locked twice (W4).
  PageLock lock = ref.locked() && keep_mkwrite_lock() ? PageLock(p, std::adopt_lock) : PageLock(p);
  // R5: recheck under the lock — still this page, uptodate, below EOF — else
  // let the access retry the whole fault (VM_FAULT_NOPAGE).
  if (recheck_mkwrite_page() && (p->gen.load(std::memory_order_acquire) != gen ||
                                 !p->test(PG_uptodate) || pg >= eof_pages())) {
    lock.unlock();
    count(&Counters::fault_retries);
    wake(m, addr);
    return;
  }
  // Stable pages: a store to a page under write-back waits until it ends
  // (the kernel's wait_for_stable_page); otherwise the page is redirtied and
  // written once more (W8).
  wait_stable(p);
  // R6: mark dirty and make the PTE writable under the lock, then unlock.
  FL_BUG_ON(!p->locked());
  mark_dirty(p);
  if (!unprotect_before_unlock()) {
    // Breaker: the time update under the page lock (W5), and the unlock
    // before the PTE is writable (W2).
    FL_POINT("wp.before_time_update");
    backend().update_time();
    lock.unlock();
    FL_POINT("wp.before_unprotect");
    if (m.uffd->writeprotect(a, page_size(), false) != 0) wake(m, addr);  // as wp_unprotect
    return;
  }
  FL_POINT("wp.before_unprotect");
  wp_unprotect(m, pg, a, lock);
  // R6: time update after the unlock, never under the page lock (W5).
  FL_POINT("wp.before_time_update");
  backend().update_time();
}

void FileImpl::wp_unprotect(MappingImpl& m, uint64_t pg, uintptr_t a, PageLock& lock) {
  // Past the hard dirty limit the storing thread is throttled: its wake is
  // deferred to the flusher (never a sleeping handler, never under the lock).
  // (Not while write-back makes no progress: its mkclean would protect the
  // page again before the deferred wake, and the store would fault forever.)
  const bool throttle = core->throttle_stores();
  if (throttle) count(&Counters::stores_throttled);
  const LateDirtying late(this, true);  // before the wake: sync waits for it
  // A failed un-protect (EAGAIN: the address space is changing; ENOENT: the
  // view is going) leaves the page write-protected — dirty already (R6), so
  // nothing is lost — and the storing thread asleep: wake it (unless its wake
  // is deferred anyway); its store faults again and is served then.
  if (m.uffd->writeprotect(a, page_size(), false, /*dontwake=*/throttle) != 0 && !throttle)
    wake(m, a);
  lock.unlock();
  if (throttle) core->defer_wake(m.uffd, a, page_size());
  FL_POINT("wp.after_wake");
  write_around_after_wp(m, pg);
}

}  // namespace faultline::detail
