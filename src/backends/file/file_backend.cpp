// The local-file backend: pread/pwrite on a descriptor; fills the engine's
// memfd with splice (the fastest fill measured, see README "Fill paths").
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <sys/syscall.h>
#include <vector>

#include "faultline/backend.hpp"
#include "faultline/constants.hpp"
#include "os/io.hpp"
#include "os/sys_error.hpp"
#include "os/uring.hpp"

namespace faultline {

namespace {

constexpr int kPipeBytes = 1 << 20;
constexpr size_t kWillneedBytes = size_t{128} << 10;
// O_DIRECT fills of 4 KiB frames go through a per-thread buffer of this size,
// 2 MiB aligned and THP-backed where the kernel allows it (a 2 MiB huge page
// is one DMA segment: requests into 4 KiB pages are cut at ~1 MiB here).
constexpr size_t kDirectBufBytes = size_t{4} << 20;
constexpr size_t kDirectBufAlign = size_t{2} << 20;
// Fills longer than one piece are read in pieces of kPipeChunkBytes, up to
// kPipeDepth of them in flight, each copied as soon as it and those before
// it are in (PipelinedRead). Measured on the 1-thread 4 KiB scan (M6.14):
// all pieces in flight at once complete together (the device shares its
// bandwidth) and nothing overlaps; 2 in flight starve the device; 3-4
// overlap best (0.92-1.07 GiB/s against 0.82 for one pread per window).
constexpr size_t kPipeChunkBytes = size_t{512} << 10;
constexpr size_t kPipeDepth = 4;
static_assert(kDirectBufBytes % kPipeChunkBytes == 0);

/// The calling thread's O_DIRECT bounce buffer.
struct DirectBuffer {
  std::byte* p = nullptr;
  std::byte* get() {
    if (p) return p;
    void* q = std::aligned_alloc(kDirectBufAlign, kDirectBufBytes);
    if (!q) return nullptr;
    // A hint only: without THP the reads are merely cut in smaller requests.
    (void)::madvise(q, kDirectBufBytes, MADV_HUGEPAGE);
    return p = static_cast<std::byte*>(q);
  }
  ~DirectBuffer() { std::free(p); }
};
thread_local DirectBuffer t_direct_buf;

/// The calling thread's O_DIRECT bounce buffer (nullptr when it cannot be had).
std::byte* direct_buffer() { return t_direct_buf.get(); }

/// Gives the thread's bounce buffer up without freeing it: reads the kernel
/// may still complete into it (a failed io_uring) must not land in memory
/// reused for anything else. The next fill gets a new one. Never expected.
void retire_direct_buffer() { t_direct_buf.p = nullptr; }

/// A pipe per thread for splice(backing -> pipe -> memfd), which takes
/// explicit offsets on both files (sendfile would need the memfd's position).
struct ThreadPipe {
  int fds[2] = {-1, -1};
  int capacity = 0;
  ThreadPipe() { reset(); }
  ~ThreadPipe() { close_fds(); }
  void close_fds() {
    for (int& f : fds)
      if (f >= 0) ::close(f), f = -1;
  }
  void reset() {
    close_fds();
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    capacity = ::fcntl(fds[1], F_SETPIPE_SZ, kPipeBytes);
    if (capacity < 0) capacity = ::fcntl(fds[1], F_GETPIPE_SZ);
  }
  bool ok() const { return fds[0] >= 0 && capacity > 0; }
};

class FileBackend final : public Backend {
 public:
  FileBackend(const std::string& path, bool writable, bool create) : path_(path), writable_(writable) {
    // O_NONBLOCK for the open only: a FIFO with no writer would block it;
    // it is refused below (not a regular file), then the flag is cleared.
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK;
    if (create) flags |= O_CREAT;
    fd_ = ::open(path.c_str(), flags, 0644);
    if (fd_ < 0) detail::throw_errno("faultline: open " + path);
    struct stat st{};
    if (::fstat(fd_, &st) != 0) {
      const int e = errno;
      ::close(fd_);
      detail::throw_errno(e, "faultline: fstat " + path);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      detail::throw_errno(EINVAL, "faultline: not a regular file: " + path);
    }
    if (const int fl = ::fcntl(fd_, F_GETFL); fl < 0 || ::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK) != 0) {
      const int e = errno;
      ::close(fd_);
      detail::throw_errno(e, "faultline: fcntl " + path);
    }
    id_ = "file:" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  }
  ~FileBackend() override {
    if (dfd_.load() >= 0) ::close(dfd_.load());
    ::close(fd_);
  }

