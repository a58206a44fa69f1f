// faultline — Engine: one per process. Owns the userfaultfd, the fault-handler
// threads and the set of open Files. Configured by one plain struct.
//
// Requirements (checked at construction, std::system_error when missing):
// Linux >= 6.6 (userfaultfd MINOR + WP on shmem, UFFDIO_CONTINUE,
// UFFDIO_POISON), and permission to create a userfaultfd that also handles
// kernel-mode faults: root / CAP_SYS_PTRACE, access to /dev/userfaultfd, or
// sysctl vm.unprivileged_userfaultfd = 1.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "faultline/backend.hpp"
#include "faultline/file.hpp"
#include "faultline/stats.hpp"

namespace faultline {

/// `percent` of physical memory (capped by the memory limit of the process's
/// memory cgroup, faultline/cgroup.hpp: v2 memory.max, v1
/// memory.limit_in_bytes) in 4 KiB pages: the dirty thresholds' defaults. At
/// least 256 pages.
std::size_t ram_percent_pages(unsigned percent);

/// The default EngineConfig::memory_limit_pages: half the memory limit of
/// the process's memory cgroup (the tightest of its own and its ancestors':
/// v2 memory.max, v1 memory.limit_in_bytes; faultline/cgroup.hpp), in 4 KiB
/// pages, at least 256; 0 (no limit) when the cgroup sets none below physical
/// memory. Half, because the engine's frames are shmem charged to the cgroup
/// that the kernel cannot reclaim without swap: past the cgroup's limit its
/// OOM killer acts, so the engine must reclaim first and leave the rest to
/// the program's own memory and the kernel's (reclaimable) page cache of the
/// files it uses.
std::size_t default_memory_limit_pages();

namespace detail {
class EngineCore;
}

/// Who resolves a fault on a view (EngineConfig::fault_mode).
enum class FaultMode {
  /// The engine's fault-handler threads read each fault from the userfaultfd,
  /// resolve it and wake the faulting thread: two thread hand-offs per fault
  /// (DESIGN section 2). Every access works, kernel-mode ones included
  /// (read(2) into a view, O_DIRECT from one, futexes in one).
  HandlerThreads,
  /// The faulting thread resolves its own fault, in a SIGBUS handler the
  /// engine installs (the userfaultfd's UFFD_FEATURE_SIGBUS): no hand-off,
  /// and N faulting threads put N backend reads in flight. Measured here: a
  /// random 4 KiB miss ~20-30 us faster (docs/MEASUREMENTS.md M6.15).
  /// Opt-in, because the kernel then answers a *kernel-mode* access to a
  /// page not yet installed with EFAULT, not a fault: read(2)/recv(2)/
  /// O_DIRECT/io_uring into a view, write(2) from one, futexes, mlock() or
  /// MAP_POPULATE of a view fail unless the pages are installed (touch them
  /// first). Threads that block SIGBUS are killed by their first fault. A
  /// program's own SIGBUS handler installed after the engine must call
  /// faultline::handle_sigbus() first (faultline/guarded.hpp's handler
  /// does); one installed before is chained to for every SIGBUS that is not
  /// the engine's (past EOF, I/O errors, other mappings). x86-64 reports
  /// whether the access was a store; elsewhere a store to an uninstalled
  /// page takes one more fault. Asynchronous dirty tracking's shared
  /// writable views (DirtyTracking::Async) stay with the handler threads.
  /// Backend callbacks run on the faulting thread, in its SIGBUS handler: a
  /// callback must not take a lock that thread may hold while it touches a
  /// view; a SIGBUS the engine cannot resolve inside them ends the process
  /// (unless the callback guards it itself). Under ThreadSanitizer set
  /// TSAN_OPTIONS=report_signal_unsafe=0 (the fault path allocates).
  FaultingThread,
};

/// For a program's own SIGBUS handler (SA_SIGINFO) when views use
/// FaultMode::FaultingThread: call it first with the handler's arguments.
/// true: it was a fault on such a view and is resolved (or the view is
/// going): return from the handler and the access is retried. false: not the
/// engine's to resolve (a real SIGBUS: past EOF, an I/O error, another
/// mapping): handle it as before. Async-signal-safe for this use: it runs
/// the engine's fault path on the faulting thread, which never holds an
/// engine lock while touching a view.
bool handle_sigbus(int sig, void* siginfo, void* ucontext);

struct EngineConfig {
  /// Who resolves faults: the engine's handler threads (the default, every
  /// access works) or the faulting thread itself (faster; kernel-mode
  /// accesses to uninstalled pages get EFAULT). See FaultMode.
  FaultMode fault_mode = FaultMode::HandlerThreads;
  /// Fault-handler threads reading the userfaultfd: the pool's size at rest.
  /// The pool grows on demand: a handler about to block in a backend read
  /// (a fill) while no other handler waits for events starts one more, up to
  /// max_fault_threads, so faults from many threads are served beside each
  /// other (N threads faulting N pages put N reads in flight) instead of
  /// queueing behind fault_threads blocked handlers. A handler idle for 2 s
  /// leaves the pool again, down to fault_threads. Stats::fault_threads /
  /// peak_fault_threads / peak_fills_in_flight show it. (Several handlers
  /// may serve faults of one page: the page lock orders them, DESIGN R1.)
  /// The engine's threads are named for ps/top/gdb: fl-fault (handlers),
  /// fl-flush (the flusher), fl-rados (the RADOS backend's dispatcher).
  unsigned fault_threads = 2;
  /// The most fault-handler threads at once (>= fault_threads, <= 4096;
  /// EINVAL otherwise). Set it to fault_threads for a fixed pool (e.g. one
  /// handler for a replayable order of backend calls).
  unsigned max_fault_threads = 64;
  /// Microseconds a handler that has just served a fault keeps polling the
  /// userfaultfd (non-blocking reads, yielding the CPU between them) before
  /// it sleeps, while faults arrive less than this far apart: a thread that
  /// misses page after page then has its next fault read at once, instead of
  /// waking a sleeping handler (a cross-CPU wake-up of an idle vCPU, or a
  /// scheduling delay on a busy machine: docs/MEASUREMENTS.md M6.10). At most
  /// one handler polls at a time, and the userfaultfd is taken out of the
  /// handlers' epoll set meanwhile, so no sleeping handler is woken for a
  /// fault the poller reads. 0 (the default): never poll; at most 10000.
  /// Off by default: on a loaded 2-CPU machine the poller took CPU the
  /// faulting thread needed and lost (M6.10); not yet measured quiet.
  unsigned fault_poll_us = 0;
  /// Pages per fault for non-sequential access: an aligned window around the
  /// faulting page (1 disables fault-around). Adaptive per Mapping, like the
  /// kernel's mmap_miss (DESIGN section 2, "Adaptive read-around"): a fault
  /// that must read its page reads the whole window but maps only its page
  /// and the pages cached before; the neighbours it read stay cached and
  /// unmapped, so a later fault on one finds it cached — a hit
  /// (Stats::readaround_hits, one minor fault, ~30 us here) that maps every
  /// cached page of its window. Each miss counts +1, each hit -1 (kept in
  /// [0, 1000]); while the count is above 100 (MMAP_LOTSAMISS) a fault reads
  /// only its own page and maps the cached ones around it, so uniform random
  /// access reads ~1 page per fault after its first 100 misses. With read-
  /// around off, a miss in the window of the view's previous random fault
  /// counts as the hit it would have been (local access brings it back).
  /// Sequential streams (a fault at the page right after the last window)
  /// grow to readahead_max_pages whatever the count. Mapping::advise
  /// overrides it: Random reads one page per fault, Sequential
  /// readahead_max_pages.
  std::size_t fault_around_pages = 256;
  /// Largest window for sequential access (readahead grows up to it).
  std::size_t readahead_max_pages = 1024;
  /// Windows a sequential stream keeps read (or being read) ahead of the one
  /// it maps once its window is readahead_max_pages: the readahead distance,
  /// 1 to 8. 1 is the kernel's (async_size = the window). With 2, two
  /// windows are read at once by two fault-handler threads: a lone scan of
  /// 2 MiB frames reads 16% faster at 1 thread and 11% at 2 (medians of five
  /// runs), one of 4 KiB frames 2% and 8% (within the noise: its copy into
  /// the frames serialises on the memfd's inode lock), and the scan takes more CPU from the program's
  /// other threads (a hot set beside a 4 KiB scan kept 0.53-0.57 of its
  /// rate instead of 0.79-0.81; docs/MEASUREMENTS.md M6.16). Memory: up to
  /// this many windows per stream, within the limit.
  std::size_t readahead_windows = 1;
  /// Read-around for non-sequential faults: the backend is told (will_need)
  /// that this many pages around the fault will be read soon, as the kernel's
  /// mmap read-around does; only the fault-around window is filled (and
  /// only while the view's adaptive read-around is on, see
  /// fault_around_pages). 0 disables it. Files with 2 MiB frames instead fill and map
  /// max(fault_around, read_around) bytes per non-sequential fault (one large
  /// aligned read into their frames; a hint would cache the data twice).
  std::size_t read_around_pages = 1024;
  /// Write-around: when stores through a view are sequential, the fault path
  /// calls page_mkwrite for up to this many following pages and makes them
  /// writable and dirty in the same round trip (DESIGN R12; a page dirtied
  /// without a store costs a needless write-back: Stats::pages_write_around
  /// counts them as an upper bound). 1 disables it. Mapping::advise steers it.
  /// The window starts at one page and grows x2 per storing fault that
  /// continues the store stream (x4 when it also continues the readahead
  /// stream), so a random store pays nothing. In async dirty tracking mode it
  /// makes pages writable (no page_mkwrite) the same way. 1024 (4 MiB, the
  /// readahead maximum) measured fastest for sequential first-touch stores:
  /// a store to a page installed write-protected costs a kernel fault even
  /// after the protection is lifted (DESIGN section 2).
  std::size_t write_around_max_pages = 1024;
  /// Background write-back: a flusher thread writes pages back once they have
  /// been dirty for dirty_expire_ms, or all dirty pages while more than
  /// dirty_background_pages are dirty, in file order, batching contiguous
  /// pages. Off: pages are written back only by sync/msync/fsync/close (what
  /// `faultline verify` uses to make runs replayable). Files with
  /// DirtyTracking::Async have no per-store record: the flusher scans them
  /// once per dirty_expire_ms (not every pass) and then writes them whole, as
  /// the kernel expires whole inodes; their stores count toward the dirty
  /// thresholds only once scanned.
  bool flusher = true;
  uint32_t flush_interval_ms = 1000;
  uint32_t dirty_expire_ms = 30000;
  /// Default: 10% of physical memory, as the kernel's vm.dirty_background_ratio.
  std::size_t dirty_background_pages = ram_percent_pages(10);
  /// Hard limit: a store that dirties a page past it is throttled — the wake
  /// of the storing thread is deferred until the flusher has written back
  /// (never a sleeping handler thread, never under a page lock: R6).
  /// Default: 20% of physical memory, as the kernel's vm.dirty_ratio.
  std::size_t dirty_limit_pages = ram_percent_pages(20);
  /// Memory limit of the engine's page cache, in 4 KiB pages over all Files
  /// (0: none; a 2 MiB frame counts 512). Default: half the memory limit of
  /// the process's memory cgroup, none without one (default_memory_limit_pages;
  /// Engine::config() shows the limit in effect). Smaller than fault_around_pages:
  /// EINVAL at Engine construction; smaller than one 2 MiB frame (512): EINVAL
  /// at the open of a FrameSize::k2M File. Past it the flusher reclaims: it writes dirty pages back and
  /// evicts clean, unlocked pages not under write-back (R9), giving each page
  /// a second chance when a fault or read used it since the last look (the
  /// kernel's referenced bit), down to 15/16 of the limit, once the cache
  /// passes 31/32 of it. A fill (fault, File::read/write) reserves its frames
  /// first: one that would pass the limit reclaims itself (direct reclaim),
  /// or shrinks its window, or (holding no lock) waits for write-back to make
  /// pages evictable, up to ~1 s, before it goes over by its one page rather
  /// than hang; Stats::peak_cached_pages shows the most ever cached. The file
  /// backend fills 4 KiB frames of ranges the kernel does not cache with
  /// O_DIRECT, so the limit bounds frames plus the kernel's cache of the file
  /// (DESIGN section 2). This write-back happens with `flusher` off too: the
  /// limit needs it. While over the mark each pass writes back everything
  /// (async Files: a full scan per pass).
  std::size_t memory_limit_pages = default_memory_limit_pages();
  /// Where warnings go (THP setting, fallbacks, a SIGBUS that cannot be
  /// sent). Default: stderr. Called on the engine's threads (fault handlers,
  /// the flusher, a backend's thread) and on the caller's inside Engine and
  /// File calls (open, sync, close), sometimes with a page lock held (the
  /// fault path): it must not touch a faultline mapping nor call into the
  /// Engine or its Files (that access could wait for a lock its own call
  /// holds). Copy the message and return.
  std::function<void(std::string_view)> log;
};

/// What the engine found the kernel offers, probed at start.
struct KernelFeatures {
  uint64_t uffd_features = 0;   ///< UFFDIO_API features
  uint64_t range_ioctls = 0;    ///< ioctls allowed on a registered memfd view
  bool poison = false;          ///< UFFDIO_POISON (SIGBUS delivery)
  bool wp_shmem = false;        ///< write-protect on shmem
  bool minor_shmem = false;     ///< MINOR faults on shmem
  bool wp_async = false;        ///< WP_ASYNC + PAGEMAP_SCAN (DirtyTracking::Async)
  std::string thp_shmem;        ///< transparent_hugepage/shmem_enabled selection
  std::string via;              ///< "syscall" or "/dev/userfaultfd"
};

/// The frame (page) size of a File's cache.
enum class FrameSize : uint8_t {
  k4K,  ///< 4 KiB frames in a shmem memfd (the default)
  k2M,  ///< 2 MiB frames in a hugetlb memfd (MFD_HUGETLB | MFD_HUGE_2MB)
};

/// How stores through shared writable views are noticed.
enum class DirtyTracking : uint8_t {
  /// Every clean page is installed write-protected; the first store raises a
  /// write-protect fault that calls Backend::page_mkwrite and marks the page
  /// dirty (DESIGN R5-R7). ~35 us per first store here; write-around helps.
  Mkwrite,
  /// For backends that need no per-page page_mkwrite notification: the views
  /// are registered on a second userfaultfd with UFFD_FEATURE_WP_ASYNC, so the
  /// kernel resolves a store to a write-protected page itself (no event, no
  /// page_mkwrite, no update_time, no dirty throttling of such stores: only a
  /// store that faults, the first touch of a page, can be throttled), and
  /// write-back finds the written pages with PAGEMAP_SCAN, re-protecting them
  /// atomically (DESIGN R7). A page is dirty when flagged so (File::write, a
  /// store that filled a hole) or when a view's scan reports it written.
  /// Needs Linux >= 6.7 (ENOTSUP otherwise); refused (EINVAL) with
  /// stable_pages. Works with FrameSize::k2M (a written frame is found and
  /// written back whole).
  Async,
};

/// Per-File choices, made by the first open of a backing object (later opens
/// of the same object get that File as it is; their options are ignored).
struct FileOptions {
  /// A store to a page under write-back waits until the write-back ends (the
  /// kernel's stable pages), for backends that checksum or compress pages.
  /// Off: the store goes on, redirties the page, and it is written again.
  bool stable_pages = false;
  /// Frame size. With FrameSize::k2M a page is 2 MiB everywhere (page index,
  /// locks, fault-around, dirty tracking, write-back: a dirty page writes its
  /// whole 2 MiB frame, clipped to EOF), frames come from the hugetlb pool and
  /// are installed with one PMD each:
  ///  - The memory limit (EngineConfig::memory_limit_pages) bounds 2 MiB
  ///    frames as it bounds 4 KiB ones (each counts 512 4 KiB pages;
  ///    reclaim punches frames back into the pool), so a File larger than
  ///    the pool works out of core. Engine::open fails with
  ///    std::system_error(ENOMEM) when the pool can give fewer 2 MiB pages
  ///    (free - reserved + overcommit headroom, faultline/hugepages.hpp) than
  ///    min(this File's frames + the engine's other open 2 MiB Files' frames,
  ///    the limit in frames; no limit: all of them) less the frames those
  ///    Files hold now; the message names the fix (scripts/setup.sh
  ///    --hugepages N, with the N that would do, or vm.nr_overcommit_hugepages).
  ///    It fails with EINVAL when the limit is smaller than one 2 MiB frame
  ///    (512 pages). The engine never changes system settings. Pages are
  ///    taken from the pool when frames are filled; a fill that finds the
  ///    pool empty (another user took pages) reclaims clean frames or waits
  ///    for a punch in flight, briefly and only under a limit, and is then a
  ///    read error (SIGBUS for that access), never a hang.
  ///  - File::map offsets must be 2 MiB aligned (EINVAL otherwise), and
  ///    private views are refused (EINVAL): hugetlb hole punch drops private
  ///    copy-on-write copies (DESIGN F5), so punch/invalidate would lose them.
  FrameSize frame_size = FrameSize::k4K;
  /// Write notification mode (see DirtyTracking).
  DirtyTracking dirty_tracking = DirtyTracking::Mkwrite;
};

class Engine {
 public:
  explicit Engine(EngineConfig config = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Opens a backing object. Same identity -> same File (one cache).
  File open(std::shared_ptr<Backend> backend, FileOptions options = {});
  /// Opens a local file through the file backend.
  File open(const std::string& path, bool writable = true, bool create = false);

  /// Totals over every File this engine has served.
  Stats stats() const;
  const KernelFeatures& features() const;
  /// Evicts up to `pages` (4 KiB units) clean pages from the engine's cache
  /// now, as under memory pressure (R9: clean, unlocked, not under
  /// write-back; second chance for pages used since the last look). Dirty
  /// pages are not written here (sync first). Returns the 4 KiB pages freed.
  uint64_t reclaim(uint64_t pages);
  const EngineConfig& config() const;

  /// Writes back every File, unmaps every Mapping, stops the threads and closes
  /// the userfaultfd. Handles used afterwards throw ESHUTDOWN; accesses to a
  /// view after close() get SIGSEGV. Idempotent; the destructor calls it.
  void close();

 private:
  std::shared_ptr<detail::EngineCore> core_;
};

}  // namespace faultline
