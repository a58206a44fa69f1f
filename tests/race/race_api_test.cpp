// Race catalogue entries found by the API review (issue 14): C1 (close vs
// reopen: one key, one cache, R14) and F13 (a view leaves the reverse map in
// the same step as its munmap, R15). Same conventions as race_test.cpp: each
// test forces its interleaving with schedule points and proves that the
// second thread reached the wait where its rule makes it block (Bg::blocked).
#include <sys/mman.h>

#include "race_util.hpp"

namespace race {
namespace ft = faultline::testing;

// C1: the last handle of a File is closed; its destructor writes the dirty
// pages back (parked after the copy, before the backend write); meanwhile an
// open() of the same object would build a second cache that reads the backend
// before the old write-back lands, and the old write-back would later
// overwrite the new cache's synced write. Closed by R14 (open waits until the
// old File is gone).
TEST_F(RACE_FIXTURE, C1_CloseVsReopen) {
  auto be = patterned("C1", 2, 'a');
  fl::EngineConfig cfg = small_windows();
  cfg.flusher = false;  // only the close writes back
  fl::Engine eng(cfg);
  auto f = open_file(eng, be);
  const std::byte x{'X'}, y{'Y'};
  f.write(0, std::span(&x, 1));
  ft::arm("writeback.before_write");
  Bg closer([&] { f.close(); });  // the last handle: ~FileImpl writes back
  ASSERT_TRUE(ft::wait_parked("writeback.before_write"));
  char seen = 0;
  fl::File g;
  Bg opener("wait.open_closing", [&] {
    g = open_file(eng, be);
    seen = read_all(g, 0, 1).at(0);
    g.write(0, std::span(&y, 1));
    g.sync();
  });
  // R14: the open must wait for the old File's teardown.
  EXPECT_TRUE(opener.blocked()) << "open() did not wait for the closing File of the same key";
  ft::release("writeback.before_write");
  closer.join("close of the last handle");
  opener.join("the reopen");
  EXPECT_EQ(seen, 'X') << "the new cache read the backend before the old write-back landed";
  std::byte b{};
  ASSERT_EQ(be->read(0, std::span(&b, 1)), 1);
  EXPECT_EQ(b, y) << "the old File's write-back overwrote the new File's synced write";
  EXPECT_EQ(read_all(g, 0, 1), "Y");
}

// F13: a view is torn down: munmap'ed, not yet out of the File's reverse map;
// another mmap reuses its address range; invalidate then clears the poison
// the old view recorded there (MADV_DONTNEED of exactly its poisoned pages).
// Closed by R15 (munmap and leaving the reverse map are one step under the
// rmap lock: invalidate's walk waits, then finds the view gone).
TEST_F(RACE_FIXTURE, F13_TeardownVsClearPoison) {
  auto mem = patterned("F13", 2, 'a');
  auto be = std::make_shared<SteeredBackend>(mem);
  std::atomic<bool> fail{true};
  be->fill_hook = [&](uint64_t, size_t, int, uint64_t) -> std::optional<ssize_t> {
    if (fail) return -EIO;
    return std::nullopt;
  };
  be->read_hook = [&](uint64_t, std::span<std::byte>) -> std::optional<ssize_t> {
    if (fail) return -EIO;
    return std::nullopt;
  };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 2 * kPs, fl::Access::ReadOnly);
  std::byte* const addr = m.data();
  ASSERT_TRUE(load(addr).bus.has_value()) << "the failed fill did not poison the page";
  fail = false;
  ft::arm("mapping.after_munmap");
  Bg teardown([&] { m.unmap(); });
  ASSERT_TRUE(ft::wait_parked("mapping.after_munmap"));
  // Another mmap owns the range now.
  void* a = ::mmap(addr, 2 * kPs, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ASSERT_EQ(a, static_cast<void*>(addr)) << "could not map the freed range again";
  std::memset(a, 'U', 2 * kPs);
  Bg inv("wait.rmap_lock", [&] { (void)f.invalidate(0, 2 * kPs); });
  // R15: invalidate's poison clearing must wait for the teardown's rmap step.
  EXPECT_TRUE(inv.blocked())
      << "invalidate walked the reverse map while a view was unmapped but still in it";
  ft::release("mapping.after_munmap");
  teardown.join("the view's teardown");
  inv.join("invalidate");
  EXPECT_EQ(static_cast<const char*>(a)[0], 'U')
      << "invalidate zeroed memory that another mmap owns";
  ::munmap(a, 2 * kPs);
  EXPECT_EQ(read_all(f, 0, 1), "a");
}

}  // namespace race
