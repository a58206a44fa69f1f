// faultline — the Backend interface (the kernel's address_space_operations plus
// the page_mkwrite hook). A Backend stores the bytes of one object; the engine
// caches them. All calls may come from several threads at once.
//
// Error convention: calls return a negative errno on failure (never throw), so
// the fault path can turn an error into SIGBUS for exactly the faulting access.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <sys/types.h>

namespace faultline {

class Backend {
 public:
  virtual ~Backend() = default;

  /// A key naming the backing object: Engine::open of two backends with the
  /// same identity gives two handles onto one File (one cache).
  virtual std::string identity() const = 0;

  /// Whether write() / truncate() / punch_hole() may be called. A writable
  /// Mapping of a read-only backend is refused with EROFS.
  virtual bool writable() const = 0;

  /// Current size in bytes, or a negative errno.
  virtual int64_t size() = 0;

  /// Reads up to buf.size() bytes at `off` (page aligned). Returns the bytes
  /// read (short only at the object's end; the engine zero-fills the rest) or a
  /// negative errno.
  virtual ssize_t read(uint64_t off, std::span<std::byte> buf) = 0;

  /// Optional fast fill: copy [off, off+len) of the object straight into the
  /// file descriptor `fd` at `fd_off` (the engine's memfd). Returns bytes copied
  /// (short only at the object's end), a negative errno, or -EOPNOTSUPP when the
  /// backend has no such path (the engine then uses read() and pwrite()).
  virtual ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) {
    (void)off; (void)len; (void)fd; (void)fd_off;
    return -95;  // EOPNOTSUPP
  }

