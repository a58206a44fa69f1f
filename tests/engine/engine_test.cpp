// Engine: one cache per backing object, shutdown leaves nothing behind,
// kernel features. Label: engine.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <dirent.h>
#include <malloc.h>
#include <fstream>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "testing/testing.hpp"
#include "test_util.hpp"

using namespace faultline;
using ft::kPage;

namespace {

TEST(Engine, FeaturesProbed) {
  Engine eng;
  const KernelFeatures& k = eng.features();
  EXPECT_TRUE(k.poison);
  EXPECT_TRUE(k.minor_shmem);
  EXPECT_TRUE(k.wp_shmem);
  EXPECT_FALSE(k.via.empty());
  EXPECT_EQ(eng.config().fault_threads, EngineConfig{}.fault_threads);
}

// Issue 16, bad input: a memory limit below one fault window is refused at
// construction (a limit of one window, or a smaller window, is fine).
TEST(Engine, MemoryLimitBelowOneFaultWindowIsEinval) {
  EngineConfig c;
  c.flusher = false;
  c.memory_limit_pages = c.fault_around_pages - 1;
  try {
    Engine eng(c);
    FAIL() << "an engine with a limit below its fault window";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EINVAL);
    EXPECT_NE(std::string(e.what()).find("smaller than one fault window"), std::string::npos)
        << e.what();
  }
  c.memory_limit_pages = c.fault_around_pages;
  { Engine ok(c); }
  c.memory_limit_pages = 16;
  c.fault_around_pages = 16;
  Engine small(c);
  EXPECT_EQ(small.config().memory_limit_pages, 16u);
}

TEST(Engine, SamePathTwiceIsOneCache) {
  ft::TempDir dir;
  const uint64_t size = 32 * kPage;
  const std::string path = dir.make_file("one", size);
  const std::string link = dir.file("hardlink");
  ASSERT_EQ(0, ::link(path.c_str(), link.c_str()));
  Engine eng;
  File a = eng.open(path);
  File b = eng.open(path);
  File c = eng.open(link);  // another name for the same inode
  Mapping ma = a.map(0, size);
  // A store through a's view, before any write-back, is visible via b and c.
  std::memset(ma.data() + 3 * kPage + 5, 0x6b, 100);
  std::vector<std::byte> got(100);
  ASSERT_EQ(b.read(3 * kPage + 5, got), 100u);
  for (auto x : got) ASSERT_EQ(x, std::byte{0x6b});
  ASSERT_EQ(c.read(3 * kPage + 5, got), 100u);
  for (auto x : got) ASSERT_EQ(x, std::byte{0x6b});
  // ... and b's write in a's view.
  const std::byte z{0x7c};
  b.write(10 * kPage, std::span(&z, 1));
  EXPECT_EQ(ma.data()[10 * kPage], z);
  Mapping mb = b.map(0, size, Access::ReadOnly);
  EXPECT_EQ(mb.data()[3 * kPage + 5], std::byte{0x6b});
  // One cache: the statistics are shared and nothing was read twice.
  EXPECT_EQ(a.stats().pages_filled, b.stats().pages_filled);
  EXPECT_LE(a.stats().pages_filled, 32u);
  EXPECT_EQ(a.stats().pages_filled, eng.stats().pages_filled);
  // Growing through one handle is seen by the others.
  b.write(size, std::span(&z, 1));
  EXPECT_EQ(a.size(), size + 1);
  EXPECT_EQ(c.size(), size + 1);
  a.sync();
  EXPECT_EQ(ft::pread_file(path, 3 * kPage + 5, 1)[0], std::byte{0x6b});
  EXPECT_EQ(ft::file_size(path), size + 1);
}

TEST(Engine, ReopenAfterEveryHandleIsGoneSeesTheFile) {
  ft::TempDir dir;
  const std::string path = dir.make_file("reopen", 4 * kPage);
  Engine eng;
  {
    File a = eng.open(path);
    Mapping m = a.map(0, 4 * kPage);
    m.data()[0] = std::byte{0x10};
  }
  // The old cache was written back and dropped; a change made behind the
  // engine's back is seen by a fresh open.
  EXPECT_EQ(ft::pread_file(path, 0, 1)[0], std::byte{0x10});
  const std::byte y{0x20};
  ft::pwrite_file(path, 1, std::span(&y, 1));
  File b = eng.open(path);
  Mapping m = b.map(0, 4 * kPage, Access::ReadOnly);
  EXPECT_EQ(m.data()[0], std::byte{0x10});
  EXPECT_EQ(m.data()[1], std::byte{0x20});
}

