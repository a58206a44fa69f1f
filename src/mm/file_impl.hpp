// Internal: File = inode + address_space. Page index, i_size, reverse map of
// views, write-back error sequence, and the memfd that holds the frames.
//
// Errors (the core's one convention, os/sys_error.hpp): a function that can
// fail returns 0 or -errno (a count or -errno), as the kernel, liburing and
// Backend do; the entry points File calls return a Status (-errno and the
// message). Nothing here throws but the constructor (its memfd and alias
// view); the public facade (File, Engine, Mapping) turns errors into
// std::system_error.
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <sys/uio.h>

#include "mm/mutex.hpp"
#include "mm/sleeping_lock.hpp"
#include "mm/thread_annotations.hpp"
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "mm/counters.hpp"
#include "faultline/backend.hpp"
#include "faultline/engine.hpp"
#include "mm/page_index.hpp"
#include "os/sys_error.hpp"

namespace faultline::detail {

/// EngineConfig::readahead_windows above this is refused (EINVAL).
inline constexpr std::size_t kMaxReadaheadWindows = 8;

class EngineCore;
class MappingImpl;

/// Whether a File of `size` bytes fits the page index with pages of
/// 1 << page_shift bytes (the page holding EOF included).
inline bool fits_index(uint64_t size, unsigned page_shift) {
  return (size >> page_shift) + ((size & ((uint64_t{1} << page_shift) - 1)) != 0) <=
         PageIndex::kMaxPages;
}

/// What the engine's other open 2 MiB-frame Files may still take from the
/// huge page pool (EngineCore::open counts it under files_mu_).
struct HugeFramesInUse {
  uint64_t frames = 0;  ///< their frames up to EOF (all of them, without a limit)
  uint64_t held = 0;    ///< of those, frames cached now (already out of the pool)
};

class FileImpl {
 public:
  /// `others`: the engine's other 2 MiB-frame Files, for the pool check of a
  /// 2 MiB-frame File (ignored for 4 KiB frames).
  FileImpl(std::shared_ptr<EngineCore> core, std::shared_ptr<Backend> backend, std::string key,
           unsigned page_shift, HugeFramesInUse others = {});
  ~FileImpl();

  // --- geometry -----------------------------------------------------------
  size_t page_size() const { return size_t{1} << page_shift_; }
  unsigned page_shift() const { return page_shift_; }
  uint64_t i_size() const { return i_size_.load(std::memory_order_acquire); }
  /// Pages that hold data below EOF (the page holding EOF included).
  uint64_t eof_pages() const { return (i_size() + page_size() - 1) >> page_shift_; }
  /// Pages [first, last) overlapping the bytes [off, off+len), clamped to
  /// the page index: an end past the largest file size (or past 2^64) means
  /// "to the end", as the kernel's fadvise clamps it, never a wrapped, empty
  /// range (issue 14 defect 5). Callers reject len 0 and off+len wrapping
  /// 2^64 where the API promises EINVAL (as sync_file_range does).
  std::pair<uint64_t, uint64_t> pages_of(uint64_t off, uint64_t len) const {
    const uint64_t first = std::min<uint64_t>(off >> page_shift_, PageIndex::kMaxPages);
    if (len > ~uint64_t{0} - off) return {first, PageIndex::kMaxPages};
    const uint64_t end = off + len;
    const uint64_t last = (end >> page_shift_) + ((end & (page_size() - 1)) != 0);
    return {first, std::min<uint64_t>(last, PageIndex::kMaxPages)};
  }
  int memfd() const { return memfd_; }
  /// 2 MiB hugetlb frames (FrameSize::k2M): no write(2) into the memfd; fills
  /// and in-place zeroing go through the alias view (DESIGN section 2).
  bool huge() const { return alias_ != nullptr; }
  /// The engine's fault-around / readahead windows (configured in 4 KiB
  /// pages) in this File's pages: the same bytes, at least one page (at
  /// least kHugeReadaheadPages for readahead of 2 MiB frames).
  uint64_t fault_around_pages() const;
  uint64_t readahead_max_pages() const;
  Backend& backend() const { return *backend_.load(std::memory_order_acquire); }
  /// Replaces a read-only backend by a writable one onto the same object.
  void upgrade_backend(std::shared_ptr<Backend> b);

  // --- read/write API (R11: never touches caller memory under a page lock) --
  // The entry points File calls return a Status (os/sys_error.hpp): ok, or
  // -errno and the message File's exception carries.
  /// Reads into buf at off; `done`: the bytes read (short at EOF).
  Status read(uint64_t off, std::span<std::byte> buf, size_t& done);
  /// Writes all of buf at off (extends the File past EOF).
  Status write(uint64_t off, std::span<const std::byte> buf);

