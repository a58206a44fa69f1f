// Internal: schedule points and rule guards of the race harness.
//
// FL_POINT("name")  parks the calling thread if a test armed "name".
// FL_RULE(n)        true when rule n's guard is active (always, unless the
//                   harness is compiled in and a test called
//                   testing::break_rules with Rn).
// Both compile to nothing without FAULTLINE_TESTING (the default).
#pragma once
#include <atomic>

namespace faultline::detail {
extern std::atomic<int> g_points_live;     // > 0 while hits are counted / points armed
extern std::atomic<unsigned> g_broken_rules;  // bit n = rule n broken
void sched_point(const char* name);
}  // namespace faultline::detail

#if defined(FAULTLINE_TESTING) && FAULTLINE_TESTING
#define FL_POINT(name)                                                                   \
  do {                                                                                   \
    if (__builtin_expect(::faultline::detail::g_points_live.load(std::memory_order_relaxed) > 0, 0)) \
      ::faultline::detail::sched_point(name);                                            \
  } while (0)
#define FL_RULE(n)                                                                       \
  (__builtin_expect(!(::faultline::detail::g_broken_rules.load(std::memory_order_relaxed) & (1u << (n))), 1))
#else
#define FL_POINT(name) \
  do {                 \
  } while (0)
#define FL_RULE(n) true
#endif