// Issue 14 defect 11: the last close (every handle and view gone, or
// Engine::close) writes the size back as sync() does. write(0, 4097) dirties
// pages 0 and 1; punch_hole(4096, 1) drops page 1 (it holds EOF) unwritten, so
// only the size write-back can bring the backend to 4097 bytes.
TEST(Engine, LastCloseWritesTheSizeBack) {
  for (const bool engine_close : {false, true}) {
    SCOPED_TRACE(engine_close ? "Engine::close" : "last handle and view closed");
    auto be = make_memory_backend(engine_close ? "size_at_engine_close" : "size_at_last_close");
    {
      EngineConfig cfg;
      cfg.flusher = false;
      Engine eng(cfg);
      File f = eng.open(be);
      Mapping m = f.map(0, 2 * kPage);
      const std::vector<std::byte> buf(kPage + 1, std::byte{7});
      f.write(0, buf);
      f.punch_hole(kPage, 1);
      EXPECT_EQ(f.size(), kPage + 1);
      if (engine_close) {
        eng.close();
      } else {
        m.unmap();
        f.close();
      }
      EXPECT_EQ(be->size(), static_cast<int64_t>(kPage + 1)) << "the size was lost at close";
    }
    Engine eng;
    File g = eng.open(be);
    EXPECT_EQ(g.size(), kPage + 1);
    std::byte b[2] = {};
    ASSERT_EQ(g.read(kPage - 1, b), 2u);
    EXPECT_EQ(b[0], std::byte{7});
    EXPECT_EQ(b[1], std::byte{0});
  }
}

/// A backend that tells the engine of changes underneath from a thread of its
/// own, as the RADOS backend's coherence dispatcher does: detach() stops and
/// joins that thread (joining it from itself throws, and in ~FileImpl that
/// is std::terminate).
class DispatchBackend : public ft::WrapBackend {
 public:
  using ft::WrapBackend::WrapBackend;
  void attach(ChangeSink s) override {
    std::lock_guard g(mu_);
    sink_ = std::move(s);
    stop_ = false;
    thread_ = std::thread([this] { loop(); });
    thread_id_ = thread_.get_id();
  }
  void detach() override {
    {
      std::lock_guard g(mu_);
      if (!thread_.joinable()) return;
      stop_ = true;
      detach_thread_ = std::this_thread::get_id();
      cv_.notify_all();
    }
    thread_.join();
    std::lock_guard g(mu_);
    detached_ = true;
    cv_.notify_all();
  }
  /// The backend's thread calls the sink's changed(off, len).
  void post_change(uint64_t off, uint64_t len) {
    std::lock_guard g(mu_);
    q_.push_back({off, len});
    cv_.notify_all();
  }
  /// Waits until the backend's thread ran every posted change.
  bool wait_idle(std::chrono::seconds t = std::chrono::seconds(10)) {
    std::unique_lock g(mu_);
    return cv_.wait_for(g, t, [&] { return q_.empty() && !busy_; });
  }
  bool wait_detached(std::chrono::seconds t = std::chrono::seconds(10)) {
    std::unique_lock g(mu_);
    return cv_.wait_for(g, t, [&] { return detached_; });
  }
  std::thread::id thread_id() {
    std::lock_guard g(mu_);
    return thread_id_;
  }
  std::thread::id detach_thread() {
    std::lock_guard g(mu_);
    return detach_thread_;
  }

