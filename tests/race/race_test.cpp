// The race catalogue (DESIGN.md section 4): one deterministic test per entry,
// each forcing exactly its interleaving with the harness's schedule points and
// checking what a user would see. check_breakers.py runs them again with each
// rule breaker (FAULTLINE_BREAK=R<n>) and requires exactly the entries that
// list R<n> to fail.
#include <algorithm>
#include <fcntl.h>
#include <unistd.h>

#include "race_util.hpp"

namespace race {
namespace ft = faultline::testing;

// F1: a fill reads old data from the backend; meanwhile invalidate (the
// object changed underneath) drops the page; the fill then writes the old
// data into the memfd and installs it. Closed by R1 (the fill holds the page
// lock, R1a, and the invalidate lock, R1b: either keeps invalidate out) and R4
// (invalidate takes them). Then the punch: it drops the page and its frame
// under the page lock, unlocks, and only then punches the backend; a fill in
// between would read the old data back in. Only the invalidate_lock closes
// that window (R1b in the fault path, R4 in punch).
TEST_F(RACE_FIXTURE, F1_FillVsInvalidate) {
  auto mem = patterned("F1", 4, 'A');
  auto be = std::make_shared<SteeredBackend>(mem);
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  ft::arm("fill.after_read");
  Bg a([&] { (void)load(m.data()); });  // it raced with invalidate: any value is fine
  ASSERT_TRUE(ft::wait_parked("fill.after_read"));
  std::vector<std::byte> z(kPs, std::byte{'Z'});
  mem->write(0, z);  // the object changes underneath
  // With R1/R4 invalidate waits for the fill on the invalidate_lock (proven:
  // it reaches that wait); without them it finishes first.
  Bg inv("wait.invalidate_lock.exclusive", [&] { f.invalidate(0, kPs); });
  (void)inv.blocked();
  ft::release("fill.after_read");
  a.join("the faulting load");
  inv.join("invalidate");
  // invalidate has returned: the mapping and read() show the new data.
  EXPECT_EQ(load(m.data()).value, 'Z') << "the mapping shows data the file no longer has";
  EXPECT_EQ(read_all(f, 0, 1), "Z") << "File::read shows data the file no longer has";

  ft::arm("punch.before_backend");
  Bg pu([&] { f.punch_hole(2 * kPs, kPs); });
  ASSERT_TRUE(ft::wait_parked("punch.before_backend"));
  // With R1b + R4 the fault waits for the invalidate_lock the punch holds
  // (proven); without either it fills the old data now.
  Load got;
  Bg ld("wait.invalidate_lock.shared", [&] { got = load(m.data() + 2 * kPs); });
  (void)ld.blocked();
  ft::release("punch.before_backend");
  pu.join("punch_hole");
  ld.join("the load");
  EXPECT_EQ(load(m.data() + 2 * kPs).value, 0) << "the mapping shows data the punch removed";
  EXPECT_EQ(read_all(f, 2 * kPs, 1), std::string(1, '\0'))
      << "File::read shows data the punch removed";
}

// F2: a fault passes its lookup; truncate shrinks the file and drops the page;
// the fault then fills the page with pwrite past the memfd's new end, which
// would extend the memfd. Closed by R2 (recheck same page + EOF under the lock).
TEST_F(RACE_FIXTURE, F2_FillAfterTruncate) {
  auto be = patterned("F2", 8, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  ft::arm("fault.before_lock");
  Load res;
  Bg a([&] { res = load(m.data() + 7 * kPs); });
  ASSERT_TRUE(ft::wait_parked("fault.before_lock"));
  within(10s, "truncate", [&] { f.truncate(4 * kPs); });
  ft::release("fault.before_lock");
  a.join("the faulting load");
  EXPECT_TRUE(res.bus.has_value()) << "a load past the new EOF did not get SIGBUS";
  // Past EOF is not an I/O error: without R2's recheck the fault goes on to
  // fill the page, the fill clamp (R3) refuses, and the access is answered
  // as a failed read (poison).
  EXPECT_EQ(f.stats().read_errors, 0u) << "an access past EOF was reported as a read error";
  EXPECT_EQ(f.stats().sigbus_sent, 0u) << "an access past EOF was answered as an I/O error";
  EXPECT_EQ(f.size(), 4 * kPs);
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 4 * kPs) << "the memfd grew back past EOF";
  // The file grows again: page 7 reads zeros. (A fault that went on past EOF
  // without R2's recheck fails its fill, the fill clamp of R3, and leaves the
  // view's page 7 poisoned: SIGBUS forever.)
  f.truncate(8 * kPs);
  const Load again = load(m.data() + 7 * kPs);
  EXPECT_FALSE(again.bus.has_value()) << "page 7 still gets SIGBUS after the file grew again";
  EXPECT_EQ(again.value, 0);
}

// F3 (kernel): a frame already present is installed after truncate's unmap.
// In faultline this interleaving cannot happen while R1 holds: the handler
// installs under the invalidate_lock (shared) and truncate drops and shrinks
// under it (exclusive). The test parks a handler before its install of a
// present frame and proves truncate then waits for it (it reaches
// wait.invalidate_lock.exclusive); the kernel's own guard (CONTINUE rechecks
// the memfd's size) is what keeps the views right when the interleaving does
// run (the R1 breakers: truncate finishes first and the CONTINUE fails). Either
// way every view gets SIGBUS past EOF, never the old data, including the view
// that had the page mapped.
TEST_F(RACE_FIXTURE, F3_InstallAfterTruncateUnmap) {
  auto be = patterned("F3", 8, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto v1 = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  auto v2 = f.map(0, 8 * kPs, fl::Access::ReadOnly);
  ASSERT_EQ(load(v1.data() + 6 * kPs).value, 'a' + 6);  // present frame, mapped in v1
  ft::arm("fault.before_install");
  Load res;
  Bg a([&] { res = load(v2.data() + 6 * kPs); });  // MINOR in v2, parked before CONTINUE
  ASSERT_TRUE(ft::wait_parked("fault.before_install"));
  Bg t("wait.invalidate_lock.exclusive", [&] { f.truncate(4 * kPs); });
  const bool truncate_waited = t.blocked();
  ft::release("fault.before_install");
  a.join("the faulting load");
  t.join("truncate");
  // The load raced with truncate: it may see the old page (installed before
  // truncate ran) or SIGBUS, never anything else; if truncate went first (the
  // guard is off), the kernel must have refused the install.
  if (!truncate_waited) {
    EXPECT_TRUE(res.bus.has_value()) << "a view showed a page past EOF after truncate";
  }
  if (!res.bus) {
    EXPECT_EQ(res.value, 'a' + 6);
  }
  EXPECT_TRUE(load(v1.data() + 6 * kPs).bus.has_value());
  EXPECT_TRUE(load(v2.data() + 6 * kPs).bus.has_value());
  EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 4 * kPs);
}

// Runs `op` on a thread until it parks at `point`, then `stores` (copy-on-write
// stores through a private view: the kernel copies, no event, no engine lock,
// so they must finish while `op` is parked: proven by their return), then
// lets `op` finish.
template <class Op, class Stores>
void private_stores_while_parked(const char* point, Op&& op, Stores&& stores) {
  ft::arm(point);
  Bg t(std::forward<Op>(op));
  ASSERT_TRUE(ft::wait_parked(point));
  Bg cow("wait.", std::forward<Stores>(stores));
  EXPECT_FALSE(cow.blocked()) << "a copy-on-write store waited for the engine";
  cow.join("the private stores");
  ft::release(point);
  t.join(point);
}

// F4 (kernel): a private view's write fault copies a page while truncate
// runs: truncate has dropped the pages past the new EOF and parks before it
// shrinks the memfd; stores through the private view now copy pages privately
// (the kernel's copy-on-write: no event, no engine lock, so they finish while
// truncate is parked: proven by their return). The shrink must take the copy
// past the new EOF with it and keep the one inside.
TEST_F(RACE_FIXTURE, F4_PrivateCopyVsTruncate) {
  RACE_SKIP_FOR_2M("private views of 2 MiB Files are refused (EINVAL: hugetlb hole punch and "
                   "truncate drop private copy-on-write copies, DESIGN F5); no private copy to race");
  auto be = patterned("F4", 8, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto p = f.map(0, 8 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ASSERT_EQ(load(p.data() + 6 * kPs).value, 'a' + 6);  // mapped read-only: the store copies
  ASSERT_EQ(load(p.data() + 2 * kPs).value, 'a' + 2);
  private_stores_while_parked("truncate.before_shrink", [&] { f.truncate(4 * kPs); }, [&] {
    store(p.data() + 6 * kPs, 'P');  // private copy past the coming EOF
    store(p.data() + 2 * kPs, 'Q');  // private copy inside it
  });
  EXPECT_TRUE(load(p.data() + 6 * kPs).bus.has_value()) << "a private copy survived past EOF";
  EXPECT_EQ(load(p.data() + 2 * kPs).value, 'Q') << "a private copy inside EOF was lost";
}

// F5 (kernel): punch and invalidate keep a private view's own copies, also a
// copy made while they run (between their lock of the page and its drop and
// punch: proven by the store's return while they are parked there).
TEST_F(RACE_FIXTURE, F5_PunchKeepsPrivateCopies) {
  RACE_SKIP_FOR_2M("private views of 2 MiB Files are refused (EINVAL): F5 does not hold for "
                   "hugetlb (its hole punch drops private copy-on-write copies)");
  auto be = patterned("F5", 4, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto s = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  auto p = f.map(0, 4 * kPs, fl::Access::ReadWrite, fl::Sharing::Private);
  ASSERT_EQ(load(s.data() + 2 * kPs).value, 'a' + 2);
  ASSERT_EQ(load(p.data() + 2 * kPs).value, 'a' + 2);  // mapped read-only: the store copies
  ASSERT_EQ(load(p.data() + 3 * kPs).value, 'a' + 3);
  private_stores_while_parked("punch.before_drop", [&] { f.punch_hole(2 * kPs, kPs); },
                              [&] { store(p.data() + 2 * kPs, 'Q'); });
  EXPECT_EQ(load(s.data() + 2 * kPs).value, 0) << "the punched range does not read zeros";
  EXPECT_EQ(load(p.data() + 2 * kPs).value, 'Q') << "punch dropped a private copy";
  private_stores_while_parked("invalidate.before_drop", [&] { f.invalidate(0, 4 * kPs); },
                              [&] { store(p.data() + 3 * kPs, 'R'); });
  EXPECT_EQ(load(p.data() + 2 * kPs).value, 'Q') << "invalidate dropped a private copy";
  EXPECT_EQ(load(p.data() + 3 * kPs).value, 'R') << "invalidate dropped a private copy";
}

// F6: two threads fault the same page in two views; one is half way through
// filling the frame when the other (a MINOR fault: the frame is present)
// installs it. Closed by R1 and R10 together (each alone suffices here).
// With 4 KiB frames the filling view is private: a shared view's fault fills
// by UFFDIO_COPY, which adds a frame only once it is whole (DESIGN section
// 2); a private view's fill (like File::read's and readahead's) writes into
// the memfd. (2 MiB frames: no private views; fills go through the alias.)
TEST_F(RACE_FIXTURE, F6_HalfFilledFrame) {
  auto mem = patterned("F6", 2, 'k');
  auto be = std::make_shared<SteeredBackend>(mem);
  std::mutex mu;
  std::condition_variable cv;
  int stage = 0;  // 1: first half written; 2: go on
  be->fill_hook = [&](uint64_t off, size_t len, int fd,
                      uint64_t fd_off) -> std::optional<ssize_t> {
    std::unique_lock g(mu);
    if (stage != 0) return std::nullopt;
    std::vector<std::byte> buf(len);
    const ssize_t r = mem->read(off, buf);
    if (::pwrite(fd, buf.data(), len / 2, static_cast<off_t>(fd_off)) < 0) return -errno;
    stage = 1;
    cv.notify_all();
    cv.wait(g, [&] { return stage == 2; });
    if (::pwrite(fd, buf.data() + len / 2, len - len / 2, static_cast<off_t>(fd_off + len / 2)) < 0)
      return -errno;
    return r;
  };
  // 2 MiB frames: the fill is a read() straight into the frame (alias view).
  be->read_hook = [&](uint64_t off, std::span<std::byte> dst) -> std::optional<ssize_t> {
    std::unique_lock g(mu);
    if (stage != 0 || !kFrames2M) return std::nullopt;
    std::vector<std::byte> buf(dst.size());
    const ssize_t r = mem->read(off, buf);
    const size_t half = dst.size() / 2;
    std::memcpy(dst.data(), buf.data(), half);
    stage = 1;
    cv.notify_all();
    cv.wait(g, [&] { return stage == 2; });
    std::memcpy(dst.data() + half, buf.data() + half, dst.size() - half);
    return r;
  };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto v1 = f.map(0, 2 * kPs, fl::Access::ReadOnly,
                  kFrames2M ? fl::Sharing::Shared : fl::Sharing::Private);
  auto v2 = f.map(0, 2 * kPs, fl::Access::ReadOnly);
  Load r1, r2;
  Bg a([&] { r1 = load(v1.data() + kPs - 1); });  // the last byte: in the second half
  {
    std::unique_lock g(mu);
    ASSERT_TRUE(cv.wait_for(g, 10s, [&] { return stage == 1; }));
  }
  // With R1 the second fault waits for the page lock the filling one holds
  // (proven: it reaches that wait); without R1 it goes on at once.
  Bg b("wait.page_lock", [&] { r2 = load(v2.data() + kPs - 1); });
  (void)b.blocked();
  {
    std::lock_guard g(mu);
    stage = 2;
    cv.notify_all();
  }
  a.join("first load");
  b.join("second load");
  EXPECT_EQ(r1.value, 'k');
  EXPECT_EQ(r2.value, 'k') << "a view shows a half-filled frame";
}

// F7: invalidate of a dirty page races with a store through a mapping. A store
// acknowledged before invalidate returned must not be lost. Closed by R4
// (launder and drop under the page lock) with R7 (mkclean before copy-out).
TEST_F(RACE_FIXTURE, F7_InvalidateVsStore) {
  auto mem = patterned("F7", 2, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, mem);
  auto m = f.map(0, 2 * kPs);
  m.data()[0] = std::byte{'S'};  // dirty
  // The handler that installed page 0 unlocks it just after the store goes on
  // (R1): File::read takes that lock, sleeping, so it is free afterwards and
  // the store below can only wait on invalidate.
  ASSERT_EQ(read_all(f, 0, 1), "S");
  ft::arm("invalidate.after_launder");
  Bg inv([&] { f.invalidate(0, kPs); });
  ASSERT_TRUE(ft::wait_parked("invalidate.after_launder"));
  // With R4 the store's fault waits for the page lock invalidate holds
  // (proven); without it the store lands before the drop.
  Bg st("wait.page_lock", [&] { reinterpret_cast<volatile char*>(m.data())[1] = 'T'; });
  (void)st.blocked();
  ft::release("invalidate.after_launder");
  inv.join("invalidate");
  st.join("the store");
  f.sync();
  char b[2] = {};
  mem->read(0, std::as_writable_bytes(std::span(b)));
  EXPECT_EQ(b[0], 'S');
  EXPECT_EQ(b[1], 'T') << "a store acknowledged during invalidate was lost";
  EXPECT_EQ(load(m.data() + 1).value, 'T');
}

// F8: a present frame that is not uptodate (here: a fill that wrote junk and
// then failed) raises MINOR in another view and must not be installed as is.
// Closed by R10. With 4 KiB frames the failed fill is a private view's: a
// shared view's fault fills by UFFDIO_COPY, which adds a frame only once it
// is whole (DESIGN section 2); the shared view then meets the torn frame
// (COPY: EEXIST). (2 MiB frames: no private views; fills go through the
// alias view.)
TEST_F(RACE_FIXTURE, F8_NotUptodateFrame) {
  auto mem = patterned("F8", 2, 'g');
  auto be = std::make_shared<SteeredBackend>(mem);
  std::atomic<int> calls{0};
  be->fill_hook = [&](uint64_t, size_t len, int fd, uint64_t fd_off) -> std::optional<ssize_t> {
    if (calls++ != 0) return std::nullopt;
    std::vector<std::byte> junk(len, std::byte{'J'});
    if (::pwrite(fd, junk.data(), len, static_cast<off_t>(fd_off)) < 0) return -errno;
    return -EIO;  // a failed fill that left a torn frame behind
  };
  be->read_hook = [&](uint64_t, std::span<std::byte> dst) -> std::optional<ssize_t> {
    if (!kFrames2M || calls++ != 0) return std::nullopt;
    std::memset(dst.data(), 'J', dst.size());  // junk straight into the frame
    return -EIO;
  };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto v1 = f.map(0, 2 * kPs, fl::Access::ReadOnly,
                  kFrames2M ? fl::Sharing::Shared : fl::Sharing::Private);
  auto v2 = f.map(0, 2 * kPs, fl::Access::ReadOnly);
  const Load first = load(v1.data());
  ASSERT_TRUE(first.bus.has_value()) << "the failed fill did not give SIGBUS";
  const Load second = load(v2.data());  // the frame is present: a MINOR fault
  ASSERT_FALSE(second.bus.has_value());
  EXPECT_EQ(second.value, 'g') << "a view shows a frame that is not uptodate";
}

// F9: a Mapping is destroyed while another thread accesses it. Between an
// UNREGISTER and the munmap an access would bypass the engine (a hole becomes
// a zero frame). Closed by R13 (munmap, never UNREGISTER while mapped).
TEST_F(RACE_FIXTURE, F9_TeardownVsAccess) {
  auto be = patterned("F9", 4, 'b');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 4 * kPs, fl::Access::ReadOnly);
  const std::byte* page = m.data() + kPs;  // never touched: a hole in the memfd
  int pfd[2];
  ASSERT_EQ(::pipe(pfd), 0);
  ft::arm("mapping.before_munmap");
  Bg td([&] { m.unmap(); });
  ASSERT_TRUE(ft::wait_parked("mapping.before_munmap"));
  ssize_t w = 0;
  int err = 0;
  // A kernel-mode access (write(2) from the view) while the view is dying.
  // With R13 the view is still registered: the access faults to the engine,
  // which no longer serves the dying view and tells it to retry (proven: it
  // reaches fault.no_view). Without R13 it bypasses the engine and finishes.
  Bg acc("fault.no_view", [&] {
    w = ::write(pfd[1], page, std::min<size_t>(kPs, 4096));  // within the pipe's capacity
    err = errno;
  });
  (void)acc.blocked();
  ft::release("mapping.before_munmap");
  td.join("unmap");
  acc.join("the access");
  if (w > 0) {
    std::vector<char> got(static_cast<size_t>(w));
    ASSERT_EQ(::read(pfd[0], got.data(), got.size()), w);
    EXPECT_EQ(got[0], 'b' + 1) << "the access bypassed the engine and saw a zero frame";
  } else {
    EXPECT_EQ(err, EFAULT);
  }
  ::close(pfd[0]);
  ::close(pfd[1]);
}

// F10: File::read into a buffer that is a faultline Mapping of the same page.
// Closed by R11 (no page lock held while touching caller memory).
TEST_F(RACE_FIXTURE, F10_ReadIntoOwnMapping) {
  auto be = patterned("F10", 4, 'c');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 4 * kPs);
  const size_t n = within(10s, "File::read into its own mapping", [&] {
    return f.read(kPs, std::span(m.data() + kPs, kPs));
  });
  EXPECT_EQ(n, kPs);
  EXPECT_EQ(load(m.data() + kPs).value, 'c' + 1);
  std::vector<std::byte> src(kPs, std::byte{'W'});
  within(10s, "File::write from its own mapping", [&] {
    return f.write(2 * kPs, std::span<const std::byte>(m.data() + 2 * kPs, kPs));
  });
  EXPECT_EQ(load(m.data() + 2 * kPs).value, 'c' + 2);
}

// F11: write-back copies a page out while truncate drops it; the backend write
// lands after the backend's truncate and extends it again. Closed by R3
// (truncate waits for write-back under the page lock).
TEST_F(RACE_FIXTURE, F11_WritebackVsTruncate) {
  auto mem = patterned("F11", 8, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, mem);
  auto m = f.map(0, 8 * kPs);
  m.data()[7 * kPs] = std::byte{'D'};  // dirty page 7
  ft::arm("writeback.before_write");
  Bg s([&] { f.sync(); });
  ASSERT_TRUE(ft::wait_parked("writeback.before_write"));
  // With R3 truncate waits for the write-back under the page lock (proven).
  Bg t("wait.writeback", [&] { f.truncate(4 * kPs); });
  (void)t.blocked();
  ft::release("writeback.before_write");
  s.join("sync");
  t.join("truncate");
  EXPECT_EQ(f.size(), 4 * kPs);
  EXPECT_EQ(mem->size(), static_cast<int64_t>(4 * kPs)) << "write-back extended the backend past EOF";
}

// F12: File::write decides "extend or not" from i_size before it takes the
// size lock; a truncate (or a remote resize) completes in between; the write's
// pwrite then regrows the memfd behind i_size: write returns its length, the
// size stays 0, the pages past EOF are dirty and never written. Closed by R3
// (the decision is made again under the size lock).
TEST_F(RACE_FIXTURE, F12_WriteExtendVsTruncate) {
  for (const std::string op : {"truncate", "remote resize"}) {
    SCOPED_TRACE(op);
    auto mem = patterned("F12 " + op, 2, 'a');
    auto be = std::make_shared<HookedBackend>(mem);
    fl::Engine eng(small_windows());
    auto f = open_file(eng, be);
    const std::vector<std::byte> data(2 * kPs, std::byte{'w'});
    ft::arm("write.before_size_lock");
    size_t wrote = 0;
    Bg w([&] { wrote = f.write(0, data); });
    ASSERT_TRUE(ft::wait_parked("write.before_size_lock"));
    within(10s, op.c_str(), [&] {
      if (op == "truncate") {
        f.truncate(0);
      } else {
        mem->truncate(0);  // another machine shrank the object
        be->sink.resized(0);
      }
    });
    ft::release("write.before_size_lock");
    w.join("the write");
    EXPECT_EQ(wrote, 2 * kPs);
    EXPECT_EQ(f.size(), 2 * kPs) << "a write that returned its length did not extend the file";
    EXPECT_EQ(faultline::testing::FileAccess::frame_bytes(f), 2 * kPs) << "the memfd and i_size disagree";
    auto m = f.map(0, 2 * kPs, fl::Access::ReadOnly);
    const Load l = within(10s, "a load of the written page", [&] { return load(m.data() + kPs); });
    EXPECT_FALSE(l.bus.has_value());
    EXPECT_EQ(l.value, 'w');
    f.sync();
    EXPECT_EQ(mem->size(), static_cast<int64_t>(2 * kPs)) << "the written pages never reached the backend";
    EXPECT_EQ(backend_byte(*mem, kPs), 'w');
    EXPECT_EQ(f.stats().dirty_pages, 0u) << "dirty pages past EOF";
  }
}

}  // namespace race