  // --- truncate / punch / invalidate (truncate.cpp; R3, R4) ----------------
  Status truncate(uint64_t new_size);
  Status punch_hole(uint64_t off, uint64_t len);
  /// `failed`: the byte offsets of the pages that could not be laundered.
  Status invalidate(uint64_t off, uint64_t len, std::vector<uint64_t>& failed);
  /// A change made underneath (Backend::ChangeSink): drop clean pages in the
  /// range, keep dirty ones as conflicts.
  void remote_changed(uint64_t off, uint64_t len);
  void remote_resized(uint64_t new_size);
  /// The cache side of a shrink (R3): i_size, pages past it, the partial
  /// page's tail, the memfd, poison records. Done whole even when a syscall
  /// fails; then the Status of the first failure.
  Status shrink_cache(uint64_t new_size) REQUIRES(i_rwsem_, invalidate_lock_);

  // --- writeback ------------------------------------------------------------
  /// Writes back every dirty page in [first, last) (only those dirty for at
  /// least min_age_ms, when non-zero: the flusher's expiry) and, for a full
  /// write-back, waits for write-backs in flight there. Returns 0 or the first
  /// -errno met (also recorded in errseq).
  int writeback(uint64_t first, uint64_t last, uint32_t min_age_ms = 0, bool harvest_written = true);
  /// The flusher's periodic pass (no background or sync pressure). Async
  /// Files: stores through their views are only found by a scan, which costs
  /// a page-table walk and re-protection (and a kernel fault for the next
  /// store to each page), so they are harvested once per expiry period, not
  /// every pass, and then written whole — the kernel's per-inode expiry
  /// (dirtied_when): a store reaches the backend within about expire_ms plus
  /// one flush interval. Pages dirtied by faults keep their own expiry.
  void writeback_expired(uint32_t expire_ms);
  uint64_t errseq() const { return wb_err_.load(std::memory_order_acquire); }
  /// R8: where a new handle's cursor starts: before an error nobody has seen
  /// yet (the kernel's errseq_sample), so that handle reports it.
  uint64_t errseq_sample() const;
  /// R8: -errno of a write-back error this cursor has not seen (once), or 0.
  int check_wb_error(std::atomic<uint64_t>& cursor);
  /// Extends the backend to i_size when it is shorter (an extend by write()
  /// whose tail pages never went out: a failed write, a punched or
  /// invalidated tail). Called by sync; 0 or -errno (also recorded, R8).
  int writeback_size();
  /// Everything to the backend, data and size (sync, the last close, Engine
  /// close): writeback of every dirty page, then writeback_size. 0 or the
  /// first -errno (also recorded, R8).
  int writeback_all();
  uint64_t nr_dirty() const { return nr_dirty_.load(std::memory_order_relaxed); }
  /// Dirty accounting; both return whether the flag changed.
  bool mark_dirty(Page* p);
  bool clear_dirty(Page* p);
  /// Page pg's data is in its frame (cache accounting; the memory limit;
  /// reclaim's queues: `stream`, read by a sequential stream, PG_stream).
  /// Page locked.
  void mark_uptodate(uint64_t pg, Page* p, bool stream = false);
  uint64_t nr_cached() const { return nr_cached_.load(std::memory_order_relaxed); }
  /// Reclaim (R9): evicts up to `want` clean pages of this File: with
  /// `streams`, from the stream queue only (pages read by sequential streams
  /// and used by nothing else: FIFO, mapped ones unsampled while the streams'
  /// own pressure lasts); else by S3-FIFO over the small and main queues,
  /// sampling mapped pages (zapping their PTEs) before judging them unused.
  /// Returns the pages evicted (this File's pages).
  uint64_t shrink(uint64_t want, bool streams = false);
  /// Pages in the stream queue (PG_stream).
  uint64_t nr_stream() const { return nr_stream_.load(std::memory_order_relaxed); }
  /// Background aging (the flusher, as kswapd ages the inactive list ahead
  /// of reclaim): samples the mapped, unjudged pages among the first `ahead`
  /// entries of the small queue, in place, so they can show an access before
  /// reclaim reaches them.
  void age(uint64_t ahead);
  // errseq: (sequence << 16) | SEEN | errno (the kernel's errseq_t layout).
  static constexpr uint64_t kErrseqSeen = 1u << 15;
  static int errseq_errno(uint64_t v) { return static_cast<int>(v & (kErrseqSeen - 1)); }

  // --- fault path (called by handler threads) --------------------------------
  void handle_fault(MappingImpl& m, uintptr_t addr, uint64_t uffd_flags, uint32_t tid = 0);

  // --- views -------------------------------------------------------------
  void add_mapping(MappingImpl* m);
  void remove_mapping(MappingImpl* m);
  /// Teardown of view m (R13, R15): runs `unmap` (its munmap) and removes m
  /// from the reverse map in one step under the rmap lock, so no rmap walk
  /// (clear_poison, mkclean, scans) reaches the range after its munmap,
  /// when another mmap may own it.
  void unmap_view(MappingImpl* m, const std::function<void()>& unmap);