 private:
  void loop() {
    std::unique_lock g(mu_);
    for (;;) {
      cv_.wait(g, [&] { return stop_ || !q_.empty(); });
      if (stop_) return;
      auto [off, len] = q_.front();
      q_.pop_front();
      busy_ = true;
      auto changed = sink_.changed;
      g.unlock();
      changed(off, len);
      g.lock();
      busy_ = false;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  ChangeSink sink_;
  std::deque<std::pair<uint64_t, uint64_t>> q_;
  std::thread thread_;
  std::thread::id thread_id_, detach_thread_;
  bool stop_ = false, busy_ = false, detached_ = false;
};

// Issue 14 defect 8: the backend's thread takes a reference to the File to
// run a change; the user closes the last handle meanwhile. Dropping that
// reference on the backend's thread would destroy the File there and join
// the thread from itself (std::terminate). The File must be destroyed on
// another thread.
TEST(Engine, FileIsNeverDestroyedOnTheBackendsThread) {
#if !(defined(FAULTLINE_TESTING) && FAULTLINE_TESTING)
  GTEST_SKIP() << "needs the race harness: build with -DFAULTLINE_TESTING=ON (scripts/test.sh does)";
#else
  namespace fts = faultline::testing;
  fts::reset();
  auto be = std::make_shared<DispatchBackend>(make_memory_backend("dispatch_last_ref", 4 * kPage));
  EngineConfig cfg;
  cfg.flusher = false;
  Engine eng(cfg);
  File f = eng.open(be);
  fts::arm("remote.changed");
  be->post_change(0, kPage);
  ASSERT_TRUE(fts::wait_parked("remote.changed"));  // the backend's thread holds the File
  f.close();                                        // the user's last handle
  fts::release("remote.changed");
  ASSERT_TRUE(be->wait_detached()) << "the File was never destroyed";
  EXPECT_NE(be->detach_thread(), be->thread_id()) << "the File was destroyed on the backend's thread";
  fts::reset();
#endif
}

// Issue 14 defect 5, the sink's side: a change "to the end" (len up to 2^64 -
// off) drops every clean page; it is never rounded into an empty range.
TEST(Engine, ChangeUnderneathToTheTopDropsEverything) {
  auto inner = make_memory_backend("dispatch_top", 4 * kPage);
  auto be = std::make_shared<DispatchBackend>(inner);
  Engine eng;
  File f = eng.open(be);
  Mapping m = f.map(0, 4 * kPage, Access::ReadOnly);
  ASSERT_EQ(m.data()[2 * kPage], std::byte{0});
  const std::byte z{'Z'};
  ASSERT_EQ(0, inner->write(2 * kPage, std::span(&z, 1)));  // changed underneath
  be->post_change(0, std::numeric_limits<uint64_t>::max());
  ASSERT_TRUE(be->wait_idle());
  EXPECT_EQ(m.data()[2 * kPage], z) << "changed(0, UINT64_MAX) dropped nothing";
  ASSERT_EQ(0, inner->write(3 * kPage, std::span(&z, 1)));
  be->post_change(kPage + 1, std::numeric_limits<uint64_t>::max() - kPage - 1);
  ASSERT_TRUE(be->wait_idle());
  EXPECT_EQ(m.data()[3 * kPage], z) << "a change to 2^64 - 1 dropped nothing";
}

/// An object that claims `size` bytes and reads as zeros (nothing stored).
class HugeSizeBackend : public ft::WrapBackend {
 public:
  HugeSizeBackend(uint64_t size, std::string name)
      : ft::WrapBackend(make_memory_backend(std::move(name))), size_(size) {}
  int64_t size() override { return static_cast<int64_t>(size_); }
  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    if (off >= size_) return 0;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size_ - off));
    std::memset(buf.data(), 0, n);
    return static_cast<ssize_t>(n);
  }
  ssize_t read_into_fd(uint64_t, size_t, int, uint64_t) override { return -EOPNOTSUPP; }

 private:
  uint64_t size_;
};

// Issue 14: nothing checked that a backend's size fits the page index (2^36
// pages: 256 TiB of 4 KiB pages); a read past it aliased a lower slot. An
// object larger than that is refused with EFBIG; one of exactly that size
// works to its last byte.
TEST(Engine, BackendLargerThanThePageIndexIsRefused) {
  const uint64_t max = uint64_t{1} << 48;
  Engine eng;
  EXPECT_ERRNO(EFBIG, (void)eng.open(std::make_shared<HugeSizeBackend>(max + 1, "huge_plus_one")));
  EXPECT_ERRNO(EFBIG, (void)eng.open(std::make_shared<HugeSizeBackend>(max + 2 * kPage, "huge_plus_page")));
  File f = eng.open(std::make_shared<HugeSizeBackend>(max, "huge_exact"));
  EXPECT_EQ(f.size(), max);
  std::byte b[2] = {std::byte{1}, std::byte{1}};
  EXPECT_EQ(f.read(max - 1, b), 1u);
  EXPECT_EQ(b[0], std::byte{0});
  EXPECT_EQ(f.read(max, b), 0u);
}

