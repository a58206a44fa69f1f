// faultline CLI — setting and measuring the kernel page cache state of a file
// (the bench's `cold` and `warm` states).
#pragma once
#include <cstdint>

namespace faultline::cli {

/// Fraction in [0, 1] of the file's pages resident in the kernel's page cache,
/// from mincore(2) on a temporary MAP_SHARED PROT_READ mmap (nothing touched).
double resident_fraction(int fd, uint64_t size);

struct CacheResult {
  double resident = 0;  ///< resident fraction after the operation
  int attempts = 0;     ///< drop attempts made
};

/// Residency at or below this counts as "dropped".
inline constexpr double kColdThreshold = 0.001;

/// cold: fsync + posix_fadvise(POSIX_FADV_DONTNEED), verified with mincore and
/// retried (a few times, with a short pause) while more than kColdThreshold
/// stays resident. The caller decides what to do if it never gets there.
CacheResult drop_from_page_cache(int fd, uint64_t size);

/// warm: the file read once, start to end, with read(2) into a large buffer.
/// It is dropped first (as cold), so every warm measurement starts from the
/// same state: the folios read(2) creates (on ext4 these are large folios),
/// not whatever an earlier method or the writer left behind.
CacheResult warm_page_cache(int fd, uint64_t size);

/// The buffer warm_page_cache reads with.
inline constexpr uint64_t kWarmReadBytes = uint64_t{16} << 20;

}  // namespace faultline::cli
