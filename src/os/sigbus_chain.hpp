// Passing a SIGBUS on to the handler installed before ours (guarded.cpp,
// mm/faulting_thread.cpp).
#pragma once
#include <csignal>

namespace faultline::detail {

/// Gives SIGBUS to `previous` (the disposition ours replaced): its handler,
/// dropped if it ignored an asynchronous one (the kernel never lets an access
/// fault be ignored), else the default action: an access faults again on
/// return, an asynchronous signal is raised again, and either now ends the
/// process as it would have without us.
inline void chain_sigbus(const struct sigaction& previous, int sig, siginfo_t* info, void* uctx) {
  const bool fault = info->si_code > 0;  // the kernel's, for this thread's access
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) {
      previous.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (previous.sa_handler == SIG_IGN) {
    if (!fault) return;
  } else if (previous.sa_handler != SIG_DFL) {
    previous.sa_handler(sig);
    return;
  }
  signal(SIGBUS, SIG_DFL);
  if (!fault) raise(SIGBUS);
}

}  // namespace faultline::detail
