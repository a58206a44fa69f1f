#include "common/scratch_file.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include "common/data_gen.hpp"
#include "common/size_arg.hpp"
#include "common/sys_error.hpp"

namespace faultline::cli {

namespace {

struct statfs statfs_or_throw(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) throw_errno("statfs '" + path + "'");
  return st;
}

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

}  // namespace

std::string fs_type_name(const std::string& path) {
  const auto st = statfs_or_throw(path);
  switch (static_cast<unsigned long>(st.f_type)) {
    case EXT4_SUPER_MAGIC: return "ext2/3/4";
    case XFS_SUPER_MAGIC: return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    case TMPFS_MAGIC: return "tmpfs";
    case RAMFS_MAGIC: return "ramfs";
    case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
    default: return fmt::format("0x{:x}", static_cast<unsigned long>(st.f_type));
  }
}

bool on_memory_fs(const std::string& path) {
  const auto st = statfs_or_throw(path);
  const auto t = static_cast<unsigned long>(st.f_type);
  return t == TMPFS_MAGIC || t == RAMFS_MAGIC;
}

ScratchFile::ScratchFile(const std::string& parent, uint64_t need_bytes) {
  const auto st = statfs_or_throw(parent);
  if (on_memory_fs(parent))
    throw std::runtime_error(fmt::format(
        "'{}' is on a memory file system ({}): the kernel page cache comparison needs a disk "
        "file system; pass --file PATH on one",
        parent, fs_type_name(parent)));
  const uint64_t avail = static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_bsize);
  // Keep a margin so the bench never fills the disk.
  const uint64_t margin = uint64_t{256} << 20;
  if (avail < need_bytes + margin)
    throw std::runtime_error(fmt::format("'{}' has {} free; the bench file needs {} (plus {} margin)",
                                         parent, format_size(avail), format_size(need_bytes),
                                         format_size(margin)));
  std::string tmpl = parent + "/faultline-bench-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw_errno("mkdtemp '" + tmpl + "'");
  dir_ = buf.data();
  path_ = dir_ + "/data";
  fd_.reset(::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd_) {
    const int err = errno;
    ::rmdir(dir_.c_str());
    throw_errno(err, "create '" + path_ + "'");
  }
}

ScratchFile::~ScratchFile() {
  fd_.reset();
  ::unlink(path_.c_str());
  ::rmdir(dir_.c_str());
}

double fill_with_random_data(const ScratchFile& f, uint64_t size, uint64_t seed,
                             const std::function<void()>& poll) {
  fmt::print(stderr, "faultline bench: writing {} of pseudo-random data to {} ({})\n",
             format_size(size), f.path(), fs_type_name(f.path()));
  const auto t0 = std::chrono::steady_clock::now();
  write_random_bytes(f.fd(), size, seed, poll);
  if (::fsync(f.fd()) != 0) throw_errno("fsync '" + f.path() + "'");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace faultline::cli
