#include "bench/kernel_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

#include "common/sys_error.hpp"

namespace faultline::cli {

double resident_fraction(int fd, uint64_t size) {
  if (size == 0) return 0;
  const auto kpage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t pages = (size + kpage - 1) / kpage;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_errno("mmap (for mincore)");
  std::vector<unsigned char> vec(pages);
  const int rc = ::mincore(p, size, vec.data());
  const int err = errno;
  ::munmap(p, size);
  if (rc != 0) throw_errno(err, "mincore");
  uint64_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  return static_cast<double>(resident) / static_cast<double>(pages);
}

CacheResult drop_from_page_cache(int fd, uint64_t size) {
  constexpr int kMaxAttempts = 5;
  CacheResult r;
  for (r.attempts = 1;; ++r.attempts) {
    if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) throw_errno("fsync");
    if (int e = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); e != 0)
      throw_errno(e, "posix_fadvise(DONTNEED)");
    r.resident = resident_fraction(fd, size);
    if (r.resident <= kColdThreshold || r.attempts >= kMaxAttempts) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(20 * r.attempts));
  }
}

CacheResult warm_page_cache(int fd, uint64_t size) {
  CacheResult r = drop_from_page_cache(fd, size);
  if (::lseek(fd, 0, SEEK_SET) < 0) throw_errno("lseek");
  std::vector<char> buf(kWarmReadBytes);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read");
    }
    if (n == 0) break;
  }
  r.resident = resident_fraction(fd, size);
  return r;
}

}  // namespace faultline::cli
