// Engine: userfaultfd, handler threads, the registries of views and Files.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <poll.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "os/thread_name.hpp"
#include "mm/engine_core.hpp"
#include "faultline/cgroup.hpp"
#include "faultline/constants.hpp"
#include "faultline/hugepages.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "testing/sched.hpp"
#include "os/sys_error.hpp"

namespace faultline {

namespace {
uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && size > 0) return static_cast<uint64_t>(pages) * static_cast<uint64_t>(size);
  return uint64_t{8} << 30;  // unknown: assume 8 GiB
}
}  // namespace

std::size_t ram_percent_pages(unsigned percent) {
  // Physical memory, capped by the process's memory cgroup's limit when there
  // is one (a container's frames are charged to it).
  uint64_t bytes = physical_memory_bytes();
  if (const uint64_t cap = memory_cgroup().limit_bytes) bytes = std::min(bytes, cap);
  return std::max<std::size_t>(256, static_cast<std::size_t>(bytes / 100 * percent) >> kBasePageShift);
}

std::size_t default_memory_limit_pages() {
  // Half the cgroup's limit (engine.hpp says why); a limit at least as large
  // as the machine's memory limits nothing.
  const uint64_t cap = memory_cgroup().limit_bytes;
  if (cap == 0 || cap >= physical_memory_bytes()) return 0;
  return std::max<std::size_t>(256, static_cast<std::size_t>(cap / 2) >> kBasePageShift);
}

namespace detail {

namespace {
/// EngineConfig::max_fault_threads above this is refused (EINVAL): each
/// handler reserves a stack, and more cannot be in flight usefully.
constexpr unsigned kMaxFaultThreads = 4096;
/// EngineConfig::fault_poll_us above this is refused (EINVAL).
constexpr unsigned kMaxFaultPollUs = 10000;

/// Adds (op EPOLL_CTL_ADD) or re-arms (EPOLL_CTL_MOD) a userfaultfd in the
/// handlers' epoll set, one-shot: epoll_wait hands it to one handler, which
/// re-arms it after reading one event, and the re-arm wakes one more handler
/// only if another event is queued. (Level-triggered, every event woke a
/// second idle handler — epoll puts a level-triggered file back on its ready
/// list and wakes the next waiter — which mostly found nothing: MEASUREMENTS
/// M6.5.)
bool arm_uffd(int epfd, Userfaultfd* u, int op) {
  if (op == EPOLL_CTL_MOD) {
    if (const int e = FL_FAIL("handler.rearm")) {  // tests: a failed re-arm
      errno = e;
      return false;
    }
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.ptr = u;
  return ::epoll_ctl(epfd, op, u->fd(), &ev) == 0;
}

/// Takes a userfaultfd out of the handlers' epoll set without removing it
/// (a one-shot item with no events armed): a fault then wakes no handler
/// sleeping in epoll_wait. arm_uffd(EPOLL_CTL_MOD) puts it back, and reports
/// a fault queued meanwhile to a sleeping handler at once.
bool disarm_uffd(int epfd, Userfaultfd* u) {
  epoll_event ev{};
  ev.events = EPOLLONESHOT;
  ev.data.ptr = u;
  return ::epoll_ctl(epfd, EPOLL_CTL_MOD, u->fd(), &ev) == 0;
}

int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Status EngineCore::check_config(const EngineConfig& cfg) {
  if (cfg.fault_threads == 0) return {-EINVAL, "faultline: fault_threads must be >= 1"};
  if (cfg.max_fault_threads < cfg.fault_threads || cfg.max_fault_threads > kMaxFaultThreads)
    return {-EINVAL, "faultline: max_fault_threads (" + std::to_string(cfg.max_fault_threads) +
                         ") must be >= fault_threads (" + std::to_string(cfg.fault_threads) +
                         ") and <= " + std::to_string(kMaxFaultThreads)};
  if (cfg.fault_poll_us > kMaxFaultPollUs)
    return {-EINVAL, "faultline: fault_poll_us (" + std::to_string(cfg.fault_poll_us) +
                         ") must be <= " + std::to_string(kMaxFaultPollUs)};
  if (cfg.fault_around_pages == 0 || cfg.readahead_max_pages == 0)
    return {-EINVAL, "faultline: fault_around_pages and readahead_max_pages must be >= 1"};
  if (cfg.readahead_windows < 1 || cfg.readahead_windows > kMaxReadaheadWindows)
    return {-EINVAL, "faultline: readahead_windows (" + std::to_string(cfg.readahead_windows) +
                         ") must be in [1, " + std::to_string(kMaxReadaheadWindows) + "]"};
  // Issue 16, bad input: a limit below one fault window could never hold a
  // fault's fill (2 MiB-frame Files check one frame at open).
  if (cfg.memory_limit_pages && cfg.memory_limit_pages < cfg.fault_around_pages)
    return {-EINVAL, "faultline: EngineConfig::memory_limit_pages (" +
                         std::to_string(cfg.memory_limit_pages) +
                         " 4 KiB pages) is smaller than one fault window (fault_around_pages = " +
                         std::to_string(cfg.fault_around_pages) +
                         "): raise the limit or lower fault_around_pages"};
  return {};
}

EngineCore::EngineCore(EngineConfig c)
    : cfg(std::move(c)), uffd(/*wp_async=*/false, cfg.fault_mode == FaultMode::FaultingThread) {
  const uint64_t f = uffd.features();
  feats.uffd_features = f;
  feats.range_ioctls = uffd.range_ioctls();
  feats.poison = f & UFFD_FEATURE_POISON;
  feats.wp_shmem = f & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  feats.minor_shmem = f & UFFD_FEATURE_MINOR_SHMEM;
  feats.wp_async = f & UFFD_FEATURE_WP_ASYNC;
  feats.via = uffd.via();
  feats.thp_shmem = thp_setting("shmem_enabled");
  if (feats.thp_shmem == "always" || feats.thp_shmem == "force") {
    log("faultline: warning: transparent_hugepage/shmem_enabled is '" + feats.thp_shmem +
        "': memfd writes may allocate 2 MiB folios (zero frames appear beside filled ones, "
        "memory use grows); correctness is kept (DESIGN R10) but 'within_size' or 'never' "
        "is recommended");
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw_errno("faultline: eventfd");
  // One epoll set shared by the handler threads: a uffd added later (the
  // async one) is served at once by threads already waiting.
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw_errno("faultline: epoll_create1");
  if (!arm_uffd(epoll_fd_, &uffd, EPOLL_CTL_ADD)) throw_errno("faultline: epoll_ctl");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the stop eventfd
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &ev) != 0) throw_errno("faultline: epoll_ctl");
  work_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
  if (work_fd_ < 0) throw_errno("faultline: eventfd");
  ev.data.ptr = &work_fd_;  // level-triggered: a count left wakes the next handler
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, work_fd_, &ev) != 0) throw_errno("faultline: epoll_ctl");
  // Optional but for FaultMode::FaultingThread (below): without it an install
  // skips pages mapped already one failed UFFDIO_CONTINUE at a time.
  pte_fd_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (uffd.sigbus()) {
    if (pte_fd_ < 0) throw_errno("faultline: open(/proc/self/pagemap) for FaultMode::FaultingThread");
    register_in_thread_faults();  // last: nothing below may throw
  }
}

