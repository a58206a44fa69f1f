#include "common/interrupt.hpp"

#include <signal.h>
#include <string.h>

#include <atomic>
#include <string>

namespace faultline::cli {

namespace {

std::atomic<int> g_signal{0};
struct sigaction g_old_int;
struct sigaction g_old_term;

extern "C" void on_signal(int sig) { g_signal.store(sig, std::memory_order_relaxed); }

}  // namespace

Interrupted::Interrupted(int sig)
    : std::runtime_error(std::string("interrupted by ") + ::strsignal(sig)), signal(sig) {}

InterruptGuard::InterruptGuard() {
  g_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
}

void throw_if_interrupted() {
  if (int sig = g_signal.load(std::memory_order_relaxed); sig != 0) throw Interrupted(sig);
}

}  // namespace faultline::cli
