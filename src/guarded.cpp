// guarded(): SIGBUS inside a scope becomes an error return.
#include "faultline/guarded.hpp"

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
  if (Guard* g = t_guard) {
    g->err.addr = info->si_addr;
    g->err.code = info->si_code;
    siglongjmp(g->env, 1);
  }
  // Not ours: chain to whatever was installed before.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) {
      g_previous.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
    return;
  }
  // Default action: restore it and let the fault happen again on return.
  signal(SIGBUS, SIG_DFL);
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

std::optional<BusError> guarded(const std::function<void()>& fn) {
  std::call_once(g_installed, install);
  Guard g{};
  g.outer = t_guard;
  if (sigsetjmp(g.env, 1) != 0) {
    t_guard = g.outer;
    return g.err;
  }
  t_guard = &g;
  fn();
  t_guard = g.outer;
  return std::nullopt;
}

}  // namespace faultline
