// The huge page pool the 2 MiB-frame tests need (frames2m, Race2M.*, the
// truncate stress test's 2M variants): one check, one message.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "faultline/hugepages.hpp"

namespace ft {

/// 2 MiB huge pages a File can take: the pool's free unreserved pages plus
/// the overcommit headroom (the library's one reading of the pool).
inline int64_t hugepages_free() { return faultline::hugepage_pool().available(); }

/// FAULTLINE_REQUIRE_HUGEPAGES=1: a missing pool fails the 2 MiB tests
/// instead of skipping them (CI sets it).
inline bool hugepages_required() {
  const char* e = std::getenv("FAULTLINE_REQUIRE_HUGEPAGES");
  return e && std::string(e) == "1";
}

/// Why a test needing `need` free 2 MiB huge pages cannot run, saying how to
/// reserve a pool; empty when it can. Use:
///   if (auto why = ft::hugepage_pool_shortfall(n); !why.empty()) {
///     if (ft::hugepages_required()) FAIL() << why;
///     GTEST_SKIP() << why;
///   }
inline std::string hugepage_pool_shortfall(int64_t need) {
  const int64_t free = hugepages_free();
  if (free >= need) return {};
  return "only " + std::to_string(free) + " free 2 MiB huge pages (need " + std::to_string(need) +
         "): reserve a pool as root with `scripts/setup.sh --hugepages 64` (or `echo 64 > "
         "/proc/sys/vm/nr_hugepages`); FAULTLINE_REQUIRE_HUGEPAGES=1 makes this a failure" +
         (hugepages_required() ? " (it is set)" : "");
}

}  // namespace ft