  void set_options(const FileOptions& o);
  /// DirtyTracking::Async: shared writable views live on the async uffd and
  /// written pages are found by PAGEMAP_SCAN (R7).
  bool async() const { return async_; }
  void count(Counter c, uint64_t n = 1);
  /// Whether page pg is cached, uptodate (an unlocked look: a MINOR fault,
  /// where the kernel would report one; for counting only, R10).
  bool frame_present(uint64_t pg) {
    const Page* p = index_.find(pg);
    return p && p->test(PG_uptodate);
  }
  Counters stats;
  const std::string key;
  std::shared_ptr<EngineCore> core;

 private:
  struct Run;
  // --- the fault path's steps (fault.cpp) -------------------------------------
  struct WriteAround;  // pages made writable and dirty with a store (write-around, R5)
  struct VmFault;      // one fault's context (the kernel's struct vm_fault)
  struct FaultWindow;  // one window being locked, filled and installed
  class Charge;        // frames charged under the memory limit, for a scope
  // The read fault: the policy, decided with no lock held, then the locked install.
  void read_fault(VmFault& vmf);
  /// The window [ws, we): the readahead stream or an aligned fault-around window.
  void choose_window(VmFault& vmf);
  void choose_fault_around(VmFault& vmf, int advice);
  /// The adaptive read-around decision for a non-sequential fault at pg of
  /// view m (`cached`: its page is uptodate): updates the view's mmap_miss
  /// and returns whether this fault reads its whole window.
  bool read_around(MappingImpl& m, uint64_t pg, bool cached);
  /// Write-around for a storing fault: page_mkwrite of the next pages (R5).
  void plan_write_around(VmFault& vmf);
  /// The frames the fault's fill needs, charged (may wait: no lock held).
  uint64_t charge_fault(const VmFault& vmf);
  /// Pages of [ws, we) below EOF that are not uptodate: an unlocked look, what
  /// a fill of that window charges under the memory limit.
  /// `skip_locked`: not the pages locked now (being filled by another thread).
  uint64_t count_missing(uint64_t ws, uint64_t we, bool skip_locked = false);
  /// Takes the invalidate_lock shared (R1b) and the faulting page's lock
  /// (R1a), rechecks (R2, R5); false: the access was woken to retry.
  bool lock_fault(VmFault& vmf, std::shared_lock<SleepingRwLock>& inval, PageLock& lock);
  /// Under those locks: room for the faulting page if it was evicted since
  /// the look, without waiting; false: none (the fault is retried).
  bool charge_evicted(const VmFault& vmf, Charge& budget);
  /// Fills, installs and unlocks the window; `must` (its faulting page) comes
  /// locked by the caller. Returns whether `must` was installed.
  bool install_window(FaultWindow& w, PageLock must);
  /// A window a stream fault reads ahead: [ws, ws + ra_size); the nearest
  /// one's first page locked and marked (lock_readahead), the others' by
  /// their own readahead.
  struct ReadaheadWindow {
    uint64_t ws = 0;
    PageLock first;  // the nearest window's (lock_readahead); the others lock their own
  };
  /// The windows one stream fault reads ahead, nearest first (no allocation:
  /// they are chosen under the window's page locks).
  struct ReadaheadWindows {
    std::array<ReadaheadWindow, kMaxReadaheadWindows> w{};
    size_t n = 0;
    bool hinted = false;  // the stream's `ahead` hint was moved past them
    ReadaheadWindow* begin() { return w.data(); }
    ReadaheadWindow* end() { return w.data() + n; }
  };
  /// Asynchronous readahead of the window at ws (no waiting).
  void readahead(VmFault& vmf, uint64_t ws, PageLock first);
  /// Hands that readahead to a handler thread (true: `rw.first` went with
  /// it), so this thread goes on.
  bool queue_readahead(VmFault& vmf, ReadaheadWindow& rw);
  /// The handed-over readahead, on a handler thread: the stream's window at
  /// ws, its first page locked (`first`) or, past the nearest, not yet.
  /// `store`: the stream's fault was a store.
  void readahead_queued(MappingImpl& m, uint64_t pg, uintptr_t addr, uint64_t ws, uint64_t ra_size,
                        bool store, PageLock first);
  /// The windows the stream reads ahead (EngineConfig::readahead_windows);
  /// the nearest's first page try-locked and marked before the map.
  ReadaheadWindows lock_readahead(VmFault& vmf);
  /// The windows this fault chose were not read after all: the stream's
  /// hint goes back to what it was.
  void restore_ahead(const VmFault& vmf);
  /// Whether this fault's stream gets a readahead of its next window.
  bool readahead_wanted(const VmFault& vmf);
  /// Where readahead in view m stops: the view's end or EOF.
  uint64_t readahead_end(const MappingImpl& m);
  /// Under the faulting page's lock: a cache hit (referenced) or a miss.
  void count_hit(uint64_t pg, bool stream);
  /// This thread's readahead stream position in the view after this fault
  /// (before the map).
  void publish_stream(const VmFault& vmf);
  void wp_fault(MappingImpl& m, uint64_t pg, uintptr_t addr);
  /// R6: the locked, dirty page made writable, then unlocked; write-around.
  void wp_unprotect(MappingImpl& m, uint64_t pg, uintptr_t a, PageLock& lock);
 public:
  /// EngineCore::charge / uncharge in this File's pages.
  uint64_t charge(uint64_t pages, uint64_t min, bool may_wait);
  void uncharge(uint64_t pages);
 private:
  /// The write-around window for a store at pg in view m (1 = this page only).
  /// `stream`: the fault continues the view's sequential (readahead) stream.
  uint64_t write_around_pages(MappingImpl& m, uint64_t pg, bool stream = false);
  /// page_mkwrite for pages [first, first+n) with each page unlocked (R5);
  /// stops at the first refusal. Returns the pages that may be dirtied.
  /// Async dirty tracking (notify = false) calls no page_mkwrite.
  WriteAround mkwrite_ahead(uint64_t first, uint64_t n, bool notify = true);
  /// Backend::page_mkwrite for page pg, returned unlocked (R5); 0 or -errno.
  int page_mkwrite_unlocked(Page* p, uint64_t pg);
  void write_around_after_wp(MappingImpl& m, uint64_t pg);
  /// Stable pages: waits (page locked) until p's write-back ends (R7, W11).
  void wait_stable(Page* p);
  /// Reads pages [pg, pg+n) from the backend into their frames. Pages locked,
  /// below EOF (R3: never writes past the memfd's size). 0 or -errno.
  [[nodiscard]] int fill(uint64_t pg, uint64_t n);
  /// Reads [off, off+len) of the backend into page-aligned memory at dst
  /// (read_frames: aligned reads where the backend has them), zeros past
  /// the object's end. With `arrived`, the data is handed to it as it
  /// arrives (Backend::read_aligned_streaming; its error ends the read), and
  /// dst holds only what the read finished without it; `handed` is the
  /// bytes `arrived` took (it counts them). 0 or -errno.
  [[nodiscard]] int read_zero_padded(std::byte* dst, uint64_t off, uint64_t len,
                                     const Backend::Arrival* arrived = nullptr,
                                     const size_t* handed = nullptr);
  /// The bytes of pages [pg, pg+n) a fill may write: clipped to EOF's page,
  /// 0 past it (R3).
  uint64_t fill_bytes(uint64_t pg, uint64_t n);
  /// How fill_copy puts each page of its run into its frame.
  enum FillHow : char { kFillWrite = 0, kFillCopy = 1, kFillCopyWp = 2 };
  /// fill() for a run of the shared view m, pages [pg, pg + how.size()): one
  /// backend read, then each page as `how` says: pwrite into the memfd, or
  /// UFFDIO_COPY, which adds the frame and maps it in m (write-protected with
  /// kFillCopyWp) without waking the faulting thread. copied[k] = 1: page
  /// pg+k was mapped so (a frame already present is pwritten instead). Pages
  /// locked, below EOF (R3). 0, or -errno: a failed read (nothing filled) or
  /// pwrite (only the copied pages are good).
  [[nodiscard]] int fill_copy(MappingImpl& m, uint64_t pg, std::span<const char> how,
                              std::span<char> copied);
  /// Locks pages [pg, pg+n) for the read/write API: the first with a sleeping
  /// lock, the rest with try-lock (R12). Returns how many are locked.
  uint64_t lock_run(uint64_t pg, uint64_t n);
  void unlock_run(uint64_t pg, uint64_t n);
  /// lock_run's locks held for a scope: every return and throw unlocks.
  class LockedRun {
   public:
    LockedRun(FileImpl& f, uint64_t pg, uint64_t want) : f_(f), pg_(pg), n_(f.lock_run(pg, want)) {}
    LockedRun(const LockedRun&) = delete;
    LockedRun& operator=(const LockedRun&) = delete;
    ~LockedRun() { unlock(); }
    uint64_t size() const { return n_; }
    void unlock() {
      if (n_) f_.unlock_run(pg_, std::exchange(n_, 0));
    }

