// The read/write API and its coherence with mappings; buffers that lie inside
// a faultline mapping of the same file (DESIGN R11). Label: rw.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

#include "testing/testing.hpp"
#include "test_util.hpp"

using namespace faultline;
using ft::kPage;

namespace {

struct FileFixture : ::testing::Test {
  ft::TempDir dir;
  Engine eng;
  std::string path;
  File open(uint64_t size, uint32_t seed = 1) {
    path = dir.make_file("f", size, seed);
    return eng.open(path);
  }
};

using RwTest = FileFixture;

TEST_F(RwTest, ReadReturnsShortAtEofAndZeroPastIt) {
  const uint64_t size = 3 * kPage + 10;
  File f = open(size);
  std::vector<std::byte> b(2 * kPage);
  EXPECT_EQ(f.read(2 * kPage, b), kPage + 10);
  EXPECT_EQ(-1, ft::first_diff(b.data(), ft::pattern(2 * kPage, kPage + 10).data(), kPage + 10));
  EXPECT_EQ(f.read(size, b), 0u);
  EXPECT_EQ(f.read(size + 5 * kPage, b), 0u);
  EXPECT_EQ(f.read(0, std::span<std::byte>()), 0u);
  // Unaligned offsets and lengths.
  std::vector<std::byte> c(5000);
  EXPECT_EQ(f.read(123, c), 5000u);
  EXPECT_EQ(-1, ft::first_diff(c.data(), ft::pattern(123, 5000).data(), 5000));
}

TEST_F(RwTest, PartialPageWritesKeepTheRestOfThePage) {
  const uint64_t size = 4 * kPage;
  File f = open(size);
  auto want = ft::pattern(0, size);
  const std::byte abc[3] = {std::byte{'a'}, std::byte{'b'}, std::byte{'c'}};
  EXPECT_EQ(f.write(kPage + 100, abc), 3u);              // inside an uncached page
  EXPECT_EQ(f.write(3 * kPage - 1, abc), 3u);            // across a page boundary
  std::memcpy(want.data() + kPage + 100, abc, 3);
  std::memcpy(want.data() + 3 * kPage - 1, abc, 3);
  std::vector<std::byte> got(size);
  ASSERT_EQ(f.read(0, got), size);
  EXPECT_EQ(-1, ft::first_diff(got.data(), want.data(), size));
  Mapping m = f.map(0, size, Access::ReadOnly);
  EXPECT_EQ(-1, ft::first_diff(m.data(), want.data(), size));
  f.sync();
  auto disk = ft::pread_file(path, 0, size);
  EXPECT_EQ(-1, ft::first_diff(disk.data(), want.data(), size));
}

TEST_F(RwTest, WriteExtendsTheFileAndAViewPastEof) {
  File f = open(kPage + 10);
  Mapping m = f.map(0, 4 * kPage);
  auto err = guarded([&] { (void)*reinterpret_cast<volatile char*>(m.data() + 2 * kPage); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, BUS_ADRERR);
  // Bytes stored past EOF in the page holding it are not file data: after the
  // file grows they read as zeros.
  m.data()[kPage + 20] = std::byte{0x99};
  auto d = ft::pattern(0, 100, 5);
  EXPECT_EQ(f.write(2 * kPage + 50, d), 100u);
  EXPECT_EQ(f.size(), 2 * kPage + 150);
  EXPECT_EQ(m.data()[kPage + 20], std::byte{0});
  EXPECT_TRUE(ft::all_zero(m.data() + kPage + 10, kPage + 40));
  EXPECT_EQ(-1, ft::first_diff(m.data() + 2 * kPage + 50, d.data(), 100));
  EXPECT_TRUE(ft::all_zero(m.data() + 2 * kPage + 150, kPage - 150));
  err = guarded([&] { (void)*reinterpret_cast<volatile char*>(m.data() + 3 * kPage); });
  ASSERT_TRUE(err);
  f.sync();
  EXPECT_EQ(ft::file_size(path), 2 * kPage + 150);
  auto disk = ft::pread_file(path, 0, 2 * kPage + 150);
  EXPECT_EQ(-1, ft::first_diff(disk.data(), ft::pattern(0, kPage + 10).data(), kPage + 10));
  EXPECT_TRUE(ft::all_zero(disk.data() + kPage + 10, kPage + 40));
  EXPECT_EQ(-1, ft::first_diff(disk.data() + 2 * kPage + 50, d.data(), 100));
}

TEST_F(RwTest, TwoMappingsAndTheApiStayCoherent) {
  const uint64_t size = 64 * kPage;
  File f = open(size);
  auto want = ft::pattern(0, size);
  Mapping a = f.map(0, size);
  Mapping b = f.map(0, size);
  // Fault both views in first, so later changes must reach present PTEs.
  EXPECT_EQ(-1, ft::first_diff(a.data(), want.data(), size));
  EXPECT_EQ(-1, ft::first_diff(b.data(), want.data(), size));
  // File::write is seen in both views.
  auto d1 = ft::pattern(0, 3 * kPage + 7, 11);
  f.write(5 * kPage + 9, d1);
  std::memcpy(want.data() + 5 * kPage + 9, d1.data(), d1.size());
  EXPECT_EQ(-1, ft::first_diff(a.data(), want.data(), size));
  EXPECT_EQ(-1, ft::first_diff(b.data(), want.data(), size));
  // A store through one view is seen in the other and by File::read.
  std::memset(a.data() + 20 * kPage + 1, 0x3c, 2 * kPage);
  std::memset(want.data() + 20 * kPage + 1, 0x3c, 2 * kPage);
  b.data()[40 * kPage] = std::byte{0xee};
  want[40 * kPage] = std::byte{0xee};
  EXPECT_EQ(-1, ft::first_diff(b.data(), want.data(), size));
  EXPECT_EQ(-1, ft::first_diff(a.data(), want.data(), size));
  std::vector<std::byte> got(size);
  ASSERT_EQ(f.read(0, got), size);
  EXPECT_EQ(-1, ft::first_diff(got.data(), want.data(), size));
  // After write-back the pages are clean and write-protected: new stores and
  // writes still flow both ways.
  f.sync();
  a.data()[20 * kPage + 1] = std::byte{0x01};
  want[20 * kPage + 1] = std::byte{0x01};
  f.write(40 * kPage, std::span(want.data() + 40 * kPage - 1, 1));  // 1 byte, old value
  want[40 * kPage] = want[40 * kPage - 1];
  EXPECT_EQ(-1, ft::first_diff(b.data(), want.data(), size));
  ASSERT_EQ(f.read(0, got), size);
  EXPECT_EQ(-1, ft::first_diff(got.data(), want.data(), size));
  f.sync();
  auto disk = ft::pread_file(path, 0, size);
  EXPECT_EQ(-1, ft::first_diff(disk.data(), want.data(), size));
}

TEST_F(RwTest, ViewsAtDifferentOffsetsAreCoherent) {
  const uint64_t size = 32 * kPage;
  File f = open(size);
  Mapping a = f.map(8 * kPage, 8 * kPage);
  Mapping b = f.map(12 * kPage, 8 * kPage);  // overlaps a's second half
  std::memset(a.data() + 5 * kPage, 0x61, 10);  // file page 13
  EXPECT_EQ(b.data()[kPage], std::byte{0x61});
  std::memset(b.data() + 2 * kPage + 1, 0x62, 10);  // file page 14
  EXPECT_EQ(a.data()[6 * kPage + 1], std::byte{0x62});
}

// --------------------------------------------------------------------------
// R11 / F10: buffers inside a faultline mapping of the same file.

TEST_F(RwTest, ReadIntoAMappingOfTheSamePages) {
  const uint64_t size = 256 * kPage;
  File f = open(size);
  const auto want = ft::pattern(0, size);
  Mapping m = f.map(0, size);
  // Nothing faulted in yet: every page of the destination faults while
  // File::read works on the same pages.
  ft::run_with_timeout([&] { EXPECT_EQ(f.read(0, std::span(m.data(), size)), size); }, std::chrono::seconds(20),
                       "File::read into a mapping of the same pages");
  EXPECT_EQ(-1, ft::first_diff(m.data(), want.data(), size));
}

TEST_F(RwTest, ReadIntoAMappingOfOtherPagesOfTheSameFile) {
  const uint64_t size = 256 * kPage;
  File f = open(size);
  const auto want = ft::pattern(0, size);
  Mapping m = f.map(0, size);
  // Source pages 0..31, destination pages 32..63 (inside the source's
  // fault-around window), then an unaligned range.
  ft::run_with_timeout(
      [&] {
        EXPECT_EQ(f.read(0, std::span(m.data() + 32 * kPage, 32 * kPage)), 32 * kPage);
        EXPECT_EQ(f.read(100 * kPage + 5, std::span(m.data() + 90 * kPage + 11, 20 * kPage)),
                  20 * kPage);
      },
      std::chrono::seconds(20), "File::read into a mapping of the same file");
  EXPECT_EQ(-1, ft::first_diff(m.data() + 32 * kPage, want.data(), 32 * kPage));
  EXPECT_EQ(-1, ft::first_diff(m.data() + 90 * kPage + 11, want.data() + 100 * kPage + 5,
                               20 * kPage));
  std::vector<std::byte> got(size);
  ASSERT_EQ(f.read(0, got), size);
  EXPECT_EQ(0, std::memcmp(got.data(), m.data(), size));
}

// Issue 14, R11: File::read copied into the caller's buffer holding the size
// lock and the invalidate_lock shared. With that buffer inside a view of the
// File, the copy's fault takes the invalidate_lock shared while an
// invalidate waits for it exclusive: only glibc's reader preference kept
// that from deadlocking. Now no lock of the File is held during that copy:
// an invalidate started while the read is parked there (read.before_user_copy)
// runs to its end without waiting for the invalidate_lock.
TEST_F(RwTest, ReadCopiesToTheCallerHoldingNoLockOfTheFile) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  namespace fts = faultline::testing;
  fts::reset();
  const uint64_t size = 8 * kPage;
  File f = open(size);
  const auto want = ft::pattern(0, size);
  Mapping m = f.map(0, size);
  fts::arm("read.before_user_copy");
  std::thread reader([&] { EXPECT_EQ(f.read(0, std::span(m.data() + 4 * kPage, kPage)), kPage); });
  ASSERT_TRUE(fts::wait_parked("read.before_user_copy"));
  std::atomic<bool> done{false};
  std::thread inv([&] {
    EXPECT_TRUE(f.invalidate(4 * kPage, kPage).empty());
    done = true;
    fts::notify();
  });
  // Either invalidate finishes, or it is about to sleep on the invalidate_lock
  // the parked read holds (the wait point), the deadlock's first half.
  const auto r = fts::wait_reached("wait.invalidate_lock.exclusive", 1, [&] { return done.load(); });
  EXPECT_EQ(r, fts::Reach::stopped)
      << "invalidate waits for the invalidate_lock held by a read that is copying into the "
         "caller's buffer (R11)";
  fts::release("read.before_user_copy");
  reader.join();
  inv.join();
  fts::reset();
  EXPECT_EQ(-1, ft::first_diff(m.data() + 4 * kPage, want.data(), kPage));
#endif
}

TEST_F(RwTest, WriteFromAMappingOfTheSameFile) {
  const uint64_t size = 256 * kPage;
  File f = open(size);
  auto want = ft::pattern(0, size);
  Mapping m = f.map(0, size, Access::ReadOnly);
  ft::run_with_timeout(
      [&] {
        // Same pages onto themselves (unfaulted source), then pages 0..63
        // onto 64..127, then an unaligned overlapping range.
        EXPECT_EQ(f.write(0, std::span<const std::byte>(m.data(), 16 * kPage)), 16 * kPage);
        EXPECT_EQ(f.write(64 * kPage, std::span<const std::byte>(m.data(), 64 * kPage)),
                  64 * kPage);
        EXPECT_EQ(f.write(200 * kPage + 7, std::span<const std::byte>(m.data() + 190 * kPage, 5000)),
                  5000u);
      },
      std::chrono::seconds(20), "File::write from a mapping of the same file");
  std::memcpy(want.data() + 64 * kPage, want.data(), 64 * kPage);
  std::memmove(want.data() + 200 * kPage + 7, want.data() + 190 * kPage, 5000);
  EXPECT_EQ(-1, ft::first_diff(m.data(), want.data(), size));
  f.sync();
  auto disk = ft::pread_file(path, 0, size);
  EXPECT_EQ(-1, ft::first_diff(disk.data(), want.data(), size));
}

TEST_F(RwTest, ReadAndWriteFromAMappingOfAnotherFile) {
  File f = open(64 * kPage, 1);
  const std::string p2 = dir.make_file("g", 64 * kPage, 2);
  File g = eng.open(p2);
  Mapping mg = g.map(0, 64 * kPage);
  ft::run_with_timeout(
      [&] {
        EXPECT_EQ(f.read(0, std::span(mg.data(), 32 * kPage)), 32 * kPage);
        EXPECT_EQ(f.write(40 * kPage, std::span<const std::byte>(mg.data() + 40 * kPage, 8 * kPage)),
                  8 * kPage);
      },
      std::chrono::seconds(20), "read/write through a mapping of another file");
  EXPECT_EQ(-1, ft::first_diff(mg.data(), ft::pattern(0, 32 * kPage, 1).data(), 32 * kPage));
  std::vector<std::byte> got(8 * kPage);
  ASSERT_EQ(f.read(40 * kPage, got), got.size());
  EXPECT_EQ(-1, ft::first_diff(got.data(), ft::pattern(40 * kPage, 8 * kPage, 2).data(), 8 * kPage));
}

TEST_F(RwTest, ConcurrentWritersAndReadersOfDisjointRanges) {
  const uint64_t size = 128 * kPage;
  File f = open(size);
  Mapping m = f.map(0, size, Access::ReadOnly);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        const uint64_t off = (static_cast<uint64_t>(t) * 32 + static_cast<uint64_t>(rep)) * kPage + 3;
        auto d = ft::pattern(off, kPage, 20 + t);
        f.write(off, d);
        std::vector<std::byte> back(kPage);
        f.read(off, back);
        EXPECT_EQ(-1, ft::first_diff(back.data(), d.data(), kPage));
        EXPECT_EQ(-1, ft::first_diff(m.data() + off, d.data(), kPage));
      }
    });
  }
  for (auto& t : ts) t.join();
}

}  // namespace
