// Asynchronous readahead (issue 16 item 3; DESIGN section 2 "Asynchronous
// readahead"): a sequential stream's next window is read by a fault handler
// after the stream's thread was woken, left cached with a readahead marker
// on its first page (a shared view of 4 KiB frames has the rest mapped by
// UFFDIO_COPY, the marker page unmapped); the stream's fault on the marker
// maps the window (a hit) and starts the read of the window after it. Thread placement is
// proven with the race harness's schedule points (DESIGN section 4, "How a
// race test places its second thread"); a timeout only guards a deadlock.
// Label: fault.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "faultline/forwarding_backend.hpp"
#include "faultline/guarded.hpp"
#include "test_util.hpp"
#include "testing/testing.hpp"
#include "os/pagemap_scan.hpp"
#include "os/uring.hpp"

using namespace faultline;
using ft::kPage;

namespace {

constexpr uint64_t kWindow = 16;  // fault_around_pages
constexpr uint64_t kRa = 32;      // readahead_max_pages
constexpr uint64_t kPages = 256;

EngineConfig config() {
  EngineConfig cfg;
  cfg.fault_threads = 2;  // a fault on a page being read ahead is served beside the readahead
  cfg.max_fault_threads = 4;
  cfg.fault_around_pages = kWindow;
  cfg.read_around_pages = 0;
  cfg.readahead_max_pages = kRa;
  // One window read ahead (the default): the tests below count windows
  // exactly. TwoWindowsAreReadAheadEachByItsOwnHandler checks a distance of 2.
  cfg.readahead_windows = 1;
  cfg.flusher = false;
  return cfg;
}

/// Reads of pages at or past gate_pg wait until open() (the test holds the
/// readahead inside the backend).
class GatedBackend final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    wait(off);
    return ForwardingBackend::read(off, buf);
  }
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override {
    wait(off);
    return ForwardingBackend::read_into_fd(off, len, fd, fd_off);
  }
  void close(uint64_t pg) {
    std::lock_guard g(mu_);
    gate_pg_ = pg;
  }
  void open() {
    std::lock_guard g(mu_);
    gate_pg_ = ~uint64_t{0};
    cv_.notify_all();
  }
  bool someone_waits() { return waiters() > 0; }
  int waiters() {
    std::lock_guard g(mu_);
    return waiting_;
  }

 private:
  void wait(uint64_t off) {
    std::unique_lock g(mu_);
    if (off / kPage < gate_pg_) return;
    ++waiting_;
    cv_.wait(g, [&] { return off / kPage < gate_pg_; });
    --waiting_;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t gate_pg_ = ~uint64_t{0};
  int waiting_ = 0;
};

/// Whether this kernel has PAGEMAP_SCAN (Linux 6.7+), which an install uses
/// to skip the pages a view maps already.
bool pagemap_scan_works() {
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  static char probe[4096] __attribute__((aligned(4096)));
  page_region r{};
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.start = reinterpret_cast<uintptr_t>(probe);
  arg.end = arg.start + sizeof probe;
  arg.vec = reinterpret_cast<uintptr_t>(&r);
  arg.vec_len = 1;
  arg.category_mask = PAGE_IS_PRESENT;
  arg.return_mask = PAGE_IS_PRESENT;
  const int rc = ::ioctl(fd, PAGEMAP_SCAN, &arg);
  ::close(fd);
  return rc >= 0;
}

