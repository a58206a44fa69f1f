// File::truncate: shrink and extend, coherent with every Mapping (shared RO,
// shared RW, private), read/write and the backend (DESIGN R3).
#include <future>

#include "tr_util.hpp"

namespace tr {
namespace {

using Truncate = TrTest;

// After a shrink, every view gets SIGBUS past the page holding EOF; the
// partial last page reads the file's head and zeros in its tail; read(),
// size(), the memfd and the backend all agree on the new size.
TEST_P(Truncate, ShrinkSigbusPastEofPageInEveryMapping) {
  Store st(GetParam(), "shrink", 8 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 10 * kPs, fl::Access::ReadOnly);
  auto rw = f.map(0, 10 * kPs, fl::Access::ReadWrite);
  auto pv = f.map(0, 10 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  // Every page present in every view; private copies of pages 1 and 6.
  for (auto* m : {&ro, &rw, &pv}) ft::touch_read(m->data(), 8 * kPs);
  ASSERT_FALSE(store(pv.data() + 1 * kPs, std::byte{'Q'}));
  ASSERT_FALSE(store(pv.data() + 6 * kPs, std::byte{'P'}));
  const uint64_t ns = 3 * kPs + 100;
  f.truncate(ns);
  EXPECT_EQ(f.size(), ns);
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 4 * kPs);
  EXPECT_EQ(st.size(), ns);
  const auto want = ft::pattern(0, ns);
  EXPECT_EQ(diff(read_file(f, 0, 8 * kPs), want), "");
  const char* names[] = {"shared RO", "shared RW", "private"};
  int k = 0;
  for (auto* m : {&ro, &rw, &pv}) {
    SCOPED_TRACE(names[k++]);
    for (uint64_t pg = 4; pg < 10; ++pg) {
      const Load l = load(m->data() + pg * kPs + 7);
      ASSERT_TRUE(l.bus.has_value()) << "no SIGBUS at page " << pg;
      EXPECT_EQ(l.bus->code, BUS_ADRERR);
    }
    auto head = copy_out(m->data(), 3 * kPs + 100);
    ASSERT_TRUE(head);
    auto w = want;
    if (m == &pv) w[1 * kPs] = std::byte{'Q'};  // its own copy, inside EOF, survives
    EXPECT_EQ(diff(*head, w), "");
    auto tail = copy_out(m->data() + ns, 4 * kPs - ns);
    ASSERT_TRUE(tail) << "SIGBUS inside the page holding EOF";
    EXPECT_TRUE(is_zero(*tail)) << "the EOF page's tail is not zero";
  }
  // A store past the EOF page through the writable views: SIGBUS too.
  EXPECT_TRUE(store(rw.data() + 5 * kPs, std::byte{1}).has_value());
  EXPECT_TRUE(store(pv.data() + 5 * kPs, std::byte{1}).has_value());
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 4 * kPs) << "a store past EOF grew the memfd";
}

// The partial last page keeps its frame (no refill) with the tail zeroed in
// the frame and in the backend (pread / stat on the file).
TEST_P(Truncate, PartialLastPageTailZeroedInFrameAndBackend) {
  Store st(GetParam(), "tail", 4 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto rw = f.map(0, 4 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 2 * kPs, kPs, std::byte{'D'}));  // dirty page 2
  const uint64_t fills = f.stats().pages_filled;
  const uint64_t ns = 2 * kPs + 100;
  f.truncate(ns);
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 3 * kPs);
  auto tail = copy_out(rw.data() + ns, kPs - 100);
  ASSERT_TRUE(tail);
  EXPECT_TRUE(is_zero(*tail));
  auto head = copy_out(rw.data() + 2 * kPs, 100);
  ASSERT_TRUE(head);
  EXPECT_EQ(diff(*head, filled(100, 'D')), "") << "the dirty head of the EOF page was lost";
  EXPECT_EQ(f.stats().pages_filled, fills) << "the EOF page lost its frame and was refilled";
  f.sync();
  EXPECT_EQ(st.size(), ns);
  auto be = st.bytes(0, 4 * kPs);
  ASSERT_EQ(be.size(), ns);
  auto want = ft::pattern(0, ns);
  std::fill(want.begin() + 2 * kPs, want.end(), std::byte{'D'});
  EXPECT_EQ(diff(be, want), "");
  // Extend: the old tail reads zeros everywhere, the backend too.
  f.truncate(4 * kPs);
  EXPECT_EQ(st.size(), 4 * kPs);
  auto r = read_file(f, ns, 4 * kPs - ns);
  EXPECT_TRUE(is_zero(r));
  f.sync();
  auto be2 = st.bytes(ns, 4 * kPs - ns);
  ASSERT_EQ(be2.size(), 4 * kPs - ns);
  EXPECT_TRUE(is_zero(be2)) << "the backend holds non-zero bytes past the old EOF";
}

