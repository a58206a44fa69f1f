// Internal: schedule points and rule guards of the race harness.
//
// FL_POINT("name")  parks the calling thread if a test armed "name".
// FL_RULE(n)        true when rule n's guard is active (always, unless the
//                   harness is compiled in and a test called
//                   testing::break_rules with Rn).
// FL_GUARD(n, 'a')  the same for one of the separately breakable guards of a
//                   rule (DESIGN.md section 3: R1a, R1b, ...): off with "R1a"
//                   or with the whole rule ("R1").
// FL_FAIL("site")   the errno a test injected for the syscall at "site"
//                   (testing::fail_next), or 0.
// All compile to nothing without FAULTLINE_TESTING (the default).
#pragma once
#include <atomic>
#include <cstdint>

namespace faultline::detail {
extern std::atomic<int> g_points_live;     // > 0 while hits are counted / points armed
// Per rule n: bit 0 = the whole rule broken, bit k = its guard 'a' + k - 1.
extern std::atomic<uint32_t> g_broken_rules[32];
void sched_point(const char* name);
int injected_error(const char* site);  // testing.cpp (test builds only)
}  // namespace faultline::detail

#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
#define FL_POINT(name)                                                                   \
  do {                                                                                   \
    if (__builtin_expect(::faultline::detail::g_points_live.load(std::memory_order_relaxed) > 0, 0)) \
      ::faultline::detail::sched_point(name);                                            \
  } while (0)
#define FL_RULE(n)                                                                       \
  (__builtin_expect(                                                                     \
      !(::faultline::detail::g_broken_rules[n].load(std::memory_order_relaxed) & 1u), 1))
#define FL_GUARD(n, sub)                                                                 \
  (__builtin_expect(!(::faultline::detail::g_broken_rules[n].load(std::memory_order_relaxed) & \
                      (1u | (1u << ((sub) - 'a' + 1)))),                                 \
                    1))
#define FL_FAIL(site)                                                                    \
  (::faultline::detail::g_points_live.load(std::memory_order_relaxed) > 0               \
       ? ::faultline::detail::injected_error(site)                                       \
       : 0)
#else
#define FL_POINT(name) \
  do {                 \
  } while (0)
#define FL_RULE(n) true
#define FL_GUARD(n, sub) true
#define FL_FAIL(site) 0
#endif
