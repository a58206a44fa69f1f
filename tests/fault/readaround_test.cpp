// Adaptive fault-around / read-around (issue 16 item 2; DESIGN section 2
// "Adaptive read-around"): random faults shrink a view's window to the
// faulting page after MMAP_LOTSAMISS misses, local access keeps reading
// around, sequential streams still grow, advice overrides. Counted by the
// backend's bytes read (Stats::bytes_read) and the read-around counters.
// Label: fault.
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "test_util.hpp"

using namespace faultline;
using ft::kPage;

namespace {

constexpr uint64_t kWindow = 16;   // fault_around_pages of these tests
constexpr uint64_t kWindows = 400;
constexpr uint64_t kPages = kWindow * kWindows;
constexpr uint64_t kLotsaMiss = 100;  // the kernel's MMAP_LOTSAMISS (kMmapLotsaMiss)

EngineConfig config() {
  EngineConfig cfg;
  cfg.fault_threads = 1;
  // A fixed pool: the counts below assume each fault is served to its end
  // before the next one (the pool would start a second handler during a fill).
  cfg.max_fault_threads = 1;
  cfg.fault_around_pages = kWindow;
  cfg.read_around_pages = 0;
  cfg.readahead_max_pages = 64;
  cfg.flusher = false;
  return cfg;
}

struct Obj {
  std::shared_ptr<Backend> be;
  File f;
  Mapping m;
  std::vector<std::byte> want;
  Obj(Engine& eng, const std::string& name) {
    static std::atomic<int> n{0};
    be = make_memory_backend("readaround_" + name + std::to_string(::getpid()) + "_" +
                                 std::to_string(n++),
                             0);
    want = ft::pattern(0, kPages * kPage);
    EXPECT_EQ(0, be->write(0, want));
    f = eng.open(be);
    m = f.map(0, kPages * kPage, Access::ReadOnly);
  }
  /// Loads one byte of page pg and checks it.
  void touch(uint64_t pg) {
    const uint64_t off = pg * kPage + 7;
    const std::byte got = static_cast<volatile const std::byte*>(m.data())[off];
    EXPECT_EQ(got, want[off]) << "page " << pg;
  }
  uint64_t faults() const {
    const Stats s = f.stats();
    return s.missing_faults + s.minor_faults;
  }
};

/// Window order where consecutive windows are never neighbours (no fault
/// continues the last window: nothing looks sequential).
std::vector<uint64_t> scattered_windows() {
  std::vector<uint64_t> w(kWindows);
  for (uint64_t i = 0; i < kWindows; ++i) w[i] = (i * 7) % kWindows;  // 7 coprime to 400
  return w;
}

TEST(ReadAround, RandomFaultsShrinkTheWindowToTheFaultingPage) {
  Engine eng(config());
  Obj o(eng, "random");
  // One page in the middle of each window, each window once: every fault is
  // a miss. The first kLotsaMiss read their window (the page is mapped, the
  // neighbours stay cached as probes), the rest read one page.
  for (uint64_t w : scattered_windows()) o.touch(w * kWindow + kWindow / 2);
  Stats s = o.f.stats();
  EXPECT_EQ(s.readaround_misses, kWindows);
  EXPECT_EQ(s.readaround_hits, 0u);
  EXPECT_EQ(s.readaround_off, kWindows - kLotsaMiss);
  EXPECT_EQ(s.pages_read_around, kLotsaMiss * (kWindow - 1));
  EXPECT_EQ(s.bytes_read, (kLotsaMiss * kWindow + (kWindows - kLotsaMiss)) * kPage)
      << "before: every random fault read its whole window, " << kWindows * kWindow * kPage;
  EXPECT_EQ(s.pages_fault_around, 0u) << "no neighbour was cached before its window was read";
  // A probe left by the first fault: touching it is a hit (one fault, no
  // read), which maps its whole cached window.
  const uint64_t w0 = scattered_windows()[0];
  const uint64_t faults = o.faults();
  for (uint64_t k = 0; k < kWindow; ++k) o.touch(w0 * kWindow + k);
  s = o.f.stats();
  EXPECT_EQ(o.faults(), faults + 1);
  EXPECT_EQ(s.readaround_hits, 1u);
  EXPECT_EQ(s.bytes_read, (kLotsaMiss * kWindow + (kWindows - kLotsaMiss)) * kPage);
}

TEST(ReadAround, LocalAccessKeepsReadingAround) {
  Engine eng(config());
  Obj o(eng, "local");
  // Every page of a window in a random order, window after window: a miss
  // reads the window, the next touch in it is a hit that maps the rest.
  std::mt19937 rng(7);
  for (uint64_t w : scattered_windows()) {
    std::vector<uint64_t> order(kWindow);
    std::iota(order.begin(), order.end(), w * kWindow);
    std::shuffle(order.begin(), order.end(), rng);
    for (uint64_t pg : order) o.touch(pg);
  }
  const Stats s = o.f.stats();
  EXPECT_EQ(s.readaround_off, 0u);
  EXPECT_EQ(s.readaround_misses, kWindows);
  EXPECT_EQ(s.readaround_hits, kWindows);
  EXPECT_EQ(o.faults(), 2 * kWindows) << "one page per fault would be " << kPages;
  EXPECT_EQ(s.bytes_read, kPages * kPage) << "each page read once";
}

// A stream position per faulting thread (the fault's thread id): two threads
// each scanning their own part of one view, in turns, each keep their
// stream. With one position per view each thread's fault at its window's end
// found the other's position there, and every window was a random fault's.
TEST(ReadAround, ThreadsScanningOneViewEachKeepTheirStream) {
  Engine eng(config());
  // The faulting thread's id comes with UFFD_FEATURE_THREAD_ID (Linux 4.14);
  // without it every thread shares the view's one position.
  if (!(eng.features().uffd_features & UFFD_FEATURE_THREAD_ID))
    GTEST_SKIP() << "no UFFD_FEATURE_THREAD_ID: one stream position per view";
  Obj o(eng, "threads");
  const uint64_t len = 8 * kWindow;
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  auto scan = [&](int me, uint64_t first) {
    for (uint64_t pg = first; pg < first + len; ++pg) {
      std::unique_lock g(mu);
      cv.wait(g, [&] { return turn == me; });
      o.touch(pg);
      turn = 1 - me;
      cv.notify_all();
    }
  };
  std::thread a(scan, 0, 0), b(scan, 1, kPages / 2);
  a.join();
  b.join();
  const Stats s = o.f.stats();
  EXPECT_EQ(s.readaround_misses, 2u) << "one random fault per thread, then each its stream";
  // (Counted after a readahead unlocks its pages: maybe after the joins.)
  EXPECT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages > 0; }));
}

