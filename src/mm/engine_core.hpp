// Internal: the engine's shared state — userfaultfd, handler threads, the
// registry of views (address -> Mapping) and of open Files (identity -> File).
#pragma once
#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mm/counters.hpp"
#include "faultline/engine.hpp"
#include "mm/mutex.hpp"
#include "mm/sleeping_lock.hpp"
#include "mm/thread_annotations.hpp"
#include "os/sys_error.hpp"
#include "os/uffd.hpp"

namespace faultline::detail {

class FileImpl;
class MappingImpl;

/// FaultMode::FaultingThread: the fault this thread is resolving in its
/// SIGBUS handler (faulting_thread.cpp), else nullptr. The fault path looks
/// here where a handler thread would wake, signal or throttle the faulting
/// thread: that thread is this one, which retries its access when the
/// handler returns.
struct InThreadFault {
  uintptr_t page = 0;     // the faulting page's address in the view
  bool sigbus = false;    // the access gets SIGBUS (passed to the program's handler)
  bool throttle = false;  // a store past the hard dirty limit: wait, then retry (R6)
  const void* guard = nullptr;  // this thread's innermost guarded() scope when it faulted
};
/// This thread's innermost guarded() scope (os/guarded.cpp), or nullptr.
const void* current_guard();
extern thread_local InThreadFault* t_in_thread_fault;
/// Ends the process when `info` is a fault's SIGBUS taken inside the fault
/// path of a FaultingThread fault that the engine could not resolve: no
/// handler may jump out of the fault path (its locks would stay held).
void abort_if_in_fault_path(const siginfo_t* info);

class EngineCore : public std::enable_shared_from_this<EngineCore> {
 public:
  /// -EINVAL, saying why, for a config no engine can run with.
  static Status check_config(const EngineConfig& cfg);
  /// cfg must have passed check_config. Throws when it cannot get its OS
  /// resources (the uffd, eventfd, epoll set: os/sys_error.hpp).
  explicit EngineCore(EngineConfig cfg);
  ~EngineCore();

  /// Starts the fault handlers and the flusher; -EAGAIN when a thread cannot start.
  Status start();
  void close();
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  /// -ESHUTDOWN once close() has begun.
  Status check_open() const;
  void log(std::string_view msg) const;

  /// The File of backend's object: the open one, or `f` made here (FileImpl's
  /// constructor throws for what it cannot get: os/sys_error.hpp).
  Status open(std::shared_ptr<Backend> backend, FileOptions options,
              std::shared_ptr<FileImpl>& f);
  /// Runs fn on the File of `w` for a backend's change notification (its own
  /// thread: Backend::ChangeSink). The File is never destroyed on that thread:
  /// its reference is handed to the flusher (or to close()).
  void from_backend_thread(const std::weak_ptr<FileImpl>& w,
                           const std::function<void(FileImpl&)>& fn);
  void forget_file(const std::string& key, const FileImpl* f);

  /// Throttling (R6): a store past the hard dirty limit has its wake deferred
  /// until the flusher has written back.
  bool over_dirty_limit() const { return nr_dirty.load(std::memory_order_relaxed) > cfg.dirty_limit_pages; }
  /// Whether a store is to be throttled (R6: its wake deferred): past the hard
  /// dirty limit, unless a write-back pass that had throttled stores waiting
  /// wrote nothing (the backend fails, the dirty pages cannot be written): a
  /// store not served would then fault and wait forever. Stores go through
  /// (over the limit) until a pass writes again.
  bool throttle_stores() const {
    return over_dirty_limit() && !wb_stalled_.load(std::memory_order_relaxed);
  }
  /// Wakes the thread faulting at [addr, addr+len) on `uffd` after the
  /// flusher's next write-back pass (dirty throttling).
  void defer_wake(Userfaultfd* uffd, uintptr_t addr, size_t len);
  /// FaultMode::FaultingThread: throttled stores waiting in their SIGBUS
  /// handler (the flusher's "stores wait" as deferred_wakes_ in handler mode:
  /// a pass that then writes nothing lets them through, R6).
  std::atomic<uint64_t> in_thread_throttled{0};
  /// Wakes the flusher now (background threshold, throttled stores).
  void kick_flusher();
  /// Hands `job` to the handler threads (FaultMode::FaultingThread: the
  /// asynchronous readahead a faulting thread leaves behind, so that its
  /// SIGBUS handler returns at once). False: it could not be queued; the
  /// caller runs it.
  bool queue_work(std::function<void()> job);
  /// balance_dirty_pages for the read/write API: waits (the caller's thread,
  /// no locks held) until the flusher brought the dirty count under the limit.
  void throttle_writer();

