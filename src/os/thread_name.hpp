// Internal: names the calling thread (its /proc/self/task/*/comm, shown by ps,
// top and gdb), so a user can tell the engine's threads from theirs:
// "fl-fault" (fault handlers), "fl-flush" (the flusher: write-back, reclaim),
// "fl-rados" (the RADOS backend's change dispatcher).
#pragma once
#include <pthread.h>

namespace faultline::detail {
inline void set_thread_name(const char* name) {
  // Best effort: a name only helps a human; an error (ERANGE past 15
  // characters) leaves the inherited one.
  (void)::pthread_setname_np(::pthread_self(), name);
}
}  // namespace faultline::detail
