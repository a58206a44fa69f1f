// Helpers for the race catalogue tests (DESIGN.md section 4).
#pragma once
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "faultline/faultline.hpp"
#include "faultline/forwarding_backend.hpp"
#include "testing/testing.hpp"
#include "hugepage_pool.hpp"

namespace race {

using namespace std::chrono_literals;
namespace fl = faultline;
#ifdef FAULTLINE_RACE_FRAMES_2M
// The same catalogue for Files with 2 MiB frames (FrameSize::k2M, hugetlb):
// a page is 2 MiB, every File is opened with frame_size k2M, the fixture is
// Race2M. Needs a pool of free 2 MiB huge pages (kRacePoolPages).
inline constexpr size_t kPs = fl::kHugePageSize;
inline constexpr bool kFrames2M = true;
#define RACE_FIXTURE Race2M
#else
inline constexpr size_t kPs = fl::kBasePageSize;
inline constexpr bool kFrames2M = false;
#define RACE_FIXTURE Race
#endif
/// The largest entry holds 8 frames of one File (two Files never at once).
inline constexpr int64_t kRacePoolPages = 10;

/// Opens `be` in `eng`: with 2 MiB frames when this is the Race2M build.
inline fl::File open_file(fl::Engine& eng, std::shared_ptr<fl::Backend> be,
                          fl::FileOptions o = {}) {
  if (kFrames2M) o.frame_size = fl::FrameSize::k2M;
  return eng.open(std::move(be), o);
}

/// A backend around another that the test can steer: a hook runs inside
/// read_into_fd (the fill), with the memfd, before the real fill. Every other
/// call is forwarded (ForwardingBackend).
class SteeredBackend : public fl::ForwardingBackend {
 public:
  explicit SteeredBackend(std::shared_ptr<fl::Backend> inner) : ForwardingBackend(std::move(inner)) {}
  std::string identity() const override { return "steered:" + inner_->identity(); }
  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    if (read_hook) {
      if (auto r = read_hook(off, buf)) return *r;
    }
    return inner_->read(off, buf);
  }
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override {
    if (fill_hook) {
      if (auto r = fill_hook(off, len, fd, fd_off)) return *r;
    }
    return -EOPNOTSUPP;  // the engine then uses read() + pwrite()
  }
  /// Declined on purpose: a 2 MiB frame's fill then comes through read(), the
  /// one read_hook steers (the read path is what these tests steer).
  ssize_t read_aligned(uint64_t, std::span<std::byte>) override { return -EOPNOTSUPP; }
  /// Returns a result to short-circuit the fill, or nullopt for the normal fill.
  std::function<std::optional<ssize_t>(uint64_t, size_t, int, uint64_t)> fill_hook;
  /// The same for read(): 2 MiB frames are filled by a read() straight into
  /// the frame (the alias view), never through read_into_fd.
  std::function<std::optional<ssize_t>(uint64_t, std::span<std::byte>)> read_hook;
};

/// A memory backend holding `pages` pages, page i filled with byte `fill + i`.
inline std::shared_ptr<fl::Backend> patterned(const std::string& name, size_t pages, char fill) {
  auto be = fl::make_memory_backend(name, 0);
  std::vector<std::byte> buf(pages * kPs);
  for (size_t i = 0; i < pages; ++i)
    std::memset(buf.data() + i * kPs, fill + static_cast<char>(i), kPs);
  be->write(0, buf);
  return be;
}

inline fl::EngineConfig small_windows() {
  fl::EngineConfig c;
  c.fault_around_pages = 1;  // one page per fault: the tests control every page
  c.readahead_max_pages = 1;
  c.read_around_pages = 0;  // 2 MiB Files fill their read-around window: none
  c.flusher = false;  // no background write-back: the only threads that can reach a
                      // wait point are the ones the test starts (Bg::blocked)
  return c;
}

/// A load through a view: the byte, or the SIGBUS.
struct Load {
  std::optional<fl::BusError> bus;
  char value = 0;
};
inline Load load(const std::byte* p) {
  Load l;
  volatile char v = 0;
  l.bus = fl::guarded([&] { v = *reinterpret_cast<const volatile char*>(p); });
  l.value = v;
  return l;
}

/// Runs fn on a thread; if it does not finish within `timeout` the process
/// cannot be cleaned up (a deadlock): report and exit non-zero.
template <class F>
auto within(std::chrono::milliseconds timeout, const char* what, F&& fn) {
  auto fut = std::async(std::launch::async, std::forward<F>(fn));
  if (fut.wait_for(timeout) != std::future_status::ready) {
    std::fprintf(stderr, "DEADLOCK: %s did not finish within %lld ms\n", what,
                 static_cast<long long>(timeout.count()));
    std::fflush(stderr);
    std::_Exit(3);
  }
  return fut.get();
}

