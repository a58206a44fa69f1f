// FaultMode::FaultingThread: each faulting thread resolves its own fault in
// the engine's SIGBUS handler (UFFD_FEATURE_SIGBUS). The same fault path as
// the handler threads, so these tests check what differs: which thread
// serves, how a store is told from a load and a write-protect fault from a
// missing page, how SIGBUS reaches the program (guarded(), a handler of its
// own installed after the engine's), throttled stores, and the documented
// EFAULT for kernel-mode accesses.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "faultline/engine.hpp"
#include "faultline/forwarding_backend.hpp"
#include "faultline/guarded.hpp"
#include "fixtures.hpp"
#include "test_util.hpp"

// The engine's fault path runs in a signal handler here (by design); TSan
// would report each allocation in it as signal-unsafe. The interrupted code
// is a load or store of the test's own, never inside malloc.
extern "C" const char* __tsan_default_options() { return "report_signal_unsafe=0"; }

namespace {

using faultline::Access;
using faultline::EngineConfig;
using faultline::FaultMode;
using faultline::Sharing;
using ft::kPage;

EngineConfig in_thread(EngineConfig c = {}) {
  c.fault_mode = FaultMode::FaultingThread;
  return c;
}

std::optional<faultline::BusError> load_at(const std::byte* p) {
  return faultline::guarded([p] { (void)*reinterpret_cast<const volatile char*>(p); });
}
std::optional<faultline::BusError> store_at(std::byte* p, char v = 1) {
  return faultline::guarded([p, v] { *reinterpret_cast<volatile char*>(p) = v; });
}

TEST(FaultingThread, LoadsSeeTheFileAndNoHandlerThreadServesThem) {
  constexpr uint64_t kPages = 64;
  ft::MappedFile t(kPages, 7, {.cfg = in_thread(), .access = Access::ReadOnly});
  auto& [dir, path, eng, f, m] = t;
  const auto want = ft::pattern(0, kPages * kPage, 7);
  // Every page, out of order (fault-around maps neighbours; each fault that
  // remains is this thread's).
  for (uint64_t i = 0; i < kPages; ++i) {
    const uint64_t pg = (i * 37) % kPages;
    ASSERT_EQ(std::memcmp(m.data() + pg * kPage, want.data() + pg * kPage, kPage), 0) << pg;
  }
  const auto s = f.stats();
  EXPECT_GT(s.faults_in_thread, 0u);
  // Every fault was this thread's: none reached a handler as an event.
  EXPECT_EQ(s.faults_in_thread, s.minor_faults + s.missing_faults + s.wp_faults);
}

TEST(FaultingThread, StoresCallMkwriteDirtyThePageAndAreWrittenBack) {
  ft::TempDir dir;
  constexpr uint64_t kPages = 16;
  const auto path = dir.make_file("f", kPages * kPage, 3);
  auto wrap = std::make_shared<ft::WrapBackend>(faultline::make_file_backend(path));
  EngineConfig cfg = in_thread();
  cfg.fault_around_pages = 1;  // each page its own fault
  ft::ViewedFile t(wrap, kPages * kPage, {.cfg = cfg});
  auto& [eng, f, m] = t;
  // Even pages: a store to a page not yet installed (one fault: the store's).
  // Odd pages: loaded first, then stored (a write-protect fault, R5).
  for (uint64_t pg = 0; pg < kPages; ++pg) {
    std::byte* p = m.data() + pg * kPage + 100;
    if (pg % 2) {
      ASSERT_FALSE(load_at(p)) << pg;
    }
    ASSERT_FALSE(store_at(p, static_cast<char>(0x40 + pg))) << pg;
  }
  const auto s = f.stats();
  EXPECT_GT(s.wp_faults, 0u);  // odd pages not made writable ahead (write-around)
  EXPECT_EQ(s.pages_dirtied, kPages);
  EXPECT_GE(wrap->mkwrite_calls.load(), kPages);
  m.msync(m.data(), kPages * kPage, MS_SYNC);
  auto want = ft::pattern(0, kPages * kPage, 3);
  for (uint64_t pg = 0; pg < kPages; ++pg) want[pg * kPage + 100] = std::byte(0x40 + pg);
  const auto got = ft::pread_file(path, 0, kPages * kPage);
  EXPECT_EQ(ft::first_diff(got.data(), want.data(), want.size()), -1);
}

TEST(FaultingThread, PastEofIsTheProgramsSigbus) {
  ft::TempDir dir;
  const auto path = dir.make_file("f", 3 * kPage + 100, 1);
  faultline::Engine eng(in_thread());
  auto f = eng.open(faultline::make_file_backend(path, false));
  auto m = f.map(0, 8 * kPage, Access::ReadOnly);
  EXPECT_FALSE(load_at(m.data() + 3 * kPage + 50));  // the page holding EOF
  for (int i = 0; i < 2; ++i) {  // and again: the page stays past EOF
    auto e = load_at(m.data() + 5 * kPage + 8);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->addr, m.data() + 5 * kPage + 8);
    EXPECT_EQ(e->code, BUS_ADRERR);
  }
  EXPECT_EQ(f.stats().faults_in_thread, 1u);  // the page holding EOF; past it the kernel's SIGBUS
}

