// Reclaim (R9): the memory limit of the engine's page cache. Clean, unlocked
// pages not under write-back are evicted — unmapped from every view and their
// frames punched — under the page lock taken with a try-lock, after checking
// again under it that the page is still clean (races E1, E2).
//
// Which pages go (the policy, DESIGN R9, issue 16 item 4): S3-FIFO (Yang et
// al., SOSP 2023) per File. A page enters the small FIFO queue when it is
// cached; at the small queue's head a page accessed since it entered moves
// to the main queue, one not accessed is evicted and remembered as a ghost
// (cached again within about the cache's size of such evictions, it enters
// main directly). Main is a FIFO with reinsertion (CLOCK): a page accessed
// since its last look goes round again. Evictions come from small while it
// holds at least a tenth of the File's cached pages: a scan's pages pass
// through small and leave from it, and the hot pages in main stay.
//
// Access information. A fault on a cached page and an API read are accesses
// (PG_referenced); a page that stays mapped is touched with no fault. So a
// mapped page is sampled before it can be judged unused: its PTEs are zapped
// in every shared view (MADV_DONTNEED: the frame stays cached, a WP-registered
// view keeps a WP marker) and PG_sampled set; its next access is a MINOR
// fault, a hit, which sets PG_referenced; the install clears PG_sampled.
// (PAGEMAP_SCAN has no accessed category on 6.18 and page_idle is not built
// here: DESIGN section 2; costs, docs/MEASUREMENTS.md M5.1: ~1-4 us per zap, ~30 us per
// refault.) A sampled page is requeued at its queue's tail and judged at its
// next turn. Private views are not sampled (MADV_DONTNEED would drop their
// copy-on-write copies, F5): accesses through them go unseen.
#include <sys/mman.h>

#include <algorithm>
#include <mutex>
#include <numeric>
#include <vector>

#include "mm/engine_core.hpp"
#include "faultline/constants.hpp"
#include "mm/file_impl.hpp"
#include "mm/mapping_impl.hpp"
#include "testing/sched.hpp"

