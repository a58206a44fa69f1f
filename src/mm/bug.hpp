// Internal: FL_BUG_ON(cond), the kernel's VM_BUG_ON — an invariant the code
// relies on, checked where the check is cheap. Compiled into debug builds and
// test builds (FAULTLINE_TESTING, which every test run uses); a user's release
// build has none (the condition is not evaluated). A failed check prints the
// condition and where, then aborts: a broken invariant is a bug, never an error
// to return.
#pragma once

namespace faultline::detail {
[[noreturn]] void bug(const char* cond, const char* file, int line);
}  // namespace faultline::detail

#if defined(FAULTLINE_TESTING) || !defined(NDEBUG)
#define FL_BUG_ON(cond)                                                                          \
  do {                                                                                           \
    if (__builtin_expect(!!(cond), 0)) ::faultline::detail::bug(#cond, __FILE__, __LINE__);     \
  } while (0)
#else
#define FL_BUG_ON(cond) \
  do {                  \
    (void)sizeof(cond); \
  } while (0)
#endif