TEST(FaultingThread, ReadErrorAndRefusedMkwriteAreSigbusTheRestWorks) {
  ft::TempDir dir;
  constexpr uint64_t kPages = 8;
  const auto path = dir.make_file("f", kPages * kPage, 5);
  auto wrap = std::make_shared<ft::WrapBackend>(faultline::make_file_backend(path));
  wrap->fail_reads({2});
  wrap->fail_mkwrite({5});
  EngineConfig cfg = in_thread();
  cfg.fault_around_pages = 1;
  ft::ViewedFile t(wrap, kPages * kPage, {.cfg = cfg});
  auto& [eng, f, m] = t;
  for (int i = 0; i < 2; ++i) {
    auto e = load_at(m.data() + 2 * kPage);
    ASSERT_TRUE(e) << i;
    EXPECT_TRUE(ft::io_error_code_ok(e->code)) << e->code;
  }
  auto e = store_at(m.data() + 5 * kPage);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->addr, m.data() + 5 * kPage);
  const auto want = ft::pattern(0, kPages * kPage, 5);
  for (uint64_t pg : {0, 1, 3, 4, 6, 7})
    EXPECT_EQ(std::memcmp(m.data() + pg * kPage, want.data() + pg * kPage, kPage), 0) << pg;
  EXPECT_FALSE(store_at(m.data() + 6 * kPage));
  const auto s = f.stats();
  EXPECT_GE(s.read_errors, 1u);
  EXPECT_EQ(s.mkwrite_errors, 1u);
  EXPECT_GE(s.pages_dirtied, 1u);  // page 6 (and write-around after it)
  // The refused store dirtied nothing: page 5 reaches the file unchanged.
  m.msync(m.data(), kPages * kPage, MS_SYNC);
  const auto got = ft::pread_file(path, 5 * kPage, kPage);
  EXPECT_EQ(std::memcmp(got.data(), want.data() + 5 * kPage, kPage), 0);
  EXPECT_EQ(ft::pread_file(path, 6 * kPage, 1)[0], std::byte(1));
}

// A program's own SIGBUS handler, installed after the engine's, that calls
// handle_sigbus() first: the engine's faults are resolved, a real SIGBUS
// (past EOF) reaches the program.
sigjmp_buf g_jump;
std::atomic<int> g_program_sigbus{0};
void program_handler(int sig, siginfo_t* info, void* uctx) {
  if (faultline::handle_sigbus(sig, info, uctx)) return;
  g_program_sigbus.fetch_add(1);
  siglongjmp(g_jump, 1);
}

TEST(FaultingThread, AProgramHandlerInstalledLaterCallsHandleSigbusFirst) {
  ft::TempDir dir;
  const auto path = dir.make_file("f", 4 * kPage, 9);
  faultline::Engine eng(in_thread());
  auto f = eng.open(faultline::make_file_backend(path, false));
  auto m = f.map(0, 8 * kPage, Access::ReadOnly);
  struct sigaction sa {}, old {};
  sa.sa_sigaction = program_handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGBUS, &sa, &old), 0);
  const auto want = ft::pattern(0, 4 * kPage, 9);
  const bool same = std::memcmp(m.data(), want.data(), 4 * kPage) == 0;
  const int before = g_program_sigbus.load();
  volatile bool jumped = false;
  if (sigsetjmp(g_jump, 1) == 0) {
    (void)*reinterpret_cast<const volatile char*>(m.data() + 6 * kPage);
  } else {
    jumped = true;
  }
  ASSERT_EQ(sigaction(SIGBUS, &old, nullptr), 0);
  EXPECT_TRUE(same);
  EXPECT_TRUE(jumped);
  EXPECT_EQ(g_program_sigbus.load(), before + 1);
  EXPECT_GT(f.stats().faults_in_thread, 0u);
}

