// The race catalogue, seed 2 (page_mkwrite vs truncate / write-back): W1-W8.
#include <cerrno>
#include <sys/mman.h>

#include "race_util.hpp"

namespace race {
namespace ft = faultline::testing;

// W1: the write fault calls page_mkwrite with the page unlocked; truncate
// removes the page meanwhile; the fault must not then dirty it (a dirty page
// outside the file). Closed by R5 (recheck under the lock, retry).
TEST_F(RACE_FIXTURE, W1_MkwriteVsTruncate) {
  auto mem = patterned("W1", 8, 'a');
  auto be = std::make_shared<HookedBackend>(mem);
  Gate gate;
  be->mkwrite_hook = [&](fl::Backend::MkwritePage&) {
    gate.wait_here();
    return 0;
  };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 8 * kPs);
  ASSERT_EQ(load(m.data() + 7 * kPs).value, 'a' + 7);  // clean, write-protected
  std::optional<fl::BusError> bus;
  Bg st([&] { bus = guarded_store(m.data() + 7 * kPs, 'W'); });
  ASSERT_TRUE(gate.wait_parked());
  within(10s, "truncate", [&] { f.truncate(4 * kPs); });
  gate.open();
  st.join("the store");
  EXPECT_TRUE(bus.has_value()) << "a store past the new EOF did not get SIGBUS";
  EXPECT_EQ(f.stats().dirty_pages, 0u) << "a dirty page outside the file";
  f.sync();
  EXPECT_EQ(mem->size(), static_cast<int64_t>(4 * kPs));
}

// W2: the fault marks the page dirty; write-back locks it, write-protects,
// cleans and copies it out; then the fault makes the PTE writable: a writable
// clean page whose later stores are never written back. Closed by R6.
TEST_F(RACE_FIXTURE, W2_CleanBetweenMkwriteAndDirty) {
  auto mem = patterned("W2", 2, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, mem);
  auto m = f.map(0, 2 * kPs);
  ASSERT_EQ(load(m.data()).value, 'a');  // clean, write-protected
  ft::arm("wp.before_unprotect");
  Bg st([&] { store(m.data(), 'A'); });
  ASSERT_TRUE(ft::wait_parked("wp.before_unprotect"));
  // With R6 write-back waits for the page lock the fault holds (proven).
  Bg sy("wait.page_lock", [&] { f.sync(); });
  (void)sy.blocked();
  ft::release("wp.before_unprotect");
  st.join("the store");
  sy.join("sync");
  store(m.data() + 1, 'B');  // a later store through the same PTE
  f.sync();
  EXPECT_EQ(backend_byte(*mem, 0), 'A') << "a store was never written back";
  EXPECT_EQ(backend_byte(*mem, 1), 'B') << "a store to a writable clean page was never written back";
}

// W3: write-back clears dirty and copies out before write-protecting every
// view: a store between the copy and the protect is lost. Closed by R7.
TEST_F(RACE_FIXTURE, W3_StoreBetweenCopyAndProtect) {
  auto mem = patterned("W3", 2, 'a');
  fl::Engine eng(small_windows());
  auto f = open_file(eng, mem);
  auto m = f.map(0, 2 * kPs);
  store(m.data(), 'A');  // dirty and writable
  // Parked once the data is out: after the copy and the backend write (2 MiB
  // frames are written from the frame itself: only then is a store missed).
  ft::arm("writeback.after_write");
  Bg sy([&] { f.sync(); });
  ASSERT_TRUE(ft::wait_parked("writeback.after_write"));
  // With R7 the page is write-protected: the store faults and redirties it;
  // without, it goes straight into the frame. Neither waits (no stable
  // pages): proven by the store finishing before the release.
  Bg st("wait.", [&] { store(m.data() + 1, 'B'); });
  EXPECT_FALSE(st.blocked()) << "the store waited for write-back without stable pages";
  ft::release("writeback.after_write");
  sy.join("sync");
  st.join("the store");
  f.sync();
  EXPECT_EQ(backend_byte(*mem, 0), 'A');
  EXPECT_EQ(backend_byte(*mem, 1), 'B') << "a store during write-back was lost";
}

