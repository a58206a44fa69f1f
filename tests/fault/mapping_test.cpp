// Fault path: contents through a mapping equal read(2), views at offsets and
// past EOF, private and read-only views, concurrent faults, fault statistics.
// Label: fault.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <latch>
#include <random>
#include <thread>
#include <unistd.h>

#include "test_util.hpp"

using namespace faultline;
using ft::kPage;

namespace {

enum class Kind { File, Memory };

std::string kind_name(Kind k) { return k == Kind::File ? "File" : "Memory"; }

/// Opens an object of `size` bytes holding pattern(seed) with the given backend.
struct Object {
  ft::TempDir dir;
  std::string path;                       // file backend only
  std::shared_ptr<Backend> mem;           // memory backend only
  File open(Engine& eng, Kind kind, uint64_t size, uint32_t seed = 1) {
    static std::atomic<int> n{0};
    if (kind == Kind::File) {
      path = dir.make_file("obj" + std::to_string(n++), size, seed);
      return eng.open(path);
    }
    mem = make_memory_backend("mapping_test_" + std::to_string(::getpid()) + "_" +
                                  std::to_string(n++),
                              0);
    auto d = ft::pattern(0, size, seed);
    if (size) {
      EXPECT_EQ(0, mem->write(0, d));
    }
    return eng.open(mem);
  }
};

// --------------------------------------------------------------------------
// Contents through a mapping equal read(2) / File::read for assorted sizes.

struct SizeCase {
  Kind kind;
  uint64_t size;
};

class Contents : public ::testing::TestWithParam<SizeCase> {};

TEST_P(Contents, MappingEqualsRead) {
  const auto [kind, size] = GetParam();
  Engine eng;
  Object obj;
  File f = obj.open(eng, kind, size);
  ASSERT_EQ(f.size(), size);
  const auto want = ft::pattern(0, size);
  const std::size_t maplen = (size + kPage - 1) / kPage * kPage;
  Mapping m = f.map(0, maplen, Access::ReadOnly);
  ASSERT_TRUE(m);
  ASSERT_EQ(m.size(), maplen);
  // Through the mapping.
  EXPECT_EQ(-1, ft::first_diff(m.data(), want.data(), size));
  // The rest of the page holding EOF reads zeros.
  EXPECT_TRUE(ft::all_zero(m.data() + size, maplen - size));
  // File::read agrees, and so does read(2) on the backing file.
  std::vector<std::byte> got(size + 100);
  EXPECT_EQ(f.read(0, got), size);
  EXPECT_EQ(-1, ft::first_diff(got.data(), want.data(), size));
  if (kind == Kind::File) {
    auto disk = ft::pread_file(obj.path, 0, size);
    ASSERT_EQ(disk.size(), size);
    EXPECT_EQ(-1, ft::first_diff(m.data(), disk.data(), size));
  }
  // A second, writable view sees the same bytes.
  Mapping m2 = f.map(0, maplen, Access::ReadWrite);
  EXPECT_EQ(0, std::memcmp(m2.data(), m.data(), maplen));
}

std::vector<SizeCase> size_cases() {
  std::vector<SizeCase> v;
  for (Kind k : {Kind::File, Kind::Memory})
    for (uint64_t s : {uint64_t{1}, uint64_t{4095}, uint64_t{4096}, uint64_t{4097},
                       uint64_t{3 * 4096 + 17}, uint64_t{(1 << 20) + 5}, uint64_t{9 << 20}})
      v.push_back({k, s});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Sizes, Contents, ::testing::ValuesIn(size_cases()),
                         [](const ::testing::TestParamInfo<SizeCase>& i) {
                           return kind_name(i.param.kind) + "_" + std::to_string(i.param.size);
                         });

class PerKind : public ::testing::TestWithParam<Kind> {};

TEST_P(PerKind, EmptyFileAccessGetsSigbus) {
  Engine eng;
  Object obj;
  File f = obj.open(eng, GetParam(), 0);
  ASSERT_EQ(f.size(), 0u);
  Mapping m = f.map(0, 2 * kPage, Access::ReadOnly);
  for (std::size_t off : {std::size_t{0}, std::size_t{100}, kPage + 5}) {
    auto err = guarded([&] { (void)*reinterpret_cast<volatile char*>(m.data() + off); });
    ASSERT_TRUE(err.has_value()) << "offset " << off;
    EXPECT_EQ(err->code, BUS_ADRERR);
    EXPECT_EQ(err->addr, static_cast<void*>(m.data() + off));
  }
  std::byte b[16];
  EXPECT_EQ(f.read(0, b), 0u);
}

TEST_P(PerKind, ViewAtNonZeroOffset) {
  Engine eng;
  Object obj;
  const uint64_t size = 40 * kPage + 100;
  File f = obj.open(eng, GetParam(), size);
  const auto want = ft::pattern(0, size);
  for (uint64_t first : {uint64_t{1}, uint64_t{3}, uint64_t{17}, uint64_t{33}}) {
    Mapping m = f.map(first * kPage, 5 * kPage + 7, Access::ReadOnly);
    ASSERT_EQ(m.offset(), first * kPage);
    ASSERT_EQ(m.size(), 6 * kPage);  // rounded up to whole pages
    EXPECT_EQ(-1, ft::first_diff(m.data(), want.data() + first * kPage, 6 * kPage))
        << "view at page " << first;
  }
}

TEST_P(PerKind, ViewPastEof) {
  Engine eng;
  Object obj;
  const uint64_t size = 10 * kPage + 100;  // EOF inside page 10
  File f = obj.open(eng, GetParam(), size);
  const auto want = ft::pattern(0, size);
  Mapping m = f.map(8 * kPage, 6 * kPage, Access::ReadOnly);  // pages 8..13
  // Pages 8, 9 and the first 100 bytes of page 10: data.
  EXPECT_EQ(-1, ft::first_diff(m.data(), want.data() + 8 * kPage, 2 * kPage + 100));
  // The rest of the page holding EOF: zeros.
  EXPECT_TRUE(ft::all_zero(m.data() + 2 * kPage + 100, kPage - 100));
  // Past the page holding EOF: SIGBUS (BUS_ADRERR), every time, at every page.
  for (std::size_t p = 3; p < 6; ++p) {
    for (int rep = 0; rep < 2; ++rep) {
      std::byte* a = m.data() + p * kPage + 8 * p;
      auto err = guarded([&] { (void)*reinterpret_cast<volatile char*>(a); });
      ASSERT_TRUE(err.has_value()) << "page " << p;
      EXPECT_EQ(err->code, BUS_ADRERR);
      EXPECT_EQ(err->addr, static_cast<void*>(a));
    }
  }
  // A view that starts wholly past EOF.
  Mapping far = f.map(20 * kPage, kPage, Access::ReadOnly);
  auto err = guarded([&] { (void)*reinterpret_cast<volatile char*>(far.data()); });
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->code, BUS_ADRERR);
  // The earlier part of the view still works after the SIGBUSes.
  EXPECT_EQ(-1, ft::first_diff(m.data(), want.data() + 8 * kPage, 2 * kPage + 100));
}

