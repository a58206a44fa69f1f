// Bad input to truncate / punch_hole / invalidate: a std::system_error with
// the right errno and no change in state (size, memfd, views, read(), backend).
#include <limits>
#include <sys/mman.h>

#include "tr_util.hpp"

namespace tr {
namespace {

using BadInput = TrTest;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

/// Everything a user can observe, to compare before/after a refused call.
struct Snapshot {
  uint64_t size = 0, frames = 0, backend_size = 0;
  std::vector<std::byte> view, via_read, backend;
  bool operator==(const Snapshot&) const = default;
};
Snapshot snap(fl::File& f, const fl::Mapping& m, const Store& st) {
  Snapshot s;
  s.size = f.size();
  s.frames = faultline::testing::FileAccess::frame_bytes(f);
  s.backend_size = st.size();
  s.view = copy_out(m.data(), s.size).value_or(std::vector<std::byte>{});
  s.via_read = read_file(f, 0, m.size());
  s.backend = st.bytes(0, m.size());
  return s;
}

TEST_P(BadInput, ClosedFileIsEbadf) {
  Store st(GetParam(), "closed", 4 * kPs);
  fl::Engine eng;
  auto keep = eng.open(st.backend());
  auto m = keep.map(0, 4 * kPs, fl::Access::ReadOnly);
  const Snapshot before = snap(keep, m, st);
  auto f = eng.open(st.backend());
  f.close();
  fl::File never;  // default-constructed: closed
  for (fl::File* h : {&f, &never}) {
    EXPECT_ERRNO(EBADF, h->truncate(kPs));
    EXPECT_ERRNO(EBADF, h->truncate(0));
    EXPECT_ERRNO(EBADF, h->punch_hole(0, kPs));
    EXPECT_ERRNO(EBADF, (void)h->invalidate(0, kPs));
  }
  EXPECT_TRUE(snap(keep, m, st) == before);
}

TEST_P(BadInput, ZeroLengthIsEinval) {
  Store st(GetParam(), "zerolen", 4 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto m = f.map(0, 4 * kPs);
  ASSERT_TRUE(fill_view(m.data() + kPs, 10, std::byte{'D'}));  // a dirty page
  const Snapshot before = snap(f, m, st);
  EXPECT_ERRNO(EINVAL, f.punch_hole(kPs, 0));
  EXPECT_ERRNO(EINVAL, f.punch_hole(0, 0));
  EXPECT_ERRNO(EINVAL, (void)f.invalidate(kPs, 0));
  EXPECT_ERRNO(EINVAL, (void)f.invalidate(10 * kPs, 0));
  EXPECT_TRUE(snap(f, m, st) == before);
  f.sync();  // no error was recorded by the refused calls
}

TEST_P(BadInput, OverflowingRangeIsEinval) {
  Store st(GetParam(), "overflow", 4 * kPs);
  fl::Engine eng;
  auto f = eng.open(st.backend());
  auto m = f.map(0, 4 * kPs);
  ASSERT_TRUE(fill_view(m.data() + kPs, 10, std::byte{'D'}));
  const Snapshot before = snap(f, m, st);
  EXPECT_ERRNO(EINVAL, f.punch_hole(kPs, kMax));
  EXPECT_ERRNO(EINVAL, f.punch_hole(kMax, 2));
  EXPECT_ERRNO(EINVAL, f.punch_hole(kMax - kPs + 1, kPs));
  EXPECT_ERRNO(EINVAL, (void)f.invalidate(kPs, kMax));
  EXPECT_ERRNO(EINVAL, (void)f.invalidate(kMax, 2));
  EXPECT_TRUE(snap(f, m, st) == before);
  // A size no File can have.
  EXPECT_THROW(f.truncate(kMax), std::system_error);
  EXPECT_TRUE(snap(f, m, st) == before);
}

// Issue 14 defect 5: a range that ends past the largest file size (up to
// 2^64 - 1) is clamped to the end, as the kernel's fadvise clamps it; it is
// never rounded into a wrapped, empty range that makes sync or invalidate a
// silent no-op. A range whose off + len wraps 2^64 is refused (EINVAL, as
// sync_file_range; msync: ENOMEM), len 0 too.
TEST_P(BadInput, RangesToTheTopAreClampedNeverEmpty) {
  Store st(GetParam(), "top", 4 * kPs);
  fl::EngineConfig cfg;
  cfg.flusher = false;  // only the calls below write back
  fl::Engine eng(cfg);
  auto f = eng.open(st.backend());
  auto m = f.map(0, 4 * kPs);
  ASSERT_TRUE(fill_view(m.data() + kPs, 10, std::byte{'D'}));
  f.sync(0, kMax);
  EXPECT_EQ(st.bytes(kPs, 1).at(0), std::byte{'D'}) << "sync(0, UINT64_MAX) wrote nothing";
  ASSERT_TRUE(fill_view(m.data() + 2 * kPs, 10, std::byte{'E'}));
  f.sync(2 * kPs, kMax - 2 * kPs);  // ends at 2^64 - 1: no wrap
  EXPECT_EQ(st.bytes(2 * kPs, 1).at(0), std::byte{'E'}) << "sync to 2^64 - 1 wrote nothing";
  ASSERT_TRUE(fill_view(m.data() + 3 * kPs, 10, std::byte{'F'}));
  f.sync(3 * kPs + 1, kMax - 3 * kPs - 1);  // an unaligned start, the same end
  EXPECT_EQ(st.bytes(3 * kPs, 1).at(0), std::byte{'F'});
  f.sync(kMax - 1, 1);  // past every page: nothing to do, no error
  EXPECT_ERRNO(EINVAL, f.sync(kPs, kMax));  // off + len wraps
  EXPECT_ERRNO(EINVAL, f.sync(kMax, 1));
  EXPECT_ERRNO(EINVAL, f.sync(0, 0));
  EXPECT_EQ(f.stats().dirty_pages, 0u);
  // invalidate(0, UINT64_MAX) drops every page: a change made underneath shows.
  ASSERT_EQ(load(m.data() + 3 * kPs).value, std::byte{'F'});
  const std::vector<std::byte> u(10, std::byte{'U'});
  st.write_under(3 * kPs, u);
  EXPECT_TRUE(f.invalidate(0, kMax).empty());
  EXPECT_EQ(load(m.data() + 3 * kPs).value, std::byte{'U'}) << "invalidate(0, UINT64_MAX) dropped nothing";
  const std::vector<std::byte> v(10, std::byte{'V'});
  st.write_under(2 * kPs, v);
  EXPECT_TRUE(f.invalidate(kPs + 5, kMax - kPs - 5).empty());
  EXPECT_EQ(load(m.data() + 2 * kPs).value, std::byte{'V'}) << "invalidate to 2^64 - 1 dropped nothing";
  EXPECT_TRUE(f.invalidate(kMax - 1, 1).empty());  // past every page
  // punch_hole to 2^64 - 1: everything from the offset to EOF reads zeros.
  f.punch_hole(3 * kPs, kMax - 3 * kPs);
  EXPECT_EQ(load(m.data() + 3 * kPs).value, std::byte{0});
  EXPECT_EQ(f.size(), 4 * kPs);
  EXPECT_EQ(load(m.data() + 2 * kPs).value, std::byte{'V'});
  // msync: a length past the view is ENOMEM, as the kernel's.
  EXPECT_ERRNO(ENOMEM, m.msync(m.data(), ~std::size_t{0}, MS_SYNC));
  EXPECT_ERRNO(ENOMEM, m.msync(m.data() + kPs, ~std::size_t{0} - kPs + 1, MS_SYNC));
}

TEST_P(BadInput, ReadOnlyBackendIsErofs) {
  Store st(GetParam(), "rofs", 4 * kPs);
  std::shared_ptr<fl::Backend> robe;
  if (GetParam() == Kind::File) robe = fl::make_file_backend(st.path(), /*writable=*/false);
  else robe = std::make_shared<ReadOnlyBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(robe);
  ASSERT_FALSE(f.writable());
  auto m = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  auto pv = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ASSERT_FALSE(store(pv.data() + kPs, std::byte{'P'}));
  const Snapshot before = snap(f, m, st);
  EXPECT_ERRNO(EROFS, f.truncate(kPs));
  EXPECT_ERRNO(EROFS, f.truncate(8 * kPs));
  EXPECT_ERRNO(EROFS, f.truncate(4 * kPs));
  EXPECT_ERRNO(EROFS, f.punch_hole(0, kPs));
  EXPECT_ERRNO(EROFS, f.punch_hole(kPs + 10, 100));
  EXPECT_TRUE(snap(f, m, st) == before);
  EXPECT_EQ(load(pv.data() + kPs).value, std::byte{'P'});
  // Invalidate needs no write access: it works (nothing is dirty).
  EXPECT_TRUE(f.invalidate(0, 4 * kPs).empty());
  EXPECT_TRUE(snap(f, m, st) == before);
}

// Issue 4, bad input: punch on a backend without hole support fails with
// EOPNOTSUPP and changes nothing — the cache included.
TEST_P(BadInput, PunchWithoutHoleSupportChangesNothing) {
  Store st(GetParam(), "nohole", 4 * kPs);
  auto be = std::make_shared<NoHoleBackend>(st.backend());
  fl::Engine eng;
  auto f = eng.open(be);
  auto m = f.map(0, 4 * kPs);
  ft::touch_read(m.data(), 4 * kPs);
  ASSERT_TRUE(fill_view(m.data() + 2 * kPs, 10, std::byte{'D'}));  // dirty, unsynced
  const Snapshot before = snap(f, m, st);
  EXPECT_ERRNO(EOPNOTSUPP, f.punch_hole(kPs, 2 * kPs));
  EXPECT_ERRNO(EOPNOTSUPP, f.punch_hole(kPs + 100, 50));
  EXPECT_TRUE(snap(f, m, st) == before) << "the refused punch changed the cache";
  f.sync();
  auto want = ft::pattern(0, 4 * kPs);
  std::fill(want.begin() + 2 * kPs, want.begin() + 2 * kPs + 10, std::byte{'D'});
  EXPECT_EQ(diff(st.bytes(0, 4 * kPs), want), "") << "dirty data lost by a refused punch";
}

INSTANTIATE_TEST_SUITE_P(Tr, BadInput, ::testing::Values(Kind::File, Kind::Memory), kind_name);

}  // namespace
}  // namespace tr