   private:
    FileImpl& f_;
    uint64_t pg_, n_;
  };
  /// Makes the pages of a locked run uptodate (fill those that are not;
  /// fills exclude invalidation, R1). 0 or -errno (the pages of the failed
  /// fill get PG_error).
  [[nodiscard]] int make_uptodate(uint64_t pg, uint64_t n) REQUIRES_SHARED(invalidate_lock_);
  /// Gives the access at addr in view m SIGBUS (UFFDIO_POISON, DESIGN sec. 2).
  void send_sigbus(MappingImpl& m, uintptr_t addr);
  void wake(MappingImpl& m, uintptr_t addr);
  /// How many of the n pages of view m from addr on have a present PTE, in
  /// one PAGEMAP_SCAN (0 when it cannot tell: no pagemap, or the scan failed).
  uint64_t mapped_prefix(uintptr_t addr, uint64_t n);
  /// Grows i_size and the memfd to new_size (nothing if not larger).
  Status extend(uint64_t new_size) REQUIRES(i_rwsem_);
  // write()'s steps. One batch: [pos, at most end) over at most
  // io_batch_pages() pages, from src (the caller's bytes at pos); advances
  // pos to where it ended.
  Status write_batch(uint64_t& pos, uint64_t end, const std::byte* src);
  /// Takes the size lock for a write ending at write_end: exclusive (and
  /// extends) if it grows the File, else shared (R3: decided under the lock).
  Status lock_size_for_write(uint64_t write_end, std::unique_lock<SleepingRwLock>& excl,
                           std::shared_lock<SleepingRwLock>& shared);
  /// Locked run: fills the pages a write of [pos, chunk_end) covers only in
  /// part, so they hold the file's data first. 0 or -errno.
  [[nodiscard]] int read_partial_pages(uint64_t pos, uint64_t chunk_end)
      REQUIRES_SHARED(invalidate_lock_);
  /// Locked run: copies src into the frames of [pos, chunk_end).
  Status copy_into_frames(uint64_t pos, uint64_t chunk_end, const std::byte* src);
  /// Pages per read()/write() batch: 1 MiB worth, at least one page.
  uint64_t io_batch_pages() const;
  /// hugetlb: allocates the frames of [off, off+len) (inside the memfd) before
  /// the alias view touches them, so an exhausted pool is an error (ENOMEM),
  /// never a SIGBUS in the engine's own memcpy. 0 or -errno.
  [[nodiscard]] int alloc_frames(uint64_t off, uint64_t len);
  /// R8: a write-back error (-errno) into the File's error sequence.
  void record_wb_error(int neg_errno);
  /// Write-protects [pg, pg+n) in every view (R7); 0 or -errno of a view
  /// that could not be protected (its pages must stay dirty).
  int mkclean(uint64_t pg, uint64_t n);
  // --- async dirty tracking (writeback.cpp; PAGEMAP_SCAN) --------------------
  /// One PAGEMAP_SCAN of [first, last) (file pages, clipped to the view) in
  /// view m: calls fn(pg, n) for each run reported with `want` categories
  /// (anyof), write-protecting them atomically with protect. Returns 0 or
  /// -errno.
  template <class Fn>
  int scan_view(MappingImpl& m, uint64_t first, uint64_t last, uint64_t want, bool protect, Fn&& fn);
  /// Pages of [first, last) written in some async view (unlocked hint, no
  /// re-protection), as sorted [pg, pg+n) runs.
  std::vector<std::pair<uint64_t, uint64_t>> written_hint(uint64_t first, uint64_t last);
  /// Locked run [pg, pg+n): scan every async view with WP_MATCHING (re-protects
  /// and reports atomically, R7) and mark the reported uptodate pages dirty.
  /// Returns how many pages the scans reported.
  uint64_t harvest_locked(uint64_t pg, uint64_t n);
  /// Marks dirty every page of [first, last) written in an async view (lock,
  /// scan + protect, dirty, unlock; R7).
  void harvest(uint64_t first, uint64_t last);
  /// Locked run (or a view being torn down, unlocked): zap the PTEs of
  /// [first, last) in view m so any later store faults to the engine, and
  /// return the pages written through m up to the zap (exact: written PTEs
  /// zap to none, protected ones to WP markers). Clears m's poison records there.
  std::vector<uint64_t> zap_written(MappingImpl& m, uint64_t first, uint64_t last);
 public:
  /// A view of an async File is going away (before its munmap): pages written
  /// through it become dirty (their PTEs, the only record, are about to go).
  void harvest_view(MappingImpl& m);
 private:
  /// Drops a locked page from the cache: state cleared, generation bumped, so
  /// a path that looked it up before locking sees it is not the same page (R2).
  void drop_page(Page* p);
  /// Punches the frames of [pg, pg+n) (zaps the PTEs in every view, keeps
  /// private copies) and clears poison there in every view (keep_poison:
  /// not, for reclaim).
  void punch_frames(uint64_t pg, uint64_t n, bool keep_poison = false);
  /// MADV_DONTNEED exactly the poisoned pages of [pg, pg+n) in every view.
  void clear_poison(uint64_t first, uint64_t last);
  /// Zeroes bytes [from, to) of one locked, uptodate page's frame. 0 or -errno.
  [[nodiscard]] int zero_frame_range(uint64_t from, uint64_t to);
  /// Writes back one locked dirty run (mkclean first, R7); 0 or -errno.
  int launder_locked(uint64_t pg, uint64_t n);
  /// Write-back's two halves, for a run [pg, pg+n) of len bytes (never past
  /// EOF) whose every view is write-protected, pages locked or under
  /// PG_writeback (a racing store redirties or, stable pages, waits).
  /// copy_out: the bytes to write — 4 KiB frames copied into the thread's
  /// buffer, 2 MiB frames straight from the alias view; 0 or -errno.
  int copy_out(uint64_t pg, uint64_t len, const std::byte** data);
  /// write_copy: writes them to the backend (unless err, copy_out's result).
  /// A failure redirties the pages with PG_error and goes to the File's error
  /// sequence (R8): nothing is lost. Returns 0 or -errno.
  int write_copy(uint64_t pg, uint64_t n, const std::byte* data, uint64_t len, int err);
  /// copy_out then write_copy (launder).
  int write_out(uint64_t pg, uint64_t n, uint64_t len);
  /// Write-back of [pg, last): locks the first page (sleeping) and the dirty
  /// pages after it (try-lock, R12), waits for their write-back, and returns
  /// the locks of the dirty prefix below EOF (empty: nothing to write at pg).
  std::vector<PageLock> lock_dirty_run(uint64_t pg, uint64_t last);
  /// Writes back a locked dirty run (R7: mkclean, clear dirty, set writeback,
  /// unlock, copy out, write, end writeback). 0 or -errno (also in errseq).
  int writeback_run(uint64_t pg, std::vector<PageLock>& run);
  // Dropping pages (truncate.cpp). Callers hold i_rwsem_ (shared at least)
  // and the invalidate_lock exclusive (R4: no fill between the drop and the
  // backend); the analysis checks it.
  /// Truncates the cached pages of [first, last) (punch_hole; the kernel's
  /// truncate_inode_pages_range): each page is locked (sleeping, ascending),
  /// its write-back waited for, dropped from the index and its frame punched
  /// (unmapped from every view, private copies kept, R4), then unlocked.
  /// Dirty pages go too: their data is discarded.
  void truncate_pages(uint64_t first, uint64_t last)
      REQUIRES_SHARED(i_rwsem_) REQUIRES(invalidate_lock_);
  /// Invalidates the cached pages of [first, last) (the kernel's
  /// invalidate_inode_pages2_range): truncate_pages' sequence, but dirty
  /// pages (async: also those written through a view, read off a zap under
  /// the locks) are laundered first (R4, R7b). A page that cannot be
  /// laundered is kept, its offset appended to `failed` (the kernel's -EBUSY).
  void invalidate_pages(uint64_t first, uint64_t last, std::vector<uint64_t>* failed)
      REQUIRES_SHARED(i_rwsem_) REQUIRES(invalidate_lock_);
  /// A change made underneath (Backend::ChangeSink): as invalidate_pages, but
  /// dirty pages are neither laundered nor dropped (conflicts, counted: ours
  /// are written later); only clean pages go.
  void invalidate_remote_pages(uint64_t first, uint64_t last)
      REQUIRES_SHARED(i_rwsem_) REQUIRES(invalidate_lock_);
  /// The sequence the three share: for each run of cached pages in [first,
  /// last), lock it (R4), pass `point`, wait for write-back, fn(pg, run), unlock.
  template <class Fn>
  void for_each_locked_run(uint64_t first, uint64_t last, const char* point, Fn&& fn);
  /// Async Files: zaps the locked run's PTEs in every async view and marks
  /// dirty the uptodate pages below EOF written through one (R4, R7, R9).
  void dirty_written_locked(uint64_t pg, std::span<Page* const> run);
  /// Launders the dirty sub-runs of a locked run; returns the pages to keep.
  std::vector<bool> launder_dirty(uint64_t pg, std::span<Page* const> run,
                                  std::vector<uint64_t>* failed);
  /// Drops and punches the pages of a locked run not in `keep` (empty: all).
  void drop_and_punch(uint64_t pg, std::span<Page* const> run, const std::vector<bool>& keep,
                      Counter counter);
  /// Zeroes bytes [from, to) of their page (partial, locked here; not
  /// dropped) once its write-back has ended. 0 or -errno.
  [[nodiscard]] int zero_partial_page(uint64_t from, uint64_t to);
  /// Forgets every view's poison records from page pg on (past a new EOF).
  void forget_poison_from(uint64_t pg);