TEST_P(PerKind, StorePastEofInLastPageIsNotFileData) {
  Engine eng;
  Object obj;
  const uint64_t size = 2 * kPage + 10;
  File f = obj.open(eng, GetParam(), size);
  {
    Mapping m = f.map(0, 3 * kPage);
    m.data()[2 * kPage + 5] = std::byte{0x11};     // inside EOF
    m.data()[2 * kPage + 500] = std::byte{0x22};   // in the last page, past EOF
    f.sync();
  }
  EXPECT_EQ(f.size(), size);
  std::vector<std::byte> b(kPage);
  EXPECT_EQ(f.read(2 * kPage, b), 10u);
  EXPECT_EQ(b[5], std::byte{0x11});
  if (GetParam() == Kind::File) {
    EXPECT_EQ(ft::file_size(obj.path), size);
  }
}

TEST_P(PerKind, PrivateViewKeepsStoresToItself) {
  Engine eng;
  Object obj;
  const uint64_t size = 8 * kPage;
  File f = obj.open(eng, GetParam(), size);
  const auto want = ft::pattern(0, size);
  Mapping priv = f.map(0, size, Access::ReadWrite, Sharing::Private);
  Mapping shared = f.map(0, size, Access::ReadOnly);
  EXPECT_EQ(-1, ft::first_diff(priv.data(), want.data(), size));
  priv.data()[kPage + 3] = std::byte{0x5a};
  std::memset(priv.data() + 4 * kPage, 0x77, kPage);
  EXPECT_EQ(priv.data()[kPage + 3], std::byte{0x5a});
  // Neither the shared view, File::read nor the backend see private stores.
  EXPECT_EQ(-1, ft::first_diff(shared.data(), want.data(), size));
  std::vector<std::byte> got(size);
  ASSERT_EQ(f.read(0, got), size);
  EXPECT_EQ(-1, ft::first_diff(got.data(), want.data(), size));
  f.sync();
  if (GetParam() == Kind::File) {
    auto disk = ft::pread_file(obj.path, 0, size);
    EXPECT_EQ(-1, ft::first_diff(disk.data(), want.data(), size));
  }
  // A File::write after the private copy: the private view keeps its copy of
  // that page, other pages show the file's data.
  auto nd = ft::pattern(0, kPage, 9);
  f.write(2 * kPage, nd);
  EXPECT_EQ(-1, ft::first_diff(priv.data() + 2 * kPage, nd.data(), kPage));
  EXPECT_EQ(priv.data()[kPage + 3], std::byte{0x5a});
}

