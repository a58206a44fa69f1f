// The memory limit on the fill side (issue 16): a fill reserves its frames
// under EngineConfig::memory_limit_pages before it reads anything, reclaiming
// first when the cache would pass the limit (the kernel's direct reclaim; the
// flusher is its kswapd). Eviction itself is reclaim.cpp (R9).
#include <algorithm>
#include <chrono>

#include "mm/engine_core.hpp"
#include "testing/sched.hpp"

namespace faultline::detail {

namespace {
// Direct reclaim frees this many 4 KiB pages more than the fill needs (the
// kernel's SWAP_CLUSTER_MAX), so the next fault finds room.
constexpr uint64_t kDirectReclaimExtra = 32;
// A fill that finds no room waits up to this long per round for an eviction
// or a fill to end (both wake it at once), then reclaims and looks again.
constexpr auto kWaitRound = std::chrono::milliseconds(10);
// Rounds in a row in which the engine made no progress at all (nothing
// evicted, no fill ended: every page dirty with failing write-back, or held
// by a stalled backend) before a waiting fill gives up: ~1 s.
constexpr int kIdleRounds = 100;
}  // namespace

bool EngineCore::reserve(uint64_t pages) {
  // Reserve first, then check: a fill that ends moves its pages from
  // nr_charged to nr_cached (mark_uptodate before uncharge's release), so
  // reading nr_charged by the read-modify-write (acquire) and nr_cached after
  // it never misses a page; two reservers are ordered by the one atomic. (A
  // compare-exchange on nr_charged against a separate read of nr_cached is not
  // enough: a fill ending and another starting between the two leave
  // nr_charged unchanged with one page more cached.)
  const uint64_t charged = nr_charged.fetch_add(pages, std::memory_order_acq_rel) + pages;
  if (nr_cached.load(std::memory_order_acquire) + charged <= cfg.memory_limit_pages) return true;
  nr_charged.fetch_sub(pages, std::memory_order_relaxed);
  return false;
}

uint64_t EngineCore::room() const {
  const uint64_t used = nr_cached.load(std::memory_order_relaxed) +
                        nr_charged.load(std::memory_order_relaxed);
  return used < cfg.memory_limit_pages ? cfg.memory_limit_pages - used : 0;
}

void EngineCore::note_progress() {
  // seq_cst with the waiter's count and check (both sides store, then load):
  // a waiter either sees this progress or is counted here.
  progress_.fetch_add(1, std::memory_order_seq_cst);
  if (room_waiters_.load(std::memory_order_seq_cst) == 0) return;
  { MutexLock g(reclaim_wait_mu_); }  // a waiter between its check and its wait sees it
  reclaim_cv_.notify_all();
}

uint64_t EngineCore::charge(uint64_t pages, uint64_t min, bool may_wait, uint64_t unit) {
  const uint64_t limit = cfg.memory_limit_pages;
  if (!limit || pages == 0) return pages;
  min = std::min(min, pages);
  // No fill takes more than a quarter of the limit at once (a readahead
  // window larger than that is trimmed), but always a whole frame: a 2 MiB
  // File under a limit of less than 4 frames got less than one, which it
  // gives back, after its reclaim may have evicted a frame for it.
  auto whole = [unit](uint64_t n) { return n / unit * unit; };
  pages = std::max(min, std::min(pages, std::max<uint64_t>(whole(limit / 4), unit)));
  uint64_t seen = progress_.load(std::memory_order_seq_cst);
  for (int idle = 0;;) {
    if (reserve(pages)) {
      if (over_memory_limit() && !reclaim_kicked_.exchange(true, std::memory_order_relaxed))
        kick_flusher();  // past the background mark
      return pages;
    }
    // Direct reclaim (R9: try-locks and rechecks; safe under page locks).
    // What it freed may go to another fill first: then look again (the
    // engine progressed: no round is lost, and no fill goes over for it).
    // (The extra pages are for 4 KiB frames: with 2 MiB ones they would
    // round up to one more frame.)
    if (reclaim(pages - std::min(pages, room()) + (unit == 1 ? kDirectReclaimExtra : 0)) > 0)
      continue;
    // Nothing freed: the cache is locked, dirty or under write-back, or
    // another thread is reclaiming the same File right now. What fits now,
    // at least `min`: a smaller fill rather than a wait.
    for (uint64_t g = whole(std::min(room(), pages)); g > 0 && g >= min;
         g = whole(std::min(room(), pages)))
      if (reserve(g)) return g;
    // Over the limit by `min` only: without `may_wait` (the caller holds page
    // locks or the invalidate_lock: write-back or a fill it would wait for
    // may need them; faults pass min = 0 there and retry holding none, the
    // kernel's VM_FAULT_RETRY; File::read / write's fills pass their pages),
    // or after kIdleRounds waits in which the engine made no progress at all.
    if (!may_wait || idle >= kIdleRounds) {
      nr_charged.fetch_add(min, std::memory_order_relaxed);
      return min;
    }
    // Wait holding no lock (nothing waits for this thread) for an eviction
    // or a fill's end (note_progress wakes it), at most kWaitRound.
    kick_flusher();  // write-back makes dirty pages evictable
    FL_POINT("wait.memory_limit");  // a sleeping wait (race harness)
    room_waiters_.fetch_add(1, std::memory_order_seq_cst);
    {
      MutexLock g(reclaim_wait_mu_);
      reclaim_cv_.wait_for(reclaim_wait_mu_, kWaitRound,
                           [&] { return progress_.load(std::memory_order_seq_cst) != seen; });
    }
    room_waiters_.fetch_sub(1, std::memory_order_relaxed);
    const uint64_t now = progress_.load(std::memory_order_seq_cst);
    idle = now == seen ? idle + 1 : 0;
    seen = now;
  }
}

void EngineCore::uncharge(uint64_t pages) {
  if (!cfg.memory_limit_pages || !pages) return;
  // release: this fill's pages are in nr_cached before they leave nr_charged
  // (reserve's acquire sees them in one or the other).
  nr_charged.fetch_sub(pages, std::memory_order_release);
  note_progress();  // room for a fill waiting in charge()
}

}  // namespace faultline::detail