TEST(Engine, DifferentObjectsAreDifferentCaches) {
  ft::TempDir dir;
  const std::string p1 = dir.make_file("x", 4 * kPage, 1);
  const std::string p2 = dir.make_file("y", 4 * kPage, 2);
  Engine eng;
  File a = eng.open(p1);
  File b = eng.open(p2);
  auto m1 = make_memory_backend("engine_test_m1", 4 * kPage);
  auto m2 = make_memory_backend("engine_test_m2", 4 * kPage);
  File c = eng.open(m1);
  File d = eng.open(m2);
  Mapping ma = a.map(0, 4 * kPage);
  Mapping mc = c.map(0, 4 * kPage);
  ma.data()[0] = std::byte{1};
  mc.data()[0] = std::byte{2};
  std::byte x{};
  b.read(0, std::span(&x, 1));
  EXPECT_EQ(x, ft::pat(0, 2));
  d.read(0, std::span(&x, 1));
  EXPECT_EQ(x, std::byte{0});
  c.read(0, std::span(&x, 1));
  EXPECT_EQ(x, std::byte{2});
}

// --------------------------------------------------------------------------
// Shutdown leaves nothing behind.

struct Footprint {
  std::size_t tasks = 0, fds = 0, maps = 0, faultline_maps = 0;
  bool operator==(const Footprint&) const = default;
};

std::size_t count_dir(const char* path) {
  std::size_t n = 0;
  if (DIR* d = ::opendir(path)) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n;
}

Footprint footprint() {
  Footprint f;
  f.tasks = count_dir("/proc/self/task");
  f.fds = count_dir("/proc/self/fd");
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    // Sanitizer allocators map their own regions as they grow: count only
    // named mappings there (a leaked view is a named memfd mapping; leaked
    // threads show in the task count).
    if (ft::sanitizer_build() && line.find('/') == std::string::npos) continue;
    ++f.maps;
    if (line.find("memfd:faultline") != std::string::npos) ++f.faultline_maps;
  }
  return f;
}

std::ostream& operator<<(std::ostream& o, const Footprint& f) {
  return o << "{tasks " << f.tasks << ", fds " << f.fds << ", maps " << f.maps
           << ", faultline maps " << f.faultline_maps << "}";
}

std::string fd_text() {
  std::string out;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char buf[512] = {};
      const std::string p = std::string("/proc/self/fd/") + e->d_name;
      const ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
      out += std::string(e->d_name) + " -> " + (n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?") + "\n";
    }
    ::closedir(d);
  }
  return out;
}

std::string maps_text() {
  std::ifstream maps("/proc/self/maps");
  std::stringstream s;
  s << maps.rdbuf();
  return s.str();
}

/// An engine with file- and memory-backed Files, views, faults, reads,
/// writes and write-back; everything destroyed at the end, in the order
/// `engine_first` chooses.
void workload(const ft::TempDir& dir, bool engine_first) {
  const std::string p1 = dir.make_file("w1", 300 * kPage + 5, 1);
  const std::string p2 = dir.make_file("w2", 50 * kPage, 2);
  EngineConfig cfg;
  cfg.fault_threads = 3;
  auto eng = std::make_unique<Engine>(cfg);
  std::vector<File> files;
  std::vector<Mapping> maps;
  files.push_back(eng->open(p1));
  files.push_back(eng->open(p2, false));
  files.push_back(eng->open(make_memory_backend("footprint", 20 * kPage)));
  files.push_back(eng->open(p1));  // a second handle onto one cache
  maps.push_back(files[0].map(0, 301 * kPage));
  maps.push_back(files[1].map(kPage, 40 * kPage, Access::ReadOnly));
  maps.push_back(files[2].map(0, 20 * kPage));
  maps.push_back(files[3].map(100 * kPage, 10 * kPage, Access::ReadWrite, Sharing::Private));
  ft::touch_read(maps[0].data(), 300 * kPage);
  ft::touch_read(maps[1].data(), 40 * kPage);
  std::memset(maps[2].data(), 1, 20 * kPage);
  std::memset(maps[0].data() + 7 * kPage, 2, 3 * kPage);
  maps[3].data()[0] = std::byte{3};
  std::vector<std::byte> buf(64 * kPage);
  // From a thread of its own too (per-thread state in the fill path).
  std::thread t([&] { files[1].read(0, buf); });
  t.join();
  files[0].write(5, std::span(buf.data(), 1000));
  (void)guarded([&] { (void)*reinterpret_cast<volatile char*>(maps[0].data() + 301 * kPage - 1); });
  files[0].sync();
  if (engine_first) {
    eng.reset();
    maps.clear();
    files.clear();
  } else {
    maps.clear();
    files.clear();
    eng.reset();
  }
}

