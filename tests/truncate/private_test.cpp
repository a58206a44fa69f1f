// Private (MAP_PRIVATE) Mappings: reads show the file; the first store to a
// page makes a private copy that is never written back; that page then no
// longer follows the file while untouched private pages still do.
#include "tr_util.hpp"

namespace tr {
namespace {

using Private = TrTest;

TEST_P(Private, ReadsShowFileStoresNeverWrittenBack) {
  Store st(GetParam(), "priv", 4 * kPs);
  auto wrap = std::make_shared<ft::WrapBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(wrap);
  auto pv = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  auto ro = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  auto v = copy_out(pv.data(), 4 * kPs);
  ASSERT_TRUE(v);
  EXPECT_EQ(diff(*v, ft::pattern(0, 4 * kPs)), "");
  ASSERT_TRUE(fill_view(pv.data() + kPs, kPs, std::byte{'P'}));
  ASSERT_TRUE(fill_view(pv.data() + 3 * kPs + 5, 1, std::byte{'P'}));
  // The store to a never-touched page works too (a hole in the memfd).
  auto pv2 = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ASSERT_TRUE(fill_view(pv2.data() + 2 * kPs, 10, std::byte{'R'}));
  EXPECT_EQ(load(pv2.data() + 2 * kPs + 10).value, ft::pat(2 * kPs + 10));
  f.sync();
  f.fsync();
  EXPECT_EQ(wrap->write_calls.load(), 0u) << "a private store was written back";
  EXPECT_EQ(f.stats().pages_dirtied, 0u);
  EXPECT_EQ(diff(st.bytes(0, 4 * kPs), ft::pattern(0, 4 * kPs)), "");
  EXPECT_EQ(diff(read_file(f, 0, 4 * kPs), ft::pattern(0, 4 * kPs)), "");
  auto s = copy_out(ro.data(), 4 * kPs);
  ASSERT_TRUE(s);
  EXPECT_EQ(diff(*s, ft::pattern(0, 4 * kPs)), "") << "a private store leaked into a shared view";
  EXPECT_EQ(load(pv.data() + kPs + 100).value, std::byte{'P'});
  EXPECT_EQ(load(pv.data() + 2 * kPs).value, ft::pat(2 * kPs)) << "pv2's copy leaked into pv";
}

// After the copy, that page no longer follows the file (File::write, a store
// through a shared view, invalidate after an outside change); pages of the
// same view that were only read, or never touched, still follow it.
TEST_P(Private, CopiedPageStopsFollowingFile) {
  Store st(GetParam(), "follow", 6 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto pv = f.map(0, 6 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  auto rw = f.map(0, 6 * kPs);
  ft::touch_read(pv.data(), 3 * kPs);  // pages 0..2 read; 3..5 untouched
  ASSERT_FALSE(store(pv.data() + 1 * kPs, std::byte{'Q'}));
  ASSERT_FALSE(store(pv.data() + 4 * kPs, std::byte{'Q'}));
  // File::write to every page.
  f.write(0, filled(6 * kPs, 'W'));
  EXPECT_EQ(load(pv.data() + 1 * kPs + 1).value, ft::pat(kPs + 1)) << "a copied page followed";
  EXPECT_EQ(load(pv.data() + 4 * kPs + 1).value, ft::pat(4 * kPs + 1)) << "a copied page followed";
  EXPECT_EQ(load(pv.data() + 1 * kPs).value, std::byte{'Q'});
  for (uint64_t pg : {0, 2, 3, 5})
    EXPECT_EQ(load(pv.data() + pg * kPs + 1).value, std::byte{'W'}) << "page " << pg << " stopped following";
  // A store through a shared view.
  ASSERT_FALSE(store(rw.data() + 2 * kPs + 9, std::byte{'S'}));
  ASSERT_FALSE(store(rw.data() + 1 * kPs + 9, std::byte{'S'}));
  EXPECT_EQ(load(pv.data() + 2 * kPs + 9).value, std::byte{'S'});
  EXPECT_EQ(load(pv.data() + 1 * kPs + 9).value, ft::pat(kPs + 9));
  // An outside change + invalidate.
  f.sync();
  st.write_under(0, filled(6 * kPs, 'X'));
  EXPECT_TRUE(f.invalidate(0, 6 * kPs).empty());
  EXPECT_EQ(load(pv.data() + 0 * kPs + 1).value, std::byte{'X'});
  EXPECT_EQ(load(pv.data() + 5 * kPs + 1).value, std::byte{'X'});
  EXPECT_EQ(load(pv.data() + 1 * kPs + 1).value, ft::pat(kPs + 1));
  EXPECT_EQ(load(pv.data() + 4 * kPs).value, std::byte{'Q'});
}

// Truncate removes private copies past EOF (kernel shrink of the memfd),
// keeps those inside; after an extend the old copies do not come back.
TEST_P(Private, TruncateDropsCopiesPastEofOnly) {
  Store st(GetParam(), "privtrunc", 6 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto pv = f.map(0, 6 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  for (uint64_t pg = 0; pg < 6; ++pg) ASSERT_FALSE(store(pv.data() + pg * kPs, std::byte{'Q'}));
  f.truncate(2 * kPs + 10);
  EXPECT_EQ(load(pv.data() + 1 * kPs).value, std::byte{'Q'});
  EXPECT_EQ(load(pv.data() + 2 * kPs).value, std::byte{'Q'}) << "the EOF page's private copy";
  for (uint64_t pg = 3; pg < 6; ++pg) EXPECT_TRUE(load(pv.data() + pg * kPs).bus.has_value());
  f.truncate(6 * kPs);
  for (uint64_t pg = 3; pg < 6; ++pg)
    EXPECT_EQ(load(pv.data() + pg * kPs).value, std::byte{0}) << "a private copy came back";
}

// A private writable view of a read-only backend: allowed, stores stay local.
TEST_P(Private, WritablePrivateViewOfReadOnlyBackend) {
  Store st(GetParam(), "privro", 2 * kPs);
  auto robe = std::make_shared<ReadOnlyBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(robe);
  EXPECT_ERRNO(EROFS, (void)f.map(0, 2 * kPs, fl::Access::ReadWrite, fl::Sharing::Shared));
  auto pv = f.map(0, 2 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ASSERT_FALSE(store(pv.data() + 10, std::byte{'P'}));
  EXPECT_EQ(load(pv.data() + 10).value, std::byte{'P'});
  f.sync();
  EXPECT_EQ(diff(st.bytes(0, 2 * kPs), ft::pattern(0, 2 * kPs)), "");
}

INSTANTIATE_TEST_SUITE_P(Tr, Private, ::testing::Values(Kind::File, Kind::Memory), kind_name);

}  // namespace
}  // namespace tr
