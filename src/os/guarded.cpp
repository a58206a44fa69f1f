// guarded(): SIGBUS inside a scope becomes an error return.
#include "faultline/guarded.hpp"

#include "faultline/engine.hpp"
#include "os/sigbus_chain.hpp"

#include <csetjmp>
#include <csignal>
#include <cstring>
#include <mutex>

namespace faultline {

namespace {

struct Guard {
  sigjmp_buf env;
  BusError err;
  Guard* outer;
};

thread_local Guard* t_guard = nullptr;
struct sigaction g_previous;
std::once_flag g_installed;

void on_sigbus(int sig, siginfo_t* info, void* uctx) {
  // Only a SIGBUS the kernel raised for this thread's access (si_code > 0) is
  // the guarded scope's fault. kill / tgkill / sigqueue (si_code <= 0) are
  // asynchronous: they go where they would go without the guard.
  const bool fault = info->si_code > 0;
  // A fault on a view whose faulting thread resolves it (FaultMode::
  // FaultingThread) is the engine's, not the scope's: resolved, the access
  // is retried.
  // (handle_sigbus also ends the process rather than let a jump leave the
  // engine's fault path holding its locks.)
  if (fault && handle_sigbus(sig, info, uctx)) return;
  if (Guard* g = t_guard; g && fault) {
    g->err.addr = info->si_addr;
    g->err.code = info->si_code;
    siglongjmp(g->env, 1);
  }
  // Not ours: chain to whatever was installed before (an access faults again
  // on return and, by default, ends the process: the guard is never lost).
  detail::chain_sigbus(g_previous, sig, info, uctx);
}

void install() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &g_previous);
}

}  // namespace

namespace detail {
const void* current_guard() { return t_guard; }
}  // namespace detail

std::optional<BusError> guarded(const std::function<void()>& fn) {
  std::call_once(g_installed, install);
  Guard g{};
  g.outer = t_guard;
  if (sigsetjmp(g.env, 1) != 0) {
    t_guard = g.outer;
    return g.err;
  }
  t_guard = &g;
  try {
    fn();
  } catch (...) {
    // Restored however fn leaves: a jump target in a dead frame would catch
    // this thread's next unguarded SIGBUS (issue 14 defect 6).
    t_guard = g.outer;
    throw;
  }
  t_guard = g.outer;
  return std::nullopt;
}

}  // namespace faultline