namespace faultline::detail {

namespace {
constexpr uint64_t kReclaimBatchPages = 256;  // candidates taken per look at a queue
constexpr uint32_t kBusy = PG_locked | PG_dirty | PG_writeback;
/// S3-FIFO: evict from the small queue while it holds >= 1/kSmallShare of the
/// cached pages (the paper's 10%).
constexpr uint64_t kSmallShare = 10;

// Whether reclaim may take the page: uptodate, and not locked, dirty or under
// write-back (R9). (PG_error on an uptodate clean page: an earlier write-back
// failed and a later one succeeded — the backend has the data.)
bool evictable(uint32_t flags) { return (flags & PG_uptodate) && !(flags & kBusy); }

/// Runs [a, b) of consecutive values in the ascending vector v: fn(a, b).
template <class Fn>
void for_runs(const std::vector<uint64_t>& v, Fn&& fn) {
  for (size_t a = 0; a < v.size();) {
    size_t b = a + 1;
    while (b < v.size() && v[b] == v[b - 1] + 1) ++b;
    fn(a, b);
    a = b;
  }
}
}  // namespace

void FileImpl::mark_uptodate(uint64_t pg, Page* p) {
  if (p->test_and_set(PG_uptodate)) {
    p->set(PG_referenced);  // cached already: written or read again, an access
    return;
  }
  const uint64_t cached = nr_cached_.fetch_add(1, std::memory_order_relaxed) + 1;
  core->nr_cached.fetch_add(uint64_t{1} << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  // New in the cache: not accessed since (the access that brought it in is
  // not a reuse), and mapped nowhere yet (the fault path clears PG_sampled
  // when it installs it). A ghost evicted from the small queue within about
  // the cache's size of evictions goes to main (S3-FIFO).
  const bool ghost =
      p->test_and_clear(PG_ghost) &&
      small_evicted_.load(std::memory_order_relaxed) - p->evicted_at.load(std::memory_order_relaxed) <=
          std::max<uint64_t>(cached, kReclaimBatchPages);
  p->clear(PG_referenced);
  p->set(PG_sampled);
  // PG_main and nr_main_ change together (atomic flag transitions).
  if (ghost) {
    if (!p->test_and_set(PG_main)) nr_main_.fetch_add(1, std::memory_order_relaxed);
  } else if (p->test_and_clear(PG_main)) {
    nr_main_.fetch_sub(1, std::memory_order_relaxed);
  }
  {
    std::lock_guard g(lru_mu_);
    (ghost ? main_ : small_).push_back({pg, p->gen.load(std::memory_order_acquire)});
    // Entries of pages dropped by truncate / punch / invalidate stay until
    // reclaim pops them; without a memory limit nothing does: keep the queues
    // within a few times the cached pages.
    if (small_.size() + main_.size() > 2 * cached + 1024) {
      for (auto* q : {&small_, &main_}) {
        std::erase_if(*q, [&](const LruEntry& e) {
          const Page* x = index_.find(e.pg);
          return !x || x->gen.load(std::memory_order_acquire) != e.gen || !x->test(PG_uptodate);
        });
      }
    }
  }
  core->note_cached();
}

std::vector<FileImpl::LruEntry> FileImpl::lru_pop(bool main, size_t max) {
  std::vector<LruEntry> out;
  std::lock_guard g(lru_mu_);
  auto& q = main ? main_ : small_;
  while (out.size() < max && !q.empty()) {
    const LruEntry e = q.front();
    q.pop_front();
    const Page* p = index_.find(e.pg);
    // Dropped (and maybe cached again, with an entry of its own) since: stale.
    if (!p || p->gen.load(std::memory_order_acquire) != e.gen || !p->test(PG_uptodate)) continue;
    out.push_back(e);
  }
  return out;
}

void FileImpl::lru_push(bool main, const std::vector<LruEntry>& es) {
  if (es.empty()) return;
  std::lock_guard g(lru_mu_);
  auto& q = main ? main_ : small_;
  q.insert(q.end(), es.begin(), es.end());
}

std::vector<bool> FileImpl::sample_unmap(const std::vector<uint64_t>& pg) {
  // The pages are locked (R9's try-locks) and clean. R15: the views are
  // walked under the rmap lock (no range another mmap may own).
  std::vector<bool> written(pg.size(), false);
  const uint64_t eof = eof_pages();
  auto g = lock_rmap();
  for (MappingImpl* m : rmap_) {
    if (!m->shared) continue;  // F5: DONTNEED would drop private copies
    const uint64_t vlo = m->pgoff, vhi = m->pgoff + m->npages;
    for_runs(pg, [&](size_t a, size_t b) {
      const uint64_t lo = std::max(pg[a], vlo), hi = std::min(pg[b - 1] + 1, vhi);
      if (lo >= hi) return;
      if (m->async_wp()) {
        // R7 (async): a store through this view left no trace but its PTE;
        // the zap tells which were written (zap_written zaps present PTEs
        // only: poison markers stay): those pages are dirty and stay.
        for (uint64_t k : zap_written(*m, lo, hi)) {
          if (k >= eof) continue;
          mark_dirty(index_.find(k));
          written[a + (k - pg[a])] = true;
        }
        return;
      }
      // Around the pages this view answered with POISON: MADV_DONTNEED would
      // clear the poison (the page must keep raising SIGBUS).
      std::lock_guard pm(m->poison_mu);
      uint64_t from = lo;
      for (auto it = m->poisoned.lower_bound(lo); from < hi;) {
        const uint64_t to = (it == m->poisoned.end() || *it >= hi) ? hi : *it;
        // Result discarded: a zap that fails leaves the PTEs, so the page's
        // accesses go unseen and it may be judged unused (evicted: clean, its
        // data is in the backend). Nothing is lost.
        if (to > from)
          (void)::madvise(reinterpret_cast<void*>(m->addr_of(from)), (to - from) << page_shift_,
                          MADV_DONTNEED);
        if (to >= hi) break;
        from = to + 1;
        ++it;
      }
    });
  }
  return written;
}

uint64_t FileImpl::shrink(uint64_t want) {
  std::unique_lock one(reclaim_mu_, std::try_to_lock);  // another reclaim is at it
  if (!one.owns_lock() || want == 0) return 0;
  const bool r9 = FL_RULE(9);
  uint64_t freed = 0;
  // Bounds per call: each queued page is looked at about three times at most
  // (promote or sample, then evict), and at most 2 x want + a batch pages are
  // sampled (zaps cost ~1-4 us each; direct reclaim runs on the fault path).
  uint64_t visits, sample_budget = 2 * want + kReclaimBatchPages;
  {
    std::lock_guard g(lru_mu_);
    visits = 3 * (small_.size() + main_.size()) + kReclaimBatchPages;
  }
  // Entries looked at in a row without progress (everything locked, dirty or
  // under write-back), per queue (small, main): a queue gone round so is
  // left for the other one in this call.
  uint64_t idle[2] = {0, 0};
  auto stuck = [&](bool main) {
    std::lock_guard g(lru_mu_);
    return idle[main] >= (main ? main_ : small_).size();
  };
  while (freed < want && visits > 0) {
    const uint64_t cached = nr_cached_.load(std::memory_order_relaxed);
    const uint64_t nmain = std::min(nr_main_.load(std::memory_order_relaxed), cached);
    bool from_small = (cached - nmain) * kSmallShare >= cached;
    if (stuck(!from_small)) from_small = !from_small;
    if (stuck(!from_small)) break;
    const size_t take = static_cast<size_t>(std::min<uint64_t>(kReclaimBatchPages, visits));
    std::vector<LruEntry> es = lru_pop(!from_small, take);
    if (es.empty()) {
      from_small = !from_small;
      es = lru_pop(!from_small, take);
      if (es.empty()) break;
    }
    visits -= std::min<uint64_t>(visits, es.size());
    uint64_t& idle_here = idle[!from_small];
    // Sort the candidates (an unlocked look: the flags decide again under the
    // lock, R9). Unsampled pages get sampled now; in the small queue past the
    // budget they are judged by their faults alone (a ghost hit brings a
    // wrongly evicted page back to main), in main they wait for a later call.
    std::vector<LruEntry> back, to_main, sample, evict, unlooked;
    std::vector<bool> evict_unsampled;
    for (const LruEntry& e : es) {
      if (evict.size() >= want - freed) {
        unlooked.push_back(e);  // enough candidates: back to the head, in order
        continue;
      }
      Page* p = index_.find(e.pg);
      const uint32_t f = p->flags.load(std::memory_order_acquire);
      if (!evictable(f)) {
        back.push_back(e);  // locked, dirty or under write-back: later
      } else if (f & PG_referenced) {
        // Accessed since its last look: small -> main (promotion), main: once
        // more round.
        p->clear(PG_referenced);
        if (from_small && !p->test_and_set(PG_main)) nr_main_.fetch_add(1, std::memory_order_relaxed);
        to_main.push_back(e);
      } else if (f & PG_sampled) {
        evict.push_back(e);
        evict_unsampled.push_back(false);
      } else if (sample_budget > 0) {
        --sample_budget;
        sample.push_back(e);
      } else if (from_small) {
        evict.push_back(e);
        evict_unsampled.push_back(true);
      } else {
        back.push_back(e);
      }
    }
    if (!unlooked.empty()) {
      std::lock_guard g(lru_mu_);
      auto& q = from_small ? small_ : main_;
      q.insert(q.begin(), unlooked.begin(), unlooked.end());
    }
    lru_push(true, to_main);
    const uint64_t freed_before = freed;
    if (!sample.empty()) {
      // Sample: under the page locks (try-locked, R9: a locked page is being
      // filled, installed, dirtied or dropped), zap the PTEs so the next
      // access faults; then back to the queue's tail.
      std::sort(sample.begin(), sample.end(),
                [](const LruEntry& x, const LruEntry& y) { return x.pg < y.pg; });
      std::vector<Page*> held;
      std::vector<uint64_t> held_pg;
      for (const LruEntry& e : sample) {
        Page* p = index_.find(e.pg);
        if (!p->trylock()) continue;
        const uint32_t f = p->flags.load(std::memory_order_acquire) & ~PG_locked;
        if (!evictable(f) || p->gen.load(std::memory_order_acquire) != e.gen) {
          p->unlock();
          continue;
        }
        held.push_back(p);
        held_pg.push_back(e.pg);
      }
      const std::vector<bool> written = sample_unmap(held_pg);
      for (size_t i = 0; i < held.size(); ++i) {
        if (!written[i]) held[i]->set(PG_sampled);
        held[i]->unlock();
      }
      count(&Counters::pages_sampled, held.size());
      back.insert(back.end(), sample.begin(), sample.end());
    }
    if (!evict.empty()) {
      FL_POINT("reclaim.after_pick");
      // Lock what can be locked without waiting, and recheck under the lock
      // that it is the same page (generation), still clean, uptodate, not
      // under write-back and not accessed since the look (a fault sets
      // PG_referenced; an install clears PG_sampled).
      std::vector<size_t> order(evict.size());
      std::iota(order.begin(), order.end(), size_t{0});
      std::sort(order.begin(), order.end(),
                [&](size_t x, size_t y) { return evict[x].pg < evict[y].pg; });
      std::vector<Page*> held;
      std::vector<uint64_t> held_pg;
      for (size_t i : order) {
        const LruEntry& e = evict[i];
        Page* p = index_.find(e.pg);
        if (r9) {
          if (!p->trylock()) {
            back.push_back(e);
            continue;
          }
          const uint32_t f = p->flags.load(std::memory_order_acquire) & ~PG_locked;
          if (p->gen.load(std::memory_order_acquire) != e.gen) {
            p->unlock();  // dropped (maybe cached again: its new entry is queued)
            continue;
          }
          if (!evictable(f) || (f & PG_referenced) || !(evict_unsampled[i] || (f & PG_sampled))) {
            p->unlock();
            back.push_back(e);
            continue;
          }
        }
        held.push_back(p);
        held_pg.push_back(e.pg);
      }
      if (async_ && !held.empty()) {
        // R9 (async): a store through a view leaves no trace but the PTE; zap
        // the PTEs under the locks and read the written ones off the zap (as
        // invalidate, R4): those pages are dirty, not evicted.
        const uint64_t eof = eof_pages();
        auto g = lock_rmap();
        for (MappingImpl* m : rmap_) {
          if (!m->async_wp()) continue;
          for_runs(held_pg, [&](size_t a, size_t b) {
            for (uint64_t k : zap_written(*m, held_pg[a], held_pg[b - 1] + 1))
              if (k < eof) mark_dirty(held[a + (k - held_pg[a])]);
          });
        }
      }
      // Drop and punch runs of contiguous pages (the punch unmaps them from
      // every view; private copies stay, R4), then unlock. Pages evicted from
      // the small queue are remembered (ghosts).
      // (Breaker: the pages picked are dropped as they were seen.)
      auto keep = [&](size_t k) { return r9 && held[k]->test(PG_dirty); };
      for (size_t a = 0; a < held.size();) {
        if (keep(a)) {
          back.push_back({held_pg[a], held[a]->gen.load(std::memory_order_acquire)});
          ++a;
          continue;
        }
        size_t b = a + 1;
        while (b < held.size() && held_pg[b] == held_pg[b - 1] + 1 && !keep(b)) ++b;
        for (size_t k = a; k < b; ++k) {
          drop_page(held[k]);
          if (from_small) {
            held[k]->evicted_at.store(small_evicted_.fetch_add(1, std::memory_order_relaxed),
                                      std::memory_order_relaxed);
            held[k]->set(PG_ghost);
          }
        }
        FL_POINT("reclaim.before_punch");
        punch_frames(held_pg[a], b - a, /*keep_poison=*/true);
        count(&Counters::reclaim_runs);
        freed += b - a;
        a = b;
      }
      if (r9)
        for (Page* p : held) p->unlock();
    }
    lru_push(!from_small, back);
    const bool progress = !to_main.empty() || !sample.empty() || freed > freed_before;
    idle_here = progress ? 0 : idle_here + (es.size() - unlooked.size());
  }
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
