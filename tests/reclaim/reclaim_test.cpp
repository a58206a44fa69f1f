// Reclaim and the memory limit (R9): EngineConfig::memory_limit_pages and
// Engine::reclaim evict clean, unlocked pages not under write-back; every
// evicted page comes back from the backend on the next access. Label: reclaim.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "fixtures.hpp"
#include "testing/testing.hpp"
#include "test_util.hpp"
#include "testing/testing.hpp"
#include "tr_util.hpp"

using namespace faultline;
using ft::kPage;

namespace {

EngineConfig no_flusher() {
  EngineConfig c;
  c.flusher = false;  // reclaim only when the test asks: deterministic counts
  return c;
}

/// The handler that installed a window unlocks its pages just after the
/// faulting access goes on (R1): a read through the API takes every page lock,
/// sleeping, so afterwards reclaim's try-locks meet only what a test arranges.
void settle(File& f) {
  std::vector<std::byte> buf(f.size());
  f.read(0, buf);
}

bool same(const std::byte* p, const std::vector<std::byte>& want) {
  return ft::first_diff(p, want.data(), want.size()) < 0;
}

/// A flusher every 10 ms and a memory limit of `limit` 4 KiB pages.
EngineConfig limited(uint64_t limit) {
  EngineConfig c;
  c.memory_limit_pages = limit;
  c.flush_interval_ms = 10;
  return c;
}

TEST(Reclaim, EvictsCleanPagesThatComeBackFromTheBackend) {
  const uint64_t pages = 64;
  ft::MappedFile t(pages, 7, {.cfg = no_flusher(), .access = Access::ReadOnly});
  auto& [d, path, eng, f, m] = t;
  ft::touch_read(m.data(), pages * kPage);
  settle(f);
  EXPECT_EQ(f.stats().cached_pages, pages);
  EXPECT_EQ(eng.stats().cached_pages, pages);
  // Every page is mapped (referenced): the first lap of the clock gives each a
  // second chance, the second evicts.
  EXPECT_EQ(eng.reclaim(16), 16u);
  EXPECT_EQ(f.stats().cached_pages, pages - 16);
  EXPECT_EQ(eng.stats().cached_pages, pages - 16);
  EXPECT_EQ(f.stats().pages_reclaimed, 16u);
  const uint64_t filled = f.stats().pages_filled;
  EXPECT_TRUE(same(m.data(), ft::pattern(0, pages * kPage, 7)));
  EXPECT_GE(f.stats().pages_filled, filled + 16) << "evicted pages were not read again";
  settle(f);
  // The clock goes on where it stopped: the next pages go next.
  EXPECT_EQ(eng.reclaim(pages * 2), pages);
  EXPECT_EQ(f.stats().cached_pages, 0u);
  std::vector<std::byte> buf(pages * kPage);
  EXPECT_EQ(f.read(0, buf), buf.size());
  EXPECT_EQ(tr::diff(buf, ft::pattern(0, pages * kPage, 7)), "");
}

TEST(Reclaim, StatsCountHitsMissesAndRuns) {
  const uint64_t pages = 8;
  ft::MappedFile t(pages, 6, {.cfg = no_flusher(), .access = Access::ReadOnly});
  auto& [d, path, eng, f, m] = t;
  (void)ft::touch_read(m.data(), kPage);  // one fault: its page came from the backend
  EXPECT_EQ(f.stats().cache_misses, 1u);
  EXPECT_EQ(f.stats().cache_hits, 0u);
  settle(f);  // every page read through the API: all cached by the fault's window
  EXPECT_EQ(f.stats().cache_hits, pages);
  EXPECT_EQ(f.stats().cache_misses, 1u);
  EXPECT_EQ(eng.reclaim(pages), pages);
  // The faulting page (mapped) is sampled first; the ones read around it
  // (cached, never mapped) go at once, contiguous: one punch.
  EXPECT_LE(f.stats().reclaim_runs, 2u) << "contiguous pages are evicted with one punch";
  std::vector<std::byte> one(kPage);
  EXPECT_EQ(f.read(0, one), one.size());  // evicted: read again, a miss
  EXPECT_EQ(f.stats().cache_misses, 2u);
  EXPECT_EQ(eng.stats().cache_hits, pages);
}

TEST(Reclaim, DirtyPagesStay) {
  const uint64_t pages = 16;
  ft::MappedFile t(pages, 3, {.cfg = no_flusher()});
  auto& [d, path, eng, f, m] = t;
  ft::touch_read(m.data(), pages * kPage);
  for (uint64_t i = 0; i < pages; i += 2) m.data()[i * kPage + 1] = std::byte{0x77};
  EXPECT_EQ(f.stats().dirty_pages, pages / 2);
  settle(f);
  EXPECT_EQ(eng.reclaim(pages), pages / 2) << "only the clean pages can go";
  EXPECT_EQ(f.stats().cached_pages, pages / 2);
  auto want = ft::pattern(0, pages * kPage, 3);
  for (uint64_t i = 0; i < pages; i += 2) want[i * kPage + 1] = std::byte{0x77};
  EXPECT_TRUE(same(m.data(), want));
  f.sync();
  EXPECT_EQ(tr::diff(ft::pread_file(path, 0, pages * kPage), want), "");
  // Written back, they are clean: now every page can go (the check above
  // brought the evicted ones back).
  settle(f);
  EXPECT_EQ(f.stats().cached_pages, pages);
  EXPECT_EQ(eng.reclaim(pages), pages);
  EXPECT_TRUE(same(m.data(), want));
}

TEST(Reclaim, PrivateCopiesSurvive) {
  const uint64_t pages = 8;
  ft::MappedFile t(pages, 4,
                   {.cfg = no_flusher(), .access = Access::ReadWrite, .sharing = Sharing::Private});
  auto& [d, path, eng, f, p] = t;
  ft::touch_read(p.data(), pages * kPage);
  p.data()[5] = std::byte{0x42};  // the process's own copy of page 0
  settle(f);
  EXPECT_EQ(eng.reclaim(pages), pages);
  EXPECT_EQ(p.data()[5], std::byte{0x42}) << "reclaim dropped a private copy";
  auto want = ft::pattern(0, pages * kPage, 4);
  want[5] = std::byte{0x42};
  EXPECT_TRUE(same(p.data(), want));
  EXPECT_EQ(tr::diff(ft::pread_file(path, 0, pages * kPage), ft::pattern(0, pages * kPage, 4)), "");
}

TEST(Reclaim, AsyncWrittenPagesAreKeptAndWritten) {
  Engine probe(no_flusher());
  if (!probe.features().wp_async) GTEST_SKIP() << "kernel lacks UFFD_FEATURE_WP_ASYNC";
  const uint64_t pages = 16;
  ft::MappedFile t(pages, 5, {.cfg = no_flusher(), .file = {.dirty_tracking = DirtyTracking::Async}});
  auto& [d, path, eng, f, m] = t;
  ft::touch_read(m.data(), pages * kPage);
  m.data()[3 * kPage] = std::byte{0x33};  // no event: only the PTE knows
  EXPECT_EQ(f.stats().dirty_pages, 0u);
  settle(f);
  EXPECT_EQ(eng.reclaim(pages), pages - 1) << "a written page was evicted";
  EXPECT_EQ(f.stats().dirty_pages, 1u);
  auto want = ft::pattern(0, pages * kPage, 5);
  want[3 * kPage] = std::byte{0x33};
  EXPECT_TRUE(same(m.data(), want));
  f.sync();
  EXPECT_EQ(tr::diff(ft::pread_file(path, 0, pages * kPage), want), "");
}

TEST(Reclaim, MemoryLimitKeepsTheCacheNearIt) {
  const uint64_t pages = 2048, limit = 256;
  ft::MappedFile t(pages, 8, {.cfg = limited(limit), .access = Access::ReadOnly});
  auto& [d, path, eng, f, m] = t;
  EXPECT_TRUE(same(m.data(), ft::pattern(0, pages * kPage, 8)));
  EXPECT_TRUE(ft::eventually([&] { return eng.stats().cached_pages <= limit; }))
      << eng.stats().cached_pages << " pages cached";
  EXPECT_GT(eng.stats().pages_reclaimed, 0u);
  EXPECT_TRUE(same(m.data(), ft::pattern(0, pages * kPage, 8)));
}

TEST(Reclaim, MemoryLimitWritesDirtyPagesBackToFreeThem) {
  const uint64_t pages = 2048, limit = 256;
  ft::MappedFile t(pages, 9, {.cfg = limited(limit)});
  auto& [d, path, eng, f, m] = t;
  for (uint64_t i = 0; i < pages; ++i) m.data()[i * kPage + 9] = static_cast<std::byte>(i);
  EXPECT_TRUE(ft::eventually([&] { return eng.stats().cached_pages <= limit; }))
      << eng.stats().cached_pages << " pages cached, " << eng.stats().dirty_pages << " dirty";
  auto want = ft::pattern(0, pages * kPage, 9);
  for (uint64_t i = 0; i < pages; ++i) want[i * kPage + 9] = static_cast<std::byte>(i);
  EXPECT_TRUE(same(m.data(), want));
  f.sync();
  EXPECT_EQ(tr::diff(ft::pread_file(path, 0, pages * kPage), want), "");
}

// Issue 16: the limit bounds frames plus what the engine makes the kernel
// cache, for any number of faulting threads. A cold file 8x the limit, random
// touches from 4, then 16 threads (the same 1600 touches).
TEST(Reclaim, LimitBoundsFramesAndKernelCacheWithFaultingThreads) {
  ft::TempDir d;
  const uint64_t limit = 512, pages = 8 * limit;
  const auto path = d.make_file("ooc", pages * kPage, 10);
  for (const uint32_t threads : {4u, 16u}) {
    SCOPED_TRACE(std::to_string(threads) + " faulting threads");
    ft::drop_cache(path, pages * kPage);
    ASSERT_EQ(ft::kernel_cached_pages(path, 0, pages * kPage), 0u);
    Engine eng(limited(limit));
    File f = eng.open(path, /*writable=*/false);
    Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
    std::atomic<uint64_t> bad{0};
    std::vector<std::thread> ts;
    for (uint32_t t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
        for (uint32_t i = 0; i < 1600 / threads; ++i) {
          x ^= x << 13, x ^= x >> 7, x ^= x << 17;
          const uint64_t off = (x % pages) * kPage + (x >> 40) % kPage;
          if (m.data()[off] != ft::pat(off, 10)) bad.fetch_add(1);
        }
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(bad.load(), 0u);
    const Stats s = eng.stats();
    EXPECT_GT(s.pages_reclaimed, 0u);
    // Frames (what the engine charges): the limit exactly. Each fault
    // charges its frames before any lock and, with no room, reclaims or
    // waits holding none (DESIGN R9); it used to go over by a page after
    // 100 waits, which other threads' failed reclaims cut short (514-518 of
    // 512 in 6 of 40 runs).
    EXPECT_LE(s.peak_cached_pages, limit) << "the engine's cache passed its limit";
    // The kernel's cache of the file: none. Every fill reads a range the
    // kernel does not cache with O_DIRECT (the file backend), so the engine
    // adds nothing to it, and frames + kernel cache stay within the limit
    // (issue 16 allows 5% more). (A file system refusing O_DIRECT would
    // splice the fills through the kernel's cache: most of the file.)
    EXPECT_EQ(ft::kernel_cached_pages(path, 0, pages * kPage), 0u)
        << "the kernel cached the file beside the engine's frames";
  }
}


/// One page per fault and no read-around: the tests below count faults.
EngineConfig one_page_faults(uint64_t limit = 0) {
  EngineConfig c = no_flusher();
  c.memory_limit_pages = limit;
  c.fault_around_pages = 1;
  c.read_around_pages = 1;
  return c;
}

uint8_t load_byte(const std::byte* p) { return static_cast<uint8_t>(*static_cast<const volatile std::byte*>(p)); }

// A fault whose page was cached at its look charges nothing; evicted before
// its page lock, the page needs room under that lock. With none (the rest of
// the cache is dirty: nothing to evict), the fault must not fill over the
// limit: it drops its locks, waits for room and faults again (the kernel's
// VM_FAULT_RETRY). It used to charge the page under the lock without waiting,
// over the limit by one page per such fault.
TEST(Reclaim, FaultOnAPageEvictedBeforeItsLockWaitsForRoom) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  namespace fts = faultline::testing;
  ft::TempDir d;
  const uint64_t limit = 8;
  const auto path = d.make_file("r", 2 * limit * kPage, 12);
  Engine eng(one_page_faults(limit));
  File f = eng.open(path);
  std::vector<std::byte> buf(kPage);
  f.read(0, buf);  // page 0 cached, not mapped: its fault charges nothing
  Mapping m = f.map(0, kPage, Access::ReadOnly);
  fts::reset();
  fts::arm("fault.before_lock");
  std::atomic<bool> done{false};
  uint8_t got = 0;
  std::thread t([&] {
    got = load_byte(m.data());
    done = true;
    fts::notify();
  });
  ASSERT_TRUE(fts::wait_parked("fault.before_lock"));
  for (int i = 0; i < 4 && f.stats().cached_pages > 0; ++i) eng.reclaim(1);
  ASSERT_EQ(f.stats().cached_pages, 0u) << "page 0 was not evicted";
  for (uint64_t pg = 1; pg <= limit; ++pg) f.write(pg * kPage, buf);  // dirty: not evictable
  ASSERT_EQ(eng.stats().cached_pages, limit);
  fts::release("fault.before_lock");
  // The fault finds no room under its lock: it must wait for room holding none.
  EXPECT_EQ(fts::wait_reached("wait.memory_limit", 1, [&] { return done.load(); }),
            fts::Reach::reached)
      << "the fault filled its page without room";
  f.sync();  // clean: reclaim can make room
  t.join();
  fts::reset();
  EXPECT_EQ(got, static_cast<uint8_t>(ft::pat(0, 12)));
  EXPECT_LE(eng.stats().peak_cached_pages, limit) << "the engine's cache passed its limit";
#endif
}

// Issue 16 item 4: a page reclaim has looked at is sampled (unmapped from
// every view, its frame kept) before it is judged unused; touched afterwards
// it faults (MINOR, a hit) and is kept, and the untouched pages go. With the
// old clock a mapped page touched without a fault never looked used.
TEST(Reclaim, PageTouchedAfterBeingSampledIsKept) {
  const uint64_t pages = 16;
  ft::MappedFile t(pages, 11, {.cfg = one_page_faults(), .access = Access::ReadOnly});
  auto& [d, path, eng, f, m] = t;
  // Descending: no sequential stream (its pages would go to the stream queue).
  for (uint64_t i = pages; i-- > 0;) (void)load_byte(m.data() + i * kPage);
  settle(f);  // every page read through the API: accessed
  EXPECT_EQ(eng.reclaim(1), 1u);
  const Stats s1 = f.stats();
  EXPECT_EQ(s1.pages_sampled, pages) << "every mapped page is sampled before one is evicted";
  EXPECT_EQ(s1.cached_pages, pages - 1);
  // Pages 1..7 touched after the sampling: each access faults (its PTE is
  // gone), a hit; page 0 was evicted: a miss. (Descending: no sequential
  // stream, whose readahead would map the next pages before their touch.)
  for (uint64_t i = 8; i-- > 0;)
    EXPECT_EQ(load_byte(m.data() + i * kPage), static_cast<uint8_t>(ft::pat(i * kPage, 11)));
  const Stats s2 = f.stats();
  EXPECT_EQ(s2.minor_faults - s1.minor_faults, 7u) << "the sampled pages were still mapped";
  EXPECT_EQ(s2.cache_hits - s1.cache_hits, 7u);
  EXPECT_EQ(s2.cache_misses - s1.cache_misses, 1u);
  // Eight to go: the untouched ones (8..15), not the touched ones.
  EXPECT_EQ(eng.reclaim(8), 8u);
  EXPECT_EQ(f.stats().cached_pages, 8u);
  for (uint64_t i = 8; i-- > 0;) (void)load_byte(m.data() + i * kPage);
  EXPECT_EQ(f.stats().cache_misses, s2.cache_misses) << "reclaim evicted pages touched since it sampled them";
  EXPECT_TRUE(same(m.data(), ft::pattern(0, pages * kPage, 11)));
}

// Issue 16 review: sampling zapped with MADV_DONTNEED, which refuses a
// VM_LOCKED range (a view the user mlock()ed) with EINVAL: such a view's
// pages were never unmapped, so their use went unseen. MADV_DONTNEED_LOCKED
// zaps them: each touch after the sampling faults (MINOR, a hit).
TEST(Reclaim, PagesOfAnMlockedViewAreSampled) {
  const uint64_t pages = 16;
  ft::MappedFile t(pages, 19, {.cfg = one_page_faults(), .access = Access::ReadOnly});
  auto& [d, path, eng, f, m] = t;
  for (uint64_t i = pages; i-- > 0;) (void)load_byte(m.data() + i * kPage);  // descending: no stream
  ASSERT_EQ(::mlock(m.data(), pages * kPage), 0) << std::strerror(errno);
  settle(f);
  EXPECT_EQ(eng.reclaim(1), 1u);
  const Stats s1 = f.stats();
  EXPECT_EQ(s1.pages_sampled, pages);
  uint64_t bad = 0;
  for (uint64_t i = pages; i-- > 0;)  // descending: no stream (it would map several per fault)
    bad += load_byte(m.data() + i * kPage) != static_cast<uint8_t>(ft::pat(i * kPage, 19));
  const Stats s2 = f.stats();
  EXPECT_EQ(s2.minor_faults - s1.minor_faults, pages - 1) << "the mlocked view was not sampled";
  EXPECT_EQ(s2.cache_misses - s1.cache_misses, 1u);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(::munlock(m.data(), pages * kPage), 0);
}

// The sampling zaps of one reclaim call go to the kernel together (one
// process_madvise(MADV_DONTNEED) for many ranges where the kernel allows it,
// else one madvise each): pages apart from each other, one range each, are
// all unmapped — each later touch faults (MINOR, a hit).
TEST(Reclaim, SampledPagesApartAreAllUnmapped) {
  ft::TempDir d;
  const uint64_t pages = 64;
  const auto path = d.make_file("r", pages * kPage, 13);
  Engine eng(one_page_faults());
  File f = eng.open(path);
  Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
  std::vector<std::byte> one(kPage);
  for (uint64_t i = 0; i < pages; i += 2) (void)load_byte(m.data() + i * kPage);
  for (uint64_t i = 0; i < pages; i += 2) f.read(i * kPage, one);  // settle: accessed
  const uint64_t cached = pages / 2;
  ASSERT_EQ(f.stats().cached_pages, cached);
  EXPECT_EQ(eng.reclaim(1), 1u);
  const Stats s1 = f.stats();
  EXPECT_EQ(s1.pages_sampled, cached) << "every mapped page is sampled before one is evicted";
  for (uint64_t i = pages; i >= 2;) {
    i -= 2;
    EXPECT_EQ(load_byte(m.data() + i * kPage), static_cast<uint8_t>(ft::pat(i * kPage, 13)));
  }
  const Stats s2 = f.stats();
  EXPECT_EQ(s2.minor_faults - s1.minor_faults, cached - 1) << "a sampled page stayed mapped";
  EXPECT_EQ(s2.cache_hits - s1.cache_hits, cached - 1);
  EXPECT_EQ(s2.cache_misses - s1.cache_misses, 1u);
}

// A store to a sampled page (its PTE zapped: the store faults as MINOR|WRITE)
// dirties it under the lock (R6); reclaim then keeps it until it is written.
TEST(Reclaim, StoreToASampledPageIsNeverDropped) {
  const uint64_t pages = 8;
  ft::MappedFile t(pages, 12, {.cfg = one_page_faults()});
  auto& [d, path, eng, f, m] = t;
  ft::touch_read(m.data(), pages * kPage);
  settle(f);
  EXPECT_EQ(eng.reclaim(1), 1u);  // samples the mapped pages, evicts one
  EXPECT_GT(f.stats().pages_sampled, 0u);
  m.data()[5 * kPage + 3] = std::byte{0x5c};
  EXPECT_EQ(f.stats().dirty_pages, 1u);
  EXPECT_LE(eng.reclaim(pages), pages - 2) << "only the clean pages can go";
  EXPECT_EQ(f.stats().dirty_pages, 1u) << "reclaim dropped a dirty page";
  auto want = ft::pattern(0, pages * kPage, 12);
  want[5 * kPage + 3] = std::byte{0x5c};
  EXPECT_TRUE(same(m.data(), want));
  f.sync();
  EXPECT_EQ(tr::diff(ft::pread_file(path, 0, pages * kPage), want), "");
}

// Issue 16 item 4: a hot set touched again and again (mapped: no faults
// between samples) beside a scan of a file six times the limit. The scan's
// pages pass through the small queue and leave; the hot pages, seen touched
// after a sample, move to the main queue and stay: after the first lap no hot
// touch misses. (The old clock saw no use of a mapped page: every lap of
// its hand evicted the hot set with the scan.)
TEST(Reclaim, HotSetSurvivesAScan) {
  const uint64_t limit = 512, hot = 64, scan_first = 1024, pages = scan_first + 6 * limit;
  ft::MappedFile t(pages, 13,
                   {.cfg = one_page_faults(limit), .access = Access::ReadOnly, .writable = false});
  auto& [d, path, eng, f, m] = t;
  const uint64_t chunk = 64;  // scan pages per round
  const uint64_t rounds = (pages - scan_first) / (2 * chunk);
  uint64_t hot_misses_late = 0, bad = 0;
  for (uint64_t r = 0; r < rounds; ++r) {
    const uint64_t before = f.stats().cache_misses;
    for (uint64_t h = 0; h < hot; ++h) {  // scattered: one page of every 16
      const uint64_t off = h * 16 * kPage;
      bad += load_byte(m.data() + off) != static_cast<uint8_t>(ft::pat(off, 13));
    }
    if (r >= rounds / 2) hot_misses_late += f.stats().cache_misses - before;
    // Every second page of the scan range (no sequential readahead: each
    // touch is one miss, charged, reclaiming directly on the fault path).
    for (uint64_t k = 0; k < chunk; ++k) {
      const uint64_t off = (scan_first + 2 * (r * chunk + k)) * kPage;
      bad += load_byte(m.data() + off) != static_cast<uint8_t>(ft::pat(off, 13));
    }
  }
  const Stats s = eng.stats();
  EXPECT_EQ(bad, 0u);
  EXPECT_LE(s.peak_cached_pages, limit);
  EXPECT_GT(s.pages_reclaimed, 2 * limit);
  EXPECT_GT(s.pages_sampled, 0u);
  EXPECT_EQ(hot_misses_late, 0u) << "the scan flushed the hot set";
}

// Issue 16 item 4: a hot set cached before the first eviction sits in the
// small queue, mapped and unjudged. The flusher's aging (past 3/4 of the
// limit) samples it ahead of reclaim; touched afterwards (MINOR faults: each
// page shows its use), it moves to main at the first eviction and a scan of
// four times the limit, with no hot touch during it, leaves it cached.
// Without aging the scan's reclaim samples the hot pages itself and evicts
// them one trip through small later, untouched: every hot page misses.
TEST(Reclaim, HotSetCachedBeforeTheFirstEvictionSurvivesAScan) {
  ft::TempDir d;
  const uint64_t limit = 512, hot = 128, filler = 300, scan = 4 * limit;
  const uint64_t filler_first = hot * 16, scan_first = filler_first + 2 * filler;
  const uint64_t pages = scan_first + 2 * scan;
  const auto path = d.make_file("r", pages * kPage, 14);
  Engine eng(one_page_faults(limit));
  File f = eng.open(path, /*writable=*/false);
  Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
  uint64_t bad = 0;
  auto touch = [&](uint64_t pg) {
    bad += load_byte(m.data() + pg * kPage) != static_cast<uint8_t>(ft::pat(pg * kPage, 14));
  };
  for (uint64_t h = 0; h < hot; ++h) touch(h * 16);  // scattered: one page of every 16
  for (uint64_t k = 0; k < filler; ++k) touch(filler_first + 2 * k);  // no readahead
  ASSERT_EQ(f.stats().cached_pages, hot + filler);
  ASSERT_GT(hot + filler, limit - limit / 4) << "past the aging mark";
  ASSERT_EQ(f.stats().pages_reclaimed, 0u) << "no eviction yet";
  // Aging samples every mapped page; a page its handler has not unlocked yet
  // is skipped (try-lock) and taken by the next call.
  for (int i = 0; i < 2000 && f.stats().pages_sampled < hot + filler; ++i) {
    faultline::testing::FileAccess::age(f, limit);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a condition, polled
  }
  EXPECT_EQ(f.stats().pages_sampled, hot + filler);
  const Stats s1 = f.stats();
  for (uint64_t h = 0; h < hot; ++h) touch(h * 16);
  const Stats s2 = f.stats();
  EXPECT_EQ(s2.minor_faults - s1.minor_faults, hot) << "the aged hot pages were still mapped";
  for (uint64_t k = 0; k < scan; ++k) touch(scan_first + 2 * k);  // no readahead: a miss each
  const Stats s3 = f.stats();
  EXPECT_GT(s3.pages_reclaimed, scan - limit);
  for (uint64_t h = 0; h < hot; ++h) touch(h * 16);
  EXPECT_EQ(f.stats().cache_misses - s3.cache_misses, 0u) << "the scan flushed the hot set";
  EXPECT_EQ(bad, 0u);
  EXPECT_LE(eng.stats().peak_cached_pages, limit);
}

// Issue 16 item 4 (bench --out-of-core scan+hot): a scan's pages are read by
// a stream (PG_stream) and evicted first, oldest first, unsampled while the
// scan's own pressure lasts (stream pages cached past 3/4 of the limit); a hot
// set cached beside it is neither evicted nor sampled (each sample cost the
// hot thread a minor fault: the hot set sat at the head of the small queue,
// which reclaim and aging sampled, then evicted what the thread had not
// touched again).
TEST(Reclaim, AScanEvictsItsOwnPagesAndLeavesTheHotSetMapped) {
  ft::TempDir d;
  const uint64_t limit = 512, hot = 128, scan = 4 * limit;
  const uint64_t scan_first = hot * 16, pages = scan_first + scan;
  const auto path = d.make_file("r", pages * kPage, 17);
  EngineConfig c = one_page_faults(limit);
  c.readahead_max_pages = 32;
  Engine eng(c);
  File f = eng.open(path, /*writable=*/false);
  Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
  uint64_t bad = 0;
  auto touch = [&](uint64_t pg) {
    bad += load_byte(m.data() + pg * kPage) != static_cast<uint8_t>(ft::pat(pg * kPage, 17));
  };
  for (uint64_t h = 0; h < hot; ++h) touch(h * 16);  // scattered: no stream
  for (uint64_t k = 0; k < scan; ++k) touch(scan_first + k);  // a stream
  const Stats s1 = f.stats();
  EXPECT_GT(s1.pages_reclaimed, scan - limit);
  // Sampled at most: the scan's pages cached before the 3/4 mark (no credit).
  EXPECT_LE(s1.pages_sampled, limit - limit / 4 - hot);
  for (uint64_t h = 0; h < hot; ++h) touch(h * 16);
  const Stats s2 = f.stats();
  EXPECT_EQ(s2.cache_misses - s1.cache_misses, 0u) << "the scan flushed the hot set";
  EXPECT_EQ(s2.minor_faults - s1.minor_faults, 0u) << "the scan had the hot set sampled";
  EXPECT_EQ(bad, 0u);
  EXPECT_LE(eng.stats().peak_cached_pages, limit);
}

// A file read through once by a stream with no pressure (no credit), then
// used in place (mapped: no faults) while `pressure` (page k of `other`, in
// order) needs room: returns the misses of those uses. The load's view ends
// with it (no readahead past it, which would run, and reclaim, behind the
// touches that follow); the pressure has its own view.
struct ReadOnceThenUse {
  static constexpr uint64_t kLimit = 512, kLoad = 256, kOther = 2 * 4 * kLimit;
  uint64_t use_misses = 0, bad = 0, reclaimed = 0, peak = 0;
  ReadOnceThenUse(uint8_t seed, const std::function<uint64_t(uint64_t)>& pressure, uint64_t steps) {
    ft::TempDir d;
    const auto path = d.make_file("r", (kLoad + kOther) * kPage, seed);
    EngineConfig c = one_page_faults(kLimit);
    c.readahead_max_pages = 32;
    Engine eng(c);
    File f = eng.open(path, /*writable=*/false);
    Mapping ml = f.map(0, kLoad * kPage, Access::ReadOnly);
    Mapping mo = f.map(kLoad * kPage, kOther * kPage, Access::ReadOnly);
    auto touch = [&](uint64_t pg) {
      const std::byte* a = pg < kLoad ? ml.data() + pg * kPage : mo.data() + (pg - kLoad) * kPage;
      bad += load_byte(a) != static_cast<uint8_t>(ft::pat(pg * kPage, seed));
    };
    for (uint64_t k = 0; k < kLoad; ++k) touch(k);  // read through once: a stream
    auto use = [&] {  // a quarter of it, in place (page 0, the view's first fault, is no stream's)
      const uint64_t before = f.stats().cache_misses;
      for (uint64_t k = 1; k < kLoad; k += 4) touch(k);
      use_misses += f.stats().cache_misses - before;
    };
    use();
    for (uint64_t k = 0; k < steps; ++k) {
      touch(kLoad + pressure(k));
      use();
    }
    reclaimed = f.stats().pages_reclaimed;
    peak = eng.stats().peak_cached_pages;
  }
};

// The other side of the stream queue's credit: the file read through once
// keeps the pages it uses when pressure comes later: they are sampled before
// they are judged, as small-queue pages are, not evicted unseen as a scan's
// would be. Pressure: misses, no stream.
TEST(Reclaim, AFileReadOnceThenUsedInPlaceKeepsWhatItUses) {
  const uint64_t misses = 4 * ReadOnceThenUse::kLimit;
  const ReadOnceThenUse r(18, [](uint64_t k) { return 2 * k; }, misses);
  EXPECT_GT(r.reclaimed, misses - ReadOnceThenUse::kLimit);
  EXPECT_EQ(r.use_misses, 0u) << "used pages were evicted unseen";
  EXPECT_EQ(r.bad, 0u);
  EXPECT_LE(r.peak, ReadOnceThenUse::kLimit);
}

// The credit is per page (PG_credit: a stream page cached past 3/4 of the
// limit): a later scan of another part of the same File, whose pages are
// cached under pressure, cannot let the pages read before it go unseen (a
// per-File credit count let it: review of the stream queue).
TEST(Reclaim, AFileReadOnceThenUsedInPlaceThenAScanOfAnotherPartCannotEvictIt) {
  const uint64_t scan = 4 * ReadOnceThenUse::kLimit;
  const ReadOnceThenUse r(20, [](uint64_t k) { return k; }, scan);
  EXPECT_GT(r.reclaimed, scan - ReadOnceThenUse::kLimit);
  EXPECT_EQ(r.use_misses, 0u) << "used pages were evicted unseen";
  EXPECT_EQ(r.bad, 0u);
  EXPECT_LE(r.peak, ReadOnceThenUse::kLimit);
}

// Issue 16 review: aging (FileImpl::age, as reclaim's sampling) counted in
// pages_sampled, after try-locking it for a zap, a page no view mapped any
// more (its view unmapped). A page in no shared view is marked sampled (its
// next access faults anyway) but not counted: here only the pages of the view
// still mapped, each of which then faults again.
TEST(Reclaim, AgingCountsOnlyPagesAViewStillMaps) {
  ft::TempDir d;
  const uint64_t pages = 32, half = pages / 2, want = half / 2;
  const auto path = d.make_file("r", pages * kPage, 16);
  Engine eng(one_page_faults());
  File f = eng.open(path, /*writable=*/false);
  Mapping kept = f.map(half * kPage, half * kPage, Access::ReadOnly);
  {
    Mapping gone = f.map(0, half * kPage, Access::ReadOnly);
    for (uint64_t i = 0; i < half; i += 2) (void)load_byte(gone.data() + i * kPage);  // no stream
    for (uint64_t i = 0; i < half; i += 2) (void)load_byte(kept.data() + i * kPage);
  }  // unmapped
  ASSERT_EQ(f.stats().cached_pages, 2 * want);
  ASSERT_EQ(f.stats().pages_sampled, 0u);
  // A page its handler has not unlocked yet is skipped (try-lock) and taken
  // by the next call.
  for (int i = 0; i < 2000 && f.stats().pages_sampled < want; ++i) {
    faultline::testing::FileAccess::age(f, pages);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a condition, polled
  }
  const Stats s1 = f.stats();
  EXPECT_EQ(s1.pages_sampled, want) << "pages no view maps were counted as sampled";
  for (uint64_t i = 0; i < half; i += 2)
    EXPECT_EQ(load_byte(kept.data() + i * kPage), static_cast<uint8_t>(ft::pat((half + i) * kPage, 16)));
  EXPECT_EQ(f.stats().minor_faults - s1.minor_faults, want) << "a sampled page stayed mapped";
}

// Issue 16 review: each flusher pass of aging copied the first limit/4
// entries of the small queue under lru_mu_, however many of them it had
// looked at before. It goes on from where it stopped (a cursor): a pass over
// a queue already aged copies nothing (schedule point age.batch: one hit per
// batch copied), and entries queued since are the next pass's.
TEST(Reclaim, AgingGoesOnWhereItStopped) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  namespace fts = faultline::testing;
  ft::TempDir d;
  const uint64_t pages = 64, half = pages / 2;
  const auto path = d.make_file("r", pages * kPage, 17);
  Engine eng(one_page_faults());
  File f = eng.open(path, /*writable=*/false);
  Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
  auto age_all = [&](uint64_t n) {
    // A page its handler has not unlocked yet is taken by the next call.
    for (int i = 0; i < 2000 && f.stats().pages_sampled < n; ++i) {
      faultline::testing::FileAccess::age(f, pages);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a condition, polled
    }
    return f.stats().pages_sampled;
  };
  for (uint64_t i = 0; i < half; i += 2) (void)load_byte(m.data() + i * kPage);  // no stream
  ASSERT_EQ(age_all(half / 2), half / 2);
  fts::reset();
  faultline::testing::FileAccess::age(f, pages);
  EXPECT_EQ(fts::hits("age.batch"), 0) << "a pass copied entries it had aged already";
  for (uint64_t i = half; i < pages; i += 2) (void)load_byte(m.data() + i * kPage);
  EXPECT_EQ(age_all(half), half) << "the entries queued since were not aged";
  fts::reset();
#endif
}