struct Obj {
  std::shared_ptr<GatedBackend> be;
  std::vector<std::byte> want;
  File f;
  Mapping m;
  explicit Obj(Engine& eng, const std::string& name, Access access = Access::ReadOnly) {
    static std::atomic<int> n{0};
    auto mem = make_memory_backend(
        "async_ra_" + name + std::to_string(::getpid()) + "_" + std::to_string(n++), 0);
    want = ft::pattern(0, kPages * kPage);
    EXPECT_EQ(0, mem->write(0, want));
    be = std::make_shared<GatedBackend>(mem);
    f = eng.open(be);
    m = f.map(0, kPages * kPage, access);
  }
  ~Obj() { be->open(); }  // a failed check must not leave a handler in the backend
  void touch(uint64_t pg) {
    const uint64_t off = pg * kPage + 11;
    const std::byte got = static_cast<volatile const std::byte*>(m.data())[off];
    EXPECT_EQ(got, want[off]) << "page " << pg;
  }
  /// Touches [from, kPages), then checks every page of the file was read
  /// from the backend exactly once.
  void touch_to_end_each_page_read_once(uint64_t from) {
    for (uint64_t pg = from; pg < kPages; ++pg) touch(pg);
    const Stats s = f.stats();
    EXPECT_EQ(s.pages_filled, kPages);
    EXPECT_EQ(s.bytes_read, kPages * kPage);
    EXPECT_EQ(s.read_errors, 0u);
  }
  uint64_t faults() const {
    const Stats s = f.stats();
    return s.missing_faults + s.minor_faults;
  }
  /// Starts the stream: page 0 (a random miss: its window [0, 16) is read,
  /// page 0 mapped), page 1 (a hit: the window mapped), then page 16, the
  /// page after that window: the stream's first sequential fault, which reads
  /// [16, 48) and wakes its thread; the handler then reads [48, 80) ahead.
  void start_stream() {
    for (uint64_t pg = 0; pg <= kWindow; ++pg) touch(pg);
  }
};

TEST(AsyncReadahead, NextWindowIsReadWhileTheStreamTouchesThisOne) {
  Engine eng(config());
  Obj o(eng, "overlap");
  o.be->close(3 * kWindow);  // the readahead of [48, 80) waits in the backend
  o.start_stream();
  // The stream's thread runs while the readahead is still inside the backend.
  ASSERT_TRUE(ft::eventually([&] { return o.be->someone_waits(); }));
  const uint64_t faults = o.faults();
  for (uint64_t pg = kWindow + 1; pg < 3 * kWindow; ++pg) o.touch(pg);
  EXPECT_EQ(o.faults(), faults) << "[16, 48) was mapped by the stream's fault";
  EXPECT_TRUE(o.be->someone_waits()) << "the readahead was still reading meanwhile";
  EXPECT_EQ(o.f.stats().async_readahead_pages, 0u);
  const uint64_t copied = o.f.stats().pages_copied;
  o.be->open();
  // The window read ahead is cached before the stream reaches it.
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == kRa; }))
      << o.f.stats().async_readahead_pages;
  Stats s = o.f.stats();
  EXPECT_EQ(s.cached_pages, 3 * kWindow + kRa);
  // Mapped by UFFDIO_COPY as it was read, all but its first page (the marker).
  EXPECT_EQ(s.pages_copied, copied + kRa - 1);
  EXPECT_EQ(s.pages_installed, 3 * kWindow + kRa - 1) << "not mapped but for the marker page";
  // The stream reaches it: one fault (the marker: a hit, no read), which
  // maps the whole window and reads the next one ahead.
  const uint64_t hits = s.cache_hits;
  const uint64_t before = o.faults();
  const uint64_t calls = s.install_calls;
  for (uint64_t pg = 3 * kWindow; pg < 3 * kWindow + kRa; ++pg) o.touch(pg);
  EXPECT_EQ(o.faults(), before + 1);
  EXPECT_EQ(o.f.stats().cache_hits, hits + 1);
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == 2 * kRa; }));
  // The marker's install met the pages mapped already and skipped them in
  // one look at the page table: one CONTINUE (the marker page; it stops at
  // the next), then the next readahead's one COPY. (Stepping over them one
  // failed CONTINUE at a time, as on a kernel without PAGEMAP_SCAN: kRa - 1
  // more.)
  EXPECT_EQ(o.f.stats().install_calls - calls, pagemap_scan_works() ? 2u : 2u + kRa - 1);
  // To the end, ungated: every page read once. (No fault count here: the
  // stream now races the readahead of each next window, and a touch that
  // arrives while that window is still being read faults on a page of it and
  // waits for its lock — one fault or several per window, by timing. The one
  // fault per window read ahead in time is checked above, where the gate
  // decides the order.)
  o.touch_to_end_each_page_read_once(3 * kWindow + kRa);
}