  std::string identity() const override { return id_; }
  bool writable() const override { return writable_; }

  int64_t size() override {
    struct stat st{};
    if (::fstat(fd_, &st) != 0) return -errno;
    return st.st_size;
  }

  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    return detail::pread_full(fd_, buf.data(), buf.size(), off);
  }

  ssize_t read_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) override {
    // A range the kernel does not cache whole is read with O_DIRECT and copied
    // into the engine's frames: the file is not cached twice (the memory
    // limit bounds frames plus the kernel's cache of the file, issue 16), and
    // it is the fastest cold fill measured here (DESIGN section 2). A range
    // the kernel caches whole is spliced out of its cache.
    if (!cached_whole(off, len)) {
      const ssize_t r = read_direct_into_fd(off, len, fd, fd_off);
      if (r != -EOPNOTSUPP) return r;
    }
    thread_local ThreadPipe pipe;
    if (!pipe.ok()) return -EOPNOTSUPP;
    // Submit the whole range to the device at once (the kernel splits it into
    // many requests in flight); the splice below then waits for the pages as
    // they arrive instead of reading them one readahead window at a time.
    if (len >= kWillneedBytes) ::posix_fadvise(fd_, static_cast<off_t>(off), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
    size_t done = 0;
    while (done < len) {
      loff_t in = static_cast<loff_t>(off + done);
      const size_t want = std::min<size_t>(len - done, static_cast<size_t>(pipe.capacity));
      const ssize_t k = ::splice(fd_, &in, pipe.fds[1], nullptr, want, SPLICE_F_MOVE);
      if (k < 0) {
        if (errno == EINTR) continue;
        const int e = errno;
        if (e == EINVAL && done == 0) return -EOPNOTSUPP;  // a file system without splice
        return -e;
      }
      if (k == 0) break;  // end of the object
      ssize_t moved = 0;
      while (moved < k) {
        loff_t out = static_cast<loff_t>(fd_off + done + static_cast<size_t>(moved));
        const ssize_t m = ::splice(pipe.fds[0], nullptr, fd, &out, static_cast<size_t>(k - moved),
                                   SPLICE_F_MOVE);
        if (m < 0) {
          if (errno == EINTR) continue;
          const int e = errno;
          pipe.reset();  // bytes left in the pipe must not leak into the next fill
          return -e;
        }
        moved += m;
      }
      done += static_cast<size_t>(k);
    }
    return static_cast<ssize_t>(done);
  }

  ssize_t read_aligned(uint64_t off, std::span<std::byte> buf) override {
    // A range the kernel caches whole is copied from its cache; anything else
    // is read with O_DIRECT (one copy in memory, and faster cold). Measured
    // per 2 MiB here: warm buffered pread ~780-990 us vs O_DIRECT ~1,440;
    // cold O_DIRECT ~1,300 (1.6 GB/s) vs buffered ~1,370-2,330. (preadv2
    // RWF_NOWAIT cannot probe the cache: on a miss it starts readahead.)
    return read_aligned_checked(off, buf, cached_whole(off, buf.size()));
  }
  /// read_aligned, the kernel's cache looked at already (`cached`: it holds
  /// the whole range).
  ssize_t read_aligned_checked(uint64_t off, std::span<std::byte> buf, bool cached) {
    const int dfd = direct_fd();
    if (dfd < 0 || cached) return read(off, buf);
    size_t done = 0;
    while (done < buf.size()) {
      const ssize_t r = ::pread(dfd, buf.data() + done, buf.size() - done,
                                static_cast<off_t>(off + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && done == 0) return read(off, buf);  // no O_DIRECT alignment here
        return -errno;
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
      if (done & (kBasePageSize - 1)) break;  // a short read ends at the object's end
    }
    return static_cast<ssize_t>(done);
  }

  ssize_t read_aligned_streaming(uint64_t off, std::span<std::byte> buf,
                                 const Arrival& arrived) override {
    // As read_aligned; a range longer than one piece read with O_DIRECT is
    // read in pieces (read_direct: io_uring, several in flight), each handed
    // over from the backend's own buffer as it arrives.
    const bool cached = cached_whole(off, buf.size());
    if (!cached && buf.size() > kPipeChunkBytes) {
      bool handed = false;  // then no starting over: an error is an error
      const ssize_t r = read_direct(off, buf.size(), [&](const std::byte* p, size_t at, size_t n) {
        handed = true;
        return arrived(p, at, n);
      });
      if (r != -EOPNOTSUPP) return r;
      if (handed) return -EIO;
    }
    const ssize_t k = read_aligned_checked(off, buf, cached);
    if (k <= 0) return k;
    if (const int e = arrived(buf.data(), 0, static_cast<size_t>(k))) return e;
    return k;
  }

  void will_need(uint64_t off, uint64_t len) override {
    // POSIX_FADV_WILLNEED would read the range into the kernel's page cache,
    // from where the engine copies it into frames: the file twice in memory,
    // outside the memory limit. Where O_DIRECT works the engine's fills read
    // the device directly, so the hint does nothing (the engine's read-around
    // fills frames instead); only a file system without O_DIRECT gets it.
    if (direct_fd() >= 0) return;
    ::posix_fadvise(fd_, static_cast<off_t>(off), static_cast<off_t>(len), POSIX_FADV_WILLNEED);
  }

  int write(uint64_t off, std::span<const std::byte> buf) override {
    if (!writable_) return -EROFS;
    return detail::pwrite_full(fd_, buf.data(), buf.size(), off);
  }

  int write_aligned(uint64_t off, std::span<const std::byte> buf) override {
    // Written with O_DIRECT straight from the engine's buffer (2 MiB frames:
    // the frame itself) when the kernel caches none of the range (then nothing is cached twice,
    // and no page cache is allocated and copied into: on this machine that
    // copy alone cost 0.13-2 s per GiB, docs/MEASUREMENTS.md M3.5). A range the kernel
    // caches (someone reads the file through it) goes through it, so it stays
    // coherent. The tail past the last whole 4 KiB block (the object's end)
    // is written buffered.
    if (!writable_) return -EROFS;
    const size_t whole = buf.size() & ~size_t{kBasePageSize - 1};
    const int dfd = whole ? direct_fd() : -1;
    if (dfd < 0 || cached_any(off, whole)) return write(off, buf);
    size_t done = 0;
    while (done < whole) {
      const ssize_t r = ::pwrite(dfd, buf.data() + done, whole - done, static_cast<off_t>(off + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && done == 0) return write(off, buf);  // no O_DIRECT alignment here
        return -errno;
      }
      done += static_cast<size_t>(r);
      if (done & (kBasePageSize - 1)) break;  // a torn direct write: finish buffered
    }
    return done < buf.size() ? write(off + done, buf.subspan(done)) : 0;
  }

  int truncate(uint64_t new_size) override {
    if (!writable_) return -EROFS;
    return ::ftruncate(fd_, static_cast<off_t>(new_size)) == 0 ? 0 : -errno;
  }

  int punch_hole(uint64_t off, uint64_t len) override {
    if (!writable_) return -EROFS;
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                    static_cast<off_t>(len)) == 0)
      return 0;
    if (errno != EOPNOTSUPP) return -errno;
    // No hole punching here: write zeros (inside the current size only).
    const int64_t sz = size();
    if (sz < 0) return static_cast<int>(sz);
    const uint64_t end = std::min<uint64_t>(off + len, static_cast<uint64_t>(sz));
    std::vector<std::byte> zeros(std::min<uint64_t>(end > off ? end - off : 0, 1 << 20));
    for (uint64_t p = off; p < end; p += zeros.size()) {
      const auto n = std::min<uint64_t>(zeros.size(), end - p);
      if (int e = write(p, std::span<const std::byte>(zeros.data(), n))) return e;
    }
    return 0;
  }

  int sync() override { return ::fsync(fd_) == 0 ? 0 : -errno; }

 private:
  /// A second descriptor onto the same file with O_DIRECT (opened on first
  /// use through /proc/self/fd, so a rename does not matter); -1 when the
  /// file system refuses O_DIRECT.
  int direct_fd() {
    int d = dfd_.load(std::memory_order_acquire);
    if (d != -2) return d;
    std::lock_guard g(dfd_mu_);
    d = dfd_.load();
    if (d != -2) return d;
    const std::string p = "/proc/self/fd/" + std::to_string(fd_);
    d = ::open(p.c_str(), (writable_ ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);
    dfd_.store(d < 0 ? -1 : d, std::memory_order_release);
    return d < 0 ? -1 : d;
  }
  /// Where the bytes of a direct read go, in order: [at, at+n) of the range
  /// is at p (the thread's direct buffer, valid during the call). 0 or -errno.
  using Sink = std::function<int(const std::byte* p, size_t at, size_t n)>;

  /// O_DIRECT reads of [off, off+len) through the thread's aligned buffer,
  /// written into `fd` at fd_off. Bytes copied (short only at the object's
  /// end), a negative errno, or -EOPNOTSUPP when O_DIRECT cannot serve it
  /// (no O_DIRECT, no buffer, alignment refused) and nothing was copied.
  ssize_t read_direct_into_fd(uint64_t off, size_t len, int fd, uint64_t fd_off) {
    return read_direct(off, len, [&](const std::byte* p, size_t at, size_t n) {
      return detail::pwrite_full(fd, p, n, fd_off + at);
    });
  }
  /// O_DIRECT reads of [off, off+len) through the thread's aligned buffer,
  /// each handed to `sink` in order: in pieces through io_uring where the
  /// range is longer than one (PipelinedRead), else (and for what the ring
  /// left) by pread. Returns as read_direct_into_fd. The buffer is the
  /// backend's own: on the one path where the kernel may still write into it
  /// it is given up (PipelinedRead::run), never a caller's memory.
  ssize_t read_direct(uint64_t off, size_t len, const Sink& sink) {
    const int dfd = direct_fd();
    std::byte* buf = dfd >= 0 ? direct_buffer() : nullptr;
    if (!buf || (off & (kBasePageSize - 1)) || (len & (kBasePageSize - 1))) return -EOPNOTSUPP;
    size_t done = 0;
    if (len > kPipeChunkBytes) {
      PipelinedRead rd(dfd, buf, off, len, sink);
      const ssize_t r = rd.run();
      if (r < 0 || !rd.fall_back) return r;
      done = static_cast<size_t>(r);  // the ring failed part-way: pread the rest
    }
    while (done < len) {
      const size_t want = std::min(len - done, kDirectBufBytes);
      const ssize_t r = ::pread(dfd, buf, want, static_cast<off_t>(off + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EINVAL && done == 0) return -EOPNOTSUPP;  // no O_DIRECT alignment here
        return -errno;
      }
      if (r == 0) break;  // the object's end
      if (int e = sink(buf, done, static_cast<size_t>(r))) return e;
      done += static_cast<size_t>(r);
      if (static_cast<size_t>(r) < want) break;  // short: the object ends here
    }
    return static_cast<ssize_t>(done);
  }
  /// A window read in kPipeChunkBytes pieces through the thread's io_uring,
  /// kPipeDepth of them in flight, each handed to the sink (copied into the
  /// memfd, or by UFFDIO_COPY into a view) as soon as it and those before it
  /// are in: the copies overlap the device's reads, where one pread of the
  /// window left the device idle during the whole copy (a 4 MiB stream
  /// window: ~2.2 ms read, then ~1.8 ms of copying into the memfd, most of it
  /// allocating its pages; M6.14).
  struct PipelinedRead {
    PipelinedRead(int d, std::byte* b, uint64_t o, size_t l, const Sink& s)
        : dfd(d), buf(b), off(o), len(l), sink(s) {}
    int dfd;
    std::byte* buf;
    uint64_t off;
    size_t len;
    const Sink& sink;
    bool fall_back = false;  // no ring, or it failed: the caller preads from the result on
    static constexpr size_t kSlots = kDirectBufBytes / kPipeChunkBytes;
    struct Slot {
      size_t at = 0;        // offset in the window of the piece it reads
      ssize_t res = 0;      // the completion's result
      bool busy = false;    // submitted, not reaped
      bool arrived = false; // reaped, not copied
    };
    Slot slots[kSlots];
    io_uring* ring = nullptr;
    size_t next = 0;      // window offset of the next piece to submit
    size_t done = 0;      // bytes copied into the memfd (in order)
    size_t in_flight = 0;
    bool stop = false;    // an error or the object's end: submit nothing more
    bool ring_spoilt = false;  // SQEs the kernel did not take are left in it

    ssize_t run() {
      ring = detail::thread_ring();
      if (!ring) return fall_back = true, 0;
      int err = 0;
      for (;;) {
        if (!stop) submit_free();
        // The pieces that are in, in order (one past a gap waits for it).
        while (err == 0) {
          Slot* s = slot_at(done);
          if (!s || !s->arrived) break;
          s->arrived = false;
          err = copy(*s);
        }
        if (in_flight == 0) {
          // The copies may have freed the slots the next pieces need (every
          // slot held a piece that arrived before the one at `done`).
          if (!stop && err == 0 && next < len) continue;
          break;  // all read, the end, an error, or pread takes over
        }
        if (const int e = reap_one()) {
          // Not expected of a valid ring. Reads still in flight may yet write
          // into the buffer: it is given up (leaked) and the fill fails.
          detail::drop_thread_ring();
          retire_direct_buffer();
          return e;
        }
      }
      if (ring_spoilt) detail::drop_thread_ring();  // nothing in flight: nothing can land
      return err ? err : static_cast<ssize_t>(done);
    }
    Slot* slot_at(size_t at) {
      for (Slot& s : slots)
        if ((s.busy || s.arrived) && s.at == at) return &s;
      return nullptr;
    }
    void submit_free() {
      size_t batch[kSlots];
      unsigned queued = 0;
      for (size_t k = 0; k < kSlots && next < len && in_flight + queued < kPipeDepth; ++k) {
        Slot& s = slots[k];
        if (s.busy || s.arrived) continue;
        io_uring_sqe* sqe = ::io_uring_get_sqe(ring);
        if (!sqe) break;
        const size_t want = std::min(len - next, kPipeChunkBytes);
        ::io_uring_prep_read(sqe, dfd, buf + k * kPipeChunkBytes, static_cast<unsigned>(want),
                             off + next);
        ::io_uring_sqe_set_data64(sqe, k);
        s = Slot{.at = next, .res = 0, .busy = true, .arrived = false};
        next += want;
        batch[queued++] = k;
      }
      if (queued == 0) return;
      int r;
      do r = ::io_uring_submit(ring);
      while (r == -EINTR);
      const unsigned took = r > 0 ? std::min(static_cast<unsigned>(r), queued) : 0;
      in_flight += took;
      if (took == queued) return;
      // Not all taken (EAGAIN/EBUSY: kernel resources, or an error). What the
      // kernel took is reaped and copied as usual; the caller preads the rest
      // from the first byte not copied. The SQEs it did not take stay in the
      // ring, which is therefore given up once nothing is in flight.
      for (unsigned i = took; i < queued; ++i) slots[batch[i]].busy = false;
      stop = true;
      fall_back = true;
      ring_spoilt = true;
    }
    /// Waits for one completion: 0, or the ring's -errno.
    int reap_one() {
      io_uring_cqe* cqe = nullptr;
      int r;
      do r = ::io_uring_wait_cqe(ring, &cqe);
      while (r == -EINTR || r == -EAGAIN);
      if (r < 0) return r;
      Slot& s = slots[::io_uring_cqe_get_data64(cqe)];
      s.res = cqe->res;
      s.busy = false;
      s.arrived = true;
      --in_flight;
      ::io_uring_cqe_seen(ring, cqe);
      return 0;
    }
    /// Hands one arrived piece to the sink: 0, or -errno.
    int copy(const Slot& s) {
      const size_t want = std::min(len - s.at, kPipeChunkBytes);
      if (s.res < 0) {
        // Whatever the ring's error (EINVAL: no O_DIRECT alignment here, or no
        // IORING_OP_READ on a kernel before 5.6; EAGAIN; EIO), the caller's
        // pread loop reads again from here and decides.
        stop = true;
        fall_back = true;
        return 0;
      }
      const auto got = static_cast<size_t>(s.res);
      const size_t slot = static_cast<size_t>(&s - slots);
      if (int e = got ? sink(buf + slot * kPipeChunkBytes, s.at, got) : 0) {
        stop = true;
        return e;
      }
      done += got;
      detail::count_uring_piece();
      if (got < want) {
        stop = true;  // short: the object ends here
        fall_back = false;  // nothing left for pread (whatever a partial submit said)
      }
      return 0;
    }
  };
  /// cachestat(2) (Linux 6.5; no I/O): how many pages of [off, off+len) the
  /// kernel caches. False when the call is not there.
  bool cachestat(uint64_t off, size_t len, uint64_t* nr_cache) const {
    struct {
      uint64_t off, len;
    } range{off, len};
    struct {
      uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
    } cs{};
    constexpr long kSysCachestat = 451;
    if (::syscall(kSysCachestat, fd_, &range, &cs, 0) != 0) return false;
    *nr_cache = cs.nr_cache;
    return true;
  }
  /// Whether the kernel caches every page of [off, off+len). Without
  /// cachestat: false (O_DIRECT).
  bool cached_whole(uint64_t off, size_t len) const {
    uint64_t nr_cache = 0;
    if (!cachestat(off, len, &nr_cache)) return false;
    // Nothing cached (a cold miss) or all of it: no need for the size (an
    // fstat per fill). A range at or past the end reads short either way.
    if (nr_cache == 0) return false;
    if (nr_cache >= (len + kBasePageSize - 1) / kBasePageSize) return true;
    const int64_t sz = const_cast<FileBackend*>(this)->size();
    const uint64_t end = std::min<uint64_t>(off + len, sz < 0 ? 0 : static_cast<uint64_t>(sz));
    const uint64_t pages = end > off ? (end - off + kBasePageSize - 1) / kBasePageSize : 0;
    return nr_cache >= pages;
  }
  /// Whether the kernel caches any page of [off, off+len). Without
  /// cachestat: true (buffered writes, always coherent).
  bool cached_any(uint64_t off, size_t len) const {
    uint64_t nr_cache = 0;
    return !cachestat(off, len, &nr_cache) || nr_cache > 0;
  }
  std::mutex dfd_mu_;
  std::atomic<int> dfd_{-2};  // -2: not opened yet

  std::string path_;
  std::string id_;
  bool writable_;
  int fd_ = -1;
};

}  // namespace

std::shared_ptr<Backend> make_file_backend(const std::string& path, bool writable, bool create) {
  return std::make_shared<FileBackend>(path, writable, create);
}

}  // namespace faultline