  void add_mapping(const std::shared_ptr<MappingImpl>& m);
  /// Removes m from the registry; returns false if it was not there. Its
  /// range counts as a view being torn down until mapping_unmapped.
  bool remove_mapping(MappingImpl* m);
  /// m's munmap is done (teardown): its range is no view's any more.
  void mapping_unmapped(MappingImpl* m);

  /// Milliseconds since the engine started (wraps after 49 days; compared
  /// with unsigned differences).
  uint32_t now_ms() const;

  EngineConfig cfg;
  /// The engine's userfaultfd; with FaultMode::FaultingThread it has
  /// UFFD_FEATURE_SIGBUS (faults raise SIGBUS in the faulting thread).
  Userfaultfd uffd;
  /// The second userfaultfd, with WP_ASYNC, for views of DirtyTracking::Async
  /// Files (WP_ASYNC is per uffd). Made by the first async open (make_async_uffd);
  /// the same handler threads serve it.
  Userfaultfd& async_uffd() { return *async_ptr_.load(std::memory_order_acquire); }
  /// Makes the async uffd if not yet made (Userfaultfd's constructor throws
  /// ENOTSUP when the kernel lacks WP_ASYNC).
  Status make_async_uffd();
  /// /proc/self/pagemap, for PAGEMAP_SCAN (opened with the async uffd).
  int pagemap_fd() const { return pagemap_fd_.load(std::memory_order_acquire); }
  /// /proc/self/pagemap opened read-only at start, or -1: which PTEs of a
  /// view are present (FaultMode::FaultingThread: a store to a present PTE is
  /// a write-protect fault; an install skipping pages mapped already,
  /// FileImpl::mapped_prefix). Set in the constructor, read-only after.
  int pte_fd() const { return pte_fd_; }
  std::atomic<uint64_t> nr_dirty{0};  // dirty pages over all Files
  std::atomic<uint64_t> nr_cached{0};  // uptodate pages over all Files (4 KiB units)
  std::atomic<uint64_t> peak_cached{0};  // the most nr_cached has been
  /// Frames reserved by fills in progress (4 KiB units): charge() keeps
  /// nr_cached + nr_charged within EngineConfig::memory_limit_pages.
  std::atomic<uint64_t> nr_charged{0};
  /// The cache with the fills in progress is past the background reclaim mark
  /// (the limit less 1/32; never, without a limit): the flusher evicts down to
  /// 15/16 of the limit, so faults rarely have to reclaim themselves.
  bool over_memory_limit() const {
    const uint64_t l = cfg.memory_limit_pages;
    return l && nr_cached.load(std::memory_order_relaxed) +
                        nr_charged.load(std::memory_order_relaxed) > l - l / 32;
  }
  /// Past 3/4 of the limit (reclaim is coming): aging's mark, and stream
  /// pages cached from here on are the streams' own pressure (R9).
  bool near_memory_limit() const {
    const uint64_t l = cfg.memory_limit_pages;
    return l && nr_cached.load(std::memory_order_relaxed) +
                        nr_charged.load(std::memory_order_relaxed) > l - l / 4;
  }
  /// A page became uptodate: past the background mark, wake the flusher
  /// (once per pass).
  void note_cached();
  /// The memory limit for a fill of `pages` frames (4 KiB units, issue 16):
  /// reserves them before anything is filled, so the cache never passes the
  /// limit. When cache + reservations would pass it, reclaims first (direct
  /// reclaim, R9: try-locks only, so callers may hold page locks); when
  /// nothing could be freed and `may_wait` (the caller holds no page lock nor
  /// the invalidate_lock), kicks the flusher (write-back) and waits for an
  /// eviction or a fill's end, then reclaims again; only after ~1 s in which
  /// the engine made no progress at all (every page dirty with failing
  /// write-back, or held by a stalled backend) does it go over by `min`
  /// rather than hang. Without `may_wait` it never goes over but by `min`
  /// (0 for faults: they retry holding no lock). Returns the pages
  /// reserved: `pages`, or as few as `min` (the caller fills less) when no
  /// more fits; `pages` unchanged without a limit. Release with uncharge().
  /// `unit`: the File's frame in 4 KiB pages (512 for 2 MiB frames): what is
  /// reserved is a whole number of frames (pages and min are).
  uint64_t charge(uint64_t pages, uint64_t min, bool may_wait, uint64_t unit = 1);
  void uncharge(uint64_t pages);
  /// Evicts up to `pages` (4 KiB units) clean pages over all Files, round
  /// robin (R9). Returns the 4 KiB pages freed. A File's page may free more
  /// than asked (a 2 MiB frame is 512); `round_down` (background reclaim)
  /// takes none where less than a page of that File is wanted, so a limit of
  /// a few frames is not kept a frame below itself.
  uint64_t reclaim(uint64_t pages, bool round_down = false);
  /// Background aging ahead of reclaim (the flusher; FileImpl::age): past 3/4
  /// of the memory limit, each File samples the pages its reclaim judges next.
  void age();
  /// References to the open Files (a File may be freed when the last goes).
  std::vector<std::shared_ptr<FileImpl>> live_files();
  KernelFeatures feats;
  Counters stats;

