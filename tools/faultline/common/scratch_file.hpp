// faultline CLI — ScratchFile: a file the CLI creates in a fresh directory
// under a disk file system (default /var/tmp, never tmpfs: the kernel page
// cache behaviour the bench compares against needs a real disk file system),
// removed with its directory on destruction (normal exit, error, exception).
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "common/unique_fd.hpp"

namespace faultline::cli {

/// Where the benches make their scratch files.
inline constexpr const char* kScratchParent = "/var/tmp";

class ScratchFile {
 public:
  /// Creates `<parent>/faultline-bench-XXXXXX/data`, empty, open read-write.
  /// Throws std::system_error, or std::runtime_error when `parent` is on
  /// tmpfs/ramfs or lacks `need_bytes` of free space.
  ScratchFile(const std::string& parent, uint64_t need_bytes);
  ~ScratchFile();
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;

  const std::string& path() const noexcept { return path_; }
  int fd() const noexcept { return fd_.get(); }

 private:
  std::string dir_;
  std::string path_;
  UniqueFd fd_;
};

/// Writes `size` bytes of pseudo-random data from `seed` (data_gen.hpp) to
/// the scratch file, saying so on stderr, and fsyncs it; poll() runs between
/// chunks (it may throw to stop). Returns the seconds it took.
double fill_with_random_data(const ScratchFile& f, uint64_t size, uint64_t seed,
                             const std::function<void()>& poll);

/// The file system type name of `path` ("ext4", "xfs", "tmpfs", ... or the
/// magic number in hex); throws std::system_error when statfs fails.
std::string fs_type_name(const std::string& path);
/// Whether `path` lies on a memory file system (tmpfs, ramfs).
bool on_memory_fs(const std::string& path);

}  // namespace faultline::cli
