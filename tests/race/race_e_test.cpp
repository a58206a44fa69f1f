// The race catalogue, reclaim (the memory limit): E1-E3.
#include "race_util.hpp"

namespace race {
namespace ft = faultline::testing;

// The handler that installed page 0 unlocks it just after the access goes
// on (R1): a read takes the page lock, sleeping, so it is free afterwards
// and reclaim's try-lock meets only the race under test.
void settle(fl::File& f) {
  std::vector<std::byte> one(1);
  f.read(0, one);
}

// E1: reclaim picks a clean page; a store dirties it (write-protect fault,
// page_mkwrite, dirty under the lock); reclaim then drops it and punches its
// frame: the store is lost. Closed by R9 (try-lock, recheck clean under it).
TEST_F(RACE_FIXTURE, E1_ReclaimVsStore) {
  auto mem = patterned("E1", 2, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, mem);
  auto m = f.map(0, 2 * kPs);
  ASSERT_EQ(load(m.data()).value, 'a');  // cached, clean, write-protected
  settle(f);
  ft::arm("reclaim.after_pick");
  Bg rc([&] { (void)eng.reclaim(kPs / fl::kBasePageSize); });
  ASSERT_TRUE(ft::wait_parked("reclaim.after_pick"));
  within(10s, "the store", [&] { store(m.data(), 'W'); });
  // The store has returned: its page was marked dirty before the PTE was made
  // writable (R6), which is what woke the storing thread.
  ASSERT_EQ(f.stats().dirty_pages, 1u);
  ft::release("reclaim.after_pick");
  rc.join("reclaim");
  // (Not "nothing freed": the store's fault continues the view's stream, so
  // its readahead caches page 1, clean, which reclaim may then evict.)
  EXPECT_EQ(f.stats().dirty_pages, 1u) << "reclaim evicted a dirty page";
  EXPECT_EQ(load(m.data()).value, 'W') << "the store was lost to reclaim";
  f.sync();
  EXPECT_EQ(backend_byte(*mem, 0), 'W') << "the store never reached the backend";
}

// E2: reclaim drops a page and, before it punches the frame, a fault fills
// and installs the page again; the punch then leaves the index saying
// uptodate over a hole: reads see zeros, CONTINUE fails forever. Closed by
// R1 (the fault holds the page lock from lookup to install) and R9 (reclaim
// holds it, try-locked, from its recheck to the punch).
TEST_F(RACE_FIXTURE, E2_ReclaimVsFill) {
  auto mem = patterned("E2", 2, 'e');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, mem);
  auto v1 = f.map(0, 2 * kPs, fl::Access::ReadOnly);
  auto v2 = f.map(0, 2 * kPs, fl::Access::ReadOnly);  // not touched before the race
  ASSERT_EQ(load(v1.data()).value, 'e');
  settle(f);
  ft::arm("reclaim.before_punch");
  uint64_t freed = 0;
  Bg rc([&] { freed = eng.reclaim(kPs / fl::kBasePageSize); });
  ASSERT_TRUE(ft::wait_parked("reclaim.before_punch"));
  Load got;
  // A fault on the page reclaim is dropping: with R1 + R9 it waits for the
  // page lock reclaim holds (proven); without either it goes on at once.
  Bg ld("wait.page_lock", [&] { got = load(v2.data()); });
  (void)ld.blocked();
  ft::release("reclaim.before_punch");
  rc.join("reclaim");
  ld.join("the load");
  EXPECT_FALSE(got.bus.has_value());
  EXPECT_EQ(got.value, 'e');
  std::vector<std::byte> one(1);
  within(10s, "read", [&] { f.read(0, one); });
  EXPECT_EQ(static_cast<char>(one[0]), 'e') << "the cache serves a punched frame (zeros)";
  Load again;
  within(10s, "a load through a third view", [&] {
    auto v3 = f.map(0, 2 * kPs, fl::Access::ReadOnly);
    again = load(v3.data());
  });
  EXPECT_FALSE(again.bus.has_value());
  EXPECT_EQ(again.value, 'e');
}

// E3: reclaim has dropped page 1 and parks before its punch, page 1 locked; a
// fault on page 0 with a two-page window must only try-lock page 1 and skip
// it (R1c; R12). Filling it unlocked (the fault reads around itself: page 0
// is a miss) leaves the index saying uptodate over the frame reclaim then
// punches (zeros).
TEST_F(RACE_FIXTURE, E3_ReclaimVsFaultAround) {
  auto mem = patterned("E2a", 2, 'e');
  fl::EngineConfig cfg = small_windows();
  cfg.fault_around_pages = static_cast<uint32_t>(2 * kPs / fl::kBasePageSize);
  fl::Engine eng(cfg);
  auto f = open_file(eng, mem);
  // Only page 1 cached (clean): reclaim can only pick it, and the fault on
  // page 0 must read, so it reads its window (adaptive read-around, DESIGN
  // section 2). File::read holds no lock when it returns.
  ASSERT_EQ(read_all(f, kPs, 1), std::string(1, static_cast<char>('e' + 1)));
  ft::arm("reclaim.before_punch");
  uint64_t freed = 0;
  Bg rc([&] { freed = eng.reclaim(kPs / fl::kBasePageSize); });
  ASSERT_TRUE(ft::wait_parked("reclaim.before_punch"));
  auto v2 = f.map(0, 2 * kPs, fl::Access::ReadOnly);
  Load got;
  // Page 0 is free to lock, page 1 only try-locked: the fault never waits
  // (proven: it returns while reclaim is parked).
  Bg ld("wait.", [&] { got = load(v2.data()); });
  EXPECT_FALSE(ld.blocked()) << "the fault slept on a neighbour's lock (R12)";
  ft::release("reclaim.before_punch");
  rc.join("reclaim");
  ld.join("the load");
  EXPECT_EQ(got.value, 'e');
  EXPECT_GT(freed, 0u);
  EXPECT_EQ(read_all(f, kPs, 1), std::string(1, static_cast<char>('e' + 1)))
      << "the cache serves a punched frame (zeros)";
  EXPECT_EQ(load(v2.data() + kPs).value, 'e' + 1) << "the view shows a punched frame";
}

}  // namespace race