EngineCore::~EngineCore() {
  close();
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (work_fd_ >= 0) ::close(work_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (pagemap_fd_ >= 0) ::close(pagemap_fd_);
  if (pte_fd_ >= 0) ::close(pte_fd_);
}

Status EngineCore::make_async_uffd() {
  if (async_ptr_.load(std::memory_order_acquire)) return {};
  MutexLock g(async_mu_);
  if (async_uffd_) return {};
  if (Status s = check_open(); !s.ok()) return s;
  auto u = std::make_unique<Userfaultfd>(/*wp_async=*/true);
  const int pm = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pm < 0) return Status::from_errno("faultline: open(/proc/self/pagemap) for PAGEMAP_SCAN");
  if (!arm_uffd(epoll_fd_, u.get(), EPOLL_CTL_ADD)) {
    const int e = errno;
    ::close(pm);
    return {-e, "faultline: epoll_ctl(async userfaultfd)"};
  }
  pagemap_fd_.store(pm, std::memory_order_release);
  async_uffd_ = std::move(u);
  async_ptr_.store(async_uffd_.get(), std::memory_order_release);
  return {};
}

uint32_t EngineCore::now_ms() const {
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - start_)
                                   .count());
}

void EngineCore::log(std::string_view msg) const {
  if (cfg.log) cfg.log(msg);
  else std::cerr << msg << '\n';
}

Status EngineCore::check_open() const {
  if (closed()) return {-ESHUTDOWN, "faultline: the Engine is closed"};
  return {};
}

Status EngineCore::start() {
  {
    MutexLock g(pool_mu_);
    for (unsigned i = 0; i < cfg.fault_threads; ++i)
      if (!spawn_handler_locked())
        return {-EAGAIN, "faultline: cannot start the fault-handler threads"};
  }
  flusher_ = std::thread([this] { flusher_loop(); });
  return {};
}

