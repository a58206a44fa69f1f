// faultline CLI — a memory cgroup for one bench measurement (`bench
// --out-of-core`): the kernel's mmap runs in a child process placed in a
// cgroup limited to the same bytes as faultline's memory limit. cgroup v2
// (memory.max, memory.peak, memory.events) and v1 (memory.limit_in_bytes,
// memory.max_usage_in_bytes, memory.oom_control), made as a child of the
// bench's own cgroup and removed on destruction.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

namespace faultline::cli {

class MemoryCgroup {
 public:
  /// Makes `<own memory cgroup>/<name>` with its memory limit set to
  /// `limit_bytes` (and swap off where the controller has it). Returns null
  /// and sets `why` when it cannot (not root, no memory controller, v2
  /// without the memory controller delegated to the bench's cgroup...).
  static std::unique_ptr<MemoryCgroup> make(const std::string& name, uint64_t limit_bytes,
                                            std::string& why);
  ~MemoryCgroup();
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  /// Moves process `pid` (0: the caller) into the cgroup; 0 or an errno.
  int enter(pid_t pid = 0) const;
  /// The most memory the cgroup was charged (bytes; -1 unknown).
  int64_t peak_bytes() const;
  /// How many processes the kernel's OOM killer killed in it (-1 unknown).
  int64_t oom_kills() const;
  /// "v1" or "v2".
  const char* version() const { return v2_ ? "v2" : "v1"; }
  const std::string& path() const { return path_; }

 private:
  MemoryCgroup(std::string path, bool v2) : path_(std::move(path)), v2_(v2) {}
  std::string path_;
  bool v2_;
};

}  // namespace faultline::cli
