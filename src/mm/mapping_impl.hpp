// Internal: a registered view (vma) of a File's memfd.
#pragma once
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <map>
#include <set>

#include "faultline/mapping.hpp"
#include "mm/mutex.hpp"
#include "mm/thread_annotations.hpp"

namespace faultline::detail {

class EngineCore;

/// Net read-around misses past which a view's non-sequential faults read only
/// their own page (the kernel's MMAP_LOTSAMISS; the count stops at 10x).
inline constexpr uint32_t kMmapLotsaMiss = 100;
class FileImpl;
class Userfaultfd;

class MappingImpl {
 public:
  MappingImpl(std::shared_ptr<EngineCore> core, std::shared_ptr<FileImpl> file, uintptr_t start,
              size_t len, uint64_t pgoff, bool writable, bool shared, Userfaultfd* uffd);
  ~MappingImpl();

  /// munmap (which unregisters), then wake waiters (DESIGN R13). Waits for
  /// in-flight fault handling on this view first. Idempotent.
  void teardown();

  bool contains(uintptr_t a) const { return a >= start && a < start + len; }
  /// Whether stores through this view must be noticed (shared + writable).
  bool tracks_writes() const { return writable && shared; }
  uintptr_t addr_of(uint64_t pg) const;  // view address of file page pg

  const std::shared_ptr<EngineCore> core;
  const std::shared_ptr<FileImpl> file;
  const uintptr_t start;
  const size_t len;       // rounded up to the page size
  const uint64_t pgoff;   // file page of `start`
  const uint64_t npages;
  const bool writable;
  const bool shared;
  /// The userfaultfd this view is registered on: the engine's, or its async
  /// one for shared writable views of DirtyTracking::Async Files.
  Userfaultfd* const uffd;
  /// Stores are tracked by WP_ASYNC + PAGEMAP_SCAN (no WP events).
  bool async_wp() const;

  // msync's write-back error cursor (R8): the one of the handle that made the
  // view (its struct file), shared with that handle's sync.
  std::shared_ptr<std::atomic<uint64_t>> errseq;

  // In-flight handler references (teardown waits for 0) and liveness.
  std::atomic<uint32_t> inflight{0};
  std::atomic<bool> dead{false};

  // Pages of this view answered with UFFDIO_POISON (they raise SIGBUS until
  // invalidate / punch / truncate clears exactly them).
  Mutex poison_mu;
  std::set<uint64_t> poisoned GUARDED_BY(poison_mu);
  // Pages whose SIGBUS could not be sent (UFFDIO_POISON failed), with the
  // failures in a row: past a bound the faulting thread is no longer woken to
  // fault again (fault.cpp send_sigbus). Erased when a SIGBUS is sent.
  std::map<uint64_t, uint32_t> sigbus_failures GUARDED_BY(poison_mu);

  // Readahead streams, one per faulting thread (the fault's thread id,
  // UFFD_FEATURE_THREAD_ID; 0 without it: one for the view), up to
  // kStreams, the least recently used replaced: threads that each scan their
  // own part of one view keep their streams (one position per view lost
  // them, DESIGN section 2 "Context readahead"). A hint, not a correctness
  // property.
  struct Stream {
    uint32_t tid = 0;
    uint32_t pages = 0;                // current window
    uint64_t start = ~uint64_t{0};     // first page of the stream's last window
    uint64_t next = ~uint64_t{0};      // page that continues the stream
    bool stream = false;               // the last window continued a stream
    uint64_t ahead = ~uint64_t{0};     // end of the furthest window read ahead for it
    uint64_t used = 0;                 // LRU clock
  };
  static constexpr size_t kStreams = 8;
  /// Thread tid's stream (a fresh one if it has none, with the window of
  /// the view's last stream: a thread that meets another's readahead marker
  /// maps the window read ahead, not a fault-around window of it).
  Stream stream_of(uint32_t tid) {
    MutexLock g(stream_mu_);
    for (const Stream& s : streams_)
      if (s.used && s.tid == tid) return s;
    return Stream{.tid = tid, .pages = last_pages_};
  }
  /// Records thread tid's stream (replacing the least recently used one).
  void set_stream(const Stream& st) {
    MutexLock g(stream_mu_);
    Stream* slot = &streams_[0];
    for (Stream& s : streams_) {
      if (s.used && s.tid == st.tid) {
        slot = &s;
        break;
      }
      if (s.used < slot->used) slot = &s;
    }
    *slot = st;
    slot->used = ++stream_clock_;
    if (st.stream) last_pages_ = st.pages;
  }
  std::atomic<uint64_t> wa_start{~uint64_t{0}};  // first page of the store stream's last window
  std::atomic<uint64_t> wa_next{~uint64_t{0}};   // page a sequential store stream reaches next
  std::atomic<uint32_t> wa_pages{1};           // current write-around window
  // Adaptive fault-around / read-around (the kernel's file_ra_state.mmap_miss,
  // DESIGN section 2 "Adaptive read-around"): +1 per non-sequential fault
  // that must read, -1 per one that finds its page cached; above
  // kMmapLotsaMiss a fault reads only its own page.
  std::atomic<uint32_t> mmap_miss{0};
  std::atomic<uint64_t> last_around{~uint64_t{0}};  // aligned window of the last random fault
  std::atomic<int> advice{0};                  // faultline::Advice

 private:
  Mutex stream_mu_;  // a leaf
  std::array<Stream, kStreams> streams_ GUARDED_BY(stream_mu_){};
  uint64_t stream_clock_ GUARDED_BY(stream_mu_) = 0;
  uint32_t last_pages_ GUARDED_BY(stream_mu_) = 0;
  std::once_flag torn_down_;
};

}  // namespace faultline::detail
