// Internal: a thread's reusable aligned buffer (fills by UFFDIO_COPY,
// write-back copies), aligned for O_DIRECT.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <sys/mman.h>

#include "faultline/constants.hpp"

namespace faultline::detail {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(p_); }
  /// At least n bytes, base-page aligned; from 2 MiB on 2 MiB aligned and
  /// asking for transparent huge pages (an O_DIRECT request into 4 KiB pages
  /// is one segment per page, split at max_segments: about half as fast
  /// here, M6.16). Grows, never shrinks; null when the memory cannot be had
  /// (the old buffer stays).
  std::byte* get(size_t n) {
    if (size_ >= n) return p_;
    const size_t align = n >= kHugePageSize ? kHugePageSize : kBasePageSize;
    const size_t want = (n + align - 1) & ~(align - 1);
    auto* p = static_cast<std::byte*>(std::aligned_alloc(align, want));
    if (!p) return nullptr;
    // Only a hint (without THP: 4 KiB pages, slower reads, same bytes).
    if (align == kHugePageSize) (void)::madvise(p, want, MADV_HUGEPAGE);
    std::free(p_);
    p_ = p;
    size_ = want;
    return p_;
  }

 private:
  std::byte* p_ = nullptr;
  size_t size_ = 0;
};

}  // namespace faultline::detail