namespace {
/// The engine whose handler thread this is (nullptr on other threads).
thread_local EngineCore* t_handler_of = nullptr;
/// A handler with nothing to do for this long leaves the pool, down to
/// EngineConfig::fault_threads (its stack and fill buffer are freed); the
/// kernel's io-wq workers do the same after 5 s.
constexpr int kHandlerIdleExitMs = 2000;
/// A handler holding a userfaultfd it could not re-arm tries again this often
/// (handler_events).
constexpr int kRearmRetryMs = 10;

/// A handler's wait while it holds userfaultfds it could not re-arm
/// (handler_events): the epoll set (the other userfaultfd, the stop eventfd)
/// and those userfaultfds, for up to kRearmRetryMs. 1 with `ev` set as
/// epoll_wait would, 0 on a timeout, -1 with errno.
int wait_disarmed(int epfd, const std::vector<Userfaultfd*>& disarmed, epoll_event& ev) {
  std::vector<pollfd> p{{epfd, POLLIN, 0}};
  for (Userfaultfd* u : disarmed) p.push_back({u->fd(), POLLIN, 0});
  const int n = ::poll(p.data(), p.size(), kRearmRetryMs);
  if (n <= 0) return n;
  for (size_t k = 1; k < p.size(); ++k) {
    if (!p[k].revents) continue;
    ev.data.ptr = disarmed[k - 1];
    ev.events = (p[k].revents & POLLIN ? EPOLLIN : 0u) |
                (p[k].revents & (POLLERR | POLLNVAL) ? EPOLLERR : 0u) |
                (p[k].revents & POLLHUP ? EPOLLHUP : 0u);
    return 1;
  }
  return ::epoll_wait(epfd, &ev, 1, 0);
}
}  // namespace

bool EngineCore::spawn_handler_locked() {
  reap_handlers_locked();
  if (pool_stop_) return false;
  auto it = handlers_.emplace(handlers_.end());
  // Counted idle before it runs: concurrent fills see a handler coming and
  // do not start another one for the same need.
  idle_handlers_.fetch_add(1, std::memory_order_acq_rel);
  const uint64_t n = nr_handlers.fetch_add(1, std::memory_order_acq_rel) + 1;
  try {
    Handler* h = &*it;
    it->thread = std::thread([this, h] { handler_loop(h); });
  } catch (const std::system_error& e) {
    idle_handlers_.fetch_sub(1, std::memory_order_acq_rel);
    nr_handlers.fetch_sub(1, std::memory_order_acq_rel);
    handlers_.erase(it);
    log(std::string("faultline: cannot start a fault-handler thread: ") + e.what());
    return false;
  }
  for (uint64_t p = peak_handlers.load(std::memory_order_relaxed);
       n > p && !peak_handlers.compare_exchange_weak(p, n, std::memory_order_relaxed);) {
  }
  return true;
}

void EngineCore::reap_handlers_locked() {
  for (auto it = handlers_.begin(); it != handlers_.end();) {
    if (!it->exited) {
      ++it;
      continue;
    }
    // It has left handler_loop (it takes pool_mu_ no more): the join waits
    // only for its thread-local buffers to be freed.
    it->thread.join();
    it = handlers_.erase(it);
  }
}

bool EngineCore::handler_may_exit(Handler* self) {
  MutexLock g(pool_mu_);
  if (pool_stop_ || nr_handlers.load(std::memory_order_relaxed) <= cfg.fault_threads) return false;
  // Out of the pool under the lock: two idle handlers never both leave it
  // below fault_threads.
  nr_handlers.fetch_sub(1, std::memory_order_acq_rel);
  idle_handlers_.fetch_sub(1, std::memory_order_acq_rel);
  self->exited = true;  // joined by the next spawn, or by close()
  return true;
}

EngineCore::FillScope::FillScope(EngineCore& c) : c_(c) {
  const uint64_t n = c.fills_in_flight.fetch_add(1, std::memory_order_acq_rel) + 1;
  for (uint64_t p = c.peak_fills_in_flight.load(std::memory_order_relaxed);
       n > p && !c.peak_fills_in_flight.compare_exchange_weak(p, n, std::memory_order_relaxed);) {
  }
  // A handler about to block in the backend: leave one handler waiting on
  // the userfaultfd for the faults that arrive meanwhile.
  if (t_handler_of != &c || c.idle_handlers_.load(std::memory_order_acquire) > 0) return;
  MutexLock g(c.pool_mu_);
  if (c.idle_handlers_.load(std::memory_order_acquire) == 0 &&
      c.nr_handlers.load(std::memory_order_relaxed) < c.cfg.max_fault_threads)
    c.spawn_handler_locked();  // refused: this fault is still served, only not beside others
}

EngineCore::FillScope::~FillScope() { c_.fills_in_flight.fetch_sub(1, std::memory_order_acq_rel); }

void EngineCore::kick_flusher() {
  MutexLock g(flush_mu_);
  flush_kicked_ = true;
  flush_cv_.notify_all();
}

void EngineCore::defer_wake(Userfaultfd* u, uintptr_t addr, size_t len) {
  if (u->sigbus()) {
    // FaultMode::FaultingThread: the throttled store is this thread's; its
    // SIGBUS handler waits for write-back before the retry (R6), with no
    // lock held.
    if (InThreadFault* f = t_in_thread_fault) f->throttle = true;
    kick_flusher();
    return;  // counted in in_thread_throttled while it waits (fault_in_thread)
  }
  {
    MutexLock g(flush_mu_);
    deferred_wakes_.push_back({u, addr, len});
    flush_kicked_ = true;
  }
  flush_cv_.notify_all();
}

