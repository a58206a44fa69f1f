// Internal: the calling thread's io_uring (liburing), for reads that overlap
// their own copying (the file backend's pipelined O_DIRECT fills).
#pragma once
#include <liburing.h>

#include <cstdint>

namespace faultline::detail {

/// The calling thread's ring (made on first use, torn down at thread exit),
/// or nullptr when io_uring is missing or refused (ENOSYS; EPERM under
/// kernel.io_uring_disabled or a seccomp filter): callers then use pread.
/// One user at a time per thread; every request submitted on it must be
/// reaped before the caller returns (its buffers are the caller's).
io_uring* thread_ring();

/// Gives the calling thread's ring up (a failed submit or wait); the next
/// thread_ring() makes a new one. The kernel tears the old one down
/// asynchronously: a request still in flight may complete into its buffer
/// after this returns, so a caller with one in flight must give its buffer
/// up too.
void drop_thread_ring();

/// Pieces read through a ring and copied (the file backend's pipelined
/// fills), since the process started: tests check the ring was used.
void count_uring_piece();
uint64_t uring_pieces();

}  // namespace faultline::detail