// Issue 16 review: the queue's cleanup of stale entries renumbers it and
// starts aging over at the head; a pass in progress then set the cursor to
// its own position in the old numbering, past entries no pass had looked at,
// and they were never aged. The pass is parked at age.batch while a punch
// leaves every entry stale and the next fill renumbers; the pages cached
// after that must all be aged.
TEST(Reclaim, AgingStartsOverWhenTheQueueIsRenumberedMidPass) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  namespace fts = faultline::testing;
  ft::TempDir d;
  const uint64_t pages = 4096, old_pages = 1200, fresh = 100;
  const auto path = d.make_file("r", pages * kPage, 23);
  Engine eng(one_page_faults());
  File f = eng.open(path, /*writable=*/true);
  Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
  // Every other page: no sequential stream (small queue, not stream).
  for (uint64_t i = 0; i < 2 * old_pages; i += 2) (void)load_byte(m.data() + i * kPage);
  fts::reset();
  fts::arm("age.batch");
  std::thread ager([&] { faultline::testing::FileAccess::age(f, pages); });
  if (!fts::wait_parked("age.batch")) {  // the pass copied its first batch
    fts::release("age.batch");
    ager.join();
    FAIL() << "the aging pass never reached age.batch";
  }
  f.punch_hole(0, 2 * old_pages * kPage);       // every entry stale
  (void)load_byte(m.data() + (2 * old_pages + 1) * kPage);  // its fill renumbers the queue
  const uint64_t sampled = f.stats().pages_sampled;
  fts::release("age.batch");
  ager.join();
  for (uint64_t i = 0; i < fresh; ++i) (void)load_byte(m.data() + (2 * old_pages + 3 + 2 * i) * kPage);
  // A page its handler has not unlocked yet is taken by the next call.
  for (int i = 0; i < 2000 && f.stats().pages_sampled - sampled < fresh + 1; ++i) {
    faultline::testing::FileAccess::age(f, pages);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // a condition, polled
  }
  EXPECT_EQ(f.stats().pages_sampled - sampled, fresh + 1)
      << "pages queued after the renumbering were skipped by aging";
  fts::reset();