TEST(FaultingThread, ManyThreadsUnderAMemoryLimit) {
  constexpr uint64_t kPages = 4096;  // 16 MiB
  constexpr unsigned kThreads = 8;
  EngineConfig cfg = in_thread();
  cfg.memory_limit_pages = 512;
  ft::MappedFile t(kPages, 11, {.cfg = cfg, .access = Access::ReadOnly});
  auto& [dir, path, eng, f, m] = t;
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> th;
  for (unsigned k = 0; k < kThreads; ++k)
    th.emplace_back([&, k] {
      std::mt19937_64 g(k + 1);
      for (int i = 0; i < 2000; ++i) {
        const uint64_t pg = g() % kPages;
        const uint64_t off = pg * kPage + (g() % kPage);
        if (*reinterpret_cast<const volatile std::byte*>(m.data() + off) != ft::pat(off, 11))
          bad.fetch_add(1);
      }
    });
  for (auto& x : th) x.join();
  EXPECT_EQ(bad.load(), 0u);
  const auto s = eng.stats();
  EXPECT_GT(s.faults_in_thread, kThreads);
  EXPECT_GT(s.pages_reclaimed, 0u);
  EXPECT_LE(s.peak_cached_pages, cfg.memory_limit_pages * 105 / 100);
}

TEST(FaultingThread, KernelModeAccessToAnUninstalledPageIsEfault) {
  // The documented cost of the mode (engine.hpp FaultMode): the kernel does
  // not raise SIGBUS for its own accesses, it fails them.
  constexpr uint64_t kPages = 4;
  EngineConfig cfg = in_thread();
  cfg.fault_around_pages = 1;
  ft::MappedFile t(kPages, 2, {.cfg = cfg});
  auto& [dir, path, eng, f, m] = t;
  ft::TempDir other;
  const auto src = other.make_file("src", kPage, 4);
  const int fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  errno = 0;
  EXPECT_EQ(::pread(fd, m.data() + kPage, kPage, 0), -1);
  EXPECT_EQ(errno, EFAULT);
  (void)*reinterpret_cast<volatile char*>(m.data() + kPage);  // installed by a user-mode load
  *reinterpret_cast<volatile char*>(m.data() + kPage) = 0;    // and made writable
  EXPECT_EQ(::pread(fd, m.data() + kPage, kPage, 0), static_cast<ssize_t>(kPage));
  ::close(fd);
  const auto want = ft::pattern(0, kPage, 4);
  EXPECT_EQ(std::memcmp(m.data() + kPage, want.data(), kPage), 0);
}

TEST(FaultingThread, TruncateThenAccessPastTheNewEofIsSigbus) {
  constexpr uint64_t kPages = 8;
  ft::MappedFile t(kPages, 6, {.cfg = in_thread()});
  auto& [dir, path, eng, f, m] = t;
  (void)ft::touch_read(m.data(), kPages * kPage);
  f.truncate(2 * kPage);
  EXPECT_FALSE(load_at(m.data() + kPage));
  EXPECT_TRUE(load_at(m.data() + 5 * kPage));
  EXPECT_TRUE(store_at(m.data() + 6 * kPage));
}

TEST(FaultingThread, PrivateViewStoresStayPrivate) {
  constexpr uint64_t kPages = 8;
  ft::MappedFile t(kPages, 8, {.cfg = in_thread(), .sharing = Sharing::Private});
  auto& [dir, path, eng, f, m] = t;
  for (uint64_t pg = 0; pg < kPages; ++pg) ASSERT_FALSE(store_at(m.data() + pg * kPage, 'x'));
  for (uint64_t pg = 0; pg < kPages; ++pg) EXPECT_EQ(m.data()[pg * kPage], std::byte('x'));
  const auto want = ft::pattern(0, kPages * kPage, 8);
  const auto got = ft::pread_file(path, 0, kPages * kPage);
  EXPECT_EQ(ft::first_diff(got.data(), want.data(), want.size()), -1);
}