  /// Optional aligned read: like read(), but `off`, buf.data() and
  /// buf.size() are multiples of the File's page size (2 MiB frames,
  /// FrameSize::k2M, or 4 KiB frames filled by UFFDIO_COPY from a
  /// bounce buffer), so the backend may read straight from the device
  /// (O_DIRECT) instead of through a cache of its own. The file backend
  /// copies what the kernel already caches and reads
  /// the rest with O_DIRECT (a cold file is not cached twice). Returns as
  /// read(), or -EOPNOTSUPP when the backend has no such path (the engine then
  /// calls read()).
  virtual ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) {
    (void)off; (void)buf;
    return -95;  // EOPNOTSUPP
  }

  /// Where read_aligned_streaming hands the data over: bytes [at, at+n) of
  /// the range are at `data` (in the caller's buffer, or the backend's own
  /// memory), readable during the call only. Returns 0 to go on, or a
  /// negative errno, which ends the read and is returned.
  using Arrival = std::function<int(const std::byte* data, size_t at, size_t n)>;

  /// Optional, for long aligned reads (a readahead window): reads
  /// [off, off+buf.size()) as read_aligned() does and hands the data over
  /// in order as it arrives, so the engine installs the first pages while
  /// the rest is still being read. `arrived` is called on the caller's
  /// thread, never after the return, with n > 0, `at` the sum of the n
  /// before, and every n but the last a multiple of 4 KiB (a piece cut short
  /// inside a page is the object's end; the engine fails a read that breaks
  /// this with EIO). Returns as read_aligned(): the bytes read (the sum of the n;
  /// short only at the object's end) or a negative errno. Only what was
  /// handed over has been read: the caller's buffer may not hold it (a
  /// backend may read into memory of its own), and the backend writes into
  /// it nothing after the return. The default: read_aligned() into buf,
  /// then one call. The file backend reads a long cold range in 512 KiB
  /// pieces through io_uring, several in flight. ForwardingBackend keeps
  /// the default, so a wrapper's read_aligned() sees every aligned read.
  virtual ssize_t read_aligned_streaming(uint64_t off, std::span<std::byte> buf,
                                         const Arrival& arrived) {
    const ssize_t k = read_aligned(off, buf);
    if (k <= 0) return k;
    if (const int e = arrived(buf.data(), 0, static_cast<size_t>(k))) return e;
    return k;
  }

  /// A hint that [off, off+len) will be read soon (the engine's read-around for
  /// non-sequential faults, like the kernel's mmap read-around): a backend may
  /// start fetching it in the background. Never required; never blocks long.
  virtual void will_need(uint64_t off, uint64_t len) { (void)off; (void)len; }

  /// The readahead window this backend wants at least (bytes), like a block
  /// device's read_ahead_kb: a remote store with many requests in flight
  /// needs a larger window than EngineConfig::readahead_max_pages. 0: no wish.
  virtual uint64_t readahead_bytes() const { return 0; }

  /// Writes all of buf at `off`. Returns 0 or a negative errno.
  virtual int write(uint64_t off, std::span<const std::byte> buf) = 0;

  /// Optional aligned write (the engine's write-back): like write(), but
  /// `off` and buf.data() are multiples of the File's page size (4 KiB or
  /// 2 MiB) and buf.size() is a multiple of 4 KiB except at the object's end,
  /// so the backend may write straight to the device (O_DIRECT) instead of
  /// copying into a cache of its own. The file backend does so for ranges the
  /// kernel does not cache (nothing cached twice, as read_aligned). Returns as
  /// write(), or -EOPNOTSUPP when the backend has no such path (the engine
  /// then calls write()).
  virtual int write_aligned(uint64_t off, std::span<const std::byte> buf) {
    (void)off; (void)buf;
    return -95;  // EOPNOTSUPP
  }

  /// Called with the page unlocked before a clean page in a shared writable
  /// Mapping becomes writable (DESIGN R5). May allocate space or refuse
  /// (negative errno: the storing thread gets SIGBUS; the page stays clean).
  virtual int page_mkwrite(uint64_t off, size_t len) { (void)off; (void)len; return 0; }

  /// The page a page_mkwrite call is about. A backend that needs the page
  /// stable while it works may take the page lock and return with it held
  /// (the kernel's VM_FAULT_LOCKED); the engine then does not lock it again
  /// and unlocks it itself after marking it dirty (R5, R6).
  class MkwritePage {
   public:
    virtual uint64_t offset() const = 0;
    virtual size_t size() const = 0;
    virtual void lock() = 0;
    virtual bool locked() const = 0;

   protected:
    ~MkwritePage() = default;
  };
  /// The engine calls this form; by default it forwards to the one above.
  virtual int page_mkwrite(MkwritePage& page) { return page_mkwrite(page.offset(), page.size()); }

  /// Called after a store made a page dirty, with no page lock held (the
  /// kernel's file_update_time after page_mkwrite, W5): update mtime etc.
  virtual void update_time() {}

  /// Sets the object's size (shrink or extend). 0 or a negative errno.
  virtual int truncate(uint64_t new_size) = 0;

  /// Deallocates [off, off+len): the range reads as zeros afterwards.
  virtual int punch_hole(uint64_t off, uint64_t len) = 0;
  /// Whether punch_hole() is supported; File::punch_hole refuses with
  /// EOPNOTSUPP, changing nothing, when it is not.
  virtual bool can_punch_hole() const { return true; }

  /// Makes written data durable. 0 or a negative errno.
  virtual int sync() = 0;

  /// A sink for changes made underneath the engine (another machine wrote the
  /// object): `changed(off, len)` drops the File's clean cached pages in the
  /// range (File::invalidate's locking, R4) and keeps its dirty ones, counting
  /// each as a conflict (Stats::invalidate_conflicts); a later sync writes
  /// them, so the last sync wins per page. `resized(size)` tells the File the
  /// object's size changed. The engine calls attach() once when it opens the
  /// File, and detach() before it closes it; backends that never change
  /// underneath ignore both.
  struct ChangeSink {
    std::function<void(uint64_t off, uint64_t len)> changed;
    std::function<void(uint64_t new_size)> resized;
  };
  virtual void attach(ChangeSink sink) { (void)sink; }
  virtual void detach() {}
};

/// A local file (pread/pwrite on a file descriptor). Opens `path` read-write
/// when `writable`, else read-only; `create` makes it if missing.
/// Throws std::system_error (with the errno and the path) when it cannot open.
std::shared_ptr<Backend> make_file_backend(const std::string& path, bool writable = true,
                                           bool create = false);

/// An object that lives in memory (for tests, caches of computed data, and as
/// the model for backend authors). `name` is its identity.
std::shared_ptr<Backend> make_memory_backend(std::string name, uint64_t initial_size = 0);

}  // namespace faultline
