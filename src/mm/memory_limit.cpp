// The memory limit on the fill side (issue 16): a fill reserves its frames
// under EngineConfig::memory_limit_pages before it reads anything, reclaiming
// first when the cache would pass the limit (the kernel's direct reclaim; the
// flusher is its kswapd). Eviction itself is reclaim.cpp (R9).
#include <algorithm>
#include <chrono>
#include <mutex>

#include "mm/engine_core.hpp"
#include "testing/sched.hpp"

namespace faultline::detail {

namespace {
// Direct reclaim frees this many 4 KiB pages more than the fill needs (the
// kernel's SWAP_CLUSTER_MAX), so the next fault finds room.
constexpr uint64_t kDirectReclaimExtra = 32;
// A fill that finds nothing to evict waits this long per round for reclaim by
// others or the flusher's write-back, at most kWaitRounds rounds.
constexpr auto kWaitRound = std::chrono::milliseconds(10);
constexpr int kWaitRounds = 100;
}  // namespace

uint64_t EngineCore::charge(uint64_t pages, uint64_t min, bool may_wait) {
  const uint64_t limit = cfg.memory_limit_pages;
  if (!limit || pages == 0) return pages;
  min = std::min(min, pages);
  // No fill takes more than a quarter of the limit at once (a readahead
  // window larger than that is trimmed).
  pages = std::max(min, std::min(pages, std::max<uint64_t>(limit / 4, 1)));
  for (int round = 0;; ++round) {
    const uint64_t charged = nr_charged.fetch_add(pages, std::memory_order_relaxed) + pages;
    const uint64_t used = nr_cached.load(std::memory_order_relaxed) + charged;
    if (used <= limit) {
      if (used > limit - limit / 32 && !reclaim_kicked_.exchange(true, std::memory_order_relaxed))
        kick_flusher();  // past the background mark
      return pages;
    }
    nr_charged.fetch_sub(pages, std::memory_order_relaxed);
    // Direct reclaim (R9: try-locks and rechecks; safe under page locks).
    if (reclaim(used - limit + kDirectReclaimExtra) > 0) continue;
    // Nothing freed: the cache is locked, dirty or under write-back, or
    // another thread is reclaiming the same File right now.
    //
    // What fits now, at least `min`: a smaller fill rather than a wait. A
    // caller holding page locks cannot wait (write-back may need them), and
    // past the bound the limit cannot be kept (every page locked, dirty or
    // failing write-back): it goes over by `min` rather than hang. The room
    // is taken atomically (compare-exchange): two faults that both see one
    // free page must not both take it.
    uint64_t cur = nr_charged.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t now = nr_cached.load(std::memory_order_relaxed) + cur;
      const uint64_t room = now < limit ? limit - now : 0;
      if (room < std::max<uint64_t>(min, 1) && may_wait && round < kWaitRounds) break;  // wait
      const uint64_t g = std::max(min, std::min(room, pages));
      if (g == 0) return 0;
      if (nr_charged.compare_exchange_weak(cur, cur + g, std::memory_order_relaxed)) return g;
    }
    kick_flusher();  // write-back makes dirty pages evictable
    FL_POINT("wait.memory_limit");  // a sleeping wait (race harness)
    std::unique_lock g(reclaim_wait_mu_);
    reclaim_cv_.wait_for(g, kWaitRound);
  }
}

void EngineCore::uncharge(uint64_t pages) {
  if (cfg.memory_limit_pages && pages) nr_charged.fetch_sub(pages, std::memory_order_relaxed);
}

}  // namespace faultline::detail