TEST(FaultingThread, ThrottledStoresWaitForWriteBackAndLand) {
  constexpr uint64_t kPages = 512;
  EngineConfig cfg = in_thread();
  cfg.dirty_background_pages = 8;
  cfg.dirty_limit_pages = 16;
  ft::MappedFile t(kPages, 12, {.cfg = cfg});
  auto& [dir, path, eng, f, m] = t;
  ft::run_with_timeout([&] {
    for (uint64_t pg = 0; pg < kPages; ++pg) m.data()[pg * kPage + 7] = std::byte(pg & 0xff);
  });
  EXPECT_GT(eng.stats().stores_throttled, 0u);
  m.msync(m.data(), kPages * kPage, MS_SYNC);
  auto want = ft::pattern(0, kPages * kPage, 12);
  for (uint64_t pg = 0; pg < kPages; ++pg) want[pg * kPage + 7] = std::byte(pg & 0xff);
  const auto got = ft::pread_file(path, 0, kPages * kPage);
  EXPECT_EQ(ft::first_diff(got.data(), want.data(), want.size()), -1);
}

// A sequential scan: the stream's next window is read ahead by a handler
// thread while the scanning thread goes on (its SIGBUS handler returns after
// the install, as a handler thread wakes it before reading ahead).
class ThreadRecordingBackend : public faultline::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override {
    {
      std::lock_guard g(mu);
      reads.push_back({off, ::gettid()});
    }
    return ForwardingBackend::read_into_fd(off, len, fd, fd_off);
  }
  ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) override {  // UFFDIO_COPY fills
    {
      std::lock_guard g(mu);
      reads.push_back({off, ::gettid()});
    }
    return ForwardingBackend::read_aligned(off, buf);
  }
  std::mutex mu;
  std::vector<std::pair<uint64_t, pid_t>> reads;
};

TEST(FaultingThread, AScanIsReadAheadByAHandlerThread) {
  ft::TempDir dir;
  constexpr uint64_t kPages = 8192;  // 32 MiB: several readahead windows
  const auto path = dir.make_file("f", kPages * kPage, 13);
  auto rec = std::make_shared<ThreadRecordingBackend>(faultline::make_file_backend(path, false));
  ft::ViewedFile t(rec, kPages * kPage, {.cfg = in_thread(), .access = Access::ReadOnly});
  auto& [eng, f, m] = t;
  pid_t scanner = 0;
  uint64_t bad = 0;
  std::thread th([&] {
    scanner = ::gettid();
    for (uint64_t pg = 0; pg < kPages; ++pg)
      if (m.data()[pg * kPage + 5] != ft::pat(pg * kPage + 5, 13)) ++bad;
  });
  th.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(f.stats().async_readahead_pages, 0u);
  uint64_t by_scanner = 0, by_others = 0;
  {
    std::lock_guard g(rec->mu);
    for (const auto& [off, tid] : rec->reads) (tid == scanner ? by_scanner : by_others) += 1;
  }
  EXPECT_GT(by_scanner, 0u);  // its first faults
  EXPECT_GT(by_others, 0u);   // the windows read ahead
}

// EngineConfig::readahead_windows = 2 with the faulting thread serving its
// faults: the nearest window is queued holding its first page, the far one
// without (its readahead locks it). Every page right, read once. (Without a
// memory limit: under one of four windows, 12-14% of the bytes were read
// twice, reclaim taking read-ahead pages before the stream reached them:
// DESIGN section 2, "Readahead distance".)
TEST(FaultingThread, AScanWithTwoWindowsAheadReadsEachPageOnce) {
  ft::TempDir dir;
  constexpr uint64_t kPages = 8192;  // 32 MiB: several 4 MiB windows
  const auto path = dir.make_file("f", kPages * kPage, 17);
  EngineConfig cfg = in_thread();
  cfg.readahead_windows = 2;
  ft::ViewedFile t(faultline::make_file_backend(path, false), kPages * kPage,
                   {.cfg = cfg, .access = Access::ReadOnly});
  auto& [eng, f, m] = t;
  uint64_t bad = 0;
  std::thread th([&] {
    for (uint64_t pg = 0; pg < kPages; ++pg)
      if (m.data()[pg * kPage + 5] != ft::pat(pg * kPage + 5, 17)) ++bad;
  });
  th.join();
  EXPECT_EQ(bad, 0u);
  const faultline::Stats s = f.stats();
  // (How many windows were read ahead depends on timing: the stream can
  // reach a far window before its job runs, and reads it itself.)
  EXPECT_GT(s.async_readahead_pages, 0u);
  EXPECT_EQ(s.bytes_read, kPages * kPage) << "a page read twice (or not at all)";
  EXPECT_EQ(s.read_errors + s.sigbus_sent, 0u);
}