// fsx's junk check: stores past EOF into the page holding EOF (through a
// shared writable view) never reach the backend, and a later extend — by
// truncate or by a write past EOF — reads zeros there.
TEST_P(Truncate, StoresPastEofNeverReachBackendAndExtendReadsZeros) {
  for (int how = 0; how < 2; ++how) {
    SCOPED_TRACE(how == 0 ? "extend by truncate" : "extend by write");
    Store st(GetParam(), "junk", 4 * kPs);
    fl::Engine eng;
    auto f = eng.open(st.backend());
    auto rw = f.map(0, 4 * kPs);
    auto ro = f.map(0, 4 * kPs, fl::Access::ReadOnly);
    const uint64_t ns = 2 * kPs + 100;
    f.truncate(ns);
    // Junk past EOF, inside the EOF page: allowed, no SIGBUS.
    ASSERT_TRUE(fill_view(rw.data() + ns, kPs - 100, std::byte{'J'}));
    EXPECT_EQ(f.size(), ns);
    EXPECT_EQ(read_file(f, 0, 4 * kPs).size(), ns);
    f.sync();
    EXPECT_EQ(st.size(), ns) << "a store past EOF extended the backend";
    EXPECT_EQ(st.bytes(0, 4 * kPs).size(), ns);
    if (how == 0) {
      f.truncate(4 * kPs);
    } else {
      auto w = filled(16, 'W');
      f.write(3 * kPs + 16, w);
      EXPECT_EQ(f.size(), 3 * kPs + 32);
    }
    const uint64_t end = how == 0 ? 4 * kPs : 3 * kPs + 16;
    for (auto* m : {&rw, &ro}) {
      auto v = copy_out(m->data() + ns, end - ns);
      ASSERT_TRUE(v);
      EXPECT_TRUE(is_zero(*v)) << "junk stored past the old EOF is visible after extend: "
                               << diff(*v, filled(v->size(), 0));
    }
    EXPECT_TRUE(is_zero(read_file(f, ns, end - ns)));
    f.sync();
    auto be = st.bytes(ns, end - ns);
    ASSERT_EQ(be.size(), end - ns);
    EXPECT_TRUE(is_zero(be)) << "junk reached the backend";
  }
}

// Extending makes the new range readable (zeros) in existing views, without
// remapping; stores there reach read() and the backend.
TEST_P(Truncate, ExtendReadableInExistingMappings) {
  Store st(GetParam(), "extend", 2 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 6 * kPs, fl::Access::ReadOnly);
  auto rw = f.map(0, 6 * kPs);
  auto pv = f.map(0, 6 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  for (auto* m : {&ro, &rw, &pv}) EXPECT_TRUE(load(m->data() + 4 * kPs).bus.has_value());
  f.truncate(6 * kPs);
  EXPECT_EQ(st.size(), 6 * kPs);
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 6 * kPs);
  for (auto* m : {&ro, &rw, &pv}) {
    auto v = copy_out(m->data() + 2 * kPs, 4 * kPs);
    ASSERT_TRUE(v) << "SIGBUS in the extended range";
    EXPECT_TRUE(is_zero(*v));
    auto h = copy_out(m->data(), 2 * kPs);
    ASSERT_TRUE(h);
    EXPECT_EQ(diff(*h, ft::pattern(0, 2 * kPs)), "");
  }
  ASSERT_FALSE(store(rw.data() + 4 * kPs + 5, std::byte{'N'}));
  EXPECT_EQ(load(ro.data() + 4 * kPs + 5).value, std::byte{'N'});
  EXPECT_EQ(load(pv.data() + 4 * kPs + 5).value, std::byte{'N'});
  EXPECT_EQ(read_file(f, 4 * kPs + 5, 1), filled(1, 'N'));
  f.sync();
  EXPECT_EQ(st.bytes(4 * kPs + 5, 1), filled(1, 'N'));
}