  /// Fault-handler pool (issue 16 item 3; DESIGN section 1 "Fault handlers").
  /// Every backend fill brackets itself with a FillScope: it counts the fills
  /// in flight (Stats::peak_fills_in_flight) and, on a handler thread, makes
  /// sure another handler is left waiting on the userfaultfd before this one
  /// blocks in the backend: when none is idle it starts one (up to
  /// EngineConfig::max_fault_threads), as the kernel's workqueues start a
  /// worker when the running one sleeps. So no fault waits behind another
  /// fault's I/O, and N threads faulting N pages keep N reads in flight.
  class FillScope {
   public:
    explicit FillScope(EngineCore& c);
    ~FillScope();
    FillScope(const FillScope&) = delete;
    FillScope& operator=(const FillScope&) = delete;

   private:
    EngineCore& c_;
  };
  std::atomic<uint64_t> fills_in_flight{0};
  std::atomic<uint64_t> peak_fills_in_flight{0};
  std::atomic<uint64_t> nr_handlers{0};    // handler threads alive now
  std::atomic<uint64_t> peak_handlers{0};  // the most there have been at once

 private:
  struct Handler {
    std::thread thread;
    // Under pool_mu_ (not GUARDED_BY: a nested struct cannot name the
    // EngineCore's lock): returned from handler_loop, join it.
    bool exited = false;
  };
  /// Starts a handler thread. False when the system refused.
  bool spawn_handler_locked() REQUIRES(pool_mu_);
  /// Joins the handlers that exited.
  void reap_handlers_locked() REQUIRES(pool_mu_);
  /// A handler idle for kHandlerIdleExitMs: whether it leaves the pool (more
  /// than EngineConfig::fault_threads alive); if so it is out of the counts
  /// and marked exited.
  bool handler_may_exit(Handler* self);
  void handler_loop(Handler* self);    // a handler thread: handler_events, then out of the pool
  /// Reads and dispatches events until stop or an error (false) or until it
  /// left the pool idle (true).
  bool handler_events(Handler* self);
  void flusher_loop();
  void release_deferred_wakes();
  void dispatch(Userfaultfd& u, uintptr_t addr, uint64_t flags, uint32_t tid = 0);
  /// Serves one fault event read by a handler (dispatch, counted busy).
  void serve(Userfaultfd& u, const uffd_msg& msg);
  /// After serving a fault: polls u for the next one for up to
  /// EngineConfig::fault_poll_us (one poller at a time, u out of the epoll
  /// set meanwhile); true with it in msg.
  bool poll_fault(Userfaultfd& u, uffd_msg& msg);
  /// Gives back lookup's reference, then the in-flight count.
  static void put_view(std::shared_ptr<MappingImpl>& m);

 public:
  /// What a SIGBUS at addr is to this engine (FaultMode::FaultingThread,
  /// faulting_thread.cpp).
  enum class InThread { NotMine, Retry, Sigbus };
  /// The live view containing addr, with an in-flight reference taken
  /// (given back by put_view). `dead`, if given, says whether a view being
  /// torn down holds addr (nullptr is returned for it).
  std::shared_ptr<MappingImpl> lookup(uintptr_t addr, bool* dead = nullptr);
  /// Resolves the fault at addr (in view m, from lookup: its reference is
  /// given back here) on the calling thread if m is a SIGBUS-mode view;
  /// uctx is the signal's ucontext.
  InThread fault_in_thread(std::shared_ptr<MappingImpl> m, uintptr_t addr, void* uctx);

 private:
  /// Enters / leaves the process's list of engines whose views raise SIGBUS
  /// for faults (installs the SIGBUS handler the first time). Leaving is
  /// idempotent, and a no-op for an engine that never entered.
  void register_in_thread_faults();
  void unregister_in_thread_faults();

  int pte_fd_ = -1;  // pte_fd()

