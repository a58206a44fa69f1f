// Internal: the locking contract, checked by the compiler (issue 13; LevelDB's
// port/thread_annotations.h). Clang's -Wthread-safety reads these attributes:
// a member GUARDED_BY(mu) is touched only with mu held, a function
// REQUIRES(mu) is called only with it held, and so on. GCC builds the project
// and ignores them (the macros are empty there); the check is the CTest test
// lint.thread_safety (cmake/FaultlineThreadSafety.cmake), which compiles the
// library with clang++ -Wthread-safety -Werror=thread-safety.
//
// The capabilities are the annotated locks of src/mm/mutex.hpp (Mutex,
// MutexLock, CondVar) and src/mm/sleeping_lock.hpp (SleepingRwLock and its
// ExclusiveLock / SharedLock): libstdc++'s std::mutex and lock guards carry no
// attributes, so a lock taken through them is invisible to the analysis.
// Page locks are per-page bits (Page::lock, PageLock), not capabilities:
// FL_BUG_ON checks them where a rule needs a page locked.
//
// LevelDB's older names: EXCLUSIVE_LOCKS_REQUIRED = REQUIRES,
// SHARED_LOCKS_REQUIRED = REQUIRES_SHARED, LOCKS_EXCLUDED = EXCLUDES.
#pragma once

#if defined(__clang__)
#define FL_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define FL_THREAD_ANNOTATION(x)
#endif

/// A class that is a lock ("mutex", "rwlock": the name in diagnostics).
#define CAPABILITY(x) FL_THREAD_ANNOTATION(capability(x))
/// An RAII class that holds a capability for its lifetime.
#define SCOPED_CAPABILITY FL_THREAD_ANNOTATION(scoped_lockable)
/// A member read only with the lock held (shared or exclusive), written only
/// with it held exclusively.
#define GUARDED_BY(x) FL_THREAD_ANNOTATION(guarded_by(x))
/// A pointer whose pointee is guarded so.
#define PT_GUARDED_BY(x) FL_THREAD_ANNOTATION(pt_guarded_by(x))
/// Lock order (checked with -Wthread-safety-beta only).
#define ACQUIRED_BEFORE(...) FL_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) FL_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
/// The caller holds the lock(s) exclusively / at least shared.
#define REQUIRES(...) FL_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) FL_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
/// The function takes / releases the lock(s) (no argument: `this`).
#define ACQUIRE(...) FL_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) FL_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) FL_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) FL_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
/// Takes the lock when it returns the first argument.
#define TRY_ACQUIRE(...) FL_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE_SHARED(...) FL_THREAD_ANNOTATION(try_acquire_shared_capability(__VA_ARGS__))
/// The caller must not hold the lock (the function takes it).
#define EXCLUDES(...) FL_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
/// Tells the analysis the lock is held from here on (AssertHeld).
#define ASSERT_CAPABILITY(x) FL_THREAD_ANNOTATION(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) FL_THREAD_ANNOTATION(assert_shared_capability(x))
/// The function returns a reference to the lock.
#define RETURN_CAPABILITY(x) FL_THREAD_ANNOTATION(lock_returned(x))
/// Turns the analysis off for one function: only where it cannot follow the
/// code, with a comment saying why.
#define NO_THREAD_SAFETY_ANALYSIS FL_THREAD_ANNOTATION(no_thread_safety_analysis)
