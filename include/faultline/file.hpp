// faultline — File: a handle onto one cached backing object (the kernel's
// struct file onto an inode + address_space).
//
// Engine::open of the same backing object twice gives two handles onto one
// cache; each handle has its own write-back error cursor (DESIGN R8), so each
// handle's sync() reports a write-back failure exactly once.
//
// Errors: bad arguments and failures throw std::system_error carrying the
// errno (EINVAL for unaligned or empty ranges, EBADF for a closed handle,
// ESHUTDOWN for a closed Engine, EROFS for writes to a read-only backend, the
// backend's errno for its failures).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "faultline/mapping.hpp"
#include "faultline/stats.hpp"

namespace faultline {

namespace detail {
class FileImpl;
}
using detail::FileImpl;
struct FileCursor;
namespace testing {
struct FileAccess;
}

class File {
 public:
  File();  // a closed handle (out of line: FileCursor is incomplete here)
  ~File();
  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  /// Size in bytes (the engine's i_size).
  uint64_t size() const;
  /// Page (frame) size of this File's cache.
  std::size_t page_size() const;
  bool writable() const;
  bool is_open() const noexcept { return impl_ != nullptr; }

  /// Reads up to buf.size() bytes at `off`; returns the count (short at EOF,
  /// 0 at or past EOF). Coherent with every Mapping. `buf` may lie inside a
  /// faultline Mapping, even of this File (DESIGN R11).
  std::size_t read(uint64_t off, std::span<std::byte> buf);
  /// Writes all of buf at `off`, extending the file when it ends past EOF (like
  /// pwrite). The pages become dirty; sync() writes them to the backend.
  std::size_t write(uint64_t off, std::span<const std::byte> buf);

  /// Writes every dirty page back to the backend and waits; pages that were
  /// not stored to are not rewritten. Throws std::system_error with the errno
  /// of a write-back failure this handle has not yet seen (R8). Failed pages
  /// stay dirty and are retried by the next sync.
  void sync();
  /// sync() of the pages overlapping [off, off+len) only.
  void sync(uint64_t off, uint64_t len);
  /// sync() and then the backend's own sync (durability).
  void fsync();

  /// Sets the size, shrinking or extending, in the cache and the backend
  /// (DESIGN R3). Shrink: pages past the new EOF are dropped (dirty data there
  /// is discarded, as truncate does), private copies past EOF vanish, access
  /// past the page holding EOF gets SIGBUS in every view; the partial last page
  /// keeps its frame with the tail zeroed. Extend: the new range reads zeros in
  /// existing views without remapping.
  void truncate(uint64_t new_size);
  /// Deallocates [off, off+len) in the backend; the range reads as zeros in
  /// every shared view and through read() (R4). Whole pages are dropped, the
  /// partial pages at the ends are zeroed in place; private copies survive.
  /// Pages poisoned by an earlier I/O error in the range are cleared.
  void punch_hole(uint64_t off, uint64_t len);
  /// Drops the cached pages overlapping [off, off+len) so the next access reads
  /// the backend again (for backends whose data changed underneath). Dirty
  /// pages are laundered (written back) first; private copies survive;
  /// poisoned pages in the range are cleared. Returns the byte offsets of the
  /// pages that could not be laundered (write error): they stay cached and
  /// dirty, and the error is also recorded for sync() (R8).
  std::vector<uint64_t> invalidate(uint64_t off, uint64_t len);

  /// Maps [off, off+len) (off page aligned, len > 0, any length; the view may
  /// extend past EOF). ReadWrite needs a writable backend (else EROFS).
  Mapping map(uint64_t off, std::size_t len, Access access = Access::ReadWrite,
              Sharing sharing = Sharing::Shared);

  /// This File's statistics (shared by every handle onto it).
  Stats stats() const;

  /// Closes this handle (idempotent). The last handle and Mapping of a File
  /// write its dirty pages back before the cache is freed.
  void close();

 private:
  friend class Engine;
  friend struct testing::FileAccess;  // test support (src/testing/), not API
  File(std::shared_ptr<FileImpl> impl);
  FileImpl& impl() const;
  std::shared_ptr<FileImpl> impl_;
  std::shared_ptr<FileCursor> cursor_;  // shared with this handle's Mappings (msync, R8)
};

}  // namespace faultline
