// Reclaim (R9): the memory limit of the engine's page cache. Clean, unlocked
// pages not under write-back are evicted — unmapped from every view and their
// frames punched — under the page lock taken with a try-lock, after checking
// again under it that the page is still clean (races E1, E2).
#include <algorithm>
#include <mutex>
#include <vector>

#include "engine_core.hpp"
#include "faultline/constants.hpp"
#include "file_impl.hpp"
#include "mapping_impl.hpp"
#include "sched.hpp"

namespace faultline::detail {

namespace {
constexpr uint64_t kReclaimBatchPages = 256;  // candidates picked per look at the index
constexpr uint32_t kBusy = PG_locked | PG_dirty | PG_writeback;

// Whether reclaim may take the page: uptodate, and not locked, dirty or under
// write-back (R9). (PG_error on an uptodate clean page: an earlier write-back
// failed and a later one succeeded — the backend has the data.)
bool evictable(uint32_t flags) { return (flags & PG_uptodate) && !(flags & kBusy); }
}  // namespace

void FileImpl::mark_uptodate(Page* p) {
  p->set(PG_referenced);
  if (!p->test_and_set(PG_uptodate)) return;
  nr_cached_.fetch_add(1, std::memory_order_relaxed);
  core->nr_cached.fetch_add(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  core->note_cached();
}

uint64_t FileImpl::shrink(uint64_t want) {
  std::unique_lock one(reclaim_mu_, std::try_to_lock);  // another reclaim is at it
  if (!one.owns_lock() || want == 0) return 0;
  uint64_t freed = 0;
  // Round the index from the clock hand, two laps at most: the first clears
  // the referenced bits it meets (second chance), the second may take them.
  const uint64_t hand = reclaim_hand_.load(std::memory_order_relaxed);
  const std::pair<uint64_t, uint64_t> laps[] = {
      {hand, PageIndex::kMaxPages}, {0, hand}, {hand, PageIndex::kMaxPages}, {0, hand}};
  uint64_t new_hand = hand;
  for (auto [pos, end] : laps) {
   while (freed < want && pos < end) {
    // Pick candidates (an unlocked look: the flags decide again under the
    // lock, R9).
    std::vector<uint64_t> picked;
    const uint64_t batch = std::min<uint64_t>(kReclaimBatchPages, want - freed);
    uint64_t next = end;
    index_.for_each(pos, end, [&](uint64_t i, Page& p) {
      const uint32_t f = p.flags.load(std::memory_order_acquire);
      if (!evictable(f)) return true;
      if (f & PG_referenced) {
        p.clear(PG_referenced);  // second chance
        return true;
      }
      picked.push_back(i);
      if (picked.size() < batch) return true;
      next = i + 1;
      return false;
    });
    pos = next;
    if (picked.empty()) break;
    new_hand = picked.back() + 1;
    FL_POINT("reclaim.after_pick");
    // Lock what can be locked without waiting (R9: a locked page is being
    // filled, installed, dirtied or dropped by someone else), and recheck
    // under the lock that it is still clean, uptodate and not under write-back.
    const bool r9 = FL_RULE(9);
    std::vector<Page*> held;
    std::vector<uint64_t> held_pg;
    for (uint64_t i : picked) {
      Page* p = index_.find(i);
      if (r9) {
        if (!p->trylock()) continue;
        if (!evictable(p->flags.load(std::memory_order_acquire) & ~PG_locked)) {
          p->unlock();
          continue;
        }
      }
      held.push_back(p);
      held_pg.push_back(i);
    }
    if (held.empty()) continue;
    if (async_) {
      // R9 (async): a store through a view leaves no trace but the PTE; zap
      // the PTEs under the locks and read the written ones off the zap (as
      // invalidate, R4): those pages are dirty, not evicted.
      const uint64_t eof = eof_pages();
      std::lock_guard g(rmap_mu_);
      for (MappingImpl* m : rmap_) {
        if (!m->async_wp()) continue;
        for (size_t a = 0; a < held.size();) {
          size_t b = a + 1;
          while (b < held.size() && held_pg[b] == held_pg[b - 1] + 1) ++b;
          for (uint64_t k : zap_written(*m, held_pg[a], held_pg[b - 1] + 1)) {
            Page* q = held[a + (k - held_pg[a])];
            if (k < eof) mark_dirty(q);
          }
          a = b;
        }
      }
    }
    // Drop and punch runs of contiguous pages (the punch unmaps them from
    // every view; private copies stay, R4), then unlock.
    // (Breaker: the pages picked are dropped as they were seen.)
    auto keep = [&](size_t k) { return r9 && held[k]->test(PG_dirty); };
    for (size_t a = 0; a < held.size();) {
      if (keep(a)) {
        ++a;
        continue;
      }
      size_t b = a + 1;
      while (b < held.size() && held_pg[b] == held_pg[b - 1] + 1 && !keep(b)) ++b;
      for (size_t k = a; k < b; ++k) drop_page(held[k]);
      FL_POINT("reclaim.before_punch");
      punch_frames(held_pg[a], b - a, /*keep_poison=*/true);
      count(&Counters::reclaim_runs);
      freed += b - a;
      a = b;
    }
    if (r9)
      for (Page* p : held) p->unlock();
   }
    if (freed >= want) break;
  }
  reclaim_hand_.store(new_hand, std::memory_order_relaxed);
  count(&Counters::pages_reclaimed, freed);
  return freed;
}

void EngineCore::note_cached() {
  const uint64_t c = nr_cached.load(std::memory_order_relaxed);
  for (uint64_t peak = peak_cached.load(std::memory_order_relaxed);
       c > peak && !peak_cached.compare_exchange_weak(peak, c, std::memory_order_relaxed);) {
  }
  if (over_memory_limit() && !reclaim_kicked_.exchange(true, std::memory_order_relaxed))
    kick_flusher();
}

uint64_t EngineCore::reclaim(uint64_t pages, bool round_down) {
  std::vector<std::shared_ptr<FileImpl>> files;
  {
    std::lock_guard fg(files_mu_);
    for (auto& [k, w] : files_)
      if (auto f = w.lock()) files.push_back(std::move(f));
  }
  uint64_t freed = 0;
  if (!files.empty()) {
    // Round robin: each call starts with the next File.
    const size_t start = reclaim_rr_.fetch_add(1, std::memory_order_relaxed) % files.size();
    for (size_t k = 0; k < files.size() && freed < pages; ++k) {
      FileImpl& f = *files[(start + k) % files.size()];
      const uint64_t per = f.page_size() / kBasePageSize;  // 4 KiB pages per page of f
      const uint64_t want = (pages - freed + (round_down ? 0 : per - 1)) / per;
      freed += f.shrink(want) * per;
    }
  }
  files.clear();  // a File may be freed here
  reclaim_kicked_.store(false, std::memory_order_relaxed);
  reclaim_cv_.notify_all();  // fills waiting for room (charge)
  return freed;
}

}  // namespace faultline::detail