TEST_P(PerKind, ManyThreadsFaultTheSamePages) {
  for (std::size_t fa : {std::size_t{1}, std::size_t{64}}) {
    EngineConfig cfg;
    cfg.fault_threads = 2;
    cfg.fault_around_pages = fa;
    cfg.readahead_max_pages = fa == 1 ? 1 : 1024;
    Engine eng(cfg);
    Object obj;
    const uint64_t pages = 1024;
    const uint64_t size = pages * kPage - 333;
    File f = obj.open(eng, GetParam(), size);
    const auto want = ft::pattern(0, size);
    Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
    constexpr int kThreads = 4;
    std::latch start(kThreads);
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        // Threads 0 and 1 walk the same order (the same page at once), 2 and
        // 3 walk other orders.
        std::vector<uint64_t> order(pages);
        for (uint64_t i = 0; i < pages; ++i) order[i] = i;
        if (t == 2) std::reverse(order.begin(), order.end());
        if (t == 3) std::shuffle(order.begin(), order.end(), std::mt19937(42));
        start.arrive_and_wait();
        for (uint64_t p : order) {
          const uint64_t len = std::min<uint64_t>(kPage, size - p * kPage);
          if (std::memcmp(m.data() + p * kPage, want.data() + p * kPage, len) != 0) ++bad;
        }
      });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(bad.load(), 0) << "fault_around_pages=" << fa;
    EXPECT_EQ(-1, ft::first_diff(m.data(), want.data(), size));
    const Stats s = f.stats();
    EXPECT_EQ(s.pages_filled, pages) << "each page is read from the backend once";
    EXPECT_EQ(s.read_errors, 0u);
    EXPECT_EQ(s.sigbus_sent, 0u);
  }
}

TEST_P(PerKind, ManyThreadsStoreAndLoadDistinctPages) {
  Engine eng;
  Object obj;
  const uint64_t pages = 256;
  File f = obj.open(eng, GetParam(), pages * kPage);
  Mapping a = f.map(0, pages * kPage);
  Mapping b = f.map(0, pages * kPage, Access::ReadOnly);
  constexpr int kThreads = 4;
  std::latch start(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      start.arrive_and_wait();
      for (uint64_t p = static_cast<uint64_t>(t); p < pages; p += kThreads)
        std::memset(a.data() + p * kPage, 0x40 + t, kPage);
    });
  }
  for (auto& t : ts) t.join();
  for (uint64_t p = 0; p < pages; ++p) {
    const auto v = static_cast<std::byte>(0x40 + p % kThreads);
    ASSERT_EQ(b.data()[p * kPage], v) << "page " << p;
    ASSERT_EQ(b.data()[p * kPage + kPage - 1], v) << "page " << p;
  }
  f.sync();
  std::vector<std::byte> got(pages * kPage);
  ASSERT_EQ(f.read(0, got), got.size());
  EXPECT_EQ(0, std::memcmp(got.data(), b.data(), got.size()));
}

INSTANTIATE_TEST_SUITE_P(Backends, PerKind, ::testing::Values(Kind::File, Kind::Memory),
                         [](const ::testing::TestParamInfo<Kind>& i) { return kind_name(i.param); });

// --------------------------------------------------------------------------
// Large sparse objects.