bool EngineCore::queue_work(std::function<void()> job) {
  {
    MutexLock g(work_mu_);
    if (work_stopped_) return false;  // no handler left: the caller runs it
    work_.push_back(std::move(job));
  }
  // Result discarded: adding 1 to an eventfd fails only when its count would
  // pass 2^64 - 2 (one count per job queued: never); a job left without its
  // count would still run at close(), which drains the queue.
  const uint64_t one = 1;
  (void)!::write(work_fd_, &one, sizeof one);
  return true;
}

void EngineCore::run_work() {
  uint64_t n = 0;
  if (::read(work_fd_, &n, sizeof n) != sizeof n) return;  // EAGAIN: another handler took it
  std::function<void()> job;
  {
    MutexLock g(work_mu_);
    if (work_.empty()) return;
    job = std::move(work_.front());
    work_.pop_front();
  }
  // Busy as for a fault (the pool grows when its last idle handler blocks in
  // a fill: FillScope).
  idle_handlers_.fetch_sub(1, std::memory_order_acq_rel);
  try {
    job();
  } catch (const std::exception& e) {
    log(std::string("faultline: queued work failed: ") + e.what());
  }
  idle_handlers_.fetch_add(1, std::memory_order_acq_rel);
}

void EngineCore::release_deferred_wakes() {
  std::vector<DeferredWake> w;
  {
    MutexLock g(flush_mu_);
    w.swap(deferred_wakes_);
  }
  // UFFDIO_WAKE fails only for a range it rejects (EINVAL: these were
  // faulting ranges of registered views) or a closed uffd (closing it woke
  // every waiter): nothing to handle.
  for (const auto& d : w) (void)d.uffd->wake(d.addr, d.len);
  throttle_cv_.notify_all();
}

void EngineCore::throttle_writer() {
  if (!throttle_stores()) return;
  kick_flusher();
  MutexLock g(flush_mu_);
  throttle_cv_.wait_for(flush_mu_, std::chrono::seconds(1),
                        [&]() REQUIRES(flush_mu_) { return !over_dirty_limit() || flush_stop_; });
}

std::vector<std::shared_ptr<FileImpl>> EngineCore::live_files() {
  std::vector<std::shared_ptr<FileImpl>> files;
  MutexLock fg(files_mu_);
  for (auto& [k, w] : files_)
    if (auto f = w.lock()) files.push_back(std::move(f));
  return files;
}

void EngineCore::flusher_loop() {
  set_thread_name("fl-flush");
  MutexLock g(flush_mu_);
  for (;;) {
    flush_cv_.wait_for(flush_mu_, std::chrono::milliseconds(cfg.flush_interval_ms),
                       [&]() REQUIRES(flush_mu_) { return flush_kicked_ || flush_stop_; });
    if (flush_stop_) break;
    const bool kicked = flush_kicked_;
    flush_kicked_ = false;
    const bool throttled =
        !deferred_wakes_.empty() || in_thread_throttled.load(std::memory_order_acquire) != 0;
    g.unlock();
    reap_files();  // references a backend's thread handed over (defect 8)
    const uint64_t written_before = stats.pages_written_back.load(std::memory_order_relaxed);
    if (cfg.flusher || throttled || kicked) {
      std::vector<std::shared_ptr<FileImpl>> files = live_files();
      // Kicked (MS_ASYNC, throttling, the memory limit) or over the background
      // threshold: write everything back; otherwise only pages dirty for
      // longer than the expiry.
      const bool over_limit = over_memory_limit();
      const bool background =
          nr_dirty.load() > cfg.dirty_background_pages || throttled || kicked || over_limit;
      for (auto& f : files) {
        // Everything while over the background threshold (async Files: the
        // scan in writeback() finds the written pages); otherwise what expired.
        if (background) {
          if (f->nr_dirty() || f->async()) f->writeback(0, PageIndex::kMaxPages);
        } else {
          f->writeback_expired(cfg.dirty_expire_ms);
        }
      }
      files.clear();  // a File may be freed here (its destructor writes back)
      // The memory limit: evict clean pages (R9) down to 15/16 of it, now
      // that write-back has cleaned what it could.
      if (over_limit) {
        const uint64_t low = cfg.memory_limit_pages - cfg.memory_limit_pages / 16;
        const uint64_t cached = nr_cached.load(std::memory_order_relaxed);
        if (cached > low) reclaim(cached - low, /*round_down=*/true);  // never below low
      }
      age();  // sample what reclaim judges next (R9), after reclaim took its share
      reclaim_kicked_.store(false, std::memory_order_relaxed);
    }
    // A pass that wrote nothing while stores waited at the limit: holding
    // them cannot help (R6 throttling must not turn into a hang).
    const bool wrote = stats.pages_written_back.load(std::memory_order_relaxed) != written_before;
    if (throttled)
      wb_stalled_.store(!wrote && over_dirty_limit(), std::memory_order_relaxed);
    else if (wrote)
      wb_stalled_.store(false, std::memory_order_relaxed);
    release_deferred_wakes();
    g.lock();
  }
}