TEST(Engine, ShutdownLeavesNothingBehind) {
  // One malloc arena: glibc creates arenas on thread contention (an
  // anonymous mapping that outlives the threads), which is not ours.
  ::mallopt(M_ARENA_MAX, 1);
  ft::TempDir dir;
  // Warm up once: lazily created per-process state (the SIGBUS handler,
  // this thread's fill pipe, malloc arenas, cached thread stacks) is not a
  // leak.
  workload(dir, false);
  const Footprint before = footprint();
  const std::string maps_before = maps_text(), fds_before = fd_text();
  EXPECT_EQ(before.faultline_maps, 0u);
  for (bool engine_first : {false, true, false}) {
    workload(dir, engine_first);
    const Footprint after = footprint();
    EXPECT_EQ(after, before) << "engine destroyed " << (engine_first ? "first" : "last")
                             << "\nfds before:\n" << fds_before << "fds after:\n" << fd_text()
                             << "\nmaps before:\n" << maps_before << "\nmaps after:\n"
                             << maps_text();
  }
}

TEST(Engine, ManyViewsComeAndGo) {
  ft::TempDir dir;
  const std::string path = dir.make_file("many", 16 * kPage);
  // One handler thread, warmed up: its lazily made per-thread state (fill
  // pipe, malloc arena) exists before the baseline.
  EngineConfig cfg;
  cfg.fault_threads = 1;
  cfg.max_fault_threads = 1;  // a fixed pool: no second handler makes its own state later
  Engine eng(cfg);
  File f = eng.open(path);
  {
    // A load (filled by UFFDIO_COPY) and a store to a cold page (filled by
    // pwrite, the fill pipe): both fill paths' state. One-page views: the
    // load's fault reads nothing around its page.
    Mapping warm = f.map(0, kPage);
    ft::touch_read(warm.data(), kPage);
    Mapping warm_store = f.map(kPage, kPage);
    warm_store.data()[0] = ft::pat(kPage);
    EXPECT_EQ(f.stats().pages_filled, 2u);
  }
  const Footprint before = footprint();
  const std::string fds_before = fd_text(), maps_before = maps_text();
  for (int i = 0; i < 200; ++i) {
    Mapping m = f.map(static_cast<uint64_t>(i % 8) * kPage, 8 * kPage,
                      i % 2 ? Access::ReadOnly : Access::ReadWrite);
    EXPECT_EQ(m.data()[0], ft::pat(static_cast<uint64_t>(i % 8) * kPage));
  }
  for (int i = 0; i < 50; ++i) {
    File g = eng.open(path);
    Mapping m = g.map(0, kPage);
    m.data()[i] = std::byte{0};
  }
  EXPECT_EQ(footprint(), before) << "fds before:\n" << fds_before << "fds after:\n" << fd_text()
                                << "maps before:\n" << maps_before << "maps after:\n" << maps_text();
}

TEST(Engine, ViewsOutliveTheEngineHandles) {
  ft::TempDir dir;
  const std::string path = dir.make_file("outlive", 8 * kPage);
  Mapping m;
  File f;
  {
    Engine eng;
    f = eng.open(path);
    m = f.map(0, 8 * kPage);
    m.data()[1] = std::byte{0x31};
  }  // the engine is closed: everything written back, the views unmapped
  EXPECT_EQ(ft::pread_file(path, 1, 1)[0], std::byte{0x31});
  std::byte b[1];
  EXPECT_ERRNO(ESHUTDOWN, f.read(0, b));
  m.unmap();
  f.close();
}

}  // namespace
