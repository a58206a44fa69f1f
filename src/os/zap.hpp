// Internal: dropping a view's PTEs (the frames stay in the memfd) where the
// view may be mlock()ed.
#pragma once
#include <cerrno>
#include <cstddef>
#include <sys/mman.h>

// Linux 5.18+ (uapi asm-generic/mman-common.h); missing from older headers.
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

namespace faultline::detail {

/// MADV_DONTNEED of [addr, addr + len), also in a VM_LOCKED range (a view the
/// user mlock()ed: MADV_DONTNEED refuses it with EINVAL, so a path that must
/// remove a PTE — the SIGBUS path, clearing poison — would fail for good
/// there, DESIGN section 2). MADV_DONTNEED_LOCKED (5.18+) is MADV_DONTNEED
/// that also accepts locked ranges (the range stays locked; its next access
/// faults). A kernel without it rejects the advice (EINVAL): plain
/// MADV_DONTNEED then. Returns 0 or -errno.
[[nodiscard]] inline int zap_ptes(void* addr, size_t len) {
  if (::madvise(addr, len, MADV_DONTNEED_LOCKED) == 0) return 0;
  if (errno != EINVAL) return -errno;
  return ::madvise(addr, len, MADV_DONTNEED) == 0 ? 0 : -errno;
}

}  // namespace faultline::detail
