// The huge page pool the 2 MiB-frame tests need (frames2m, Race2M.*, the
// truncate stress test's 2M variants): one check, one message.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace ft {

/// Free 2 MiB huge pages (HugePages_Free - HugePages_Rsvd in /proc/meminfo).
inline int64_t hugepages_free() {
  std::FILE* f = std::fopen("/proc/meminfo", "re");
  if (!f) return 0;
  char line[256];
  long long fr = 0, rs = 0, v = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "HugePages_Free: %lld", &v) == 1) fr = v;
    else if (std::sscanf(line, "HugePages_Rsvd: %lld", &v) == 1) rs = v;
  }
  std::fclose(f);
  return fr - rs;
}

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