TEST(ReadAround, SequentialStreamGrowsAfterTheWindowShrank) {
  Engine eng(config());
  Obj o(eng, "stream");
  // Shrink: random misses in the first half of the file.
  for (uint64_t i = 0; i < 2 * kLotsaMiss; ++i) o.touch(((i * 7) % (kWindows / 2)) * kWindow + 3);
  ASSERT_GT(o.f.stats().readaround_off, 0u);
  // Then scan the second half: the second fault continues the first one's
  // page and the window grows to readahead_max_pages (64) with readahead.
  const Stats a = o.f.stats();
  for (uint64_t pg = kPages / 2; pg < kPages; ++pg) o.touch(pg);
  const Stats b = o.f.stats();
  const uint64_t scanned = kPages / 2;
  EXPECT_EQ(b.pages_filled - a.pages_filled, scanned) << "read once, nothing past EOF";
  EXPECT_LT((b.missing_faults + b.minor_faults) - (a.missing_faults + a.minor_faults), scanned / 32)
      << "the stream's windows grew";
}

TEST(ReadAround, AdviceOverridesTheAdaptiveWindow) {
  Engine eng(config());
  {
    // Random: each fault reads its own page from the first fault on.
    Obj o(eng, "adv_random");
    o.m.advise(Advice::Random);
    for (uint64_t i = 0; i < 20; ++i) o.touch(scattered_windows()[i] * kWindow + 5);
    const Stats s = o.f.stats();
    EXPECT_EQ(s.bytes_read, 20 * kPage);
    EXPECT_EQ(s.readaround_misses + s.readaround_hits, 0u) << "advice: no adaptation";
  }
  {
    // Sequential: a lone fault reads readahead_max_pages (and reads ahead),
    // even after the adaptive window has shrunk.
    Obj o(eng, "adv_seq");
    for (uint64_t i = 0; i < 2 * kLotsaMiss; ++i) o.touch(((i * 7) % (kWindows / 2)) * kWindow + 3);
    ASSERT_GT(o.f.stats().readaround_off, 0u);
    o.m.advise(Advice::Sequential);
    const uint64_t before = o.f.stats().pages_filled;
    o.touch(kPages / 2 + 9);  // nothing cached there
    EXPECT_GE(o.f.stats().pages_filled - before, 64u) << "readahead_max_pages at once";
  }
}

}  // namespace
