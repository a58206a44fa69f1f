// faultline CLI — O_DIRECT reads for the benches' direct rows (the read
// bench's device rows, the out-of-core bench's direct method): an aligned
// buffer and a read that fills it.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "common/sys_error.hpp"

namespace faultline::cli {

/// A page-aligned, populated buffer for O_DIRECT reads. huge: 2 MiB huge
/// pages where the pool has them (each 2 MiB is then one DMA segment; with
/// 4 KiB pages a request is cut at max_segments), else plain pages.
class DirectBuffer {
 public:
  DirectBuffer(uint64_t len, bool huge) : len_(len) {
    void* p = MAP_FAILED;
    if (huge) p = ::mmap(nullptr, len, kProt, kFlags | MAP_HUGETLB, -1, 0);
    if (p == MAP_FAILED) p = ::mmap(nullptr, len, kProt, kFlags, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap (O_DIRECT buffer)");
    p_ = static_cast<std::byte*>(p);
  }
  ~DirectBuffer() { ::munmap(p_, len_); }
  DirectBuffer(const DirectBuffer&) = delete;
  DirectBuffer& operator=(const DirectBuffer&) = delete;
  std::byte* get() const { return p_; }

 private:
  static constexpr int kProt = PROT_READ | PROT_WRITE;
  static constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
  std::byte* p_;
  uint64_t len_;
};

/// Reads into buf[0, cap) from file offset `off` until `want` bytes are in
/// (fewer at EOF), retrying EINTR. Returns the bytes read, or -errno.
inline int64_t pread_upto(int fd, std::byte* buf, uint64_t cap, uint64_t want, uint64_t off) {
  uint64_t got = 0;
  while (got < want) {
    const ssize_t n = ::pread(fd, buf + got, cap - got, static_cast<off_t>(off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    got += static_cast<uint64_t>(n);
  }
  return static_cast<int64_t>(got);
}

}  // namespace faultline::cli
