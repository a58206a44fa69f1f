#include "os/uring.hpp"

namespace faultline::detail {

namespace {

constexpr unsigned kRingEntries = 8;

struct ThreadRing {
  io_uring ring{};
  bool ok = false;
  ThreadRing() {
    // Completions are posted when this thread waits for them, not by
    // interrupting it: DEFER_TASKRUN (6.1), else COOP_TASKRUN (5.19), else
    // the default.
    for (unsigned flags : {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                           unsigned{IORING_SETUP_COOP_TASKRUN}, 0u})
      if ((ok = ::io_uring_queue_init(kRingEntries, &ring, flags) == 0)) return;
  }
  ~ThreadRing() { drop(); }
  void drop() {
    if (ok) ::io_uring_queue_exit(&ring);  // cancels and waits for what is in flight
    ok = false;
  }
  ThreadRing(const ThreadRing&) = delete;
  ThreadRing& operator=(const ThreadRing&) = delete;
};

ThreadRing& ring_of_thread() {
  thread_local ThreadRing r;
  return r;
}

}  // namespace

io_uring* thread_ring() {
  ThreadRing& r = ring_of_thread();
  return r.ok ? &r.ring : nullptr;
}

void drop_thread_ring() { ring_of_thread().drop(); }

}  // namespace faultline::detail