TEST(Sparse, FileOf8GiBWithExtents) {
  ft::TempDir dir;
  const std::string path = dir.file("sparse");
  const uint64_t size = uint64_t{8} << 30;
  {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(0, ::ftruncate(fd, static_cast<off_t>(size)));
    ::close(fd);
  }
  // A few written extents (one straddling a page boundary, one at the end).
  const std::vector<std::pair<uint64_t, std::size_t>> extents = {
      {0, 3 * kPage},
      {(uint64_t{1} << 30) + 12345, 10000},
      {(uint64_t{4} << 30) - 100, 200},
      {(uint64_t{6} << 30) + 7 * kPage, kPage},
      {size - kPage - 50, kPage + 50},
  };
  for (auto [off, len] : extents) ft::pwrite_file(path, off, ft::pattern(off, len, 7));
  Engine eng;
  File f = eng.open(path);
  ASSERT_EQ(f.size(), size);
  Mapping m = f.map(0, size, Access::ReadOnly);
  // Sample: the pages of every extent, their neighbours, and random pages.
  std::set<uint64_t> sample;
  for (auto [off, len] : extents)
    for (uint64_t p = off / kPage; p <= (off + len - 1) / kPage + 1 && p < size / kPage; ++p)
    {
      sample.insert(p);
      sample.insert(p ? p - 1 : 0);
    }
  std::mt19937_64 rng(7);
  while (sample.size() < 200) sample.insert(rng() % (size / kPage));
  for (uint64_t p : sample) {
    auto disk = ft::pread_file(path, p * kPage, kPage);
    ASSERT_EQ(disk.size(), kPage);
    ASSERT_EQ(-1, ft::first_diff(m.data() + p * kPage, disk.data(), kPage)) << "page " << p;
    std::vector<std::byte> got(kPage);
    ASSERT_EQ(f.read(p * kPage, got), kPage);
    ASSERT_EQ(-1, ft::first_diff(got.data(), disk.data(), kPage)) << "page " << p;
  }
  // The extents hold what was written.
  for (auto [off, len] : extents) {
    auto want = ft::pattern(off, len, 7);
    EXPECT_EQ(-1, ft::first_diff(m.data() + off, want.data(), len)) << "extent at " << off;
  }
  // Past EOF of the big file: SIGBUS.
  Mapping past = f.map(size, kPage, Access::ReadOnly);
  auto err = guarded([&] { (void)*reinterpret_cast<volatile char*>(past.data()); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, BUS_ADRERR);
  // Only what was touched (with fault-around) was read: far less than the file.
  EXPECT_LT(f.stats().bytes_read, uint64_t{256} << 20);
}

TEST(Sparse, MemoryObjectWithExtents) {
  const uint64_t size = uint64_t{64} << 20;
  auto be = make_memory_backend("sparse_mem", size);
  const std::vector<std::pair<uint64_t, std::size_t>> extents = {
      {5 * kPage + 1, 100}, {(uint64_t{32} << 20) - 10, 20}, {size - 7, 7}};
  for (auto [off, len] : extents) ASSERT_EQ(0, be->write(off, ft::pattern(off, len, 3)));
  Engine eng;
  File f = eng.open(be);
  ASSERT_EQ(f.size(), size);
  Mapping m = f.map(0, size, Access::ReadOnly);
  std::set<uint64_t> sample;
  for (auto [off, len] : extents)
    for (uint64_t p = off / kPage; p <= (off + len - 1) / kPage; ++p) sample.insert(p);
  std::mt19937_64 rng(3);
  while (sample.size() < 100) sample.insert(rng() % (size / kPage));
  std::vector<std::byte> want(kPage);
  for (uint64_t p : sample) {
    ASSERT_EQ(be->read(p * kPage, want), static_cast<ssize_t>(kPage));
    ASSERT_EQ(-1, ft::first_diff(m.data() + p * kPage, want.data(), kPage)) << "page " << p;
  }
}

// --------------------------------------------------------------------------
// Views of a read-only backend.

TEST(ReadOnlyBackend, SharedReadOnlyAndPrivateWritableViewsWork) {
  ft::TempDir dir;
  const uint64_t size = 5 * kPage + 1;
  const std::string path = dir.make_file("ro", size);
  Engine eng;
  File f = eng.open(path, /*writable=*/false);
  EXPECT_FALSE(f.writable());
  const auto want = ft::pattern(0, size);
  Mapping ro = f.map(0, 6 * kPage, Access::ReadOnly);
  EXPECT_EQ(-1, ft::first_diff(ro.data(), want.data(), size));
  Mapping priv = f.map(0, 6 * kPage, Access::ReadWrite, Sharing::Private);
  priv.data()[0] = ~want[0];
  EXPECT_EQ(priv.data()[0], ~want[0]);
  EXPECT_EQ(ro.data()[0], want[0]);
  EXPECT_NO_THROW(f.sync());
}

// --------------------------------------------------------------------------
// Statistics.

TEST(Stats, SequentialTouch) {
  ft::TempDir dir;
  const uint64_t pages = 1000;
  const uint64_t size = pages * kPage - 123;
  const std::string path = dir.make_file("stats", size);
  Engine eng;
  File f = eng.open(path);
  const Stats zero = f.stats();
  EXPECT_EQ(zero.missing_faults + zero.minor_faults + zero.pages_filled + zero.bytes_read, 0u);
  Mapping m = f.map(0, pages * kPage, Access::ReadOnly);
  const uint64_t sum1 = ft::touch_read(m.data(), size);
  Stats s = f.stats();
  EXPECT_GT(s.missing_faults, 0u);
  EXPECT_EQ(s.pages_filled, pages);
  EXPECT_TRUE(ft::eventually([&] { return f.stats().pages_installed == pages; }))
      << f.stats().pages_installed;
  s = f.stats();
  EXPECT_EQ(s.bytes_read, size);
  EXPECT_LT(s.missing_faults + s.minor_faults, pages / 4) << "faults are batched";
  EXPECT_EQ(s.wp_faults, 0u);
  EXPECT_EQ(s.pages_dirtied, 0u);
  EXPECT_EQ(s.pages_written_back, 0u);
  EXPECT_EQ(s.bytes_written, 0u);
  EXPECT_EQ(s.read_errors, 0u);
  EXPECT_EQ(s.sigbus_sent, 0u);
  // The engine's totals are the sum over its (one) File.
  const Stats e = eng.stats();
  EXPECT_EQ(e.missing_faults, s.missing_faults);
  EXPECT_EQ(e.pages_filled, s.pages_filled);
  EXPECT_EQ(e.bytes_read, s.bytes_read);
  // Touching again costs nothing.
  EXPECT_EQ(ft::touch_read(m.data(), size), sum1);
  const Stats s2 = f.stats();
  EXPECT_EQ(s2.missing_faults, s.missing_faults);
  EXPECT_EQ(s2.minor_faults, s.minor_faults);
  EXPECT_EQ(s2.pages_filled, pages);
  // A second view: frames are cached (no new fills), only PTEs are installed.
  Mapping m2 = f.map(0, pages * kPage, Access::ReadOnly);
  EXPECT_EQ(ft::touch_read(m2.data(), size), sum1);
  const Stats s3 = f.stats();
  EXPECT_EQ(s3.pages_filled, pages);
  EXPECT_EQ(s3.bytes_read, size);
  EXPECT_GT(s3.minor_faults, s2.minor_faults);
  EXPECT_TRUE(ft::eventually([&] { return f.stats().pages_installed == 2 * pages; }))
      << f.stats().pages_installed;
}

TEST(Stats, FileReadFillsOnceAndFaultsThenOnlyInstall) {
  ft::TempDir dir;
  const uint64_t size = 300 * kPage;
  const std::string path = dir.make_file("stats2", size);
  Engine eng;
  File f = eng.open(path);
  std::vector<std::byte> buf(size);
  ASSERT_EQ(f.read(0, buf), size);
  Stats s = f.stats();
  EXPECT_EQ(s.pages_filled, 300u);
  EXPECT_EQ(s.bytes_read, size);
  EXPECT_EQ(s.missing_faults + s.minor_faults, 0u);
  Mapping m = f.map(0, size, Access::ReadOnly);
  ft::touch_read(m.data(), size);
  s = f.stats();
  EXPECT_EQ(s.pages_filled, 300u);
  EXPECT_GT(s.minor_faults, 0u);
  EXPECT_TRUE(ft::eventually([&] { return f.stats().pages_installed == 300u; }))
      << f.stats().pages_installed;
}

}  // namespace