// EngineConfig::readahead_windows = 2: a stream keeps two windows read ahead
// of the one it maps, each read by its own handler thread at the same time
// (one's copy overlaps the other's read). The stream's first sequential fault
// starts both; each marker fault after that starts one more, the window
// after the two already there.
TEST(AsyncReadahead, TwoWindowsAreReadAheadEachByItsOwnHandler) {
  EngineConfig cfg = config();
  cfg.readahead_windows = 2;
  Engine eng(cfg);
  Obj o(eng, "two");
  o.be->close(3 * kWindow);  // both readaheads, [48, 80) and [80, 112), wait in the backend
  o.start_stream();
  // Both are inside the backend at once: two handler threads read them.
  ASSERT_TRUE(ft::eventually([&] { return o.be->waiters() == 2; }))
      << "one window read ahead at a time (" << o.be->waiters() << " in the backend)";
  EXPECT_EQ(o.f.stats().async_readahead_pages, 0u);
  o.be->open();
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == 2 * kRa; }))
      << o.f.stats().async_readahead_pages;
  Stats s = o.f.stats();
  EXPECT_EQ(s.cached_pages, 3 * kWindow + 2 * kRa);
  EXPECT_EQ(s.pages_installed, 3 * kWindow + 2 * (kRa - 1)) << "a marker page was mapped";
  // The stream reaches the first: one fault (its marker, a hit) maps it and
  // reads one window more, [112, 144): two ahead again, not three.
  const uint64_t before = o.faults();
  const uint64_t hits = s.cache_hits;
  for (uint64_t pg = 3 * kWindow; pg < 3 * kWindow + kRa; ++pg) o.touch(pg);
  EXPECT_EQ(o.faults(), before + 1);
  EXPECT_EQ(o.f.stats().cache_hits, hits + 1);
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == 3 * kRa; }))
      << o.f.stats().async_readahead_pages;
  EXPECT_EQ(o.f.stats().cached_pages, 3 * kWindow + 3 * kRa);
  // To the end: every page read once.
  o.touch_to_end_each_page_read_once(3 * kWindow + kRa);
}

// Review of the readahead distance: a window past the nearest is queued for
// a handler thread; had it been queued with its first page locked, a handler
// serving the stream's fault on that page (a fixed pool of one handler that
// polls for the next fault: it serves that fault before it looks at the job
// queue) would sleep on a lock only the queued job releases. The far window's
// readahead locks its own first page when it runs.
TEST(AsyncReadahead, OnePollingHandlerScansWithTwoWindowsAhead) {
  EngineConfig cfg = config();
  cfg.fault_threads = 1;
  cfg.max_fault_threads = 1;
  cfg.fault_poll_us = 10000;
  cfg.readahead_windows = 2;
  Engine eng(cfg);
  Obj o(eng, "poll1");
  auto scan = std::async(std::launch::async, [&] {
    for (uint64_t pg = 0; pg < kPages; ++pg) o.touch(pg);
  });
  if (scan.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    // A deadlock: the scanning thread never returns, nor would the Engine's
    // teardown. Say so and end the process (gtest cannot unwind it).
    std::fprintf(stderr, "OnePollingHandlerScansWithTwoWindowsAhead: the scan hung\n");
    std::_Exit(1);
  }
  scan.get();
  const Stats s = o.f.stats();
  EXPECT_EQ(s.pages_filled, kPages) << "each page read once";
  EXPECT_EQ(s.read_errors + s.sigbus_sent, 0u);
}

