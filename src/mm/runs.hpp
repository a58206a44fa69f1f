// Internal: runs of pages. The engine works on runs [i, j) of consecutive
// pages that share a property (need a fill, are dirty, may be installed with
// one ioctl ...); for_each_run is the one loop that finds them.
#pragma once
#include <concepts>
#include <cstdint>

namespace faultline::detail {

/// Calls fn(i, j) for each maximal run [i, j) of indices in [0, n), in
/// ascending order, such that in_run(k) holds for every k in it and
/// joins(k - 1, k) for every pair of neighbours in it. Indices where in_run is
/// false belong to no run. fn may return void, or bool: false stops the walk.
template <class InRun, class Joins, class Fn>
void for_each_run(uint64_t n, InRun&& in_run, Joins&& joins, Fn&& fn) {
  for (uint64_t i = 0; i < n;) {
    if (!in_run(i)) {
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && in_run(j) && joins(j - 1, j)) ++j;
    if constexpr (requires { { fn(i, j) } -> std::same_as<bool>; }) {
      if (!fn(i, j)) return;
    } else {
      fn(i, j);
    }
    i = j;
  }
}

/// for_each_run where every index satisfying in_run joins its neighbour.
template <class InRun, class Fn>
void for_each_run(uint64_t n, InRun&& in_run, Fn&& fn) {
  for_each_run(n, in_run, [](uint64_t, uint64_t) { return true; }, fn);
}

}  // namespace faultline::detail