// W4: page_mkwrite returns with the page locked (VM_FAULT_LOCKED); the fault
// path must not lock it again, and must unlock it. Closed by R5.
TEST_F(RACE_FIXTURE, W4_MkwriteReturnsLocked) {
  auto mem = patterned("W4", 2, 'a');
  auto be = std::make_shared<HookedBackend>(mem);
  be->mkwrite_hook = [&](fl::Backend::MkwritePage& page) {
    page.lock();
    return 0;
  };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 2 * kPs);
  ASSERT_EQ(load(m.data()).value, 'a');
  within(10s, "a store whose page_mkwrite returns the page locked", [&] { store(m.data(), 'L'); });
  // The page was unlocked afterwards: read() can take its lock.
  EXPECT_EQ(within(10s, "File::read of that page", [&] { return read_all(f, 0, 1); }), "L");
}

// W5: a backend hook (the time update) that takes a lock A, called under the
// page lock, while a path holding A waits for the page lock: deadlock.
// Closed by R6 (the hook runs after the unlock).
TEST_F(RACE_FIXTURE, W5_TimeUpdateUnderPageLock) {
  auto mem = patterned("W5", 2, 'a');
  auto be = std::make_shared<HookedBackend>(mem);
  std::mutex inode_lock;
  be->update_time_hook = [&] { std::lock_guard g(inode_lock); };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 2 * kPs);
  ASSERT_EQ(load(m.data()).value, 'a');
  ft::arm("wp.before_time_update");
  Bg st([&] { store(m.data(), 'T'); });
  ASSERT_TRUE(ft::wait_parked("wp.before_time_update"));
  std::unique_lock held(inode_lock);  // a path holding the hook's lock ...
  // ... that needs the page lock: it finishes (R6: the lock was dropped
  // before the time update), or it sleeps on the page lock while its holder
  // is about to take the lock this thread holds: a deadlock, proven.
  Bg rd("wait.page_lock", [&] { (void)read_all(f, 0, 1); });
  const bool progressed = !rd.blocked();
  held.unlock();
  ft::release("wp.before_time_update");
  rd.join("read");
  st.join("the store");
  EXPECT_TRUE(progressed) << "deadlock: the time update ran under the page lock";
}

// W6: page_mkwrite refuses (ENOSPC): the store gets SIGBUS, the page stays
// clean and write-protected, nothing is dirtied. Closed by R5.
TEST_F(RACE_FIXTURE, W6_MkwriteFails) {
  auto mem = patterned("W6", 2, 'a');
  auto be = std::make_shared<HookedBackend>(mem);
  be->mkwrite_hook = [&](fl::Backend::MkwritePage&) { return -ENOSPC; };
  fl::Engine eng(small_windows());
  auto f = open_file(eng, be);
  auto m = f.map(0, 2 * kPs);
  ASSERT_EQ(load(m.data()).value, 'a');
  const auto bus = guarded_store(m.data(), 'X');
  EXPECT_TRUE(bus.has_value()) << "a refused page_mkwrite did not give SIGBUS";
  EXPECT_EQ(f.stats().dirty_pages, 0u) << "a refused store dirtied the page";
  EXPECT_EQ(read_all(f, 0, 1), "a");
  f.sync();
  EXPECT_EQ(backend_byte(*mem, 0), 'a');
  EXPECT_EQ(f.stats().pages_written_back, 0u);
}

// W7: write-back of a page fails (EIO) while two handles sync: each handle
// sees the error exactly once. Closed by R8 (errseq).
TEST_F(RACE_FIXTURE, W7_ErrorSeenOncePerHandle) {
  auto mem = patterned("W7", 2, 'a');
  auto be = std::make_shared<HookedBackend>(mem);
  fl::Engine eng(small_windows());
  auto h1 = open_file(eng, be);
  auto h2 = open_file(eng, be);
  auto m = h1.map(0, 2 * kPs);
  store(m.data(), 'E');
  be->write_fail = 1;
  int e1 = 0, e2 = 0;
  try { h1.sync(); } catch (const std::system_error& e) { e1 = e.code().value(); }
  EXPECT_EQ(e1, EIO) << "the first handle did not see the write-back error";
  EXPECT_NO_THROW(h1.sync()) << "the first handle saw the error twice";
  try { h2.sync(); } catch (const std::system_error& e) { e2 = e.code().value(); }
  EXPECT_EQ(e2, EIO) << "the second handle never saw the write-back error";
  EXPECT_NO_THROW(h2.sync());
  EXPECT_EQ(backend_byte(*mem, 0), 'E') << "the failed page was not retried";
}

