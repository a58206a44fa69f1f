// faultline — the deterministic race harness, for the project's own race
// tests. It exists only in a library built with the CMake option
// FAULTLINE_TESTING=ON (OFF by default; scripts/test.sh turns it on): the
// library a user builds and installs contains no schedule point and no rule
// breaker, and calling these functions there fails to link.
//
// The engine's fault, fill, truncate, punch, invalidate, write-back and
// teardown paths carry named schedule points. A test arms a point; the next
// thread that reaches it parks there; the test runs another operation, then
// releases the parked thread. Unarmed, a point costs one predictable branch.
//
// Rule breakers: break_rules("R<n>[,R<m>...]") switches off the guard of
// protocol rule n (or "R1a": one of its separately breakable guards) (DESIGN.md section 3), so the race tests can show they catch
// it. The library never reads the environment for this: the race test
// executables read FAULTLINE_BREAK themselves and call break_rules().
//
// Points (see DESIGN.md section 4): fault.before_lock, fault.before_fill,
// fill.after_read (after the whole read; a backend that streams its data,
// Backend::read_aligned_streaming, has had the pieces before it copied into
// the view already), fault.after_fill, fault.before_install, fault.no_view (a
// fault on a view being torn down: the thread is told to retry),
// wp.before_mkwrite, wp.before_lock, wp.before_unprotect, wp.before_time_update,
// truncate.after_size, truncate.before_shrink, punch.before_drop,
// punch.before_backend (pages dropped and unlocked, backend not yet punched),
// invalidate.before_drop, invalidate.after_launder, read.before_copy,
// writeback.after_copy, writeback.before_write, writeback.after_write (the
// backend write done, write-back not yet ended), mapping.before_munmap,
// async.after_scan (invalidate / remote change of a DirtyTracking::Async File,
// after its views' written pages were found), reclaim.after_pick (candidates
// chosen, none locked yet), reclaim.before_punch (pages dropped from the index,
// frames not yet punched), teardown.after_zap (an async view's teardown:
// written PTEs zapped, pages not yet dirty), write.before_size_lock (File::write
// decided whether it extends), sigbus.before_poison, fault.after_mkwrite
// (page_mkwrite done, no lock taken), wp.after_wake (the storing thread woken,
// write-around not done), fault.after_time_update, mapping.after_munmap (a
// view's teardown between its munmap and leaving the reverse map: R15's
// breaker), remote.changed (a backend's change notification, on the backend's
// thread, holding a reference to the File), read.before_user_copy (File::read
// between a batch and its copy into the caller's buffer, no lock of the File
// held: R11), readahead.before_charge (a stream's asynchronous readahead
// holding its first page, not yet charged), readahead.after_lock (a stream's asynchronous readahead holding
// its first page, marked, and the invalidate_lock shared, nothing read yet),
// handler.rearm_failed (a fault handler could not re-arm its userfaultfd in
// the epoll set; fault-injection site handler.rearm), age.batch (aging copied
// a batch of the small queue), and the sleeping waits wait.* below.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "faultline/file.hpp"

namespace faultline::testing {

/// Whether the harness is compiled in (FAULTLINE_TESTING).
constexpr bool compiled_in() {
#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
  return true;
#else
  return false;
#endif
}

/// The next `count` threads that reach `point` park there until release().
void arm(const std::string& point, int count = 1);
/// Waits until `n` threads are parked at `point`; false on timeout.
bool wait_parked(const std::string& point, std::chrono::milliseconds timeout =
                                               std::chrono::seconds(10), int n = 1);
/// Lets the threads parked at `point` go on, and disarms it.
void release(const std::string& point);
/// Disarms every point, releases every parked thread, and starts counting
/// hits afresh (points are counted from the first reset() or arm() on).
void reset();
/// Times `point` was reached since reset() (armed or not).
int hits(const std::string& point);

/// Sleeping waits. Each place where the engine may sleep on a lock or a page
/// state passes a schedule point just before it sleeps, once it has seen the
/// lock held (so the thread cannot get past it before the holder lets go):
///   wait.page_lock                       a page lock (Page::lock)
///   wait.writeback                       PG_writeback to end (Page::wait_clear)
///   wait.invalidate_lock.exclusive|shared   the File's invalidate_lock
///   wait.size_lock.exclusive|shared      the File's i_rwsem (size lock)
///   wait.late_dirtying                   a sync waiting for a fault's dirtying
///                                        done after its thread's wake
///   wait.open_closing                    open() of a key whose File is being
///                                        torn down (R14)
///   wait.rmap_lock                       a walk of a File's reverse map (R15)
/// A race test proves where its second thread is by waiting for one of them
/// (wait_reached), never by a timeout. They can be armed like any point.

/// Times the points whose name starts with `prefix` were reached since
/// reset() (counting starts at reset()).
int reached(const std::string& prefix);

enum class Reach { reached, stopped, timed_out };
/// Waits until reached(prefix) >= n (Reach::reached) or `stop()` returns true
/// (Reach::stopped; evaluated whenever a point is reached and at notify()).
/// `timeout` only guards against a deadlock (Reach::timed_out): it never
/// decides an interleaving.
Reach wait_reached(const std::string& prefix, int n, const std::function<bool()>& stop,
                   std::chrono::milliseconds timeout = std::chrono::seconds(20));
/// Makes wait_reached() callers evaluate their stop() now (call it when the
/// state stop() looks at changes, e.g. a thread finished).
void notify();

/// Fault injection: the next `count` times the engine reaches site `site`
/// (e.g. "mkclean.writeprotect"), the syscall there fails with `err` instead
/// of being made. reset() clears it.
void fail_next(const std::string& site, int err, int count = 1);

/// Whether rule n's guard is switched off as a whole.
bool rule_broken(int n);
/// Sets the broken rules from a FAULTLINE_BREAK-style list ("R2,R10"); "" =
/// none. A rule with separately breakable guards (DESIGN.md section 3) also
/// takes one guard: "R1a" breaks guard a of R1 only, "R1" all of them.
void break_rules(const std::string& list);

/// Reaches into a File for the tests' checks (a friend of File; test support,
/// never installed).
struct FileAccess {
  /// The size of the memfd that holds f's frames: it must always equal size()
  /// rounded up to the page.
  static uint64_t frame_bytes(const File& f);
  /// The flusher's background aging of f (FileImpl::age: sample the mapped,
  /// unjudged pages among the first `ahead` of the small queue), now.
  static void age(File& f, uint64_t ahead);
};

}  // namespace faultline::testing
