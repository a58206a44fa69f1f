#include "os/uring.hpp"

#include <unistd.h>

#include <atomic>

namespace faultline::detail {

namespace {

constexpr unsigned kRingEntries = 8;

std::atomic<uint64_t> g_pieces{0};

struct ThreadRing {
  io_uring ring{};
  bool ok = false;
  pid_t pid = 0;  // the process that made it: a fork()ed child makes its own
  bool remake = false;  // given up by drop_thread_ring: the next use makes a new one
  ThreadRing() { init(); }
  void init() {
    pid = ::getpid();
    // Completions are posted when this thread waits for them, not by
    // interrupting it: DEFER_TASKRUN (6.1), else COOP_TASKRUN (5.19), else
    // the default.
    for (unsigned flags : {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                           unsigned{IORING_SETUP_COOP_TASKRUN}, 0u})
      if ((ok = ::io_uring_queue_init(kRingEntries, &ring, flags) == 0)) return;
  }
  ~ThreadRing() { drop(); }
  void drop() {
    // Unmaps the ring and closes its descriptor (in a fork()ed child: only
    // the child's copies); the kernel cancels what is in flight later.
    if (ok) ::io_uring_queue_exit(&ring);
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
  if (r.ok && r.pid != ::getpid()) {
    // Inherited through fork(): the ring's memory is shared with the parent,
    // whose completions this process must never reap.
    r.drop();
    r.init();
  } else if (!r.ok && r.remake) {
    r.remake = false;
    r.init();
  }
  return r.ok ? &r.ring : nullptr;
}

void drop_thread_ring() {
  ThreadRing& r = ring_of_thread();
  r.drop();
  r.remake = true;
}

void count_uring_piece() { g_pieces.fetch_add(1, std::memory_order_relaxed); }
uint64_t uring_pieces() { return g_pieces.load(std::memory_order_relaxed); }

}  // namespace faultline::detail