// W8: a store while the page is under write-back: with stable pages the
// store waits for the write-back to end; without, the page is redirtied and
// written again. Never lost. Closed by R7.
TEST_F(RACE_FIXTURE, W8_StoreDuringWriteback) {
  for (const bool stable : {false, true}) {
    SCOPED_TRACE(stable ? "stable pages" : "no stable pages");
    auto mem = patterned(stable ? "W8s" : "W8", 2, 'a');
    fl::Engine eng(small_windows());
    fl::FileOptions opt;
    opt.stable_pages = stable;
    auto f = open_file(eng, mem, opt);
    auto m = f.map(0, 2 * kPs);
    store(m.data(), 'A');
    ft::arm("writeback.after_copy");
    Bg sy([&] { f.sync(); });
    ASSERT_TRUE(ft::wait_parked("writeback.after_copy"));
    // Stable pages: the store's fault waits for write-back to end (proven:
    // it reaches that wait). Without: it redirties the page and finishes.
    Bg st("wait.writeback", [&] { store(m.data() + 1, 'B'); });
    const bool stored_during = !st.blocked();
    ft::release("writeback.after_copy");
    sy.join("sync");
    st.join("the store");
    if (stable) EXPECT_FALSE(stored_during) << "a store changed a stable page under write-back";
    else EXPECT_TRUE(stored_during) << "a store waited without stable pages";
    const auto before = f.stats().pages_written_back;
    f.sync();
    EXPECT_EQ(backend_byte(*mem, 1), 'B') << "a store during write-back was lost";
    EXPECT_EQ(f.stats().pages_written_back, before + 1) << "the redirtied page was not written again";
  }
}

// W9: a view of a DirtyTracking::Async File is torn down: its zap leaves the
// only record of a store (the written PTE) in a local list until the page is
// dirty. Invalidate or a remote change in between finds no written PTE and
// drops the clean page (the store is lost); a sync finds nothing to write and
// returns before the store is in the backend. Closed by R7 (the teardown
// holds the invalidate_lock exclusive from the zap to the dirtying; the
// others wait for it).
TEST_F(RACE_FIXTURE, W9_TeardownZapVsInvalidate) {
  for (const std::string op : {"invalidate", "remote change", "sync"}) {
    SCOPED_TRACE(op);
    auto mem = patterned("W9 " + op, 2, 'a');
    auto be = std::make_shared<HookedBackend>(mem);
    fl::Engine eng(small_windows());
    fl::FileOptions o;
    o.dirty_tracking = fl::DirtyTracking::Async;
    auto f = open_file(eng, be, o);
    auto m = f.map(0, 2 * kPs);
    ASSERT_EQ(load(m.data()).value, 'a');  // installed write-protected, clean
    store(m.data(), 'S');  // WP_ASYNC: no event, the written PTE is the only record
    ASSERT_EQ(f.stats().dirty_pages, 0u);
    ft::arm("teardown.after_zap");
    Bg td([&] { m.unmap(); });
    ASSERT_TRUE(ft::wait_parked("teardown.after_zap"));
    // Each must wait for the invalidate_lock the teardown holds.
    const char* wait = op == "sync" ? "wait.invalidate_lock.shared" : "wait.invalidate_lock.exclusive";
    char synced = 0;
    Bg other(wait, [&] {
      if (op == "invalidate") {
        EXPECT_TRUE(f.invalidate(0, kPs).empty());
      } else if (op == "remote change") {
        be->sink.changed(0, kPs);
      } else {
        f.sync();
        synced = backend_byte(*mem, 0);
      }
    });
    const bool waited = other.blocked();
    ft::release("teardown.after_zap");
    td.join("the view's teardown");
    other.join(op.c_str());
    EXPECT_TRUE(waited) << op << " did not wait for the teardown's zap";
    if (op == "sync") {
      EXPECT_EQ(synced, 'S') << "sync returned before the store was in the backend";
    }
    f.sync();
    EXPECT_EQ(backend_byte(*mem, 0), 'S') << "a store through the torn-down view was lost";
    EXPECT_EQ(read_all(f, 0, 1), "S");
  }
}