void EngineCore::close() {
  MutexLock g(close_mu_);
  if (closed_.exchange(true)) return;
  // Write every File back while the views still work.
  std::vector<std::shared_ptr<FileImpl>> files = live_files();
  for (auto& f : files)
    if (int e = f->writeback_all())  // data and size, as sync and the last close
      log("faultline: write-back of " + f->key + " at engine close failed: " + std::strerror(-e));
  // Tear every view down (R13: munmap, then wake), then stop the handlers,
  // then close the userfaultfd last.
  std::vector<std::shared_ptr<MappingImpl>> maps;
  {
    SharedLock mg(maps_mu_);
    for (auto& [a, m] : maps_) maps.push_back(m);
  }
  for (auto& m : maps) m->teardown();
  maps.clear();
  // Every view is gone (an access now gets SIGSEGV): no SIGBUS is this
  // engine's any more.
  unregister_in_thread_faults();
  std::list<Handler> handlers;
  {
    MutexLock pg(pool_mu_);
    pool_stop_ = true;  // no handler starts another from here on
    handlers.swap(handlers_);
  }
  const uint64_t one = 1;
  // The eventfd stays readable (nobody reads it): every handler sees it.
  if (::write(stop_fd_, &one, sizeof one) < 0) { /* the threads also stop on uffd close */ }
  for (auto& h : handlers)
    if (h.thread.joinable()) h.thread.join();
  handlers.clear();
  // Jobs queued by faults on views not in the snapshot above (an unmap in
  // progress on another thread) after the last handler left: run here. From
  // now on queue_work refuses (its caller runs the job).
  std::deque<std::function<void()>> jobs;
  {
    MutexLock wg(work_mu_);
    work_stopped_ = true;
    jobs.swap(work_);
  }
  for (auto& job : jobs) {
    try {
      job();  // gives its page lock and view count back on every way out
    } catch (const std::exception& e) {
      log(std::string("faultline: queued work failed: ") + e.what());
    }
  }
  jobs.clear();
  {
    MutexLock fg(flush_mu_);
    flush_stop_ = true;
  }
  flush_cv_.notify_all();
  throttle_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  release_deferred_wakes();
  {
    // No backend thread runs a change into a File any more (from here on
    // they return at once); the references they handed over go here.
    MutexLock rg(reap_mu_);
    reap_closed_ = true;
    reap_cv_.wait(reap_mu_, [&]() REQUIRES(reap_mu_) { return sinks_running_ == 0; });
  }
  reap_files();
  files.clear();
  {
    MutexLock ag(async_mu_);
    if (async_uffd_) async_uffd_->close();
  }
  uffd.close();
}

namespace {
/// What the engine's open 2 MiB-frame Files (`files`, under files_mu_) may
/// still take from the huge page pool. The references taken go to
/// `looked_at`, dropped by the caller after files_mu_ (a last reference's
/// destructor takes files_mu_: forget_file).
HugeFramesInUse huge_frames_in_use(const std::map<std::string, std::weak_ptr<FileImpl>>& files,
                                   std::vector<std::shared_ptr<FileImpl>>& looked_at) {
  HugeFramesInUse others;
  for (auto& [k, w] : files) {
    auto o = w.lock();
    if (!o) continue;
    if (o->huge()) {
      others.frames += o->eof_pages();
      others.held += o->nr_cached();
    }
    looked_at.push_back(std::move(o));
  }
  return others;
}

/// Changes made underneath (another machine) reach File f through a weak
/// reference: the backend may outlive it. Called outside files_mu_: a remote
/// backend's attach may take network round trips.
void attach_change_sink(Backend& backend, const std::shared_ptr<FileImpl>& f,
                        std::weak_ptr<EngineCore> c) {
  std::weak_ptr<FileImpl> w = f;
  backend.attach(Backend::ChangeSink{
      [w, c](uint64_t off, uint64_t len) {
        if (auto core = c.lock())
          core->from_backend_thread(w, [&](FileImpl& file) { file.remote_changed(off, len); });
      },
      [w, c](uint64_t size) {
        if (auto core = c.lock())
          core->from_backend_thread(w, [&](FileImpl& file) { file.remote_resized(size); });
      }});
}
}  // namespace

