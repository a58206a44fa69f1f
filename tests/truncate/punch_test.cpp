// File::punch_hole (DESIGN R4): the range reads zeros in every shared view and
// through read(), partial end pages are zeroed in place, the backend holds
// zeros (a hole), private copies survive, a punch past EOF is a no-op.
#include "tr_util.hpp"

namespace tr {
namespace {

using Punch = TrTest;

void expect_everywhere(fl::File& f, const Store& st, std::initializer_list<fl::Mapping*> views,
                       const std::vector<std::byte>& want) {
  for (auto* m : views) {
    auto v = copy_out(m->data(), want.size());
    ASSERT_TRUE(v);
    EXPECT_EQ(diff(*v, want), "") << "view at " << static_cast<void*>(m->data());
  }
  EXPECT_EQ(diff(read_file(f, 0, want.size()), want), "") << "read()";
  f.sync();
  EXPECT_EQ(diff(st.bytes(0, want.size()), want), "") << "backend";
}

TEST_P(Punch, WholePagesReadZerosEverywhere) {
  Store st(GetParam(), "punch", 8 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  auto rw = f.map(0, 8 * kPs);
  for (auto* m : {&ro, &rw}) ft::touch_read(m->data(), 8 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 3 * kPs, kPs, std::byte{'D'}));  // a dirty page inside
  const uint64_t punched = f.stats().pages_punched;
  f.punch_hole(2 * kPs, 3 * kPs);
  EXPECT_EQ(f.stats().pages_punched - punched, 3u);
  EXPECT_EQ(f.size(), 8 * kPs);
  EXPECT_EQ(st.size(), 8 * kPs);
  auto want = ft::pattern(0, 8 * kPs);
  std::fill(want.begin() + 2 * kPs, want.begin() + 5 * kPs, std::byte{0});
  expect_everywhere(f, st, {&ro, &rw}, want);
  if (GetParam() == Kind::File) {
    const int fd = ::open(st.path().c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::lseek(fd, 2 * kPs, SEEK_HOLE), static_cast<off_t>(2 * kPs))
        << "the backing file has no hole where punched";
    ::close(fd);
  }
  // The punched pages work again afterwards.
  ASSERT_TRUE(fill_view(rw.data() + 2 * kPs, 8, std::byte{'N'}));
  std::fill(want.begin() + 2 * kPs, want.begin() + 2 * kPs + 8, std::byte{'N'});
  expect_everywhere(f, st, {&ro, &rw}, want);
}

// Unaligned: the partial pages at the ends are zeroed in place (the frame is
// kept, not refilled) and their neighbour bytes are intact.
TEST_P(Punch, UnalignedRangeZeroesPartialPagesInPlace) {
  Store st(GetParam(), "unaligned", 8 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  auto rw = f.map(0, 8 * kPs);
  for (auto* m : {&ro, &rw}) ft::touch_read(m->data(), 8 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 1 * kPs, 200, std::byte{'D'}));  // dirty head of page 1
  auto want = ft::pattern(0, 8 * kPs);
  std::fill(want.begin() + kPs, want.begin() + kPs + 200, std::byte{'D'});
  const uint64_t fills = f.stats().pages_filled;
  f.punch_hole(kPs + 100, 2 * kPs + 50);  // [kPs+100, 3kPs+150)
  std::fill(want.begin() + kPs + 100, want.begin() + 3 * kPs + 150, std::byte{0});
  f.punch_hole(5 * kPs + 10, 20);  // inside one page
  std::fill(want.begin() + 5 * kPs + 10, want.begin() + 5 * kPs + 30, std::byte{0});
  for (auto* m : {&ro, &rw}) {
    for (uint64_t o : {kPs + 99, kPs + 100, 3 * kPs + 149, 3 * kPs + 150, 5 * kPs + 9,
                       5 * kPs + 10, 5 * kPs + 29, 5 * kPs + 30})
      EXPECT_EQ(load(m->data() + o).value, want[o]) << "at " << o;
  }
  EXPECT_EQ(f.stats().pages_filled, fills) << "a partial end page was dropped and refilled";
  expect_everywhere(f, st, {&ro, &rw}, want);
}

TEST_P(Punch, DirtyDataInRangeIsDiscarded) {
  Store st(GetParam(), "dirty", 4 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto rw = f.map(0, 4 * kPs);
  ASSERT_TRUE(fill_view(rw.data() + 1 * kPs, 2 * kPs, std::byte{'D'}));
  f.write(2 * kPs + 10, filled(10, 'W'));
  f.punch_hole(kPs, 2 * kPs);
  f.sync();
  for (const auto& w : wrap->writes())
    EXPECT_TRUE(w.off + w.len <= kPs || w.off >= 3 * kPs)
        << "a punched dirty page was written back: " << w.off << "+" << w.len;
  auto want = ft::pattern(0, 4 * kPs);
  std::fill(want.begin() + kPs, want.begin() + 3 * kPs, std::byte{0});
  EXPECT_EQ(diff(st.bytes(0, 4 * kPs), want), "");
  auto v = copy_out(rw.data(), 4 * kPs);
  ASSERT_TRUE(v);
  EXPECT_EQ(diff(*v, want), "");
}

// Private copies survive a punch; untouched private pages follow the file.
TEST_P(Punch, PrivateCopiesSurvive) {
  Store st(GetParam(), "private", 4 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto ro = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  auto pv = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ft::touch_read(pv.data(), 4 * kPs);
  ASSERT_FALSE(store(pv.data() + kPs + 7, std::byte{'Q'}));
  f.punch_hole(kPs, 2 * kPs);
  EXPECT_EQ(load(pv.data() + kPs + 7).value, std::byte{'Q'}) << "punch dropped a private copy";
  EXPECT_EQ(load(pv.data() + kPs + 8).value, ft::pat(kPs + 8)) << "the private copy changed";
  EXPECT_EQ(load(pv.data() + 2 * kPs + 7).value, std::byte{0}) << "untouched private page";
  EXPECT_EQ(load(ro.data() + kPs + 7).value, std::byte{0});
  f.sync();
  EXPECT_TRUE(is_zero(st.bytes(kPs, 2 * kPs)));
}

// Past EOF: a no-op; straddling EOF: only up to EOF, size unchanged.
TEST_P(Punch, PastEofIsNoopAndStraddlingStopsAtEof) {
  Store st(GetParam(), "eof", 3 * kPs + 100);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto rw = f.map(0, 6 * kPs);
  ft::touch_read(rw.data(), 3 * kPs + 100);
  auto want = ft::pattern(0, 3 * kPs + 100);
  f.punch_hole(5 * kPs, kPs);
  f.punch_hole(3 * kPs + 100, 10 * kPs);
  EXPECT_EQ(f.size(), 3 * kPs + 100);
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 4 * kPs);
  EXPECT_EQ(st.size(), 3 * kPs + 100);
  expect_everywhere(f, st, {&rw}, want);
  f.punch_hole(3 * kPs + 50, 10 * kPs);  // straddles EOF inside the EOF page
  std::fill(want.begin() + 3 * kPs + 50, want.end(), std::byte{0});
  EXPECT_EQ(f.size(), 3 * kPs + 100);
  EXPECT_EQ(st.size(), 3 * kPs + 100);
  expect_everywhere(f, st, {&rw}, want);
  EXPECT_TRUE(load(rw.data() + 4 * kPs).bus.has_value());
  f.punch_hole(kPs, ~uint64_t{0} - kPs);  // to the end of the offset space
  std::fill(want.begin() + kPs, want.end(), std::byte{0});
  EXPECT_EQ(f.size(), 3 * kPs + 100);
  EXPECT_EQ(st.size(), 3 * kPs + 100);
  expect_everywhere(f, st, {&rw}, want);
}

// A punch of a range never cached: the later fills read the backend's zeros.
TEST_P(Punch, UncachedRangeReadsZeros) {
  Store st(GetParam(), "uncached", 8 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  f.punch_hole(kPs + 1, 5 * kPs);  // nothing cached yet
  auto ro = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  auto want = ft::pattern(0, 8 * kPs);
  std::fill(want.begin() + kPs + 1, want.begin() + 6 * kPs + 1, std::byte{0});
  expect_everywhere(f, st, {&ro}, want);
}

INSTANTIATE_TEST_SUITE_P(Tr, Punch, ::testing::Values(Kind::File, Kind::Memory), kind_name);

}  // namespace
}  // namespace tr