#endif
}

// Issue 16 item 1, write-back: stores all over a cold file 8x the limit are
// written back (by reclaim and by sync) with O_DIRECT where the kernel does
// not cache the range, so the kernel does not cache the file beside the
// engine's frames; and every store reaches the file.
TEST(Reclaim, WriteBackDoesNotMakeTheKernelCacheTheFile) {
  ft::TempDir d;
  const uint64_t limit = 512, pages = 8 * limit;
  const auto path = d.make_file("ooc-w", pages * kPage, 11);
  ft::drop_cache(path, pages * kPage);
  ASSERT_EQ(ft::kernel_cached_pages(path, 0, pages * kPage), 0u);
  std::vector<uint64_t> stored;
  {
    Engine eng(limited(limit));
    File f = eng.open(path);
    Mapping m = f.map(0, pages * kPage);
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < 1500; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const uint64_t pg = x % pages;
      m.data()[pg * kPage + 5] = std::byte{0xa5};
      stored.push_back(pg);
    }
    f.sync();
    const Stats s = eng.stats();
    EXPECT_GT(s.pages_reclaimed, 0u);
    EXPECT_LE(s.peak_cached_pages, limit) << "the engine's cache passed its limit";
    EXPECT_LE(ft::kernel_cached_pages(path, 0, pages * kPage), limit / 20)
        << "write-back made the kernel cache the file beside the engine's frames";
  }
  for (const uint64_t pg : stored)
    ASSERT_EQ(ft::pread_file(path, pg * kPage + 5, 1)[0], std::byte{0xa5}) << "page " << pg;
}

}  // namespace
