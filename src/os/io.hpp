// Internal: whole-buffer pread / pwrite on a descriptor, the loops every
// copy into or out of a descriptor needs (EINTR and short counts resumed).
// -errno convention, as the backends return.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <sys/types.h>
#include <unistd.h>

namespace faultline::detail {

/// Reads up to len bytes of fd at off into buf, stopping early only at the
/// end of the file (a read of 0 bytes). Returns the bytes read or -errno.
[[nodiscard]] inline ssize_t pread_full(int fd, std::byte* buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    const ssize_t r = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

/// Writes all len bytes of buf to fd at off. Returns 0 or -errno.
[[nodiscard]] inline int pwrite_full(int fd, const std::byte* buf, size_t len, uint64_t off) {
  size_t done = 0;
  while (done < len) {
    const ssize_t r = ::pwrite(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += static_cast<size_t>(r);
  }
  return 0;
}

}  // namespace faultline::detail
