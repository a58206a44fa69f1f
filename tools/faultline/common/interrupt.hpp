// faultline CLI — SIGINT / SIGTERM become an exception at the next check, so
// RAII cleanup (the bench's temporary file) runs instead of the process dying.
#pragma once
#include <stdexcept>

namespace faultline::cli {

struct Interrupted : std::runtime_error {
  explicit Interrupted(int sig);
  int signal;
};

/// Installs the handlers for the lifetime of the guard (restores the old ones).
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
};

/// Throws Interrupted if a signal arrived since the guard was installed.
void throw_if_interrupted();

}  // namespace faultline::cli
