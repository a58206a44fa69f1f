// FaultMode::FaultingThread: the faulting thread resolves its own fault.
//
// The engine's userfaultfd has UFFD_FEATURE_SIGBUS: a fault on one of its
// views queues no event; the kernel raises SIGBUS in the faulting thread
// (BUS_ADRERR at the faulting address). The handler installed here runs the
// same fault path a handler thread runs for an event (FileImpl::handle_fault:
// every rule of DESIGN section 3 holds as it does there) and returns: the
// access is retried and finds its PTE. No thread hand-off, and N faulting
// threads put N fills in flight (DESIGN section 2, "Faulting-thread faults";
// docs/MEASUREMENTS.md M6.15).
//
// What a handler thread would do to the faulting thread is done by the
// return instead (InThreadFault): a wake is the return itself; SIGBUS is the
// program's own handler (or the default action), called from here; a
// throttled store waits here, with no lock held, before it retries (R6).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <sched.h>

#include <cxxabi.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "faultline/constants.hpp"
#include "faultline/engine.hpp"
#include "mm/engine_core.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "os/sigbus_chain.hpp"

namespace faultline::detail {

thread_local InThreadFault* t_in_thread_fault = nullptr;

void abort_if_in_fault_path(const siginfo_t* info) {
  const InThreadFault* f = t_in_thread_fault;
  if (!f || info->si_code <= 0) return;
  // A guarded() scope opened inside the fault path (a backend guarding its
  // own reads) jumps to a frame below the fault's locks: that is safe.
  if (current_guard() != f->guard) return;
  // A SIGBUS the engine cannot resolve, raised inside its own fault path
  // (a backend touching a mapping that fails): a handler that jumps out
  // (guarded(), siglongjmp) would leave page locks, the invalidate_lock and
  // the view's in-flight count held, and every later fault or unmap of them
  // would hang. A handler thread would have died of it; so does this one.
  static const char msg[] =
      "faultline: SIGBUS inside the fault path (FaultMode::FaultingThread): a backend "
      "touched a mapping that raised SIGBUS; aborting\n";
  (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
  std::abort();
}

namespace {

// The engines in FaultMode::FaultingThread. Read by the SIGBUS handler under
// the lock shared; an engine enters at construction and leaves at close()
// (exclusive). Safe in the handler: no thread holds it while it touches a
// view, so the thread a fault interrupts never holds it.
std::shared_mutex g_engines_mu;
std::vector<EngineCore*> g_engines;  // guarded by g_engines_mu
struct sigaction g_previous;         // the disposition ours replaced
std::once_flag g_installed;

void on_sigbus(int sig, siginfo_t* info, void* uctx) {
  if (handle_sigbus(sig, info, uctx)) return;
  chain_sigbus(g_previous, sig, info, uctx);
}

void install_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  // SA_NODEFER: a fault taken inside the fault path (a backend reading
  // another such view) is served too, nested, as the kernel nests faults.
  // Not SA_ONSTACK: the fault path needs more than a small alternate stack.
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  // Result discarded: sigaction fails only for a bad signal number or
  // handler address (EINVAL), neither possible here.
  (void)sigaction(SIGBUS, &sa, &g_previous);
}

/// Whether the access that faulted was a store, from the CPU's page-fault
/// error code (x86-64: bit 1 of REG_ERR, which the kernel puts in the signal
/// frame for a SIGBUS raised by a fault). Elsewhere: unknown (false), and a
/// store to a page not yet installed takes a second fault (write-protect).
#if defined(__x86_64__)
constexpr bool kStoreFaultKnown = true;
bool store_fault(void* uctx) {
  const auto* uc = static_cast<const ucontext_t*>(uctx);
  return uc && (uc->uc_mcontext.gregs[REG_ERR] & 2);
}
#else
constexpr bool kStoreFaultKnown = false;
bool store_fault(void*) { return false; }
#endif

}  // namespace

void EngineCore::register_in_thread_faults() {
  std::call_once(g_installed, install_handler);
  std::unique_lock g(g_engines_mu);
  g_engines.push_back(this);
}

void EngineCore::unregister_in_thread_faults() {
  if (!uffd.sigbus()) return;  // never registered
  std::unique_lock g(g_engines_mu);
  std::erase(g_engines, this);  // a no-op the second time
}

EngineCore::InThread EngineCore::fault_in_thread(std::shared_ptr<MappingImpl> m, uintptr_t addr,
                                                 void* uctx) {
  FileImpl& f = *m->file;
  const uintptr_t page = addr & ~(uintptr_t{f.page_size()} - 1);
  const uint64_t pg = m->pgoff + ((page - m->start) >> f.page_shift());
  InThread r = InThread::Retry;
  struct stat st {};
  if (!m->uffd->sigbus()) {
    // A view on the async uffd (DirtyTracking::Async): its faults are events
    // for the handler threads; a SIGBUS there is a real one.
    r = InThread::NotMine;
  } else if (pg >= f.eof_pages() && ::fstat(f.memfd(), &st) == 0 &&
             (pg << f.page_shift()) >= static_cast<uint64_t>(st.st_size)) {
    // Past the memfd's end (EOF, R2): the kernel's own SIGBUS (shmem never
    // asks the uffd there), as a handler-thread view gets it. (Past EOF but
    // inside the memfd: a truncate or an extension in progress; the fault
    // path decides, as for a handler thread.)
    r = InThread::Sigbus;
  } else if (MutexLock g(m->poison_mu); m->poisoned.count(pg) != 0) {
    // The page's UFFDIO_POISON (an I/O error, a refused page_mkwrite, past
    // EOF): the program's SIGBUS, as the kernel raises it for a handler
    // thread's poison.
    r = InThread::Sigbus;
  }
  if (r != InThread::Retry) {
    put_view(m);
    return r;
  }
  // The event a handler thread would have read. A store to a present PTE is
  // a write-protect fault (R5: the first store to a clean page); the page
  // table says which (pagemap bit 63: present). A load never faults on a
  // present PTE.
  const bool store = store_fault(uctx);
  uint64_t flags = store ? UFFD_PAGEFAULT_FLAG_WRITE : 0;
  if (m->tracks_writes() && (store || !kStoreFaultKnown)) {
    uint64_t e = 0;
    const off_t at = static_cast<off_t>(addr / kBasePageSize * sizeof e);
    if (::pread(pte_fd_, &e, sizeof e, at) == sizeof e && (e >> 63) & 1)
      flags = UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE;
    // A failed read (never seen: pagemap of our own address space) is taken
    // for "not present": a store to a protected page then faults again.
  }
  if (!(flags & UFFD_PAGEFAULT_FLAG_WP) && f.frame_present(pg)) flags |= UFFD_PAGEFAULT_FLAG_MINOR;
  InThreadFault fault{.page = page};
  {
    // Restored and given back on every way out, an unwinding one included
    // (a cancelled thread, a backend's exception of any type).
    struct Scope {
      InThreadFault* const outer = t_in_thread_fault;  // a nested fault (SA_NODEFER)
      std::shared_ptr<MappingImpl>& view;
      ~Scope() {
        t_in_thread_fault = outer;
        put_view(view);
      }
    } scope{.view = m};
    fault.guard = current_guard();
    t_in_thread_fault = &fault;
    f.count(&Counters::faults_in_thread);
    try {
      f.handle_fault(*m, addr, flags, static_cast<uint32_t>(::gettid()));
    } catch (abi::__forced_unwind&) {
      throw;  // a cancelled thread unwinds (the scope gives everything back)
    } catch (const std::exception& e) {
      // As a handler thread: logged, and the access retried.
      log(std::string("faultline: fault handling failed: ") + e.what());
    } catch (...) {
      log("faultline: fault handling failed: an exception of unknown type");
    }
    t_in_thread_fault = scope.outer;
    // R6: a throttled store waits for write-back here, no lock held (the
    // kernel's balance_dirty_pages), then faults again; counted meanwhile,
    // so that a write-back pass that writes nothing lets it through. Before
    // put_view: the view's in-flight count keeps the engine open meanwhile
    // (close() waits for it in the view's teardown).
    if (fault.throttle) {
      in_thread_throttled.fetch_add(1, std::memory_order_acq_rel);
      throttle_writer();
      in_thread_throttled.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
  return fault.sigbus ? InThread::Sigbus : InThread::Retry;
}

/// A SIGBUS at a FaultingThread view's fault, resolved on this thread (true),
/// or not the engine's (false).
bool serve_sigbus(const siginfo_t* info, void* ucontext) {
  // The kernel raises a userfaultfd's SIGBUS as BUS_ADRERR for the access.
  if (info->si_code != BUS_ADRERR) return false;
  const int saved_errno = errno;  // the interrupted code's
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  // The view, with its in-flight count taken (which keeps its engine open:
  // close() waits for the count in the view's teardown), under the list's
  // lock; the fault is served after it is released.
  EngineCore* core = nullptr;
  std::shared_ptr<MappingImpl> m;
  bool dead = false;
  {
    std::shared_lock g(g_engines_mu);
    for (EngineCore* c : g_engines) {
      m = c->lookup(addr, &dead);
      if (m || dead) {
        core = c;
        break;
      }
    }
  }
  bool retry = false;
  if (m) {
    retry = core->fault_in_thread(std::move(m), addr, ucontext) ==
            EngineCore::InThread::Retry;
  } else if (dead) {
    // A view being torn down holds the address: retry (the access meets the
    // munmap, SIGSEGV, or the view that owns the address by then), as a
    // handler thread wakes it (F9).
    sched_yield();
    retry = true;
  }
  errno = saved_errno;
  return retry;
}

}  // namespace faultline::detail

namespace faultline {

bool handle_sigbus(int sig, void* siginfo, void* ucontext) {
  const auto* info = static_cast<const siginfo_t*>(siginfo);
  if (sig != SIGBUS || !info) return false;
  if (detail::serve_sigbus(info, ucontext)) return true;
  // Not the engine's to resolve: the caller's handler takes it (and may jump
  // out): never out of this thread's fault path.
  detail::abort_if_in_fault_path(info);
  return false;
}

}  // namespace faultline
