// faultline — the 2 MiB huge page pool that FrameSize::k2M Files draw on.
//
// Free pages for new 2 MiB frames are the pool's free, unreserved pages plus
// the overcommit headroom: with vm.nr_overcommit_hugepages = N the kernel
// allocates up to N "surplus" pages on demand (and frees them when released),
// so a machine with no standing reservation (vm.nr_hugepages = 0) can still
// back 2 MiB frames. The engine's open-time check and the tools read it here,
// and the transparent huge page settings beside it (thp_setting).
#pragma once
#include <cstdint>
#include <string>

namespace faultline {

/// The 2 MiB hstate's sysfs directory.
inline constexpr const char* kHugePage2MSysfs = "/sys/kernel/mm/hugepages/hugepages-2048kB";

struct HugePagePool {
  int64_t free = 0;        ///< free_hugepages (HugePages_Free): includes free surplus pages
  int64_t reserved = 0;    ///< resv_hugepages (HugePages_Rsvd): promised to mappings already
  int64_t overcommit = 0;  ///< nr_overcommit_hugepages: most surplus pages allowed
  int64_t surplus = 0;     ///< surplus_hugepages (HugePages_Surp): surplus pages allocated now
  int64_t nr = 0;          ///< nr_hugepages (HugePages_Total - surplus): the standing pool
  bool readable = false;   ///< the counters could be read

  /// Pages a new 2 MiB File can take: free - reserved + (overcommit - surplus).
  int64_t available() const {
    const int64_t headroom = overcommit > surplus ? overcommit - surplus : 0;
    const int64_t unreserved = free > reserved ? free - reserved : 0;
    return unreserved + headroom;
  }
};

/// Reads the 2 MiB pool from `sysfs_dir` (free_hugepages, resv_hugepages,
/// nr_overcommit_hugepages, surplus_hugepages, nr_hugepages); when that is missing, from
/// /proc/meminfo and /proc/sys/vm/nr_overcommit_hugepages (the default huge
/// page size's pool).
[[nodiscard]] HugePagePool hugepage_pool(const std::string& sysfs_dir = kHugePage2MSysfs);

/// The transparent huge page settings' sysfs directory.
inline constexpr const char* kThpSysfs = "/sys/kernel/mm/transparent_hugepage";

/// The selected mode of the THP setting `name` ("shmem_enabled": memfd and
/// shmem, which 4 KiB-frame Files are; "enabled": anonymous memory) — the
/// word in [brackets] in `sysfs_dir`/name, e.g. "within_size"; the whole first
/// line if it has none; "" when the file cannot be read (no THP support).
[[nodiscard]] std::string thp_setting(const std::string& name = "shmem_enabled",
                                      const std::string& sysfs_dir = kThpSysfs);

}  // namespace faultline