TEST(AsyncReadahead, ReadaheadWindowsOutOfRangeIsEinval) {
  EngineConfig c = config();
  c.readahead_windows = 0;
  EXPECT_ERRNO(EINVAL, Engine{c});
  c.readahead_windows = 9;
  EXPECT_ERRNO(EINVAL, Engine{c});
  c.readahead_windows = 8;
  Engine eng(c);
  EXPECT_EQ(eng.config().readahead_windows, 8u);
}

// Context readahead (the kernel's page_cache_sync_ra looks for the cached
// pages a stream leaves behind): a fault right after a page a stream read
// continues that stream though the view's stream position moved elsewhere
// (several streams in one view: 8 scanning threads in bench --out-of-core
// scan read 256-page fault-around windows instead, as read-around probes).
TEST(AsyncReadahead, AFaultRightAfterAStreamsPagesContinuesIt) {
  Engine eng(config());
  Obj o(eng, "context");
  o.start_stream();  // [0, 16) a random window, [16, 48) the stream's, [48, 80) read ahead
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == kRa; }));
  const uint64_t end = 3 * kWindow + kRa;
  ASSERT_EQ(o.f.stats().cached_pages, end);
  o.touch(kPages - kWindow);  // elsewhere: the view's stream position moves there
  const uint64_t filled = o.f.stats().pages_filled;
  o.touch(end);  // right after the stream's pages
  // A stream's window (kRa pages, then a readahead), not the aligned
  // fault-around window [80, 96) of a random fault.
  EXPECT_GE(o.f.stats().pages_filled - filled, kRa);
}

#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
namespace ftest = faultline::testing;

/// Runs fn on a thread; wait_blocked() tells whether it reached a sleeping
/// wait (`wait.*`) before it finished (a fact, never a guess from time).
class Bg {
 public:
  template <class F>
  explicit Bg(F&& fn) : base_(ftest::reached("wait.")) {
    t_ = std::thread([this, fn = std::forward<F>(fn)] {
      fn();
      done_ = true;
      ftest::notify();
    });
  }
  ~Bg() {
    if (t_.joinable()) t_.join();
  }
  bool blocked() {
    const auto r = ftest::wait_reached("wait.", base_ + 1, [this] { return done_.load(); });
    EXPECT_NE(r, ftest::Reach::timed_out) << "neither waited nor finished";
    return r == ftest::Reach::reached;
  }
  void join() { t_.join(); }

 private:
  int base_;
  std::atomic<bool> done_{false};
  std::thread t_;
};
#endif

TEST(AsyncReadahead, FaultOnAPageBeingReadAheadWaitsForItsLock) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  // R1c: the readahead holds the marker page locked (and the invalidate_lock
  // shared) until its window is filled; the stream's fault on it sleeps on
  // the page lock, then finds it uptodate: a hit, nothing read twice.
  Engine eng(config());
  Obj o(eng, "lock");
  ftest::reset();
  ftest::arm("readahead.after_lock");
  o.start_stream();
  ASSERT_TRUE(ftest::wait_parked("readahead.after_lock"));
  Bg stream([&] { o.touch(3 * kWindow); });
  EXPECT_TRUE(stream.blocked()) << "the fault did not wait for the page being read ahead";
  ftest::release("readahead.after_lock");
  stream.join();
  ftest::reset();
  // The readahead unlocks the marker page last: the fault that waited on it
  // then finds the rest of the window unlocked and maps all of it (its
  // try-locks, R12, would skip pages still held: a fault per page).
  const uint64_t faults = o.faults();
  for (uint64_t pg = 3 * kWindow; pg < 3 * kWindow + kRa; ++pg) o.touch(pg);
  EXPECT_EQ(o.faults(), faults) << "the marker's fault did not map the whole window";
  for (uint64_t pg = 3 * kWindow + kRa; pg < kPages; ++pg) o.touch(pg);
  const Stats s = o.f.stats();
  EXPECT_EQ(s.pages_filled, kPages) << "each page read once";
  EXPECT_GE(s.async_readahead_pages, kRa);
  EXPECT_EQ(s.read_errors + s.sigbus_sent, 0u);
