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

#include "faultline/mapping.hpp"
#include "faultline/stats.hpp"

namespace faultline {

namespace detail {
class FileImpl;
}
using detail::FileImpl;
struct FileCursor;

class File {
 public:
  File() = default;
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
  /// sync() and then the backend's own sync (durability).
  void fsync();

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
  File(std::shared_ptr<FileImpl> impl);
  FileImpl& impl() const;
  std::shared_ptr<FileImpl> impl_;
  std::unique_ptr<FileCursor> cursor_;
};

}  // namespace faultline