TEST(FaultingThread, ThrottledStoresGoThroughWhenWriteBackFails) {
  // R6: a write-back pass that writes nothing while stores wait at the hard
  // limit lets them through; here they wait in their own SIGBUS handler.
  ft::TempDir dir;
  constexpr uint64_t kPages = 128;
  const auto path = dir.make_file("f", kPages * kPage, 14);
  auto wrap = std::make_shared<ft::WrapBackend>(faultline::make_file_backend(path));
  std::set<uint64_t> all;
  for (uint64_t pg = 0; pg < kPages; ++pg) all.insert(pg);
  wrap->fail_writes(all);
  EngineConfig cfg = in_thread();
  cfg.dirty_background_pages = 4;
  cfg.dirty_limit_pages = 8;
  cfg.fault_around_pages = 1;
  cfg.write_around_max_pages = 1;
  ft::ViewedFile t(wrap, kPages * kPage, {.cfg = cfg});
  auto& [eng, f, m] = t;
  ft::run_with_timeout(
      [&] {
        for (uint64_t pg = 0; pg < kPages; ++pg) m.data()[pg * kPage + 9] = std::byte(0x5a);
      },
      std::chrono::seconds(60), "stores with write-back failing");
  EXPECT_GT(eng.stats().stores_throttled, 0u);
  for (uint64_t pg = 0; pg < kPages; ++pg) EXPECT_EQ(m.data()[pg * kPage + 9], std::byte(0x5a));
  wrap->fail_writes({});
}

TEST(FaultingThread, PastEofInAViewAtAnOffset) {
  ft::TempDir dir;
  const auto path = dir.make_file("f", 10 * kPage + 100, 15);
  faultline::Engine eng(in_thread());
  auto f = eng.open(faultline::make_file_backend(path, false));
  auto m = f.map(8 * kPage, 8 * kPage, Access::ReadOnly);  // file pages 8..15
  EXPECT_FALSE(load_at(m.data() + 2 * kPage + 99));  // file page 10 holds EOF
  EXPECT_EQ(m.data()[2 * kPage + 99], ft::pat(10 * kPage + 99, 15));
  auto e = load_at(m.data() + 4 * kPage);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->addr, m.data() + 4 * kPage);
}

TEST(FaultingThread, AsyncDirtyTrackingViewsStayWithTheHandlerThreads) {
  ft::TempDir dir;
  constexpr uint64_t kPages = 16;
  const auto path = dir.make_file("f", kPages * kPage, 16);
  faultline::Engine eng(in_thread());
  if (!eng.features().wp_async) GTEST_SKIP() << "no UFFD_FEATURE_WP_ASYNC";
  faultline::FileOptions fo;
  fo.dirty_tracking = faultline::DirtyTracking::Async;
  auto f = eng.open(faultline::make_file_backend(path), fo);
  auto m = f.map(0, kPages * kPage, Access::ReadWrite);
  for (uint64_t pg = 0; pg < kPages; ++pg) m.data()[pg * kPage + 3] = std::byte(0x77);
  m.msync(m.data(), kPages * kPage, MS_SYNC);
  const auto s = f.stats();
  EXPECT_EQ(s.faults_in_thread, 0u);
  EXPECT_GT(s.minor_faults + s.missing_faults, 0u);
  for (uint64_t pg = 0; pg < kPages; ++pg)
    EXPECT_EQ(ft::pread_file(path, pg * kPage + 3, 1)[0], std::byte(0x77)) << pg;
}

TEST(FaultingThread, GuardedInstalledBeforeTheEngine) {
  // guarded()'s handler first, the engine's after it (each CTest run of a
  // test is a process of its own, so here the order is this one).
  EXPECT_FALSE(faultline::guarded([] {}));
  ft::MappedFile t(8, 17, {.cfg = in_thread(), .access = Access::ReadOnly});
  auto& [dir, path, eng, f, m] = t;
  const auto want = ft::pattern(0, 8 * kPage, 17);
  EXPECT_EQ(std::memcmp(m.data(), want.data(), 8 * kPage), 0);
  f.truncate(3 * kPage);
  EXPECT_TRUE(load_at(m.data() + 5 * kPage));
  EXPECT_GT(f.stats().faults_in_thread, 0u);
}

