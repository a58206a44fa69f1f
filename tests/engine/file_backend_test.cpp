// The local-file backend's fills (make_file_backend): a cold range is read
// with O_DIRECT and copied into the engine's memfd; ranges longer than one
// piece go through the thread's io_uring, several pieces in flight, each
// copied in order as it arrives; without io_uring, through pread.
#include <gtest/gtest.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <span>
#include <thread>
#include <vector>

#include "faultline/backend.hpp"
#include "faultline/constants.hpp"
#include "os/uring.hpp"
#include "test_util.hpp"

using faultline::kBasePageSize;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

/// A memfd of `size` bytes, closed on destruction.
struct Memfd {
  int fd;
  explicit Memfd(uint64_t size) : fd(::memfd_create("file-backend-test", MFD_CLOEXEC)) {
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) fd = -1;
  }
  ~Memfd() {
    if (fd >= 0) ::close(fd);
  }
  std::vector<std::byte> read(uint64_t off, size_t len) const {
    std::vector<std::byte> b(len);
    const ssize_t n = ::pread(fd, b.data(), len, static_cast<off_t>(off));
    b.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return b;
  }
};

/// Reads [off, off+len) of a cold file into a memfd at fd_off and checks
/// every byte against the file's pattern; returns what read_into_fd did.
ssize_t read_cold_and_check(const std::string& path, uint64_t file_size, uint64_t off, uint64_t len,
                            uint64_t fd_off) {
  ft::drop_cache(path, file_size);
  auto be = faultline::make_file_backend(path, false);
  Memfd m(fd_off + len);
  EXPECT_GE(m.fd, 0);
  const ssize_t r = be->read_into_fd(off, len, m.fd, fd_off);
  const uint64_t want = off >= file_size ? 0 : std::min(len, file_size - off);
  EXPECT_EQ(r, static_cast<ssize_t>(want));
  if (r > 0) {
    const auto got = m.read(fd_off, static_cast<size_t>(r));
    const auto expect = ft::pattern(off, static_cast<size_t>(r));
    EXPECT_EQ(-1, ft::first_diff(got.data(), expect.data(), got.size()))
        << "first differing byte (offset in the range)";
  }
  return r;
}

/// read_aligned_streaming of [off, off+len) of a cold file: checks that the
/// pieces handed over are in order, hold the file's bytes when handed over
/// (the piece after may still be in flight) and add up to the bytes read.
/// Returns the number of pieces.
size_t stream_cold_and_check(const std::string& path, uint64_t file_size, uint64_t off,
                             uint64_t len) {
  ft::drop_cache(path, file_size);
  auto be = faultline::make_file_backend(path, false);
  void* mem = std::aligned_alloc(2 * kMiB, (len + 2 * kMiB - 1) / (2 * kMiB) * (2 * kMiB));
  const auto expect = ft::pattern(off, static_cast<size_t>(len));
  size_t pieces = 0, sum = 0;
  const ssize_t r = be->read_aligned_streaming(
      off, std::span(static_cast<std::byte*>(mem), len), [&](const std::byte* data, size_t at, size_t n) {
        EXPECT_EQ(at, sum) << "out of order";
        EXPECT_GT(n, 0u);
        EXPECT_LE(at + n, len);
        if (at + n <= len) {
          EXPECT_EQ(-1, ft::first_diff(data, expect.data() + at, n)) << "piece at " << at;
        }
        sum += n;
        ++pieces;
        return 0;
      });
  std::free(mem);
  const uint64_t want = off >= file_size ? 0 : std::min(len, file_size - off);
  EXPECT_EQ(r, static_cast<ssize_t>(want));
  EXPECT_EQ(sum, want);
  return pieces;
}

/// A seccomp filter on the calling thread (and threads it starts) under
/// which io_uring_setup fails with ENOSYS, as on a kernel without io_uring.
bool refuse_io_uring_on_this_thread() {
  sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

}  // namespace

// A range of many pieces, ending inside a piece at the file's end: every
// byte lands at its place in the memfd, and the count stops at the end.
// More pieces than the bounce buffer holds (10 MiB: 20 pieces, 8 slots).
TEST(FileBackend, ColdRangeOfManyPiecesIsCopiedWholeInOrder) {
  ft::TempDir dir;
  const uint64_t size = 9 * kMiB + 12 * kBasePageSize;
  const std::string path = dir.make_file("f", size);
  const bool ring = faultline::detail::thread_ring() != nullptr;
  const uint64_t pieces = faultline::detail::uring_pieces();
  read_cold_and_check(path, size, 0, 10 * kMiB, 0);
  // Through the ring where this kernel has io_uring (19 pieces).
  if (ring) {
    EXPECT_GE(faultline::detail::uring_pieces() - pieces, 19u);
  }
  // From inside the file, to a different offset in the memfd.
  read_cold_and_check(path, size, 3 * kMiB + 4 * kBasePageSize, 5 * kMiB, 64 * kBasePageSize);
  // Exactly to the end, and past it.
  read_cold_and_check(path, size, 5 * kMiB, size - 5 * kMiB, 5 * kMiB);
  read_cold_and_check(path, size, size, 2 * kMiB, 0);
}

