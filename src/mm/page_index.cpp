#include "mm/page_index.hpp"

#include <algorithm>
#include <new>

namespace faultline::detail {

namespace {
unsigned shift_of(unsigned level) {  // level 0 = root
  return PageIndex::kBits * (PageIndex::kLevels - 1 - level);
}
}  // namespace

PageIndex::~PageIndex() {
  if (void* r = root_.load()) free_node(r, 0);
}

void PageIndex::free_node(void* n, unsigned level) {
  if (level == kLevels - 1) {
    delete static_cast<Leaf*>(n);
    return;
  }
  auto* node = static_cast<Node*>(n);
  for (auto& s : node->slot)
    if (void* c = s.load()) free_node(c, level + 1);
  delete node;
}

Page* PageIndex::get(uint64_t pgoff) {
  std::atomic<void*>* slot = &root_;
  for (unsigned level = 0;; ++level) {
    void* n = slot->load(std::memory_order_acquire);
    if (!n) {
      void* fresh = (level == kLevels - 1) ? static_cast<void*>(new Leaf())
                                           : static_cast<void*>(new Node());
      if (slot->compare_exchange_strong(n, fresh, std::memory_order_acq_rel)) {
        n = fresh;
      } else {
        if (level == kLevels - 1) delete static_cast<Leaf*>(fresh);
        else delete static_cast<Node*>(fresh);
      }
    }
    if (level == kLevels - 1) return &static_cast<Leaf*>(n)->pages[pgoff & (kFan - 1)];
    slot = &static_cast<Node*>(n)->slot[(pgoff >> shift_of(level)) & (kFan - 1)];
  }
}

Page* PageIndex::find(uint64_t pgoff) const {
  void* n = root_.load(std::memory_order_acquire);
  for (unsigned level = 0; n; ++level) {
    if (level == kLevels - 1) return &static_cast<Leaf*>(n)->pages[pgoff & (kFan - 1)];
    n = static_cast<Node*>(n)->slot[(pgoff >> shift_of(level)) & (kFan - 1)].load(
        std::memory_order_acquire);
  }
  return nullptr;
}

bool PageIndex::walk(void* n, unsigned level, uint64_t base, uint64_t first, uint64_t last,
                     const std::function<bool(uint64_t, Page&)>& fn) const {
  if (level == kLevels - 1) {
    auto* leaf = static_cast<Leaf*>(n);
    const uint64_t lo = std::max(first, base), hi = std::min(last, base + kFan);
    for (uint64_t p = lo; p < hi; ++p)
      if (!fn(p, leaf->pages[p - base])) return false;
    return true;
  }
  const uint64_t span = uint64_t{1} << (shift_of(level) );  // pages under one child
  auto* node = static_cast<Node*>(n);
  for (uint64_t i = 0; i < kFan; ++i) {
    const uint64_t cbase = base + i * span;
    if (cbase + span <= first) continue;
    if (cbase >= last) break;
    if (void* c = node->slot[i].load(std::memory_order_acquire))
      if (!walk(c, level + 1, cbase, first, last, fn)) return false;
  }
  return true;
}

void PageIndex::for_each(uint64_t first, uint64_t last,
                         const std::function<bool(uint64_t, Page&)>& fn) const {
  if (void* r = root_.load(std::memory_order_acquire)) walk(r, 0, 0, first, last, fn);
}

}  // namespace faultline::detail