// A backend whose reads first touch a mapping that raises SIGBUS (a kernel
// mmap of a one-page file, past its end): with its own guarded() scope the
// fault goes on; without one the process ends, rather than let a handler
// jump out of the fault path holding its locks.
class TouchingBackend : public faultline::ForwardingBackend {
 public:
  TouchingBackend(std::shared_ptr<faultline::Backend> inner, const std::byte* bad, bool guard)
      : ForwardingBackend(std::move(inner)), bad_(bad), guard_(guard) {}
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override {
    touch();
    return ForwardingBackend::read_into_fd(off, len, fd, fd_off);
  }
  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    touch();
    return ForwardingBackend::read(off, buf);
  }
  ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) override {  // UFFDIO_COPY fills
    touch();
    return ForwardingBackend::read_aligned(off, buf);
  }
  std::atomic<int> caught{0};

 private:
  void touch() {
    const std::byte* p = bad_;
    if (!guard_) {
      (void)*reinterpret_cast<const volatile char*>(p);
      return;
    }
    if (faultline::guarded([p] { (void)*reinterpret_cast<const volatile char*>(p); }))
      caught.fetch_add(1);
  }
  const std::byte* bad_;
  bool guard_;
};

/// A kernel mapping of two pages of a one-page file: its second page raises
/// SIGBUS (BUS_ADRERR) on access.
struct PastEofMapping {
  explicit PastEofMapping(const std::string& path) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    p = static_cast<std::byte*>(::mmap(nullptr, 2 * kPage, PROT_READ, MAP_SHARED, fd, 0));
  }
  ~PastEofMapping() {
    ::munmap(p, 2 * kPage);
    ::close(fd);
  }
  int fd;
  std::byte* p;
};

TEST(FaultingThread, ABackendsOwnGuardInsideTheFaultPathWorks) {
#if defined(__SANITIZE_THREAD__)
  // TSan runs every handler with all signals blocked: a SIGBUS nested in the
  // fault path's handler kills the process there.
  GTEST_SKIP() << "ThreadSanitizer blocks signals nested in a handler";
#endif
  ft::TempDir dir;
  const auto small = dir.make_file("small", kPage, 1);
  PastEofMapping bad(small);
  ASSERT_NE(bad.p, MAP_FAILED);
  const auto path = dir.make_file("f", 8 * kPage, 18);
  auto be = std::make_shared<TouchingBackend>(faultline::make_file_backend(path, false),
                                              bad.p + kPage, /*guard=*/true);
  ft::ViewedFile t(be, 8 * kPage, {.cfg = in_thread(), .access = Access::ReadOnly});
  auto& [eng, f, m] = t;
  const auto want = ft::pattern(0, 8 * kPage, 18);
  EXPECT_EQ(std::memcmp(m.data(), want.data(), 8 * kPage), 0);
  EXPECT_GT(be->caught.load(), 0);
  EXPECT_GT(f.stats().faults_in_thread, 0u);
}

TEST(FaultingThreadDeathTest, AnUnresolvedSigbusInsideTheFaultPathEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  ft::TempDir dir;
  const auto small = dir.make_file("small", kPage, 1);
  const auto path = dir.make_file("f", 8 * kPage, 19);
  EXPECT_DEATH(
      {
        PastEofMapping bad(small);
        auto be = std::make_shared<TouchingBackend>(faultline::make_file_backend(path, false),
                                                    bad.p + kPage, /*guard=*/false);
        ft::ViewedFile t(be, 8 * kPage, {.cfg = in_thread(), .access = Access::ReadOnly});
        // Inside guarded(): without the rule its handler would jump out of the
        // fault path with the page locked.
        (void)faultline::guarded([&] { (void)*reinterpret_cast<const volatile char*>(t.m.data()); });
        std::_Exit(0);  // jumped out: no teardown (it would wait for the held page forever)
      },
      // (A sanitizer's runtime may end a nested synchronous signal itself.)
      ft::sanitizer_build() ? "" : "SIGBUS inside the fault path");
}

}  // namespace
