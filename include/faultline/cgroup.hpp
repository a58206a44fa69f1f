// faultline — the memory cgroup this process runs in and its memory limit:
// the one place they are read (the engine's default memory limit and dirty
// thresholds, the bench's child cgroups). cgroup v1 (memory controller's
// hierarchy, memory.limit_in_bytes) and v2 (unified, memory.max).
#pragma once
#include <cstdint>
#include <string>

namespace faultline {

struct MemoryCgroupInfo {
  /// The process's memory cgroup directory (under the controller's mount);
  /// empty when no memory controller was found.
  std::string dir;
  /// The directory the controller is mounted on (the hierarchy's root here).
  std::string mount;
  bool v2 = false;  ///< unified hierarchy (memory.max) rather than v1 (memory.limit_in_bytes)
  /// The tightest memory limit on this cgroup and its ancestors, in bytes;
  /// 0 when there is none ("max" in v2; v1's unlimited value, ~2^63).
  uint64_t limit_bytes = 0;
};

/// Reads the process's memory cgroup: /proc/self/cgroup names its path per
/// hierarchy, /proc/self/mountinfo where each hierarchy is mounted. The v1
/// memory controller wins when mounted (a hybrid host's unified hierarchy
/// has no memory controller); else the unified one, when it lists `memory`
/// in cgroup.controllers. v1's limit: memory.stat's hierarchical_memory_limit
/// (ancestors included), else memory.limit_in_bytes; v2's: the smallest
/// memory.max from the cgroup up to the mount. The paths are parameters for
/// tests.
[[nodiscard]] MemoryCgroupInfo memory_cgroup(const std::string& proc_cgroup = "/proc/self/cgroup",
                                             const std::string& mountinfo = "/proc/self/mountinfo");

}  // namespace faultline