#endif
}

TEST(AsyncReadahead, StreamFasterThanTheReadaheadStillWaitsForIt) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  // The next window's first page is locked before the install wakes the
  // stream (lock_readahead): a stream that reaches the next window while its
  // readahead has not even charged its frames yet (parked before the charge,
  // as a slow direct reclaim would leave it) waits for that readahead on the
  // page lock and finds the window read (a hit), instead of reading it
  // itself and leaving the readahead behind it for good.
  Engine eng(config());
  Obj o(eng, "ahead");
  ftest::reset();
  ftest::arm("readahead.before_charge");
  o.start_stream();
  ASSERT_TRUE(ftest::wait_parked("readahead.before_charge"));
  const uint64_t misses = o.f.stats().cache_misses;
  Bg stream([&] { o.touch(3 * kWindow); });
  EXPECT_TRUE(stream.blocked()) << "the stream overtook its readahead";
  ftest::release("readahead.before_charge");
  stream.join();
  ftest::reset();
  EXPECT_EQ(o.f.stats().cache_misses, misses) << "the stream read the window the readahead was for";
  // The parked readahead read its window (counted after its unlock, which
  // woke the stream; the stream's fault then started the next one's).
  EXPECT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages >= kRa; }))
      << o.f.stats().async_readahead_pages;
  for (uint64_t pg = 3 * kWindow; pg < kPages; ++pg) o.touch(pg);
  const Stats s = o.f.stats();
  EXPECT_EQ(s.pages_filled, kPages) << "each page read once";
  EXPECT_EQ(s.read_errors + s.sigbus_sent, 0u);
#endif
}

// Issue 16 review: a fault's memory charge (its window's frames) stayed
// counted, beside the same pages in the cache, until read_fault ended, which
// is after the asynchronous readahead: the readahead's fill then saw the
// window twice (evictions for nothing). Parked at the readahead's start
// (first page locked, its frames charged, nothing read): the charge is the
// readahead's window only; the fault's window [16, 48) is cached, not charged.
TEST(AsyncReadahead, TheFaultsChargeEndsBeforeItsReadahead) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  EngineConfig cfg = config();
  cfg.memory_limit_pages = 1024;  // far above the pages this test fills
  Engine eng(cfg);
  Obj o(eng, "charge");
  ftest::reset();
  ftest::arm("readahead.after_lock");
  o.start_stream();  // page 16's fault installs [16, 48), then reads [48, 80) ahead
  ASSERT_TRUE(ftest::wait_parked("readahead.after_lock"));
  const Stats s = eng.stats();
  ftest::release("readahead.after_lock");
  ftest::reset();
  EXPECT_EQ(s.cached_pages, 3 * kWindow);
  EXPECT_EQ(s.charged_pages, kRa) << "the fault's window is charged beside its cached pages";
  // The readahead's charge ends with it (after its pages are counted).
  ASSERT_TRUE(ft::eventually([&] {
    return o.f.stats().async_readahead_pages == kRa && eng.stats().charged_pages == 0;
  }));
  EXPECT_EQ(eng.stats().cached_pages, 3 * kWindow + kRa);
#endif
}

