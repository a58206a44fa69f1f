// faultline CLI — opening path arguments (path_arg.hpp).
#include "common/path_arg.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include "common/sys_error.hpp"

namespace faultline::cli {

namespace {

/// A pseudo-file system whose files' sizes do not tell their length.
bool pseudo_fs(int fd) {
  struct statfs s {};
  if (::fstatfs(fd, &s) != 0) return false;
  const auto t = static_cast<unsigned long>(s.f_type);
  return t == PROC_SUPER_MAGIC || t == SYSFS_MAGIC || t == DEBUGFS_MAGIC ||
         t == TRACEFS_MAGIC || t == CGROUP2_SUPER_MAGIC || t == CGROUP_SUPER_MAGIC ||
         t == SECURITYFS_MAGIC || t == BPF_FS_MAGIC;
}

[[noreturn]] void refuse(const std::string& path, const std::string& why) {
  throw std::runtime_error(path + ": " + why);
}

/// stat() of a path argument; a missing target names a dangling link.
struct stat stat_arg(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return st;
  const int e = errno;
  struct stat lst {};
  if (e == ENOENT && ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
    refuse(path, "a dangling symbolic link (its target does not exist)");
  throw_errno(e, path);
}

void clear_nonblock(int fd, const std::string& path) {
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) throw_errno(path + ": fcntl");
}

}  // namespace

const char* file_kind(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}

UniqueFd open_regular_file(const std::string& path, int flags) {
  // stat first: a socket cannot be opened and a FIFO's open would block.
  const struct stat st = stat_arg(path);
  if (S_ISDIR(st.st_mode)) throw_errno(EISDIR, path);
  if (!S_ISREG(st.st_mode)) refuse(path, std::string(file_kind(st.st_mode)) + ", not a regular file");
  // O_NONBLOCK: should the path turn into a FIFO meanwhile, the open fails or
  // returns at once instead of blocking; the check below then refuses it.
  UniqueFd fd(::open(path.c_str(), flags | O_NONBLOCK | O_CLOEXEC));
  if (!fd) throw_errno(path);
  struct stat now {};
  if (::fstat(fd.get(), &now) != 0) throw_errno(path);
  if (!S_ISREG(now.st_mode)) refuse(path, std::string(file_kind(now.st_mode)) + ", not a regular file");
  if (pseudo_fs(fd.get()))
    refuse(path, "a pseudo-file (/proc, /sys, ...): its size does not tell its length, so it "
                 "cannot be mapped; copy it to a regular file first");
  clear_nonblock(fd.get(), path);
  return fd;
}

std::FILE* open_log_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw_errno(EISDIR, path);
    if (S_ISSOCK(st.st_mode) || S_ISBLK(st.st_mode))
      refuse(path, std::string(file_kind(st.st_mode)) + ": cannot write a log to it");
  }
  // O_NONBLOCK: a FIFO with no reader fails with ENXIO instead of blocking.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644));
  if (!fd) {
    if (errno == ENXIO) refuse(path, "a FIFO with no reader (start the reader first)");
    throw_errno(path);
  }
  if (::fstat(fd.get(), &st) != 0) throw_errno(path);
  if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
    refuse(path, std::string(file_kind(st.st_mode)) + ": cannot write a log to it");
  if (S_ISREG(st.st_mode) && pseudo_fs(fd.get()))
    refuse(path, "a /proc or /sys file: a log is never written into a kernel setting");
  if (S_ISREG(st.st_mode) && ::ftruncate(fd.get(), 0) != 0) throw_errno(path + ": truncate");
  clear_nonblock(fd.get(), path);
  std::FILE* f = ::fdopen(fd.get(), "w");
  if (!f) throw_errno(path + ": fdopen");
  (void)fd.release();  // the FILE owns it now
  return f;
}

}  // namespace faultline::cli