  // Lock-free on purpose: start_, stop_fd_ and epoll_fd_ are set in the
  // constructor and read-only after; flusher_ is started by start() and
  // joined by close() (under close_mu_), no other thread touches it.
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<bool> closed_{false};
  Mutex close_mu_;  // one close() at a time (it guards no member: closed_ is atomic)
  SleepingRwLock maps_mu_;  // no wait points: no race test waits on it
  // The live views by start address.
  std::map<uintptr_t, std::shared_ptr<MappingImpl>> maps_ GUARDED_BY(maps_mu_);
  // Views removed from maps_ and not yet munmapped (alive until then).
  std::map<uintptr_t, MappingImpl*> dying_ GUARDED_BY(maps_mu_);
  Mutex files_mu_;
  // Open Files by key. An expired entry is a File being torn down (R14:
  // open() waits on files_cv_ until forget_file erases it).
  std::map<std::string, std::weak_ptr<FileImpl>> files_ GUARDED_BY(files_mu_);
  CondVar files_cv_;
  Mutex pool_mu_;
  // Every handler thread started and not yet joined.
  std::list<Handler> handlers_ GUARDED_BY(pool_mu_);
  bool pool_stop_ GUARDED_BY(pool_mu_) = false;  // close(): start no more handlers
  // Handlers waiting for an event (not dispatching). Atomic, not under
  // pool_mu_: a handler changes it around each dispatch; a spawn rechecks it
  // under pool_mu_ (FillScope). nr_handlers likewise (changed under pool_mu_,
  // read without it).
  std::atomic<uint64_t> idle_handlers_{0};
  std::atomic<bool> poller_{false};          // a handler polls the userfaultfd (poll_fault)
  std::atomic<bool> poll_worth_{true};       // the last fault came within fault_poll_us
  std::atomic<int64_t> last_served_ns_{0};   // when the last fault was served (steady clock)
  std::thread flusher_;
  Mutex flush_mu_;
  CondVar flush_cv_;     // wakes the flusher
  CondVar throttle_cv_;  // wakes throttled writers
  bool flush_kicked_ GUARDED_BY(flush_mu_) = false;
  std::atomic<bool> reclaim_kicked_{false};
  Mutex reclaim_wait_mu_;  // guards no member: the wait of charge() (progress_ is atomic)
  CondVar reclaim_cv_;  // an eviction or a fill's end (charge waits)
  std::atomic<uint64_t> progress_{0};      // evictions and fill ends so far (charge's waits)
  std::atomic<uint64_t> room_waiters_{0};  // fills waiting in charge()
  /// Reserves `pages` if the cache and the fills in progress stay within the
  /// limit with them (memory_limit.cpp).
  bool reserve(uint64_t pages);
  /// The limit less the cache and the fills in progress (a hint: reserve decides).
  uint64_t room() const;
  /// Pages were evicted or a fill ended: wakes the fills waiting for room.
  void note_progress();
  std::atomic<uint64_t> reclaim_rr_{0};  // the File reclaim starts with next
  bool flush_stop_ GUARDED_BY(flush_mu_) = false;
  struct DeferredWake {
    Userfaultfd* uffd;  // the engine's or its async one (both live until close)
    uintptr_t addr;
    size_t len;
  };
  std::vector<DeferredWake> deferred_wakes_ GUARDED_BY(flush_mu_);
  void reap_files();  // drops the references from_backend_thread handed over
  Mutex reap_mu_;
  CondVar reap_cv_;
  std::vector<std::shared_ptr<FileImpl>> reap_ GUARDED_BY(reap_mu_);
  int sinks_running_ GUARDED_BY(reap_mu_) = 0;
  bool reap_closed_ GUARDED_BY(reap_mu_) = false;
  std::atomic<bool> wb_stalled_{false};
  int stop_fd_ = -1;  // eventfd that stops the handler threads
  // queue_work's jobs, one count of work_fd_ (an eventfd in semaphore mode,
  // in the handlers' epoll set) each; a handler that reads a count runs one.
  int work_fd_ = -1;
  Mutex work_mu_;
  std::deque<std::function<void()>> work_ GUARDED_BY(work_mu_);
  bool work_stopped_ GUARDED_BY(work_mu_) = false;  // close(): the handlers are gone
  /// A handler's turn at the work queue: one job, if its count is still there.
  void run_work();
  int epoll_fd_ = -1;  // the handler threads wait here: uffd, async uffd, stop_fd_
  Mutex async_mu_;
  std::unique_ptr<Userfaultfd> async_uffd_ GUARDED_BY(async_mu_);
  // Set once under async_mu_ (pagemap_fd_ before it), read without it:
  // async_uffd() and make_async_uffd()'s fast path (acquire / release).
  std::atomic<Userfaultfd*> async_ptr_{nullptr};
  std::atomic<int> pagemap_fd_{-1};
};

}  // namespace faultline::detail