// Truncate to 0 and back: everything SIGBUS at 0, zeros after.
TEST_P(Truncate, ToZeroAndBack) {
  Store st(GetParam(), "zero", 4 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  auto rw = f.map(0, 4 * kPs);
  auto pv = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  for (auto* m : {&ro, &rw, &pv}) ft::touch_read(m->data(), 4 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + kPs, kPs, std::byte{'D'}));
  ASSERT_FALSE(store(pv.data() + 2 * kPs, std::byte{'P'}));
  f.truncate(0);
  EXPECT_EQ(f.size(), 0u);
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 0u);
  EXPECT_EQ(st.size(), 0u);
  EXPECT_TRUE(read_file(f, 0, kPs).empty());
  for (auto* m : {&ro, &rw, &pv})
    for (uint64_t pg = 0; pg < 4; ++pg) EXPECT_TRUE(load(m->data() + pg * kPs).bus.has_value());
  f.sync();
  EXPECT_EQ(st.size(), 0u) << "a dirty page was written past EOF";
  f.truncate(4 * kPs);
  EXPECT_EQ(st.size(), 4 * kPs);
  for (auto* m : {&ro, &rw, &pv}) {
    auto v = copy_out(m->data(), 4 * kPs);
    ASSERT_TRUE(v);
    EXPECT_TRUE(is_zero(*v)) << "old data (or a private copy) came back after truncate to 0";
  }
  ASSERT_TRUE(fill_view(rw.data() + 3 * kPs, 10, std::byte{'A'}));
  f.sync();
  auto be = st.bytes(0, 4 * kPs);
  auto want = filled(4 * kPs, 0);
  std::fill(want.begin() + 3 * kPs, want.begin() + 3 * kPs + 10, std::byte{'A'});
  EXPECT_EQ(diff(be, want), "");
}

// Truncating a dirty page's range discards it: nothing is written past EOF
// (the wrapper records every backend write), and a later extend reads zeros.
TEST_P(Truncate, ShrinkDiscardsDirtyPages) {
  Store st(GetParam(), "dirty", 8 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto rw = f.map(0, 8 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 5 * kPs, 2 * kPs, std::byte{'D'}));  // pages 5, 6
  f.write(7 * kPs, filled(kPs, 'W'));                                      // page 7
  ASSERT_TRUE(fill_view(rw.data() + 1 * kPs, 10, std::byte{'K'}));        // kept
  const uint64_t truncated = f.stats().pages_truncated;
  f.truncate(4 * kPs);
  EXPECT_GE(f.stats().pages_truncated - truncated, 3u);
  f.sync();
  EXPECT_EQ(st.size(), 4 * kPs);
  for (const auto& w : wrap->writes())
    EXPECT_LE(w.off + w.len, 4 * kPs) << "write-back past EOF at " << w.off << "+" << w.len;
  auto be = st.bytes(0, 8 * kPs);
  ASSERT_EQ(be.size(), 4 * kPs);
  auto want = ft::pattern(0, 4 * kPs);
  std::fill(want.begin() + kPs, want.begin() + kPs + 10, std::byte{'K'});
  EXPECT_EQ(diff(be, want), "");
  f.truncate(8 * kPs);
  auto v = copy_out(rw.data() + 4 * kPs, 4 * kPs);
  ASSERT_TRUE(v);
  EXPECT_TRUE(is_zero(*v)) << "discarded dirty data came back";
  EXPECT_TRUE(is_zero(read_file(f, 4 * kPs, 4 * kPs)));
  f.sync();
  EXPECT_TRUE(is_zero(st.bytes(4 * kPs, 4 * kPs)));
}

// Shrinking into a dirty page keeps its head and writes back only up to EOF.
TEST_P(Truncate, ShrinkIntoDirtyPageWritesOnlyToEof) {
  Store st(GetParam(), "dirtyeof", 4 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto rw = f.map(0, 4 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 3 * kPs, kPs, std::byte{'D'}));
  const uint64_t ns = 3 * kPs + 123;
  f.truncate(ns);
  f.sync();
  for (const auto& w : wrap->writes()) EXPECT_LE(w.off + w.len, ns);
  EXPECT_EQ(st.size(), ns);
  EXPECT_EQ(diff(st.bytes(3 * kPs, kPs), filled(123, 'D')), "");
}