Status EngineCore::open(std::shared_ptr<Backend> backend, FileOptions options,
                        std::shared_ptr<FileImpl>& f) {
  if (Status s = check_open(); !s.ok()) return s;
  const std::string key = backend->identity();
  // References to other Files taken under files_mu_ are dropped after it (a
  // last reference's destructor takes files_mu_: forget_file).
  std::vector<std::shared_ptr<FileImpl>> looked_at;
  {
    MutexLock g(files_mu_);
    for (auto it = files_.find(key); it != files_.end(); it = files_.find(key)) {
      if (auto existing = it->second.lock()) {
        existing->upgrade_backend(std::move(backend));
        f = std::move(existing);
        return {};
      }
      // R14: the File of this key is being torn down (its last handle is
      // gone; its destructor is writing back): wait until it is gone, never
      // build a second cache beside it (it would read the backend before the
      // old write-back lands, and that write-back could then overwrite it).
      if (!FL_RULE(14)) break;  // breaker: open at once
      g.unlock();
      FL_POINT("wait.open_closing");  // R14: about to sleep (race C1)
      g.lock();
      files_cv_.wait(files_mu_, [&]() REQUIRES(files_mu_) {
        auto i = files_.find(key);
        return i == files_.end() || !i->second.expired();
      });
      if (Status s = check_open(); !s.ok()) return s;
    }
    if (options.dirty_tracking == DirtyTracking::Async) {
      if (options.stable_pages)
        return {-EINVAL, "faultline: DirtyTracking::Async cannot give stable pages (stores "
                         "to write-protected pages never reach the engine)"};
      // Made by the first async open (its constructor throws ENOTSUP without WP_ASYNC).
      if (Status s = make_async_uffd(); !s.ok()) return s;
    }
    // The frame size is chosen by the first open (FileOptions::frame_size).
    const unsigned shift =
        options.frame_size == FrameSize::k2M ? kHugePageShift : kBasePageShift;
    // The engine's other 2 MiB-frame Files share the pool (and the limit).
    const HugeFramesInUse others =
        options.frame_size == FrameSize::k2M ? huge_frames_in_use(files_, looked_at)
                                             : HugeFramesInUse{};
    f = std::make_shared<FileImpl>(shared_from_this(), backend, key, shift, others);
    f->set_options(options);
    files_[key] = f;
  }
  attach_change_sink(*backend, f, weak_from_this());
  return {};
}

void EngineCore::from_backend_thread(const std::weak_ptr<FileImpl>& w,
                                     const std::function<void(FileImpl&)>& fn) {
  // Issue 14 defect 8: the reference taken here may become the File's last
  // (the user closed it meanwhile). ~FileImpl detaches the backend, which
  // joins the backend's thread (the RADOS dispatcher): it must never run on
  // that thread. So the reference goes to the flusher, which drops it.
  std::shared_ptr<FileImpl> f;
  {
    MutexLock g(reap_mu_);
    if (reap_closed_) return;  // the engine is closed: no handle can use the File
    f = w.lock();
    if (!f) return;
    ++sinks_running_;
  }
  auto hand_off = [&] {
    {
      MutexLock g(reap_mu_);
      reap_.push_back(std::move(f));
      --sinks_running_;
    }
    reap_cv_.notify_all();
    kick_flusher();
  };
  try {
    fn(*f);
  } catch (...) {
    hand_off();
    throw;
  }
  hand_off();
}

void EngineCore::reap_files() {
  std::vector<std::shared_ptr<FileImpl>> r;
  {
    MutexLock g(reap_mu_);
    r.swap(reap_);
  }
  r.clear();  // a File may be destroyed here (never on a backend's thread)
}

void EngineCore::forget_file(const std::string& key, const FileImpl* f) {
  MutexLock g(files_mu_);
  auto it = files_.find(key);
  if (it == files_.end()) return;
  auto cur = it->second.lock();
  if (!cur || cur.get() == f) files_.erase(it);
  files_cv_.notify_all();  // R14: an open() of this key may go on
}

void EngineCore::add_mapping(const std::shared_ptr<MappingImpl>& m) {
  ExclusiveLock g(maps_mu_);
  maps_[m->start] = m;
}

bool EngineCore::remove_mapping(MappingImpl* m) {
  ExclusiveLock g(maps_mu_);
  m->dead.store(true, std::memory_order_release);
  auto it = maps_.find(m->start);
  if (it == maps_.end() || it->second.get() != m) return false;
  maps_.erase(it);
  // Until its munmap (mapping_unmapped), a fault there is a view's being torn
  // down: retried, never taken for the program's SIGBUS (FaultingThread).
  dying_[m->start] = m;
  return true;
}

void EngineCore::mapping_unmapped(MappingImpl* m) {
  ExclusiveLock g(maps_mu_);
  // Only its own entry: a later view at the same address may be dying too.
  if (auto it = dying_.find(m->start); it != dying_.end() && it->second == m) dying_.erase(it);
}

std::shared_ptr<MappingImpl> EngineCore::lookup(uintptr_t addr, bool* dead) {
  SharedLock g(maps_mu_);
  if (dead) {
    auto d = dying_.upper_bound(addr);
    if (d != dying_.begin() && std::prev(d)->second->contains(addr)) *dead = true;
  }
  auto it = maps_.upper_bound(addr);
  if (it == maps_.begin()) return nullptr;
  --it;
  if (!it->second->contains(addr)) return nullptr;
  if (it->second->dead.load(std::memory_order_acquire)) {
    if (dead) *dead = true;
    return nullptr;
  }
  it->second->inflight.fetch_add(1, std::memory_order_acq_rel);
  return it->second;
}

