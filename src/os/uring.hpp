// Internal: the calling thread's io_uring (liburing), for reads that overlap
// their own copying (the file backend's pipelined O_DIRECT fills).
#pragma once
#include <liburing.h>

namespace faultline::detail {

/// The calling thread's ring (made on first use, torn down at thread exit),
/// or nullptr when io_uring is missing or refused (ENOSYS; EPERM under
/// kernel.io_uring_disabled or a seccomp filter): callers then use pread.
/// One user at a time per thread; every request submitted on it must be
/// reaped before the caller returns (its buffers are the caller's).
io_uring* thread_ring();

/// Marks the calling thread's ring unusable (a failed submit or wait): it is
/// torn down, which cancels and waits for what it still has in flight.
void drop_thread_ring();

}  // namespace faultline::detail
