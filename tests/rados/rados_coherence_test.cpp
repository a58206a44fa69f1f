// Coherence across engines through RADOS watch/notify: the backend protocol
// on its own (two backends, one process), then two Engines in two processes.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>

#include "rados_test_util.hpp"

using namespace rt;

TEST(RadosCoherence, NotifyCarriesRangesAndSizeIgnoresOwn) {
  ASSERT_FALSE(conf().empty());
  const std::string name = unique_name("n");
  const uint64_t os = 1 * kMiB;
  auto a = faultline::make_rados_backend(options(name, os));
  auto b = faultline::make_rados_backend(options(name, os));
  std::mutex mu;
  std::vector<std::pair<uint64_t, uint64_t>> got;
  std::vector<uint64_t> sizes;
  a->attach({[&](uint64_t o, uint64_t l) {
               std::lock_guard g(mu);
               got.emplace_back(o, l);
             },
             [&](uint64_t s) {
               std::lock_guard g(mu);
               sizes.push_back(s);
             }});
  ASSERT_TRUE(a->attached());
  auto d = pattern(0, 3 * kPage, 1);
  ASSERT_EQ(b->write(0, d), 0);
  ASSERT_EQ(b->write(3 * kPage, d), 0);  // merges with the first
  ASSERT_EQ(b->write(os + 5 * kPage, std::span(d).first(kPage)), 0);
  ASSERT_EQ(b->sync(), 0);
  // The sink ran before b's sync returned (the ack waits for it).
  {
    std::lock_guard g(mu);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0], std::make_pair(uint64_t{0}, uint64_t{6 * kPage}));
    EXPECT_EQ(got[1], std::make_pair(uint64_t{os + 5 * kPage}, uint64_t{kPage}));
    ASSERT_EQ(sizes.size(), 1u);
    EXPECT_EQ(sizes[0], os + 6 * kPage);
    got.clear();
    sizes.clear();
  }
  EXPECT_EQ(a->size(), int64_t(os + 6 * kPage));
  // a's own sync: not delivered to a itself.
  ASSERT_EQ(a->write(0, std::span(d).first(kPage)), 0);
  ASSERT_EQ(a->sync(), 0);
  EXPECT_GE(a->counters().notifies_own, 1u);
  // A truncate on b reaches a as a size change at b's sync.
  ASSERT_EQ(b->truncate(kPage), 0);
  ASSERT_EQ(b->sync(), 0);
  {
    std::lock_guard g(mu);
    EXPECT_TRUE(got.size() >= 1u);
    ASSERT_EQ(sizes.size(), 1u);
    EXPECT_EQ(sizes[0], kPage);
  }
  EXPECT_EQ(a->counters().notifies_received, 2u);
  // A sync with nothing written sends nothing.
  const auto sent = b->counters().notifies_sent;
  ASSERT_EQ(b->sync(), 0);
  EXPECT_EQ(b->counters().notifies_sent, sent);
  a->detach();
  EXPECT_FALSE(a->attached());
  remove_file(*b, 2 * os);
}

namespace {

// A tiny pipe protocol between the test (engine B) and a child (engine A).
struct Chan {
  int to_child[2], to_parent[2];
  void send(int fd, char c) { ASSERT_EQ(::write(fd, &c, 1), 1); }
  char recv(int fd) {
    char c = 0;
    if (::read(fd, &c, 1) != 1) return 0;
    return c;
  }
};

constexpr uint64_t kOs = 1 * kMiB, kSize = 16 * kMiB;
constexpr uint64_t kChangeA = 3 * kMiB + 2 * kPage, kLenA = 16 * kPage;  // child's first store
constexpr uint64_t kChangeB = 9 * kMiB, kLenB = kPage;
constexpr uint64_t kConflict = 12 * kMiB;  // both store here; child also the page after

// Engine A in a child process (forked before the parent made any thread).
[[noreturn]] void child(Chan& ch, const std::string& name) {
  int rc = 0;
  try {
    if (ch.recv(ch.to_child[0]) != 'g') _exit(10);
    faultline::RadosOptions o = options(name, kOs);
    o.create = false;
    faultline::EngineConfig cfg;
    cfg.write_around_max_pages = 1;  // exactly the stored pages are written and notified
    faultline::Engine eng(cfg);
    auto f = eng.open(faultline::make_rados_backend(o));
    auto m = f.map(0, kSize);
    auto a = pattern(kChangeA, kLenA, 2);
    std::memcpy(m.data() + kChangeA, a.data(), kLenA);
    auto b = pattern(kChangeB, kLenB, 2);
    std::memcpy(m.data() + kChangeB, b.data(), kLenB);
    f.fsync();
    ch.send(ch.to_parent[1], 'd');
    if (ch.recv(ch.to_child[0]) != 'g') _exit(11);
    auto c = pattern(kConflict, 2 * kPage, 3);
    std::memcpy(m.data() + kConflict, c.data(), 2 * kPage);
    f.fsync();
    ch.send(ch.to_parent[1], 'd');
    if (ch.recv(ch.to_child[0]) != 'q') _exit(12);
    m.unmap();
    f.close();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "child: %s\n", e.what());
    rc = 20;
  }
  _exit(rc);
}

}  // namespace