// Repeated shrink/extend cycles while views stay mapped: every view and
// read() match a byte model; memfd size follows.
TEST_P(Truncate, ShrinkExtendCyclesMatchModel) {
  const uint64_t max = 16 * kPs;
  Store st(GetParam(), "cycles", max);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, max, fl::Access::ReadOnly);
  auto rw = f.map(0, max);
  std::vector<std::byte> model = ft::pattern(0, max);
  uint64_t size = max;
  uint64_t seed = 12345;
  auto rnd = [&](uint64_t n) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (seed >> 33) % n;
  };
  for (int it = 0; it < 60; ++it) {
    const int op = static_cast<int>(rnd(3));
    if (op == 0) {
      const uint64_t ns = rnd(max + 1);
      f.truncate(ns);
      if (ns < size) model.resize(ns);
      else model.resize(ns, std::byte{0});
      size = ns;
    } else if (op == 1 && size > 0) {
      const uint64_t o = rnd(size), n = 1 + rnd(std::min<uint64_t>(size - o, 3 * kPs));
      const std::byte v = static_cast<std::byte>(1 + rnd(250));
      ASSERT_TRUE(fill_view(rw.data() + o, n, v));
      std::fill(model.begin() + o, model.begin() + o + n, v);
    } else if (size > 0) {
      const uint64_t o = rnd(size), n = 1 + rnd(std::min<uint64_t>(size - o, 3 * kPs));
      const std::byte v = static_cast<std::byte>(1 + rnd(250));
      f.write(o, filled(n, static_cast<char>(v)));
      std::fill(model.begin() + o, model.begin() + o + n, v);
    }
    ASSERT_EQ(f.size(), size);
    ASSERT_EQ(faultline::testing::FileAccess::frame_bytes(f), round_up(size));
    ASSERT_EQ(diff(read_file(f, 0, max), model), "") << "iteration " << it;
    for (auto* m : {&ro, &rw}) {
      auto v = copy_out(m->data(), size);
      ASSERT_TRUE(v);
      ASSERT_EQ(diff(*v, model), "") << "iteration " << it;
      auto t = copy_out(m->data() + size, round_up(size) - size);
      ASSERT_TRUE(t);
      if (round_up(size) < max) {
        ASSERT_TRUE(load(m->data() + round_up(size)).bus.has_value());
      }
    }
    if (it % 10 == 9) {
      f.sync();
      ASSERT_EQ(st.size(), size);
      ASSERT_EQ(diff(st.bytes(0, max), model), "") << "backend, iteration " << it;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tr, Truncate, ::testing::Values(Kind::File, Kind::Memory), kind_name);

// A remote resize (Backend::ChangeSink::resized: another machine shrank the
// object) follows truncate's sequence (R3): the partial last page reads zeros
// past the new EOF, and the engine forgets poison past the new end, so after
// the object grows again the page faults normally (it used to be skipped by
// every fault: a load that never finished).
TEST(RemoteResize, ShrinkZeroesTheTailAndForgetsPoisonPastTheEnd) {
  struct SinkBackend : ft::WrapBackend {
    using ft::WrapBackend::WrapBackend;
    void attach(ChangeSink s) override { sink = std::move(s); }
    ChangeSink sink;
  };
  ft::TempDir dir;
  const std::string path = dir.make_file("rr", 4 * kPs);
  auto be = std::make_shared<SinkBackend>(fl::make_file_backend(path));
  be->fail_reads({3});
  fl::EngineConfig cfg;
  cfg.fault_around_pages = 1;
  cfg.readahead_max_pages = 1;
  cfg.read_around_pages = 0;
  fl::Engine eng(cfg);
  auto f = eng.open(be);
  auto m = f.map(0, 4 * kPs);
  ASSERT_TRUE(load(m.data() + 3 * kPs).bus.has_value());  // poisoned in this view
  ASSERT_FALSE(store(m.data() + 2 * kPs + 100, std::byte{'x'}));
  be->sink.resized(2 * kPs + 50);
  EXPECT_EQ(f.size(), 2 * kPs + 50);
  const Load tail = load(m.data() + 2 * kPs + 100);
  EXPECT_TRUE(tail.ok());
  EXPECT_EQ(tail.value, std::byte{0}) << "a byte past the new EOF in its page is not zero";
  be->fail_reads({});
  be->sink.resized(4 * kPs);
  auto fut = std::async(std::launch::async, [&] { return load(m.data() + 3 * kPs); });
  if (fut.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    std::fprintf(stderr, "DEADLOCK: the page poisoned before the shrink faults forever\n");
    std::_Exit(3);
  }
  const Load again = fut.get();
  EXPECT_TRUE(again.ok());
  EXPECT_EQ(again.value, ft::pattern(3 * kPs, 1)[0]);
}

}  // namespace
}  // namespace tr
