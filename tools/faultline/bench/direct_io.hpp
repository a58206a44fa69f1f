// faultline CLI — O_DIRECT reads for the benches' direct rows (the read
// bench's device rows, the out-of-core bench's direct method): an aligned
// buffer and a read that fills it.
#pragma once
#include <linux/mman.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/sys_error.hpp"
#include "faultline/constants.hpp"

namespace faultline::cli {

/// A page-aligned, populated buffer for O_DIRECT reads. huge: 2 MiB pages,
/// from the hugetlb pool where it has them, else transparent huge pages
/// (2 MiB aligned, MADV_HUGEPAGE: no pool needed) where the kernel gives
/// them, else plain pages. A 2 MiB huge page is one DMA segment; a request
/// into 4 KiB pages is cut at max_segments, which here reads at about half
/// the device's speed (docs/MEASUREMENTS.md M6.16).
class DirectBuffer {
 public:
  DirectBuffer(uint64_t len, bool huge) : map_len_(len) {
    void* p = MAP_FAILED;
    if (huge) {
      // (hugetlb: whole 2 MiB pages, or munmap fails)
      map_len_ = (len + kHuge - 1) & ~(kHuge - 1);
      p = ::mmap(nullptr, map_len_, kProt, kFlags | MAP_POPULATE | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
      if (p == MAP_FAILED) map_len_ = len;
    }
    if (p == MAP_FAILED && huge) p = map_thp(len);
    if (p == MAP_FAILED) p = ::mmap(nullptr, len, kProt, kFlags | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap (O_DIRECT buffer)");
    p_ = static_cast<std::byte*>(p);
  }
  ~DirectBuffer() { ::munmap(map_ ? map_ : p_, map_len_); }
  DirectBuffer(const DirectBuffer&) = delete;
  DirectBuffer& operator=(const DirectBuffer&) = delete;
  std::byte* get() const { return p_; }

 private:
  static constexpr int kProt = PROT_READ | PROT_WRITE;
  static constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS;
  static constexpr uint64_t kHuge = uint64_t{2} << 20;
  /// len bytes at a 2 MiB boundary inside a larger mapping, advised
  /// MADV_HUGEPAGE before anything touches it, then populated.
  void* map_thp(uint64_t len) {
    const uint64_t whole = len + kHuge;
    void* m = ::mmap(nullptr, whole, kProt, kFlags, -1, 0);
    if (m == MAP_FAILED) return MAP_FAILED;
    const auto base = reinterpret_cast<uintptr_t>(m);
    auto* p = reinterpret_cast<std::byte*>((base + kHuge - 1) & ~(kHuge - 1));
    // Hints: without THP the buffer is plain pages, which still works.
    (void)::madvise(p, len, MADV_HUGEPAGE);
    if (::madvise(p, len, MADV_POPULATE_WRITE) != 0)  // before Linux 5.14: touch it
      for (uint64_t o = 0; o < len; o += kBasePageSize) p[o] = std::byte{0};
    map_ = static_cast<std::byte*>(m);
    map_len_ = whole;
    return p;
  }
  std::byte* p_ = nullptr;
  std::byte* map_ = nullptr;  // the whole mapping, when p_ is inside a larger one
  uint64_t map_len_;
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