TEST(RadosCoherence, TwoEnginesTwoProcesses) {
  ASSERT_FALSE(conf().empty());
  const std::string name = unique_name("coh");
  Chan ch;
  ASSERT_EQ(::pipe(ch.to_child), 0);
  ASSERT_EQ(::pipe(ch.to_parent), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) child(ch, name);

  auto o = options(name, kOs);
  auto w = faultline::make_rados_backend(o);
  auto base = pattern(0, kSize, 1);
  ASSERT_EQ(w->write(0, base), 0);
  ASSERT_EQ(w->sync(), 0);

  auto b = faultline::make_rados_backend(o);
  faultline::Engine eng;
  auto f = eng.open(b);
  ASSERT_TRUE(b->attached()) << "the engine did not attach() the backend at open";
  auto m = f.map(0, kSize);
  // Cache every page (clean).
  ASSERT_EQ(first_diff(m.data(), base.data(), kSize), -1);
  const auto s0 = f.stats();

  ch.send(ch.to_child[1], 'g');
  ASSERT_EQ(ch.recv(ch.to_parent[0]), 'd');
  // A's fsync returned: B already dropped exactly the changed pages.
  const auto s1 = f.stats();
  EXPECT_EQ(s1.pages_invalidated - s0.pages_invalidated, (kLenA + kLenB) / kPage);
  EXPECT_EQ(s1.invalidate_conflicts, s0.invalidate_conflicts);
  auto expect = base;
  auto a = pattern(kChangeA, kLenA, 2);
  std::memcpy(expect.data() + kChangeA, a.data(), kLenA);
  auto bb = pattern(kChangeB, kLenB, 2);
  std::memcpy(expect.data() + kChangeB, bb.data(), kLenB);
  EXPECT_EQ(first_diff(m.data(), expect.data(), kSize), -1);
  const auto s2 = f.stats();
  EXPECT_EQ(s2.pages_filled - s1.pages_filled, (kLenA + kLenB) / kPage)
      << "more than the changed pages were read again";
  EXPECT_EQ(b->counters().notifies_received, 1u);

  // Conflict: B dirties a page without syncing; A stores there (and on the
  // next page) and fsyncs. B keeps its dirty page (a conflict), takes A's
  // other page; B's later fsync wins for its page (last fsync wins per page).
  m.data()[kConflict] = std::byte{0xBB};
  ch.send(ch.to_child[1], 'g');
  ASSERT_EQ(ch.recv(ch.to_parent[0]), 'd');
  const auto s3 = f.stats();
  EXPECT_EQ(s3.invalidate_conflicts - s2.invalidate_conflicts, 1u);
  EXPECT_EQ(m.data()[kConflict], std::byte{0xBB});
  auto c = pattern(kConflict, 2 * kPage, 3);
  EXPECT_EQ(first_diff(m.data() + kConflict + 1, base.data() + kConflict + 1, kPage - 1), -1)
      << "B's own dirty page was not kept as is";
  EXPECT_EQ(first_diff(m.data() + kConflict + kPage, c.data() + kPage, kPage), -1);
  f.fsync();
  std::vector<std::byte> obj;
  ASSERT_TRUE(rados_get(conf(), pool(), b->chunk_object(kConflict / kOs), obj));
  ASSERT_GE(obj.size(), 2 * kPage);
  EXPECT_EQ(obj[0], std::byte{0xBB});
  EXPECT_EQ(first_diff(obj.data() + kPage, c.data() + kPage, kPage), -1);

  ch.send(ch.to_child[1], 'q');
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child status " << st;
  m.unmap();
  f.close();
  remove_file(*w, kSize);
}