  // Lock-free on purpose: page_shift_, memfd_, alias_, alias_len_, copy_fills_ are set in
  // the constructor, stable_pages_ and async_ by set_options before
  // EngineCore::open publishes the File; all are read-only after that.
  const unsigned page_shift_;
  bool stable_pages_ = false;
  bool async_ = false;
  bool copy_fills_ = false;  // 4 KiB frames, UFFDIO_COPY offered: fill_copy
  std::atomic<uint32_t> harvested_ms_{0};  // async: when harvest() last scanned the whole File
  // Written under backend_mu_ (upgrade_backend), read without it: an atomic
  // pointer into backends_, which keeps every backend alive.
  std::atomic<Backend*> backend_;
  Mutex backend_mu_;
  std::vector<std::shared_ptr<Backend>> backends_ GUARDED_BY(backend_mu_);
  // Written under i_rwsem_ exclusive (and invalidate_lock_ for a shrink); an
  // atomic, not GUARDED_BY, read without the lock on purpose: the fault path
  // rechecks it under the page lock (R2); who needs it to stay put holds
  // i_rwsem_ (R3).
  std::atomic<uint64_t> i_size_{0};
  int memfd_ = -1;
  // hugetlb only: the alias view, one unregistered MAP_SHARED | MAP_NORESERVE
  // mapping of the memfd reserving alias_len_ bytes of address space, so it
  // never moves when the file grows (accesses past the memfd's size SIGBUS:
  // the engine never makes them). Made PROT_NONE and then mprotect'ed: an
  // mmap with PROT_WRITE would extend a hugetlbfs file's size to its length.
  std::byte* alias_ = nullptr;
  size_t alias_len_ = 0;
  PageIndex index_;
  // size changes exclusive; read/write shared
  SleepingRwLock i_rwsem_{"wait.size_lock.exclusive", "wait.size_lock.shared"};
  // The kernel's mapping->invalidate_lock: fills (fault path, read/write API)
  // take it shared, truncate / punch / invalidate exclusive, so no fill can
  // bring back old data between dropping a page and changing the backend.
  // A view's teardown (harvest_view) and a sync's async scan take it too (W9).
  // Order: i_rwsem_ -> invalidate_lock_ -> reclaim_mu_ -> page locks.
  SleepingRwLock invalidate_lock_{"wait.invalidate_lock.exclusive",
                                  "wait.invalidate_lock.shared"};
  Mutex rmap_mu_;
  /// The wait point of a walk of the views: MutexLock(rmap_mu_, kRmapWait)
  /// passes it before sleeping on rmap_mu_ (R15: F13 proves a walk waits there).
  static constexpr const char* kRmapWait = "wait.rmap_lock";
  std::vector<MappingImpl*> rmap_ GUARDED_BY(rmap_mu_);
  std::atomic<uint64_t> wb_err_{0};  // errseq: (sequence << 16) | errno
  std::atomic<uint64_t> nr_dirty_{0};
  std::atomic<uint64_t> nr_cached_{0};      // uptodate pages (this File's pages)
  // Reclaim's queues (S3-FIFO, src/reclaim.cpp): uptodate pages by the order
  // they were cached (small_) or promoted (main_). An entry names a page and
  // its generation: one dropped since (truncate, punch, invalidate) leaves a
  // stale entry, skipped when popped. Under lru_mu_ (a leaf lock: nothing is
  // taken under it; page flags are only read and set there).
  struct LruEntry {
    uint64_t pg;
    uint32_t gen;
  };
  Mutex lru_mu_;
  std::deque<LruEntry> small_ GUARDED_BY(lru_mu_), main_ GUARDED_BY(lru_mu_);
  // Pages read by sequential streams (PG_stream), in the order cached: a
  // FIFO evicted before small and main (a scan must not flush the hot set,
  // nor cost it a sampling fault per page).
  std::deque<LruEntry> stream_ GUARDED_BY(lru_mu_);
  std::atomic<uint64_t> nr_main_{0};        // uptodate pages with PG_main
  std::atomic<uint64_t> nr_stream_{0};      // uptodate pages with PG_stream
  enum class Lru : uint8_t { kSmall, kMain, kStream };
  std::deque<LruEntry>& lru_queue(Lru q) REQUIRES(lru_mu_) {
    return q == Lru::kSmall ? small_ : q == Lru::kMain ? main_ : stream_;
  }
  std::atomic<uint32_t> small_evicted_{0};  // pages evicted from small_ (the ghosts' clock)
  /// Pops up to `max` live entries of a queue for reclaim.
  std::vector<LruEntry> lru_pop(Lru q, size_t max);
  void lru_push(Lru q, const std::vector<LruEntry>& es);
  /// Puts entries popped but not looked at back at the queue's head, in order.
  void lru_unpop(Lru q, const std::vector<LruEntry>& es);
  // Aging's cursor (FileImpl::age), so that each flusher pass copies only
  // the entries it has not looked at yet: small_.front() is entry number
  // small_head_ of all those the small queue ever held (approximately: a
  // batch reclaim puts back at the head may be renumbered by the stale
  // entries it dropped), and age_pos_ the number of the first entry the next
  // pass looks at. Renumbering (the stale entries' cleanup) starts it over
  // and begins a new age_epoch_: a pass that copied entries under the old
  // numbering neither goes on from its own position nor moves the cursor
  // (it would set it past entries no pass has looked at).
  uint64_t small_head_ GUARDED_BY(lru_mu_) = 0;
  uint64_t age_pos_ GUARDED_BY(lru_mu_) = 0;
  uint64_t age_epoch_ GUARDED_BY(lru_mu_) = 0;
  /// Copies of up to `max` small-queue entries from number `pos` on (or
  /// aging's cursor, or the head, if later), among the first `ahead` of the
  /// queue (it stays); `pos` becomes the number of the first one copied.
  /// `epoch`: the numbering `pos` is in (~0 at a pass's start); a new one
  /// starts `pos` over.
  std::vector<LruEntry> lru_age_batch(uint64_t& pos, uint64_t& epoch, uint64_t ahead, size_t max);
  /// Aging looked at every entry before number `pos` (of numbering `epoch`;
  /// nothing if the queue was renumbered since).
  void lru_aged_to(uint64_t pos, uint64_t epoch);
  /// Zaps the PTEs of the locked, clean pages `pg` (ascending) in every shared
  /// view so their next access faults (a MINOR fault: the frames stay);
  /// returns which of them an async view shows written (now dirty, R7), and
  /// in `mapped` which lie in a shared view (the others had nothing to zap).
  std::vector<bool> sample_unmap(const std::vector<uint64_t>& pg, std::vector<bool>& mapped);
  /// The ranges of view m's pages [lo, hi) but its poisoned ones, appended
  /// to `zap` (sample_unmap zaps them all with one MADV_DONTNEED call).
  void zap_unpoisoned(MappingImpl& m, uint64_t lo, uint64_t hi, std::vector<iovec>& zap);
  // shrink's steps (reclaim.cpp): pop a batch from the queue S3-FIFO picks,
  // sort it by an unlocked look, sample the mapped pages, evict the
  // candidates still evictable under their try-locks (R9).
  struct ReclaimBatch;
  std::vector<LruEntry> pop_batch(ReclaimBatch& b, const uint64_t idle[2], uint64_t visits);
  void sort_candidates(ReclaimBatch& b, const std::vector<LruEntry>& es, uint64_t room,
                       uint64_t& sample_budget);
  /// One popped batch through all of the above; returns the pages evicted,
  /// `progress`: anything promoted, sampled or evicted.
  uint64_t reclaim_batch(ReclaimBatch& b, const std::vector<LruEntry>& es, uint64_t room,
                         uint64_t& sample_budget, bool& progress);
  uint64_t shrink_streams(uint64_t want);
  uint64_t shrink_fifo(uint64_t want);
  void sample_pages(ReclaimBatch& b);
  void lock_for_eviction(ReclaimBatch& b);
  uint64_t evict_pages(ReclaimBatch& b);
  // Dirtying done for a store after its thread was woken (write-around after
  // a WP fault, and into the asynchronous readahead window): a sync waits for
  // what is in flight when it starts (issue 14 defect 12), counted in two
  // slots by epoch so that faults starting later cannot hold it off.
  // The epoch and the slots form a store-load handshake on two variables
  // (a fault adds to its slot then rereads the epoch; a sync flips the epoch
  // then reads the slot): every access is seq_cst, or both could miss the
  // other. Syncs flip and wait one at a time (late_sync_mu_): a second flip
  // would send new faults into the slot the first sync still waits for.
  std::atomic<uint64_t> late_epoch_{0};
  std::atomic<uint32_t> late_dirtying_[2]{};
  Mutex late_sync_mu_;
  unsigned begin_late_dirtying();
  void end_late_dirtying(unsigned slot);
  void wait_late_dirtying();
 public:
  /// Counts dirtying done for a store after its thread was woken, for as
  /// long as it lives (RAII: a throw cannot leave a sync waiting forever).
  /// Begun before the wake; an empty one (`active` false) counts nothing.
  class LateDirtying {
   public:
    LateDirtying(FileImpl* f, bool active)
        : f_(active ? f : nullptr), slot_(f_ ? f_->begin_late_dirtying() : 0) {}
    ~LateDirtying() {
      if (f_) f_->end_late_dirtying(slot_);
    }
    LateDirtying(const LateDirtying&) = delete;
    LateDirtying& operator=(const LateDirtying&) = delete;

   private:
    FileImpl* f_;
    unsigned slot_;
  };
 private:
  Mutex reclaim_mu_;                        // one reclaim of this File at a time; harvest_view
};

}  // namespace faultline::detail
