// Internal: the engine's userfaultfd and the ioctls the fault path uses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <linux/userfaultfd.h>
#include <string>

// Constants missing from Debian 12's uapi headers (values from the kernel's
// uapi, DESIGN section 2).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
  struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace faultline::detail {

class Userfaultfd {
 public:
  /// Creates the uffd (syscall, else /dev/userfaultfd), negotiates the API and
  /// probes a registered memfd view for the range ioctls. Throws with a message
  /// naming vm.unprivileged_userfaultfd when no uffd can be made. With wp_async
  /// the uffd also gets UFFD_FEATURE_WP_ASYNC (ENOTSUP when the kernel lacks
  /// it): a store to a write-protected page is resolved by the kernel, no event.
  /// With sigbus it gets UFFD_FEATURE_SIGBUS: a fault on its views raises
  /// SIGBUS in the faulting thread instead of queueing an event
  /// (FaultMode::FaultingThread; a kernel-mode access gets EFAULT).
  explicit Userfaultfd(bool wp_async = false, bool sigbus = false);
  ~Userfaultfd();
  Userfaultfd(const Userfaultfd&) = delete;
  Userfaultfd& operator=(const Userfaultfd&) = delete;

  int fd() const { return fd_; }
  uint64_t features() const { return features_; }
  /// Faults on this uffd's views raise SIGBUS in the faulting thread.
  bool sigbus() const { return sigbus_; }
  uint64_t range_ioctls() const { return range_ioctls_; }
  const std::string& via() const { return via_; }

  /// Registers [addr, addr+len) with the given UFFDIO_REGISTER_MODE_* bits.
  /// 0 or -errno.
  [[nodiscard]] int register_range(void* addr, size_t len, uint64_t modes) const;

  // Every ioctl wrapper below returns 0 or -errno: [[nodiscard]], each
  // caller handles it or says in a comment why it may not.
  /// Result of a CONTINUE: `err` 0 or -errno; `done` the bytes mapped.
  struct Result { int err; int64_t done; };
  [[nodiscard]] Result continue_range(uintptr_t addr, size_t len, bool write_protect,
                                      bool dontwake = false) const;
  /// UFFDIO_COPY of [src, src+len) to [addr, addr+len) of a shared memfd view:
  /// the kernel allocates each frame, copies into it, adds it to the memfd at
  /// the view's offset and maps it in this view only, taking no inode lock
  /// (DESIGN section 2, "Filling by UFFDIO_COPY"). `done`: the bytes copied and
  /// mapped. `err` -EEXIST: the first page's frame is in the memfd already;
  /// -EAGAIN with `done` > 0: a later page's is (or the view is changing).
  [[nodiscard]] Result copy(uintptr_t addr, const void* src, size_t len, bool write_protect,
                            bool dontwake) const;
  /// Whether UFFDIO_COPY is offered on memfd views (it is with MISSING).
  bool can_copy() const { return range_ioctls_ & (1ULL << _UFFDIO_COPY); }
  /// UFFDIO_WRITEPROTECT: wp=true protects (mkclean), false lets stores through.
  [[nodiscard]] int writeprotect(uintptr_t addr, size_t len, bool wp, bool dontwake = false) const;
  [[nodiscard]] int poison(uintptr_t addr, size_t len) const;
  [[nodiscard]] int wake(uintptr_t addr, size_t len) const;
  void close();

 private:
  int fd_ = -1;
  uint64_t features_ = 0;
  bool sigbus_ = false;
  uint64_t range_ioctls_ = 0;
  std::string via_;
};

}  // namespace faultline::detail