TEST(AsyncReadahead, TruncateRacingTheReadaheadLeavesNothingPastEofAndLosesNothing) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  // Truncate into the window being read ahead: it waits for the readahead
  // (the invalidate_lock, R1b), then drops what the readahead read past the
  // new EOF (R3); a page written before (dirty, inside the window, below
  // the new EOF) keeps its data, in the cache and in the backend.
  Engine eng(config());
  Obj o(eng, "truncate", Access::ReadWrite);
  const uint64_t dirty_pg = 3 * kWindow + 4;  // 52, inside [48, 80)
  const auto mine = ft::pattern(dirty_pg * kPage, kPage, 5);
  o.f.write(dirty_pg * kPage, mine);
  std::memcpy(o.want.data() + dirty_pg * kPage, mine.data(), kPage);
  const uint64_t new_size = 60 * kPage + 123;
  ftest::reset();
  ftest::arm("readahead.after_lock");
  o.start_stream();
  ASSERT_TRUE(ftest::wait_parked("readahead.after_lock"));
  Bg trunc([&] { o.f.truncate(new_size); });
  EXPECT_TRUE(trunc.blocked()) << "truncate did not wait for the readahead";
  ftest::release("readahead.after_lock");
  trunc.join();
  ftest::reset();
  EXPECT_EQ(o.f.size(), new_size);
  EXPECT_EQ(ftest::FileAccess::frame_bytes(o.f), 61 * kPage) << "the memfd grew back";
  EXPECT_LE(o.f.stats().cached_pages, 61u) << "a page past EOF stayed cached";
  // Below EOF: the file's data, the written page included (view and read).
  for (uint64_t pg = 0; pg < 60; ++pg) o.touch(pg);
  std::vector<std::byte> got(new_size);
  ASSERT_EQ(o.f.read(0, got), new_size);
  EXPECT_EQ(-1, ft::first_diff(got.data(), o.want.data(), new_size));
  // The EOF page's tail reads zeros; past it, SIGBUS.
  EXPECT_EQ(o.m.data()[new_size + 1], std::byte{0});
  const auto bus = guarded([&] { (void)*reinterpret_cast<const volatile char*>(o.m.data() + 61 * kPage); });
  EXPECT_TRUE(bus.has_value()) << "an access past EOF got data";
  o.f.sync();
  std::vector<std::byte> back(kPage);
  ASSERT_EQ(o.be->read(dirty_pg * kPage, back), static_cast<ssize_t>(kPage));
  EXPECT_EQ(0, std::memcmp(back.data(), mine.data(), kPage)) << "the written page was lost";
  EXPECT_EQ(o.be->size(), static_cast<int64_t>(new_size));
#endif
}

// A window read ahead into a writable shared view is copied write-protected
// (its pages are clean): a store to one of them faults, dirties the page and
// reaches the backend at sync. (Copied writable, the store would go
// unnoticed: no fault, no write-back.)
TEST(AsyncReadahead, AStoreToAPageCopiedAheadIsNoticedAndWrittenBack) {
  Engine eng(config());
  Obj o(eng, "rw_copied", Access::ReadWrite);
  o.start_stream();
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == kRa; }));
  Stats s = o.f.stats();
  ASSERT_GE(s.pages_copied, kRa - 1);
  const uint64_t wp = s.wp_faults, faults = o.faults();
  const uint64_t pg = 3 * kWindow + 5;  // inside [48, 80), copied ahead
  o.m.data()[pg * kPage + 7] = std::byte{0x5a};
  s = o.f.stats();
  EXPECT_EQ(s.wp_faults, wp + 1) << "a store to a page copied ahead did not fault";
  EXPECT_EQ(o.faults(), faults) << "the page was not mapped (a MISSING/MINOR fault)";
  EXPECT_EQ(s.dirty_pages, 1u);
  o.f.sync();
  std::byte b{};
  ASSERT_EQ(1, o.be->read(pg * kPage + 7, std::span(&b, 1)));
  EXPECT_EQ(b, std::byte{0x5a}) << "the store was not written back";
}