void EngineCore::put_view(std::shared_ptr<MappingImpl>& m) {
  // This reference goes before the in-flight count: the view's owner,
  // waiting in teardown for the count, then drops the last reference
  // itself, so the File's write-back at its last view and handle runs on the
  // owner's thread (a read of the file right after the unmap sees the stores;
  // before, it could run here a moment later: WbTest.LastHandleAndViewGone-
  // WritesBack failed once under ASan). The view outlives the reset: its
  // owner's reference stays until teardown has seen the count at 0. Nothing
  // of it is touched after the decrement (teardown polls: no notify).
  MappingImpl* const view = m.get();
  m.reset();
  view->inflight.fetch_sub(1, std::memory_order_acq_rel);
}

namespace {
/// Wakes the thread faulting at addr so it retries the access. UFFDIO_WAKE
/// fails only for a range it rejects (EINVAL: not for one page-aligned user
/// page; it needs no registration) or a closed uffd (closing it woke every
/// waiter): nothing to handle.
void wake_page(const Userfaultfd& u, uintptr_t addr) {
  (void)u.wake(addr & ~(uintptr_t{kBasePageSize} - 1), kBasePageSize);
}
}  // namespace

void EngineCore::dispatch(Userfaultfd& u, uintptr_t addr, uint64_t flags, uint32_t tid) {
  auto m = lookup(addr);
  if (!m) {
    // No live view: let the thread retry (it meets the munmap, or the view
    // that now owns the address). A race test (F9) waits for this point.
    FL_POINT("fault.no_view");
    wake_page(u, addr);
    return;
  }
  try {
    m->file->handle_fault(*m, addr, flags, tid);
  } catch (const std::exception& e) {
    log(std::string("faultline: fault handling failed: ") + e.what());
    wake_page(u, addr);
  }
  put_view(m);
}

void EngineCore::handler_loop(Handler* self) {
  set_thread_name("fl-fault");
  t_handler_of = this;
  // Left the pool idle: already out of the counts, and may be joined from
  // now on (under pool_mu_): take no lock again.
  if (handler_events(self)) return;
  // Stopped, or a failed epoll / read: out of the pool too, so that no fill
  // counts on it as the idle handler.
  MutexLock g(pool_mu_);
  nr_handlers.fetch_sub(1, std::memory_order_acq_rel);
  idle_handlers_.fetch_sub(1, std::memory_order_acq_rel);
  self->exited = true;
}

// One event per read: the others stay queued on the userfaultfd for the
// idle handlers (its one-shot registration is re-armed right after the
// read, which wakes the next one), so a fault never waits behind another
// fault's fill in this thread. One ready item per epoll_wait: epoll
// disarms every one-shot item it returns, so a second userfaultfd returned
// here would stay disarmed, its faults unseen by every other handler,
// while this one serves a fill (or for good if this handler then exited).
//
// A re-arm that fails (epoll_ctl MOD: ENOMEM, ...) leaves the userfaultfd
// out of every other handler's reach. This handler then keeps it
// (`disarmed`): it waits on it with poll(2) beside the epoll set, serves
// its events, and tries the re-arm again after each one and every
// kRearmRetryMs, until one works; it does not leave the pool meanwhile.
// Each failure and the recovery are logged.
bool EngineCore::handler_events(Handler* self) {
  uffd_msg msg;
  epoll_event evs[1];
  std::vector<Userfaultfd*> disarmed;
  auto rearm = [&](Userfaultfd* u) {
    const bool was = std::find(disarmed.begin(), disarmed.end(), u) != disarmed.end();
    if (arm_uffd(epoll_fd_, u, EPOLL_CTL_MOD) || errno == ENOENT || errno == EBADF) {
      if (was) {
        std::erase(disarmed, u);
        log("faultline: userfaultfd re-armed");
      }
      return;
    }
    const int e = errno;
    FL_POINT("handler.rearm_failed");
    if (was) return;
    log(std::string("faultline: epoll_ctl(re-arm userfaultfd): ") + std::strerror(e) +
        ": this handler serves it alone until a re-arm works");
    disarmed.push_back(u);
  };
  for (;;) {
    for (size_t k = disarmed.size(); k-- > 0;) rearm(disarmed[k]);
    int r;
    if (disarmed.empty()) {
      r = ::epoll_wait(epoll_fd_, evs, 1, kHandlerIdleExitMs);
    } else {
      r = wait_disarmed(epoll_fd_, disarmed, evs[0]);
      if (r == 0) continue;  // try the re-arm again
    }
    if (r == 0) {
      if (handler_may_exit(self)) return true;
      continue;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      log(std::string("faultline: epoll_wait: ") + std::strerror(errno));
      return false;
    }
    bool stop = false;
    for (int k = 0; k < r; ++k) {
      if (evs[k].data.ptr == &work_fd_) {
        run_work();
        continue;
      }
      auto* u = static_cast<Userfaultfd*>(evs[k].data.ptr);
      if (!u) {
        stop = true;  // stop_fd_: after the userfaultfds this wait returned (re-armed)
        continue;
      }
      // One-shot: re-armed at once after one read (or an error, which the
      // next handler then sees too), so the next queued event is served
      // beside this one.
      const bool err = evs[k].events & (EPOLLERR | EPOLLHUP);
      const ssize_t n = err ? -1 : ::read(u->fd(), &msg, sizeof msg);
      const int read_errno = errno;
      rearm(u);
      errno = read_errno;
      if (err) return false;
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;  // another handler took it
        log(std::string("faultline: read(userfaultfd): ") + std::strerror(errno));
        return false;
      }
      if (n != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) continue;
      serve(*u, msg);
      // Faults coming one after another (a thread missing page after page):
      // read the next one polling, not asleep.
      while (u == &uffd && poll_fault(*u, msg)) serve(*u, msg);
    }
    if (stop) return false;
  }
}

