#include "os/uffd.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "faultline/constants.hpp"
#include "os/sys_error.hpp"

namespace faultline::detail {

namespace {

int open_uffd(std::string& via) {
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd >= 0) {
    via = "syscall";
    return fd;
  }
  const int syscall_err = errno;
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    const int e = errno;
    ::close(dev);
    if (fd >= 0) {
      via = "/dev/userfaultfd";
      return fd;
    }
    errno = e;
  }
  throw_errno(syscall_err,
              "faultline: cannot create a userfaultfd that handles kernel-mode faults "
              "(userfaultfd(2) and /dev/userfaultfd both refused); run as root, grant "
              "access to /dev/userfaultfd, or set sysctl vm.unprivileged_userfaultfd=1");
}

uint64_t api(int fd, uint64_t features) {
  uffdio_api a{};
  a.api = UFFD_API;
  a.features = features;
  if (::ioctl(fd, UFFDIO_API, &a) != 0) throw_errno("faultline: UFFDIO_API");
  return a.features;
}

}  // namespace

Userfaultfd::Userfaultfd(bool wp_async, bool sigbus) {
  // Probe the kernel's features on a throwaway uffd (UFFDIO_API may be called
  // once per uffd), then ask for exactly what we rely on.
  std::string via;
  int probe = open_uffd(via);
  uint64_t avail = 0;
  try {
    avail = api(probe, 0);
  } catch (...) {
    ::close(probe);
    throw;
  }
  ::close(probe);

  // THREAD_ID: the faulting thread's id in each fault (a readahead stream
  // per thread, DESIGN section 2 "Context readahead").
  const uint64_t want = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM |
                        UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_POISON |
                        UFFD_FEATURE_THREAD_ID;
  const uint64_t need = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
                        UFFD_FEATURE_POISON;
  if ((avail & need) != need) {
    throw_errno(ENOTSUP,
                "faultline: this kernel's userfaultfd lacks MINOR_SHMEM / WP on shmem / POISON "
                "(Linux >= 6.6 needed); features=0x" + std::to_string(avail));
  }
  if (wp_async && !(avail & UFFD_FEATURE_WP_ASYNC))
    throw_errno(ENOTSUP, "faultline: this kernel's userfaultfd lacks WP_ASYNC (Linux >= 6.7 "
                         "needed for DirtyTracking::Async)");
  fd_ = open_uffd(via_);
  // The engine's main uffd reports WP_ASYNC as available (KernelFeatures);
  // only an async uffd asks for it (it is per uffd: every WP fault on it is
  // resolved by the kernel).
  // SIGBUS is per uffd too: asked for only by FaultMode::FaultingThread.
  if (sigbus && !(avail & UFFD_FEATURE_SIGBUS))
    throw_errno(ENOTSUP, "faultline: this kernel's userfaultfd lacks UFFD_FEATURE_SIGBUS "
                         "(FaultMode::FaultingThread)");
  const uint64_t extra = sigbus ? UFFD_FEATURE_SIGBUS : 0;
  features_ = wp_async ? api(fd_, (avail & want) | UFFD_FEATURE_WP_ASYNC | extra)
                       : api(fd_, (avail & want) | extra) | (avail & UFFD_FEATURE_WP_ASYNC);
  sigbus_ = sigbus;

  // Probe the range ioctls on a registered one-page memfd view.
  int mfd = ::memfd_create("faultline-probe", MFD_CLOEXEC);
  if (mfd < 0) throw_errno("faultline: memfd_create");
  if (::ftruncate(mfd, kBasePageSize) != 0) {
    ::close(mfd);
    throw_errno("faultline: ftruncate(memfd)");
  }
  void* v = ::mmap(nullptr, kBasePageSize, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  ::close(mfd);
  if (v == MAP_FAILED) throw_errno("faultline: mmap(memfd)");
  uffdio_register r{};
  r.range.start = reinterpret_cast<uintptr_t>(v);
  r.range.len = kBasePageSize;
  r.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP;
  const int rc = ::ioctl(fd_, UFFDIO_REGISTER, &r);
  const int e = errno;
  ::munmap(v, kBasePageSize);  // also unregisters
  if (rc != 0) throw_errno(e, "faultline: UFFDIO_REGISTER of a memfd view (MISSING|MINOR|WP)");
  range_ioctls_ = r.ioctls;
  const uint64_t need_ioctls = (1ULL << _UFFDIO_CONTINUE) | (1ULL << _UFFDIO_WRITEPROTECT) |
                               (1ULL << _UFFDIO_WAKE) | (1ULL << _UFFDIO_POISON);
  if ((range_ioctls_ & need_ioctls) != need_ioctls) {
    throw_errno(ENOTSUP, "faultline: UFFDIO_CONTINUE / WRITEPROTECT / WAKE / POISON not offered "
                         "on memfd views (Linux >= 6.6 needed)");
  }
}

Userfaultfd::~Userfaultfd() { close(); }

void Userfaultfd::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int Userfaultfd::register_range(void* addr, size_t len, uint64_t modes) const {
  uffdio_register r{};
  r.range.start = reinterpret_cast<uintptr_t>(addr);
  r.range.len = len;
  r.mode = modes;
  return ::ioctl(fd_, UFFDIO_REGISTER, &r) == 0 ? 0 : -errno;
}

Userfaultfd::Result Userfaultfd::continue_range(uintptr_t addr, size_t len, bool write_protect,
                                                bool dontwake) const {
  uffdio_continue c{};
  c.range.start = addr;
  c.range.len = len;
  // Pass the mode explicitly every time: WP markers stick (DESIGN section 2).
  c.mode = (write_protect ? UFFDIO_CONTINUE_MODE_WP : 0) |
           (dontwake ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0);
  if (::ioctl(fd_, UFFDIO_CONTINUE, &c) == 0) return {0, c.mapped};
  return {-errno, c.mapped > 0 ? c.mapped : 0};
}

Userfaultfd::Result Userfaultfd::copy(uintptr_t addr, const void* src, size_t len,
                                      bool write_protect, bool dontwake) const {
  uffdio_copy c{};
  c.dst = addr;
  c.src = reinterpret_cast<uintptr_t>(src);
  c.len = len;
  c.mode = (write_protect ? UFFDIO_COPY_MODE_WP : 0) | (dontwake ? UFFDIO_COPY_MODE_DONTWAKE : 0);
  if (::ioctl(fd_, UFFDIO_COPY, &c) == 0) return {0, c.copy};
  return {-errno, c.copy > 0 ? c.copy : 0};
}

int Userfaultfd::writeprotect(uintptr_t addr, size_t len, bool wp, bool dontwake) const {
  uffdio_writeprotect w{};
  w.range.start = addr;
  w.range.len = len;
  // The kernel refuses WP together with DONTWAKE (EINVAL: protecting wakes
  // nobody anyway), so DONTWAKE only applies to un-protecting.
  w.mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
           (dontwake && !wp ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
  return ::ioctl(fd_, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : -errno;
}

int Userfaultfd::poison(uintptr_t addr, size_t len) const {
  uffdio_poison p{};
  p.range.start = addr;
  p.range.len = len;
  p.mode = 0;
  return ::ioctl(fd_, UFFDIO_POISON, &p) == 0 ? 0 : -errno;
}

int Userfaultfd::wake(uintptr_t addr, size_t len) const {
  uffdio_range r{addr, len};
  return ::ioctl(fd_, UFFDIO_WAKE, &r) == 0 ? 0 : -errno;
}

}  // namespace faultline::detail