// A cold file of the file backend scanned through a shared view: each
// window read ahead arrives in 512 KiB pieces (io_uring), each copied into
// the view as it arrives; every byte reads right.
TEST(AsyncReadahead, AColdFileIsReadAheadPieceByPieceIntoTheView) {
  ft::TempDir dir;
  constexpr uint64_t kFilePages = 4096;  // 16 MiB: 4 MiB windows
  const std::string path = dir.make_file("scan", kFilePages * kPage);
  ft::drop_cache(path, kFilePages * kPage);
  EngineConfig cfg;
  cfg.flusher = false;
  Engine eng(cfg);
  File f = eng.open(make_file_backend(path, false));
  Mapping m = f.map(0, kFilePages * kPage, Access::ReadOnly);
  const uint64_t pieces = faultline::detail::uring_pieces();
  const auto want = ft::pattern(0, kFilePages * kPage);
  const auto* p = static_cast<const volatile std::byte*>(m.data());
  for (uint64_t pg = 0; pg < kFilePages; ++pg)
    ASSERT_EQ(std::byte{p[pg * kPage + pg % kPage]}, want[pg * kPage + pg % kPage]) << "page " << pg;
  const Stats s = f.stats();
  EXPECT_GT(s.async_readahead_pages, 0u);
  EXPECT_GE(s.pages_copied, s.async_readahead_pages - s.async_readahead_pages / 1024 - 1)
      << "read ahead, but not copied (all but one page per window)";
  EXPECT_EQ(s.bytes_read, kFilePages * kPage);
  if (faultline::detail::thread_ring() != nullptr) {
    EXPECT_GE(faultline::detail::uring_pieces() - pieces, s.async_readahead_pages / 128)
        << "the windows were not read in pieces";
  }
}

/// Loads byte `at` of every page of m, checking it against `want`; false
/// (and a failure) at the first SIGBUS.
bool scan_without_sigbus(const Mapping& m, const std::vector<std::byte>& want, uint64_t at) {
  for (uint64_t pg = 0; pg < kPages; ++pg) {
    const uint64_t off = pg * kPage + at;
    const auto bus = guarded([&] {
      const std::byte got = static_cast<volatile const std::byte*>(m.data())[off];
      EXPECT_EQ(got, want[off]) << "page " << pg;
    });
    if (bus.has_value()) {
      ADD_FAILURE() << "SIGBUS at page " << pg;
      return false;
    }
  }
  return true;
}

// A backend whose streamed reads fail part-way: a long aligned read hands
// over its first 8 pages, then fails (EIO). Plain reads work.
class HalfStreamBackend final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  ssize_t read_aligned_streaming(uint64_t off, std::span<std::byte> buf,
                                 const Arrival& arrived) override {
    if (buf.size() < 16 * kPage) return ForwardingBackend::read_aligned_streaming(off, buf, arrived);
    const ssize_t k = read(off, buf.first(8 * kPage));
    if (k != static_cast<ssize_t>(8 * kPage)) return k < 0 ? k : -EIO;
    if (const int e = arrived(buf.data(), 0, static_cast<size_t>(k))) return e;
    failed.fetch_add(1);
    return -EIO;
  }
  std::atomic<int> failed{0};
};

// A fill whose read fails after some pieces were copied into the view keeps
// those pages (mapped, uptodate) and leaves the rest to be read again: a
// scan through such reads still sees every byte, with no SIGBUS (the
// faulting page is retried alone, the others by later faults).
TEST(AsyncReadahead, AReadFailingPartWayKeepsThePiecesCopiedAndLosesNothing) {
  Engine eng(config());
  auto mem = make_memory_backend("async_ra_half_" + std::to_string(::getpid()), 0);
  const auto want = ft::pattern(0, kPages * kPage);
  ASSERT_EQ(0, mem->write(0, want));
  auto be = std::make_shared<HalfStreamBackend>(mem);
  File f = eng.open(be);
  Mapping m = f.map(0, kPages * kPage, Access::ReadOnly);
  ASSERT_TRUE(scan_without_sigbus(m, want, 13));
  EXPECT_GT(be->failed.load(), 0) << "no streamed read failed part-way: the test tests nothing";
  const Stats s = f.stats();
  EXPECT_GT(s.read_errors, 0u);
  EXPECT_GT(s.pages_copied, 0u);
  EXPECT_EQ(s.sigbus_sent, 0u);
}