/// Starts fn on a thread now; the caller joins it later (join: a deadlock
/// guard, never a decision).
///
/// Bg(wait, fn) also proves where that thread gets to. `wait` names a point of
/// the harness, normally a sleeping wait ("wait.page_lock", "wait.writeback",
/// "wait.invalidate_lock.exclusive", ... or the prefix "wait." for any of
/// them: testing.hpp); its hits are counted from just before fn starts.
/// blocked() then waits until that point is reached once more (for a named
/// sleeping wait: any sleeping wait, since a rule's breaker may move the
/// thread to another lock the first thread holds) (true: a thread
/// saw the lock held and is about to sleep there, so it cannot get past it
/// before the test lets the holder go) or fn returns (false: it never had to
/// wait). Either answer is a fact, never a guess from elapsed time. Under a
/// rule breaker the guard is gone and fn typically returns: the test's checks
/// then see the symptom.
class Bg {
 public:
  template <class F>
  explicit Bg(F&& fn) : Bg(std::string(), std::forward<F>(fn)) {}
  template <class F>
  Bg(std::string wait, F&& fn)
      : wait_(wait.rfind("wait.", 0) == 0 ? std::string("wait.") : std::move(wait)),
        base_(wait_.empty() ? 0 : faultline::testing::reached(wait_)),
        done_(std::make_shared<std::atomic<bool>>(false)) {
    fut_ = std::async(std::launch::async, [d = done_, f = std::forward<F>(fn)]() mutable {
      struct Finish {
        std::shared_ptr<std::atomic<bool>> d;
        ~Finish() {
          d->store(true);
          faultline::testing::notify();
        }
      } finish{d};
      f();
    });
  }
  /// See the class comment: true when the thread is about to sleep at the
  /// wait point given at construction, false when fn returned first.
  bool blocked() {
    namespace ft = faultline::testing;
    const auto r = ft::wait_reached(wait_, base_ + 1, [d = done_] { return d->load(); });
    if (r == ft::Reach::timed_out) {
      std::fprintf(stderr, "DEADLOCK: a thread neither reached %s nor finished\n", wait_.c_str());
      std::fflush(stderr);
      std::_Exit(3);
    }
    return r == ft::Reach::reached;
  }
  void join(const char* what, std::chrono::milliseconds t = 20s) {
    if (fut_.wait_for(t) != std::future_status::ready) {
      std::fprintf(stderr, "DEADLOCK: %s did not finish within %lld ms\n", what,
                   static_cast<long long>(t.count()));
      std::fflush(stderr);
      std::_Exit(3);
    }
    fut_.get();
  }

 private:
  std::string wait_;
  int base_;
  std::shared_ptr<std::atomic<bool>> done_;
  std::future<void> fut_;
};

class RACE_FIXTURE : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fl::testing::compiled_in()) GTEST_SKIP() << "built without FAULTLINE_TESTING";
    if (kFrames2M) {
      if (const std::string why = ft::hugepage_pool_shortfall(kRacePoolPages); !why.empty()) {
        if (ft::hugepages_required()) FAIL() << why;
        GTEST_SKIP() << why;
      }
    }
    fl::testing::reset();
    // The rule breakers are armed by this test executable, never by the
    // library: FAULTLINE_BREAK=R<n>[,R<m>] (check_breakers.py sets it).
    const char* broken = std::getenv("FAULTLINE_BREAK");
    fl::testing::break_rules(broken ? broken : "");
  }
  void TearDown() override {
    fl::testing::reset();
    fl::testing::break_rules("");
  }
};

/// Entries that do not apply to 2 MiB frames skip in the Race2M build.
#define RACE_SKIP_FOR_2M(why)                                      \
  do {                                                             \
    if (::race::kFrames2M) GTEST_SKIP() << "2 MiB frames: " << why; \
  } while (0)

inline std::string read_all(fl::File& f, uint64_t off, size_t len) {
  std::string s(len, '\0');
  const size_t n = f.read(off, std::as_writable_bytes(std::span(s)));
  s.resize(n);
  return s;
}

}  // namespace race

namespace race {
/// A backend around another with hooks for the write path's races.
class HookedBackend : public SteeredBackend {
 public:
  using SteeredBackend::SteeredBackend;
  using SteeredBackend::page_mkwrite;
  int page_mkwrite(fl::Backend::MkwritePage& page) override {
    return mkwrite_hook ? mkwrite_hook(page) : 0;
  }
  void update_time() override {
    if (update_time_hook) update_time_hook();
  }
  int write(uint64_t off, std::span<const std::byte> buf) override {
    if (write_fail.load() > 0) {
      --write_fail;
      return -EIO;
    }
    return SteeredBackend::write(off, buf);
  }
  /// The engine's ChangeSink (a test plays the other machine with it).
  void attach(ChangeSink s) override { sink = std::move(s); }
  ChangeSink sink;
  std::function<int(fl::Backend::MkwritePage&)> mkwrite_hook;
  std::function<void()> update_time_hook;
  std::atomic<int> write_fail{0};
};

/// A one-shot gate: the first caller of wait_here() parks until open().
class Gate {
 public:
  void wait_here() {
    std::unique_lock g(mu_);
    if (used_) return;
    used_ = true;
    parked_ = true;
    cv_.notify_all();
    cv_.wait(g, [&] { return open_; });
  }
  bool wait_parked(std::chrono::milliseconds t = std::chrono::seconds(10)) {
    std::unique_lock g(mu_);
    return cv_.wait_for(g, t, [&] { return parked_; });
  }
  void open() {
    std::lock_guard g(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool used_ = false, parked_ = false, open_ = false;
};

inline char backend_byte(fl::Backend& b, uint64_t off) {
  char c = 0;
  b.read(off, std::as_writable_bytes(std::span(&c, 1)));
  return c;
}
inline void store(std::byte* p, char v) { *reinterpret_cast<volatile char*>(p) = v; }
inline std::optional<fl::BusError> guarded_store(std::byte* p, char v) {
  return fl::guarded([&] { store(p, v); });
}
}  // namespace race
