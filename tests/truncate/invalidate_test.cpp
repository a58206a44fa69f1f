// File::invalidate (DESIGN R4): after the object changed underneath, the next
// access reads it again; dirty pages are laundered first; launder failures
// are reported (and recorded for sync, R8); private copies survive.
// Also poison: invalidate / punch / truncate clear exactly the poisoned pages.
#include <algorithm>

#include "tr_util.hpp"

namespace tr {
namespace {

using Invalidate = TrTest;
using Poison = TrTest;

TEST_P(Invalidate, ChangedUnderneathSeenAfterInvalidate) {
  Store st(GetParam(), "changed", 8 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  auto rw = f.map(0, 8 * kPs);
  for (auto* m : {&ro, &rw}) ft::touch_read(m->data(), 8 * kPs);
  EXPECT_EQ(read_file(f, 0, 8 * kPs).size(), 8 * kPs);
  auto nd = ft::pattern(2 * kPs, 3 * kPs, 7);
  st.write_under(2 * kPs, nd);  // another process writes the object
  const uint64_t inval = f.stats().pages_invalidated;
  auto failed = f.invalidate(2 * kPs + 10, 3 * kPs - 20);  // unaligned: covers pages 2..4
  EXPECT_TRUE(failed.empty());
  EXPECT_GE(f.stats().pages_invalidated - inval, 3u);
  auto want = ft::pattern(0, 8 * kPs);
  std::copy(nd.begin(), nd.end(), want.begin() + 2 * kPs);
  for (auto* m : {&ro, &rw}) {
    auto v = copy_out(m->data(), 8 * kPs);
    ASSERT_TRUE(v);
    EXPECT_EQ(diff(*v, want), "");
  }
  EXPECT_EQ(diff(read_file(f, 0, 8 * kPs), want), "");
  // read() first this time (the views then follow).
  auto nd2 = ft::pattern(6 * kPs, kPs, 9);
  st.write_under(6 * kPs, nd2);
  EXPECT_TRUE(f.invalidate(6 * kPs, kPs).empty());
  std::copy(nd2.begin(), nd2.end(), want.begin() + 6 * kPs);
  EXPECT_EQ(diff(read_file(f, 0, 8 * kPs), want), "");
  auto v = copy_out(rw.data(), 8 * kPs);
  ASSERT_TRUE(v);
  EXPECT_EQ(diff(*v, want), "");
}

// Dirty pages are laundered before they are dropped: their data reaches the
// backend (no sync needed) and is still what every view shows.
TEST_P(Invalidate, LaundersDirtyPages) {
  Store st(GetParam(), "launder", 8 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto rw = f.map(0, 8 * kPs);
  auto ro = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  ASSERT_TRUE(fill_view(rw.data() + 1 * kPs + 5, 100, std::byte{'M'}));
  f.write(3 * kPs, filled(kPs + 7, 'W'));
  auto want = ft::pattern(0, 8 * kPs);
  std::fill(want.begin() + kPs + 5, want.begin() + kPs + 105, std::byte{'M'});
  std::fill(want.begin() + 3 * kPs, want.begin() + 4 * kPs + 7, std::byte{'W'});
  auto failed = f.invalidate(0, 8 * kPs);
  EXPECT_TRUE(failed.empty());
  EXPECT_EQ(diff(st.bytes(0, 8 * kPs), want), "") << "invalidate lost dirty data";
  for (auto* m : {&rw, &ro}) {
    auto v = copy_out(m->data(), 8 * kPs);
    ASSERT_TRUE(v);
    EXPECT_EQ(diff(*v, want), "");
  }
  // The laundered pages are clean: a store after invalidate dirties again.
  ASSERT_TRUE(fill_view(rw.data() + 7 * kPs, 3, std::byte{'Z'}));
  f.sync();
  EXPECT_EQ(diff(st.bytes(7 * kPs, 3), filled(3, 'Z')), "");
}

// A write error during launder: invalidate returns exactly those pages'
// offsets; they stay dirty and cached (the views and read() keep the data);
// the next sync() of every handle throws EIO once (R8).
TEST_P(Invalidate, LaunderErrorReportedExactly) {
  Store st(GetParam(), "launderr", 8 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto f2 = eng.open(wrap);  // a second handle onto the same cache
  auto rw = f.map(0, 8 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 1 * kPs, 16, std::byte{'A'}));
  ASSERT_TRUE(fill_view(rw.data() + 3 * kPs, 16, std::byte{'B'}));
  f.write(5 * kPs + 8, filled(16, 'C'));
  wrap->fail_writes({1, 5});
  auto failed = f.invalidate(0, 8 * kPs);
  std::sort(failed.begin(), failed.end());
  EXPECT_EQ(failed, (std::vector<uint64_t>{1 * kPs, 5 * kPs}));
  // Page 3 was laundered; 1 and 5 were not (and kept).
  EXPECT_EQ(diff(st.bytes(3 * kPs, 16), filled(16, 'B')), "");
  EXPECT_EQ(diff(st.bytes(1 * kPs, 16), ft::pattern(kPs, 16)), "");
  EXPECT_EQ(load(rw.data() + 1 * kPs).value, std::byte{'A'}) << "an unlaundered page was dropped";
  EXPECT_EQ(diff(read_file(f, 5 * kPs + 8, 16), filled(16, 'C')), "");
  EXPECT_GE(f.stats().write_errors, 1u);
  // The error clears; each handle's next sync reports it exactly once, and
  // the kept dirty pages reach the backend.
  wrap->fail_writes({});
  EXPECT_ERRNO(EIO, f.sync());
  EXPECT_EQ(diff(st.bytes(1 * kPs, 16), filled(16, 'A')), "") << "the kept dirty page was lost";
  EXPECT_EQ(diff(st.bytes(5 * kPs + 8, 16), filled(16, 'C')), "");
  EXPECT_NO_THROW(f.sync()) << "the error was reported twice";
  EXPECT_ERRNO(EIO, f2.sync());
  EXPECT_NO_THROW(f2.sync());
  EXPECT_TRUE(f.invalidate(0, 8 * kPs).empty());
}

// Adjacent dirty pages, only one of which cannot be written: only that one is
// reported (launder is per page, like the kernel's launder_folio).
TEST_P(Invalidate, LaunderErrorAdjacentDirtyPages) {
  Store st(GetParam(), "launderadj", 8 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto rw = f.map(0, 8 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 2 * kPs, 3 * kPs, std::byte{'A'}));  // pages 2,3,4 dirty
  wrap->fail_writes({3});
  auto failed = f.invalidate(0, 8 * kPs);
  EXPECT_EQ(failed, (std::vector<uint64_t>{3 * kPs}));
  EXPECT_EQ(diff(st.bytes(2 * kPs, kPs), filled(kPs, 'A')), "") << "page 2 was not laundered";
  EXPECT_EQ(diff(st.bytes(4 * kPs, kPs), filled(kPs, 'A')), "") << "page 4 was not laundered";
  wrap->fail_writes({});
  EXPECT_ERRNO(EIO, f.sync());
  EXPECT_EQ(diff(st.bytes(2 * kPs, 3 * kPs), filled(3 * kPs, 'A')), "");
}

TEST_P(Invalidate, PrivateCopiesSurvive) {
  Store st(GetParam(), "private", 4 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto pv = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ft::touch_read(pv.data(), 4 * kPs);
  ASSERT_FALSE(store(pv.data() + kPs, std::byte{'Q'}));
  auto nd = ft::pattern(0, 4 * kPs, 5);
  st.write_under(0, nd);
  EXPECT_TRUE(f.invalidate(0, 4 * kPs).empty());
  EXPECT_EQ(load(pv.data() + kPs).value, std::byte{'Q'}) << "invalidate dropped a private copy";
  EXPECT_EQ(load(pv.data() + kPs + 1).value, ft::pat(kPs + 1)) << "the private copy changed";
  EXPECT_EQ(load(pv.data() + 2 * kPs + 1).value, nd[2 * kPs + 1]) << "untouched private page";
  f.sync();
  EXPECT_EQ(st.bytes(kPs, 1), std::vector<std::byte>{nd[kPs]}) << "a private copy was written";
}

// ---------------------------------------------------------------------------
// Poison: a page whose fill failed stays SIGBUS (BUS_MCEERR_AR) in that view;
// invalidate / punch / truncate of its range clears exactly that page, and a
// private copy in another page of a private view survives.

enum class Clear { Invalidate, Punch, Truncate };

void poison_case(Kind kind, Clear how) {
  Store st(kind, "poison", 8 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::EngineConfig cfg;
  cfg.fault_around_pages = 1;  // page 3 is filled only when touched
  cfg.readahead_max_pages = 1;
  fl::Engine eng(cfg);
  auto f = eng.open(wrap);
  auto sh = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  auto pv = f.map(0, 8 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ASSERT_FALSE(store(pv.data() + 1 * kPs, std::byte{'Q'}));  // a private copy
  ASSERT_FALSE(store(pv.data() + 6 * kPs, std::byte{'R'}));  // another
  wrap->fail_reads({3});
  for (auto* m : {&sh, &pv}) {
    const Load l = load(m->data() + 3 * kPs + 9);
    ASSERT_TRUE(l.bus.has_value()) << "an injected read error did not give SIGBUS";
    EXPECT_TRUE(ft::io_error_code_ok(l.bus->code)) << l.bus->code;
  }
  wrap->fail_reads({});
  // Poisoned: still SIGBUS in those views although the error is gone.
  for (auto* m : {&sh, &pv}) EXPECT_TRUE(load(m->data() + 3 * kPs).bus.has_value());
  EXPECT_TRUE(load(sh.data() + 2 * kPs).ok());
  std::vector<std::byte> want3 = ft::pattern(3 * kPs, kPs);
  switch (how) {
    case Clear::Invalidate:
      EXPECT_TRUE(f.invalidate(0, 8 * kPs).empty());  // wide: covers the private copies too
      break;
    case Clear::Punch:
      f.punch_hole(3 * kPs, kPs);
      want3.assign(kPs, std::byte{0});
      break;
    case Clear::Truncate:
      f.truncate(3 * kPs + 100);  // page 3 becomes the EOF page
      std::fill(want3.begin() + 100, want3.end(), std::byte{0});
      break;
  }
  for (auto* m : {&sh, &pv}) {
    auto v = copy_out(m->data() + 3 * kPs, kPs);
    ASSERT_TRUE(v) << "the poisoned page still gives SIGBUS";
    EXPECT_EQ(diff(*v, want3), "");
  }
  EXPECT_EQ(load(pv.data() + 1 * kPs).value, std::byte{'Q'}) << "a private copy was dropped";
  EXPECT_EQ(load(pv.data() + 1 * kPs + 1).value, ft::pat(kPs + 1));
  if (how != Clear::Truncate) {
    EXPECT_EQ(load(pv.data() + 6 * kPs).value, std::byte{'R'}) << "a private copy was dropped";
  } else {
    EXPECT_TRUE(load(pv.data() + 6 * kPs).bus.has_value()) << "a private copy survived past EOF";
  }
  EXPECT_EQ(diff(read_file(f, 3 * kPs, kPs), std::vector<std::byte>(want3.begin(),
                                                                     want3.begin() + (how == Clear::Truncate ? 100 : kPs))),
            "");
}

TEST_P(Poison, ClearedByInvalidate) { poison_case(GetParam(), Clear::Invalidate); }
TEST_P(Poison, ClearedByPunch) { poison_case(GetParam(), Clear::Punch); }
TEST_P(Poison, ClearedByTruncate) { poison_case(GetParam(), Clear::Truncate); }

// A poisoned page in a shared writable view: punch clears it and a store
// there then works and is written back.
TEST_P(Poison, WritableViewStoreAfterClear) {
  Store st(GetParam(), "poisonrw", 4 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto rw = f.map(0, 4 * kPs);
  wrap->fail_reads({2});
  ASSERT_TRUE(store(rw.data() + 2 * kPs + 1, std::byte{'S'}).has_value());
  wrap->fail_reads({});
  EXPECT_TRUE(load(rw.data() + 2 * kPs).bus.has_value());
  EXPECT_TRUE(f.invalidate(2 * kPs, 1).empty());
  ASSERT_FALSE(store(rw.data() + 2 * kPs + 1, std::byte{'S'}));
  f.sync();
  auto want = ft::pattern(2 * kPs, kPs);
  want[1] = std::byte{'S'};
  EXPECT_EQ(diff(st.bytes(2 * kPs, kPs), want), "");
}

INSTANTIATE_TEST_SUITE_P(Tr, Invalidate, ::testing::Values(Kind::File, Kind::Memory), kind_name);
INSTANTIATE_TEST_SUITE_P(Tr, Poison, ::testing::Values(Kind::File, Kind::Memory), kind_name);

}  // namespace
}  // namespace tr