// The marker fault skips the pages the readahead copied, but not a page
// among them that lost its PTE since (zapped: here by the program, as
// reclaim's sampling does): the look at the page table stops there. A skip
// that took the zapped page for mapped would leave a fault on it unwoken
// (its install "found" it mapped): the touches below would hang. (The
// number of faults is not checked: under ThreadSanitizer in CI the zapped
// page once took a fault of its own, a hit.)
TEST(AsyncReadahead, TheMarkerFaultMapsAPageZappedInsideTheCopiedWindow) {
  Engine eng(config());
  Obj o(eng, "zapped");
  o.start_stream();
  ASSERT_TRUE(ft::eventually([&] { return o.f.stats().async_readahead_pages == kRa; }));
  const uint64_t zapped = 3 * kWindow + 12;  // inside [48, 80), copied ahead
  ASSERT_EQ(0, ::madvise(o.m.data() + zapped * kPage, kPage, MADV_DONTNEED));
  const uint64_t before = o.faults();
  o.touch(3 * kWindow);  // the marker
  EXPECT_EQ(o.faults(), before + 1);
  o.touch(zapped);
  for (uint64_t pg = 3 * kWindow; pg < 3 * kWindow + kRa; ++pg) o.touch(pg);
  EXPECT_LE(o.faults(), before + 2);
}

// Backends that break read_aligned_streaming's contract (Backend::Arrival):
// a piece cut inside a page before the end, or a count larger than what was
// handed over. The engine fails such a read with EIO instead of putting
// misplaced or stale bytes into frames; the faulting page is read again
// alone (plain reads work), so every byte reads right.
class BadStreamBackend final : public ForwardingBackend {
 public:
  BadStreamBackend(std::shared_ptr<Backend> inner, bool unaligned)
      : ForwardingBackend(std::move(inner)), unaligned_(unaligned) {}
  ssize_t read_aligned_streaming(uint64_t off, std::span<std::byte> buf,
                                 const Arrival& arrived) override {
    if (buf.size() < 16 * kPage) return ForwardingBackend::read_aligned_streaming(off, buf, arrived);
    const ssize_t k = read(off, buf);
    if (k != static_cast<ssize_t>(buf.size())) return k < 0 ? k : -EIO;
    calls.fetch_add(1);
    if (unaligned_) {  // 6000 bytes, then the rest: the second piece starts inside page 1
      if (const int e = arrived(buf.data(), 0, 6000)) return e;
      if (const int e = arrived(buf.data() + 6000, 6000, buf.size() - 6000)) return e;
      return k;
    }
    // Half handed over, all counted (the rest never handed over).
    if (const int e = arrived(buf.data(), 0, buf.size() / 2)) return e;
    std::memset(buf.data() + buf.size() / 2, 0xab, buf.size() / 2);  // not the data
    return k;
  }
  std::atomic<int> calls{0};

 private:
  const bool unaligned_;
};

TEST(AsyncReadahead, AStreamingBackendBreakingTheContractGetsEioNotWrongBytes) {
  for (const bool unaligned : {true, false}) {
    SCOPED_TRACE(unaligned ? "a piece cut inside a page" : "a count past what was handed over");
    Engine eng(config());
    auto mem = make_memory_backend("async_ra_bad_" + std::to_string(unaligned) + "_" +
                                       std::to_string(::getpid()),
                                   0);
    const auto want = ft::pattern(0, kPages * kPage);
    ASSERT_EQ(0, mem->write(0, want));
    auto be = std::make_shared<BadStreamBackend>(mem, unaligned);
    File f = eng.open(be);
    Mapping m = f.map(0, kPages * kPage, Access::ReadOnly);
    ASSERT_TRUE(scan_without_sigbus(m, want, 29));
    EXPECT_GT(be->calls.load(), 0) << "no long streamed read: the test tests nothing";
    EXPECT_GT(f.stats().read_errors, 0u);
  }
}

}  // namespace
