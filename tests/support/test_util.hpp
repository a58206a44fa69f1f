// Shared helpers for the faultline test suite: temp files, data patterns,
// test-local Backend wrappers (counting, fault injecting), timeouts and
// errno checks.
#pragma once
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "faultline/faultline.hpp"
#include "faultline/forwarding_backend.hpp"

namespace ft {

inline constexpr std::size_t kPage = faultline::kBasePageSize;

/// The byte at file offset `off` of a "pattern" file (seeded, so two files
/// with different seeds differ everywhere).
inline std::byte pat(uint64_t off, uint32_t seed = 1) {
  uint64_t x = off * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return static_cast<std::byte>(x & 0xff);
}
std::vector<std::byte> pattern(uint64_t off, std::size_t len, uint32_t seed = 1);
/// Index of the first byte where a and b differ, or -1.
int64_t first_diff(const std::byte* a, const std::byte* b, std::size_t len);
/// Whether [p, p+len) is all zero.
bool all_zero(const std::byte* p, std::size_t len);

/// A directory under /var/tmp (a real disk file system, not tmpfs), removed
/// with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  /// Creates `name` with `size` bytes of pattern(seed) and returns its path.
  std::string make_file(const std::string& name, uint64_t size, uint32_t seed = 1) const;

 private:
  std::string path_;
};

/// Drops [from, size) of the file from the kernel's page cache (written back
/// first): a cold file, for the file backend's O_DIRECT paths.
void drop_cache(const std::string& path, uint64_t size, uint64_t from = 0);
/// Pages of [off, off+len) of the file in the kernel's page cache (mincore).
uint64_t kernel_cached_pages(const std::string& path, uint64_t off, uint64_t len);

/// Plain POSIX access to a file (never through faultline).
std::vector<std::byte> pread_file(const std::string& path, uint64_t off, std::size_t len);
void pwrite_file(const std::string& path, uint64_t off, std::span<const std::byte> data);
uint64_t file_size(const std::string& path);

/// A Backend wrapper: forwards every call to `inner` (ForwardingBackend: the
/// optional paths too, so the engine takes the inner backend's fill and
/// write-back paths), counts the calls, records the ranges written, and fails
/// the reads (read, read_into_fd, read_aligned) with -EIO when the range
/// touches a page in `bad_read_pages`, the writes (write, write_aligned) when
/// it touches one in `bad_write_pages`, page_mkwrite (both forms) for pages in
/// `bad_mkwrite_pages`.
class WrapBackend : public faultline::ForwardingBackend {
 public:
  explicit WrapBackend(std::shared_ptr<faultline::Backend> inner, std::string id_suffix = ":wrap");

  std::string identity() const override;
  ssize_t read(uint64_t off, std::span<std::byte> buf) override;
  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override;
  ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) override;
  int write(uint64_t off, std::span<const std::byte> buf) override;
  int write_aligned(uint64_t off, std::span<const std::byte> buf) override;
  int page_mkwrite(uint64_t off, size_t len) override;
  int page_mkwrite(MkwritePage& page) override;

  void fail_reads(std::set<uint64_t> pages);
  void fail_writes(std::set<uint64_t> pages);
  void fail_mkwrite(std::set<uint64_t> pages);

  struct Range { uint64_t off, len; };
  /// Ranges passed to write() that succeeded, in order.
  std::vector<Range> writes() const;
  /// Pages covered by the successful writes (a page counted once per write).
  std::vector<uint64_t> written_pages() const;
  void reset_counts();

  std::atomic<uint64_t> read_calls{0};    ///< read() + read_into_fd()
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> write_calls{0};   ///< successful write()
  std::atomic<uint64_t> write_bytes{0};
  std::atomic<uint64_t> failed_reads{0};
  std::atomic<uint64_t> failed_writes{0};
  std::atomic<uint64_t> mkwrite_calls{0};

 private:
  bool hits(const std::set<uint64_t>& pages, uint64_t off, uint64_t len) const;
  /// A read of [off, off+len) by `read_fn` (one of inner's read paths):
  /// failed when it hits a bad page, counted unless inner lacks the path.
  ssize_t counted_read(uint64_t off, uint64_t len, const std::function<ssize_t()>& read_fn);
  /// The same for a write of [off, off+len) (recorded in writes()).
  int counted_write(uint64_t off, uint64_t len, const std::function<int()>& write_fn);
  /// -ENOSPC for a page in bad_mkwrite_pages (counting every call), else 0.
  int mkwrite_check(uint64_t off, uint64_t len);
  std::string id_;
  mutable std::mutex mu_;
  std::set<uint64_t> bad_read_, bad_write_, bad_mkwrite_;
  std::vector<Range> writes_;
};

/// Runs fn on another thread; fails the test (and ends the process, since a
/// deadlocked engine could not be torn down) when it takes longer than
/// `limit`. Exceptions thrown by fn are rethrown here.
void run_with_timeout(const std::function<void()>& fn,
                      std::chrono::seconds limit = std::chrono::seconds(20),
                      const char* what = "operation");

/// Calls fn and checks that it throws std::system_error with errno `err`.
#define EXPECT_ERRNO(err, stmt)                                                         \
  do {                                                                                  \
    int ft_got_ = -1;                                                                   \
    std::string ft_what_;                                                               \
    try {                                                                               \
      stmt;                                                                             \
      ft_got_ = 0;                                                                      \
    } catch (const std::system_error& ft_e_) {                                          \
      ft_got_ = ft_e_.code().value();                                                   \
      ft_what_ = ft_e_.what();                                                          \
    } catch (const std::exception& ft_e_) {                                             \
      ft_got_ = -2;                                                                     \
      ft_what_ = ft_e_.what();                                                          \
    }                                                                                   \
    EXPECT_EQ(ft_got_, (err)) << #stmt << " -> " << (ft_got_ == 0 ? "no exception"      \
                                                     : ft_got_ == -2 ? "non-system_error" \
                                                                     : "")              \
                              << ft_what_;                                              \
  } while (0)

/// Sum of a byte range read through volatile loads (touches every page).
uint64_t touch_read(const std::byte* p, std::size_t len);

/// The si_code the kernel gives an access to a UFFDIO_POISONed page (the
/// engine's answer to a backend I/O error): BUS_MCEERR_AR when the kernel is
/// built with CONFIG_MEMORY_FAILURE, else BUS_ADRERR (arch/x86/mm/fault.c
/// do_sigbus); -1 when the kernel config cannot be read (either is accepted).
int io_error_sigbus_code();
bool io_error_code_ok(int code);

/// Polls pred (every millisecond) until it holds or `limit` passes. For
/// statistics a handler thread updates just after it woke the faulting thread.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = std::chrono::milliseconds(5000));

/// Whether this is a sanitizer build (death-test predicates differ: ASan
/// reports a fatal SIGBUS itself instead of dying by the signal).
bool sanitizer_build();

}  // namespace ft