// W10: a store to an installed clean page; page_mkwrite refuses (ENOSPC). The
// SIGBUS path must remove the PTE before it clears the write-protection: else
// another thread's store in between goes through with no event, into a clean
// page that is never written back, although the backend refused it. Closed
// by R5 (no window where the page can be written after a refused mkwrite).
TEST_F(RACE_FIXTURE, W10_RefusedMkwriteOpensPage) {
  auto mem = patterned("W10", 2, 'a');
  auto be = std::make_shared<HookedBackend>(mem);
  be->mkwrite_hook = [&](fl::Backend::MkwritePage&) { return -ENOSPC; };
  auto cfg = small_windows();
  cfg.fault_threads = 2;  // the second store is served while the first handler is parked
  fl::Engine eng(cfg);
  auto f = open_file(eng, be);
  auto m = f.map(0, 2 * kPs);
  ASSERT_EQ(load(m.data()).value, 'a');  // installed, clean, write-protected
  ft::arm("sigbus.before_poison");
  std::optional<fl::BusError> bus1, bus2;
  Bg st([&] { bus1 = guarded_store(m.data(), 'X'); });
  ASSERT_TRUE(ft::wait_parked("sigbus.before_poison"));
  // Another thread stores to the page now: it must fault, and be refused too.
  within(10s, "a second store", [&] { bus2 = guarded_store(m.data() + 1, 'Y'); });
  ft::release("sigbus.before_poison");
  st.join("the refused store");
  EXPECT_TRUE(bus1.has_value()) << "a refused page_mkwrite did not give SIGBUS";
  EXPECT_TRUE(bus2.has_value()) << "a store went through after page_mkwrite refused the page";
  EXPECT_EQ(f.stats().dirty_pages, 0u);
  EXPECT_EQ(read_all(f, 0, 2), "aa") << "a store the backend refused reached the page";
}

// W11: stable pages on every store path, not only the write-protect fault: a
// store arriving as a MISSING/MINOR fault (here through a second view that
// never mapped the page) or a File::write while the page is under write-back
// must wait for it to end; else the frame changes under the write (2 MiB
// frames are written straight from the alias view: torn in the backend).
// Closed by R7.
TEST_F(RACE_FIXTURE, W11_StablePagesOnEveryStorePath) {
  for (const std::string path : {"second view", "File::write"}) {
    SCOPED_TRACE(path);
    auto mem = patterned("W11 " + path, 2, 'a');
    fl::Engine eng(small_windows());
    fl::FileOptions opt;
    opt.stable_pages = true;
    auto f = open_file(eng, mem, opt);
    auto v1 = f.map(0, 2 * kPs);
    store(v1.data(), 'A');  // dirty
    auto v2 = f.map(0, 2 * kPs);  // page 0 not mapped here: a store is a MINOR fault
    ft::arm("writeback.after_copy");
    Bg sy([&] { f.sync(); });
    ASSERT_TRUE(ft::wait_parked("writeback.after_copy"));  // page 0 under write-back
    Bg st("wait.writeback", [&] {
      if (path == "second view") {
        store(v2.data() + 1, 'B');
      } else {
        const char b = 'B';
        f.write(1, std::as_bytes(std::span(&b, 1)));
      }
    });
    const bool waited = st.blocked();  // the store waits for the write-back to end
    ft::release("writeback.after_copy");
    sy.join("sync");
    st.join("the store");
    EXPECT_TRUE(waited) << "a store changed a stable page under write-back";
    f.sync();
    EXPECT_EQ(backend_byte(*mem, 0), 'A');
    EXPECT_EQ(backend_byte(*mem, 1), 'B') << "the store was lost";
  }
}

}  // namespace race