// A file whose end falls on a piece boundary: the piece after it reads
// nothing, and nothing past the end is counted.
TEST(FileBackend, ColdRangeEndingOnAPieceBoundaryStopsThere) {
  ft::TempDir dir;
  const uint64_t size = 6 * kMiB;
  const std::string path = dir.make_file("f", size);
  read_cold_and_check(path, size, kMiB, 8 * kMiB, 0);
}

// A file whose end is not on a 4 KiB boundary: the last O_DIRECT read
// returns the bytes up to it, and the count stops there.
TEST(FileBackend, ColdRangeEndingInsideABlockStopsAtTheLastByte) {
  ft::TempDir dir;
  const uint64_t size = 5 * kMiB + 100;
  const std::string path = dir.make_file("f", size);
  read_cold_and_check(path, size, 0, 6 * kMiB, 0);
  read_cold_and_check(path, size, 4 * kMiB, 2 * kMiB, 0);
}

// Streaming aligned reads (a readahead window filled by UFFDIO_COPY): a cold
// range longer than one piece is handed over piece by piece, in order, from
// the backend's own buffer; one piece or less is handed over once.
TEST(FileBackend, ColdStreamingReadTellsEachPieceInOrder) {
  ft::TempDir dir;
  const uint64_t size = 6 * kMiB + 100;
  const std::string path = dir.make_file("f", size);
  const bool ring = faultline::detail::thread_ring() != nullptr;
  const size_t told = stream_cold_and_check(path, size, 0, 4 * kMiB);
  if (ring) {
    EXPECT_EQ(told, 8u) << "4 MiB in 512 KiB pieces";
  }
  EXPECT_EQ(stream_cold_and_check(path, size, kMiB, 256 * 1024), 1u);
  // Across the file's end (inside a block): stops at its last byte.
  stream_cold_and_check(path, size, 4 * kMiB, 4 * kMiB);
}

// The caller's error ends the read and is what it returns: at the first
// piece on every path; at the second with io_uring (pieces still in flight
// are reaped before the return).
TEST(FileBackend, StreamingReadStopsAtTheCallersError) {
  ft::TempDir dir;
  const uint64_t size = 4 * kMiB;
  const std::string path = dir.make_file("f", size);
  auto be = faultline::make_file_backend(path, false);
  void* mem = std::aligned_alloc(2 * kMiB, size);
  const std::span<std::byte> buf(static_cast<std::byte*>(mem), size);
  for (int fail_at : {1, 2}) {
    if (fail_at == 2 && !faultline::detail::thread_ring()) break;
    ft::drop_cache(path, size);
    int calls = 0;
    const ssize_t r = be->read_aligned_streaming(0, buf, [&](const std::byte*, size_t, size_t) {
      return ++calls == fail_at ? -ENOSPC : 0;
    });
    EXPECT_EQ(r, -ENOSPC) << fail_at;
    EXPECT_EQ(calls, fail_at);
  }
  std::free(mem);
}

// Without io_uring (the kernel refuses it) the same fills go through pread.
TEST(FileBackend, ColdRangeIsCopiedWholeWithoutIoUring) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the seccomp filter here is written for x86_64";
#endif
  ft::TempDir dir;
  const uint64_t size = 7 * kMiB + 20 * kBasePageSize;
  const std::string path = dir.make_file("f", size);
  bool refused = false;
  int err = 0;
  std::thread t([&] {
    refused = refuse_io_uring_on_this_thread();
    err = errno;
    if (!refused) return;
    EXPECT_EQ(nullptr, faultline::detail::thread_ring());
    const uint64_t pieces = faultline::detail::uring_pieces();
    read_cold_and_check(path, size, 0, 8 * kMiB, 0);
    read_cold_and_check(path, size, 2 * kMiB, 3 * kMiB, kMiB);
    // Streaming: told after each pread (one for the whole range here).
    EXPECT_GE(stream_cold_and_check(path, size, 0, 4 * kMiB), 1u);
    EXPECT_EQ(pieces, faultline::detail::uring_pieces());
  });
  t.join();
  if (!refused) GTEST_SKIP() << "seccomp filter refused: " << std::strerror(err);
}
