// Internal: the page index (the kernel's page cache xarray), pgoff -> Page.
//
// A radix tree of fanout 512, four levels (2^36 pages), with lock-free lookup
// and nodes allocated on first use by compare-and-swap. Slots are stable for
// the File's lifetime (a dropped page keeps its slot; its generation changes),
// so a Page* never dangles. A sparse file costs memory only where touched.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

#include "mm/page.hpp"

namespace faultline::detail {

class PageIndex {
 public:
  static constexpr unsigned kBits = 9;
  static constexpr uint64_t kFan = uint64_t{1} << kBits;
  static constexpr unsigned kLevels = 4;
  static constexpr uint64_t kMaxPages = uint64_t{1} << (kBits * kLevels);

  PageIndex() = default;
  ~PageIndex();
  PageIndex(const PageIndex&) = delete;
  PageIndex& operator=(const PageIndex&) = delete;

  /// The slot for pgoff, allocating it (pgoff < kMaxPages).
  Page* get(uint64_t pgoff);
  /// The slot for pgoff if it was ever allocated, else nullptr.
  Page* find(uint64_t pgoff) const;
  /// Calls fn(pgoff, page) for every allocated slot in [first, last), in order;
  /// stops when fn returns false.
  void for_each(uint64_t first, uint64_t last,
                const std::function<bool(uint64_t, Page&)>& fn) const;

 private:
  struct Node {
    std::atomic<void*> slot[kFan];
  };
  struct Leaf {
    Page pages[kFan];
  };
  static void free_node(void* n, unsigned level);
  bool walk(void* n, unsigned level, uint64_t base, uint64_t first, uint64_t last,
            const std::function<bool(uint64_t, Page&)>& fn) const;
  std::atomic<void*> root_{nullptr};
};

}  // namespace faultline::detail