void EngineCore::serve(Userfaultfd& u, const uffd_msg& msg) {
  // The gap since the last fault served: polling pays while it is short.
  const int64_t now = mono_ns();
  poll_worth_.store(now - last_served_ns_.load(std::memory_order_relaxed) <
                        int64_t{cfg.fault_poll_us} * 1000,
                    std::memory_order_relaxed);
  idle_handlers_.fetch_sub(1, std::memory_order_acq_rel);
  // (ptid: 0 where the kernel lacks UFFD_FEATURE_THREAD_ID.)
  dispatch(u, msg.arg.pagefault.address, msg.arg.pagefault.flags, msg.arg.pagefault.feat.ptid);
  idle_handlers_.fetch_add(1, std::memory_order_acq_rel);
  last_served_ns_.store(mono_ns(), std::memory_order_relaxed);
}

bool EngineCore::poll_fault(Userfaultfd& u, uffd_msg& msg) {
  // One poller at a time, and only while faults come less than
  // fault_poll_us apart (EngineConfig::fault_poll_us).
  if (cfg.fault_poll_us == 0 || !poll_worth_.load(std::memory_order_relaxed) ||
      poller_.exchange(true, std::memory_order_acquire))
    return false;
  // Out of the epoll set while polling: a fault must not wake a sleeping
  // handler (the wake-up this saves). No fault is lost: the poller reads
  // every fault queued until it stops, and re-arming reports one queued
  // after its last read to a sleeping handler.
  bool got = false;
  if (disarm_uffd(epoll_fd_, &u)) {
    const int64_t deadline = mono_ns() + int64_t{cfg.fault_poll_us} * 1000;
    for (;;) {
      const ssize_t n = ::read(u.fd(), &msg, sizeof msg);
      if (n == sizeof msg && msg.event == UFFD_EVENT_PAGEFAULT) {
        got = true;
        break;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) break;  // epoll reports it to a handler
      if (mono_ns() >= deadline) break;  // close's stop then wakes it in epoll_wait
      ::sched_yield();  // a thread runnable here (the one this poller woke) goes first
    }
    // Re-armed right after the read, as handler_events does: the next
    // queued fault goes to another handler while this one serves its own.
    if (!arm_uffd(epoll_fd_, &u, EPOLL_CTL_MOD) && errno != ENOENT && errno != EBADF)
      log(std::string("faultline: epoll_ctl(re-arm userfaultfd): ") + std::strerror(errno));
  }
  poller_.store(false, std::memory_order_release);
  if (got) stats.faults_polled.fetch_add(1, std::memory_order_relaxed);
  return got;
}

}  // namespace detail

// The public facade (Engine): the core's errors become std::system_error here.
namespace {
std::shared_ptr<detail::EngineCore> make_core(EngineConfig config) {
  detail::throw_if_error(detail::EngineCore::check_config(config));
  return std::make_shared<detail::EngineCore>(std::move(config));
}
}  // namespace

Engine::Engine(EngineConfig config) : core_(make_core(std::move(config))) {
  detail::throw_if_error(core_->start());
}

Engine::~Engine() { close(); }

void Engine::close() { core_->close(); }

File Engine::open(std::shared_ptr<Backend> backend, FileOptions options) {
  if (!backend) detail::throw_errno(EINVAL, "faultline: Engine::open of a null backend");
  std::shared_ptr<FileImpl> f;
  detail::throw_if_error(core_->open(std::move(backend), options, f));
  return File(std::move(f));
}

File Engine::open(const std::string& path, bool writable, bool create) {
  detail::throw_if_error(core_->check_open());
  return open(make_file_backend(path, writable, create));
}

Stats Engine::stats() const {
  Stats s = core_->stats.snapshot();
  s.dirty_pages = core_->nr_dirty.load();
  s.cached_pages = core_->nr_cached.load();
  s.peak_cached_pages = core_->peak_cached.load();
  s.charged_pages = core_->nr_charged.load();
  s.fault_threads = core_->nr_handlers.load();
  s.peak_fault_threads = core_->peak_handlers.load();
  s.peak_fills_in_flight = core_->peak_fills_in_flight.load();
  return s;
}
uint64_t Engine::reclaim(uint64_t pages) {
  detail::throw_if_error(core_->check_open());
  return core_->reclaim(pages);
}
const KernelFeatures& Engine::features() const { return core_->feats; }
const EngineConfig& Engine::config() const { return core_->cfg; }

}  // namespace faultline
