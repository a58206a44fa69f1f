// faultline — statistics, per File and per Engine. Plain snapshots of counters.
#pragma once
#include <cstdint>

namespace faultline {

struct Stats {
  uint64_t missing_faults = 0;   ///< userfaultfd MISSING events (hole in the memfd)
  uint64_t minor_faults = 0;     ///< MINOR events (frame present, no PTE in that view)
  uint64_t wp_faults = 0;        ///< write-protect events (first store to a clean page)
  uint64_t pages_filled = 0;     ///< pages read from the backend into frames
  uint64_t pages_installed = 0;  ///< PTEs installed (UFFDIO_CONTINUE or COPY)
  uint64_t pages_fault_around = 0;  ///< of those, pages beyond the faulting one
  uint64_t pages_dirtied = 0;    ///< clean -> dirty transitions
  uint64_t pages_written_back = 0;
  uint64_t bytes_read = 0;       ///< bytes read from the backend
  uint64_t bytes_written = 0;    ///< bytes written to the backend
  uint64_t read_errors = 0;      ///< backend read failures (the access got SIGBUS)
  uint64_t write_errors = 0;     ///< backend write-back failures (reported by sync)
  uint64_t mkwrite_errors = 0;   ///< page_mkwrite refusals (the store got SIGBUS)
  uint64_t sigbus_sent = 0;      ///< accesses answered with UFFDIO_POISON
  uint64_t pages_invalidated = 0;    ///< pages dropped by invalidate / remote changes
  uint64_t invalidate_conflicts = 0; ///< dirty pages kept when a remote change hit them
  uint64_t pages_truncated = 0;      ///< pages dropped by truncate
  uint64_t pages_punched = 0;        ///< pages dropped by punch_hole
  uint64_t pages_laundered = 0;      ///< dirty pages written back by invalidate before dropping
  uint64_t pages_write_around = 0;   ///< pages made writable+dirty ahead of a store (write-around)
  uint64_t dirty_pages = 0;          ///< pages dirty now (not a counter)
  uint64_t fault_retries = 0;        ///< faults whose R2 recheck failed (page gone or past EOF)
  uint64_t pages_scan_written = 0;   ///< DirtyTracking::Async: pages PAGEMAP_SCAN found written
  uint64_t pagemap_scans = 0;        ///< PAGEMAP_SCAN ioctls (one per view and range)
  uint64_t pagemap_scan_pages = 0;   ///< pages those scans covered
  uint64_t pagemap_scan_ns = 0;      ///< time spent in them
  /// Storing faults past EngineConfig::dirty_limit_pages whose thread was
  /// held (its wake deferred to the flusher) until write-back caught up.
  uint64_t stores_throttled = 0;
  /// Time the fault path spent filling frames from the backend (reads into
  /// the memfd or the alias view, incl. allocating 2 MiB frames) and
  /// installing them (UFFDIO_CONTINUE), in ns: with pages_filled and
  /// pages_installed, the cost per page of each step.
  uint64_t fill_ns = 0;
  uint64_t install_ns = 0;
  /// Pages evicted by reclaim (EngineConfig::memory_limit_pages,
  /// Engine::reclaim), in the File's pages.
  uint64_t pages_reclaimed = 0;
  /// Lookups of a page's data that found it cached (hits) or had to read it
  /// from the backend (misses): the faulting page of each MISSING/MINOR fault,
  /// and each page File::read/write reads. Hit ratio = hits / (hits + misses).
  /// Accesses to pages already mapped in a view raise no fault and are in
  /// neither.
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;
  /// Punches reclaim made to evict pages_reclaimed pages (runs of contiguous
  /// pages: pages_reclaimed / reclaim_runs is the mean run length).
  uint64_t reclaim_runs = 0;
  /// Adaptive read-around (EngineConfig::fault_around_pages): non-sequential
  /// faults of views with no advice that found their page cached (a page an
  /// earlier fault read around it and left unmapped, or cached otherwise) or
  /// that had to read it. The window shrinks to the faulting page while
  /// misses outnumber hits by the kernel's MMAP_LOTSAMISS (100).
  uint64_t readaround_hits = 0;
  uint64_t readaround_misses = 0;
  /// Of the misses, those that read only their own page (read-around off).
  uint64_t readaround_off = 0;
  /// Pages read around a fault and left cached but unmapped (read-around
  /// probes): a later fault on one is a hit; reclaim takes the untouched.
  uint64_t pages_read_around = 0;
  /// Pages reclaim sampled: unmapped from every shared view (the frame kept)
  /// so that their next access faults and shows they are in use (R9).
  uint64_t pages_sampled = 0;
  /// Faults a handler read while polling the userfaultfd after serving the
  /// one before (EngineConfig::fault_poll_us): no handler was woken for them.
  uint64_t faults_polled = 0;
  /// Faults resolved by the faulting thread itself, in its SIGBUS handler
  /// (FaultMode::FaultingThread); also counted in minor/missing/wp_faults.
  uint64_t faults_in_thread = 0;
  /// Pages read ahead of a sequential stream in the background and left
  /// cached (asynchronous readahead: the read overlaps the stream's
  /// touching, issue 16 item 3); the first page of each window unmapped, for
  /// the stream's fault on it to map the window and read the next; in a
  /// shared view of 4 KiB frames the others mapped by UFFDIO_COPY.
  uint64_t async_readahead_pages = 0;
  /// Of pages_filled (and pages_installed), the 4 KiB pages a fault or an
  /// asynchronous readahead filled and mapped in one UFFDIO_COPY, without the
  /// memfd's inode lock (DESIGN section 2, "Filling by UFFDIO_COPY").
  uint64_t pages_copied = 0;
  /// UFFDIO_CONTINUE and UFFDIO_COPY calls made to install pages_installed
  /// (one per run of pages, or per piece of a run read in pieces; one more
  /// where a run meets pages mapped already).
  uint64_t install_calls = 0;
  /// Pages cached now (uptodate; not a counter), in the File's pages for
  /// File::stats, in 4 KiB pages for Engine::stats.
  uint64_t cached_pages = 0;
  /// The most pages cached at once since the Engine started (Engine::stats
  /// only, 4 KiB pages): with a memory limit, at most the limit (issue 16).
  uint64_t peak_cached_pages = 0;
  /// 4 KiB pages reserved under the memory limit by fills in progress
  /// (Engine::stats only; not a counter): 0 whenever no fill runs.
  uint64_t charged_pages = 0;
  /// Engine::stats only (issue 16 item 3): fault-handler threads alive now
  /// (EngineConfig::fault_threads at rest, more while fills block), the most
  /// there have been at once, and the most backend fills (reads into
  /// frames: faults, readahead, File::read/write) in flight at once.
  uint64_t fault_threads = 0;
  uint64_t peak_fault_threads = 0;
  uint64_t peak_fills_in_flight = 0;
};

}  // namespace faultline
