// File (inode + address_space): construction, the read/write API, write-back.
// The fault path is in fault.cpp.
#include "mm/file_impl.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <fcntl.h>
#include <fstream>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>

#include "faultline/constants.hpp"
#include "faultline/hugepages.hpp"

#include "mm/engine_core.hpp"
#include "mm/mapping_impl.hpp"
#include "mm/runs.hpp"
#include "testing/sched.hpp"
#include "os/aligned_buffer.hpp"
#include "os/io.hpp"
#include "os/sys_error.hpp"

namespace faultline::detail {

namespace {
constexpr uint64_t kIoBatchBytes = uint64_t{256} << kBasePageShift;  // per read/write batch
// Address space the alias view of a 2 MiB-frame File reserves (no memory: a
// MAP_NORESERVE view); the largest size such a File can grow to.
constexpr size_t kAliasReserveBytes = size_t{1} << 40;
// Readahead of 2 MiB frames grows to at least this many frames.
constexpr uint64_t kHugeReadaheadPages = 4;
// A 2 MiB fill that finds the pool empty under a memory limit reclaims or
// waits this long per round, at most kPoolRetries rounds (alloc_frames).
constexpr int kPoolRetries = 100;
constexpr auto kPoolRetryWait = std::chrono::milliseconds(1);

/// Fails with ENOMEM, naming the fix, when the 2 MiB pool cannot give
/// `need` more pages: its free unreserved pages plus the overcommit headroom
/// (vm.nr_overcommit_hugepages - surplus pages: allocated on demand), read in
/// one place (faultline/hugepages.hpp). Never changes any system setting.
void check_hugepage_pool(uint64_t need, const std::string& what) {
  const HugePagePool pool = hugepage_pool();
  if (pool.available() >= static_cast<int64_t>(need)) return;
  // The standing pool that would do: the one there now plus the shortfall.
  const int64_t want = pool.nr + static_cast<int64_t>(need) - pool.available();
  throw_errno(ENOMEM, "faultline: " + what + " needs " + std::to_string(need) +
                          " free 2 MiB huge pages, but the pool can give " +
                          std::to_string(pool.available()) + " (" + std::to_string(pool.free) +
                          " free, " + std::to_string(pool.reserved) + " reserved, overcommit " +
                          std::to_string(pool.overcommit) + " with " + std::to_string(pool.surplus) +
                          " surplus in use). Fix, as root: scripts/setup.sh --hugepages " +
                          std::to_string(want) + " (sets the sysctl vm.nr_hugepages), or allow "
                          "more on demand with vm.nr_overcommit_hugepages (scripts/demo.sh sets "
                          "it); faultline never changes either itself");
}

std::vector<std::byte>& bounce(size_t n) {
  thread_local std::vector<std::byte> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

/// The thread's bounce buffer for UFFDIO_COPY fills (AlignedBuffer: for
/// O_DIRECT, read_aligned). Null: no memory.
std::byte* aligned_bounce(size_t n) {
  thread_local AlignedBuffer buf;
  return buf.get(n);
}

/// Zeroes [off, off+len) of the memfd with pwrite: 0 or -errno.
int pwrite_zeros(int fd, uint64_t len, uint64_t off) {
  auto& z = bounce(len);
  std::memset(z.data(), 0, len);
  return pwrite_full(fd, z.data(), len, off);
}

/// The object sizes a File can hold: the backend's size is known, fits the
/// page index, and the frame size is one we have.
void check_object_size(const std::string& key, int64_t sz, unsigned page_shift) {
  if (sz < 0) throw_errno(static_cast<int>(-sz), "faultline: backend size of " + key);
  // The page index holds kMaxPages pages: a larger object's pages past it
  // would alias lower slots (a read past 256 TiB would show other data).
  if (!fits_index(static_cast<uint64_t>(sz), page_shift))
    throw_errno(EFBIG, "faultline: " + key + " is " + std::to_string(sz) +
                           " bytes, more than the largest file size (" +
                           std::to_string(PageIndex::kMaxPages << page_shift) + " bytes)");
  if (page_shift != kHugePageShift && page_shift != kBasePageShift)
    throw_errno(EINVAL, "faultline: unsupported frame size for " + key);
}

/// A 2 MiB-frame File of `sz` bytes (`frames` bytes of frames): fits the alias
/// view, and the huge page pool can give what it needs (issue 16 item 5).
void check_huge_frames(const std::string& key, int64_t sz, uint64_t frames, uint64_t limit,
                       HugeFramesInUse others) {
  if (frames > kAliasReserveBytes)
    throw_errno(EFBIG, "faultline: " + key + " is too large for 2 MiB frames");
  // The memory limit bounds the engine's 2 MiB frames (charge() counts 512
  // 4 KiB pages per frame; reclaim punches frames back into the pool), so the
  // pool must hold min(this File and the engine's other 2 MiB Files, the
  // limit), less the frames those already hold.
  const uint64_t mine = std::max<uint64_t>(1, frames >> kHugePageShift);
  const uint64_t per = uint64_t{1} << (kHugePageShift - kBasePageShift);
  if (limit && limit < per)
    throw_errno(EINVAL, "faultline: " + key + ": EngineConfig::memory_limit_pages (" +
                            std::to_string(limit) + " 4 KiB pages) is smaller than one 2 MiB "
                            "frame (" + std::to_string(per) + "): a 2 MiB-frame File needs a "
                            "limit of at least one frame");
  uint64_t need = others.frames + mine;
  if (limit) need = std::min(need, limit / per);
  need = need > others.held ? need - others.held : 0;
  check_hugepage_pool(need, "a 2 MiB-frame File of " + std::to_string(sz) + " bytes (" + key +
                                (limit ? ", memory limit " + std::to_string(limit / per) +
                                             " frames" : std::string()) +
                                (others.frames ? ", the engine's other 2 MiB Files " +
                                                     std::to_string(others.frames) + " frames, " +
                                                     std::to_string(others.held) + " held"
                                               : std::string()) +
                                ")");
}

/// The memfd that holds a File's frames, `frames` bytes long (hugetlbfs for
/// 2 MiB frames). Throws.
int create_frames_memfd(const std::string& key, bool huge, uint64_t frames) {
  const std::string name = "faultline:" + key.substr(0, 200);
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
  if (fd < 0) throw_errno(huge ? "faultline: memfd_create(MFD_HUGETLB | MFD_HUGE_2MB)"
                               : "faultline: memfd_create");
  if (::ftruncate(fd, static_cast<off_t>(frames)) != 0) {
    const int e = errno;
    ::close(fd);
    throw_errno(e, "faultline: ftruncate(memfd)");
  }
  return fd;
}

/// The alias view of a hugetlb memfd (DESIGN section 2), kAliasReserveBytes
/// long: fills and partial-frame zeroing go through it. Throws (the memfd is
/// the caller's to close).
std::byte* map_alias_view(int memfd) {
  // PROT_NONE first: a writable mmap of a hugetlbfs file extends its size to
  // the mapping's end.
  void* a = ::mmap(nullptr, kAliasReserveBytes, PROT_NONE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
  if (a == MAP_FAILED || ::mprotect(a, kAliasReserveBytes, PROT_READ | PROT_WRITE) != 0) {
    const int e = errno;
    if (a != MAP_FAILED) ::munmap(a, kAliasReserveBytes);  // undoing our own mmap: cannot fail
    throw_errno(e, "faultline: alias view of the hugetlb memfd");
  }
  // Best effort: a failure only leaves the view inherited by a fork()ed child
  // (address space, no memory: MAP_SHARED); nothing in the engine relies on it.
  (void)::madvise(a, kAliasReserveBytes, MADV_DONTFORK);
  return static_cast<std::byte*>(a);
}
}  // namespace

FileImpl::FileImpl(std::shared_ptr<EngineCore> c, std::shared_ptr<Backend> b, std::string k,
                   unsigned page_shift, HugeFramesInUse others)
    : key(std::move(k)), core(std::move(c)), page_shift_(page_shift) {
  const int64_t sz = b->size();
  check_object_size(key, sz, page_shift_);
  const bool huge = page_shift_ == kHugePageShift;
  const uint64_t frames = (static_cast<uint64_t>(sz) + page_size() - 1) & ~(page_size() - 1);
  if (huge) check_huge_frames(key, sz, frames, core->cfg.memory_limit_pages, others);
  memfd_ = create_frames_memfd(key, huge, frames);
  if (huge) {
    try {
      alias_ = map_alias_view(memfd_);
    } catch (...) {
      ::close(memfd_);
      throw;
    }
    alias_len_ = kAliasReserveBytes;
  }
  // 4 KiB frames are filled by UFFDIO_COPY where a fault maps them anyway
  // (FaultWindow::copy_fill); every uffd of the engine offers it or none.
  copy_fills_ = !huge && core->uffd.can_copy();
  i_size_.store(static_cast<uint64_t>(sz));
  backend_.store(b.get());
  backends_.push_back(std::move(b));
}

FileImpl::~FileImpl() {
  // The last handle and view are gone: write back what is dirty, and the
  // size (issue 14 defect 11: an extend whose tail page was punched reached
  // the backend only through sync).
  if (int e = writeback_all()) {
    core->log("faultline: write-back of " + key + " at close failed: " + std::strerror(-e) + " (" +
              std::to_string(nr_dirty()) + " dirty pages lost)");
  }
  // Pages still dirty (their write-back failed) leave the engine's count with
  // the File: they must not hold the dirty limit forever.
  core->nr_dirty.fetch_sub(nr_dirty() << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  core->nr_cached.fetch_sub(nr_cached() << (page_shift_ - kBasePageShift), std::memory_order_relaxed);
  for (auto& b : backends_) b->detach();
  if (alias_) ::munmap(alias_, alias_len_);
  if (memfd_ >= 0) ::close(memfd_);
  core->forget_file(key, this);
}

void FileImpl::upgrade_backend(std::shared_ptr<Backend> b) {
  MutexLock g(backend_mu_);
  if (backend().writable() || !b->writable()) return;
  backend_.store(b.get(), std::memory_order_release);
  backends_.push_back(std::move(b));
}

void FileImpl::count(Counter c, uint64_t n) {
  (stats.*c).fetch_add(n, std::memory_order_relaxed);
  (core->stats.*c).fetch_add(n, std::memory_order_relaxed);
}

void FileImpl::add_mapping(MappingImpl* m) {
  MutexLock g(rmap_mu_);
  rmap_.push_back(m);
}

void FileImpl::remove_mapping(MappingImpl* m) {
  MutexLock g(rmap_mu_);
  rmap_.erase(std::remove(rmap_.begin(), rmap_.end(), m), rmap_.end());
}

void FileImpl::unmap_view(MappingImpl* m, const std::function<void()>& unmap) {
  if (!FL_RULE(15)) {  // breaker: munmap first, leave the reverse map afterwards
    unmap();
    FL_POINT("mapping.after_munmap");
    remove_mapping(m);
    return;
  }
  // R15: munmap and leave the reverse map in one step. A walk that holds the
  // rmap lock sees the view still mapped or not at all; munmap (mmap_lock)
  // nests inside the rmap lock, as the walks' madvise / ioctls do.
  MutexLock g(rmap_mu_);
  unmap();
  FL_POINT("mapping.after_munmap");
  rmap_.erase(std::remove(rmap_.begin(), rmap_.end(), m), rmap_.end());
}

uint64_t FileImpl::fault_around_pages() const {
  uint64_t b = static_cast<uint64_t>(core->cfg.fault_around_pages) << kBasePageShift;
  // 2 MiB frames read the read-around window into frames themselves (one
  // large O_DIRECT read: several requests in flight, nothing cached twice),
  // where 4 KiB Files only hint it to the backend (Backend::will_need would
  // fill the kernel's cache, a second copy). Measured on a cold 1 GiB random
  // touch: 1 frame per fault + WILLNEED 1.1 GB/s with the file twice in
  // memory; 2 frames (4 MiB) 3.6 GB/s, 4 frames 4.1 GB/s, file once.
  if (huge())
    b = std::max<uint64_t>(b, static_cast<uint64_t>(core->cfg.read_around_pages) << kBasePageShift);
  return std::max<uint64_t>(1, b >> page_shift_);
}

uint64_t FileImpl::readahead_max_pages() const {
  const uint64_t b = std::max<uint64_t>(
      static_cast<uint64_t>(core->cfg.readahead_max_pages) << kBasePageShift,
      backend().readahead_bytes());
  return std::max<uint64_t>(huge() ? kHugeReadaheadPages : 1, b >> page_shift_);
}

uint64_t FileImpl::io_batch_pages() const {
  return std::max<uint64_t>(1, kIoBatchBytes >> page_shift_);
}

int FileImpl::alloc_frames(uint64_t off, uint64_t len) {
  // Frames already there are kept; new ones come zeroed from the pool.
  // KEEP_SIZE: never extend the memfd (R3).
  for (int round = 0;;) {
    if (::fallocate(memfd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                    static_cast<off_t>(len)) == 0)
      return 0;
    if (errno == EINTR) continue;
    if (errno != ENOSPC) return -errno;
    // hugetlbfs: the pool is empty. Under a memory limit the pool need only
    // hold the limit's frames (issue 16 item 5), and reclaim counts a frame
    // gone before its punch gives it back: evict clean frames (R9: try-locks
    // only, safe under the page locks held here) or wait a moment for a
    // punch in flight, a bounded number of times; then the fill fails (the
    // access gets SIGBUS), never a hang.
    if (!core->cfg.memory_limit_pages || ++round > kPoolRetries) return -ENOMEM;
    if (core->reclaim(len >> kBasePageShift) == 0) std::this_thread::sleep_for(kPoolRetryWait);
  }
}

// ---------------------------------------------------------------------------
// Fill and locking helpers shared by the read/write API and the fault path.

namespace {
// A backend read may return less than asked: the rest is read again, and only
// a read that returns 0 bytes (the object's end, as it is now) ends it with
// zeros. A short count is never taken as "the rest is a hole" (verify caught
// that: mid-object short reads showed zeros through the views).
template <class ReadMore>
ssize_t read_fully(Backend& be, uint64_t off, uint64_t len, ReadMore&& more) {
  uint64_t done = 0;
  for (int attempt = 0; attempt < 2; ++attempt) {
    while (done < len) {
      const ssize_t r = more(done);
      if (r < 0) return r;
      if (r == 0) break;
      done += static_cast<uint64_t>(r);
    }
    if (done >= len) break;
    // 0 bytes: the object's end — unless its size says there is more (a
    // short read inside it, or it grew meanwhile): read once more, then EIO.
    const int64_t size = be.size();
    if (size < 0 || off + done >= static_cast<uint64_t>(size)) break;
    if (attempt == 1) return -EIO;
  }
  return static_cast<ssize_t>(done);
}

/// Reads [off, off+len) of the backend into page-aligned memory at dst: for
/// hugetlb frames (they take no write(2)) the (allocated, unregistered)
/// alias view, no copy, no fault events; for a UFFDIO_COPY fill its bounce
/// buffer. Aligned reads (O_DIRECT for what the kernel does not cache) where
/// the backend has them. Returns the bytes read (short: the object's end) or
/// -errno.
ssize_t read_frames(Backend& be, std::byte* dst, uint64_t off, uint64_t len,
                    const Backend::Arrival* arrived = nullptr, const size_t* handed = nullptr) {
  ssize_t k = arrived ? be.read_aligned_streaming(off, std::span(dst, len), *arrived)
                      : be.read_aligned(off, std::span(dst, len));
  // Streaming: the count must be what was handed over (`handed`; the data
  // need not be in dst, so resuming past it would fill frames with stale
  // bounce-buffer bytes), and "no aligned path" only with nothing handed.
  // Anything else is the backend's fault: EIO.
  if (arrived && (k >= 0 ? static_cast<size_t>(k) != *handed : k == -EOPNOTSUPP && *handed != 0))
    return -EIO;
  if (k == -EOPNOTSUPP) k = 0;  // no aligned path: plain reads below
  if (k < 0 || static_cast<uint64_t>(k) >= len) return k;
  const uint64_t first = static_cast<uint64_t>(k);
  const ssize_t rest = read_fully(be, off + first, len - first, [&](uint64_t d) {
    return be.read(off + first + d, std::span(dst + first + d, len - first - d));
  });
  return rest < 0 ? rest : static_cast<ssize_t>(first + static_cast<uint64_t>(rest));
}

/// 4 KiB frames: reads [off, off+len) of the backend into the memfd at the
/// same offset — by the backend's read_into_fd, or else through the thread's
/// bounce buffer and pwrite. Returns the bytes read (short: the object's end;
/// the rest of the range is left as it was) or -errno.
ssize_t read_into_memfd(Backend& be, int memfd, uint64_t off, uint64_t len) {
  ssize_t r = be.read_into_fd(off, len, memfd, off);
  if (r >= 0 && static_cast<uint64_t>(r) < len) {
    const uint64_t first = static_cast<uint64_t>(r);
    const ssize_t rest = read_fully(be, off + first, len - first, [&](uint64_t d) {
      return be.read_into_fd(off + first + d, len - first - d, memfd, off + first + d);
    });
    r = rest < 0 ? rest : static_cast<ssize_t>(first + static_cast<uint64_t>(rest));
  }
  if (r != -EOPNOTSUPP) return r;
  auto& buf = bounce(len);
  r = read_fully(be, off, len,
                 [&](uint64_t d) { return be.read(off + d, std::span(buf.data() + d, len - d)); });
  if (r < 0) return r;
  FL_POINT("fill.after_read");
  if (int e = pwrite_full(memfd, buf.data(), static_cast<uint64_t>(r), off)) return e;
  return r;
}
}  // namespace

uint64_t FileImpl::fill_bytes(uint64_t pg, uint64_t n) {
  // R3: never write a frame past EOF — a pwrite past the memfd's size would
  // extend it. Callers hold the page locks and checked EOF under them (R2),
  // so this clamp is a second line that R2 makes unreachable; it has no
  // breaker (R2's breaker removes the recheck alone: F2).
  const uint64_t off = pg << page_shift_;
  const uint64_t frames_end = eof_pages() << page_shift_;
  return off >= frames_end ? 0 : std::min<uint64_t>(n << page_shift_, frames_end - off);
}

int FileImpl::read_zero_padded(std::byte* dst, uint64_t off, uint64_t len,
                               const Backend::Arrival* arrived, const size_t* handed) {
  const ssize_t k = read_frames(backend(), dst, off, len, arrived, handed);
  if (k < 0) return static_cast<int>(k);
  const uint64_t done = std::min<uint64_t>(static_cast<uint64_t>(k), len);
  count(&Counters::bytes_read, done);
  FL_POINT("fill.after_read");
  // Past the object's end (or old bytes of a failed fill): zeros.
  std::memset(dst + done, 0, len - done);
  return 0;
}

int FileImpl::fill(uint64_t pg, uint64_t n) {
  // Counted in flight; a handler thread leaves another handler waiting for
  // faults before it blocks in the backend (issue 16 item 3).
  const EngineCore::FillScope in_flight(*core);
  const uint64_t off = pg << page_shift_;
  const uint64_t len = fill_bytes(pg, n);
  if (len == 0) return -EINVAL;
  Backend& be = backend();
  if (huge()) {
    // (len is whole frames, clipped to the memfd: never past its end, R3.)
    if (int e = alloc_frames(off, len)) return e;
    return read_zero_padded(alias_ + off, off, len);
  }
  const ssize_t r = read_into_memfd(be, memfd_, off, len);
  if (r < 0) return static_cast<int>(r);
  const uint64_t done = static_cast<uint64_t>(r);
  count(&Counters::bytes_read, done);
  // Short: the object ends inside the range. The frames may hold old bytes
  // (a failed fill): zero the rest explicitly.
  if (done < len)
    if (int e = pwrite_zeros(memfd_, len - done, off + done)) return e;
  return 0;
}

int FileImpl::fill_copy(MappingImpl& m, uint64_t pg, std::span<const char> how,
                        std::span<char> copied) {
  // 4 KiB frames of a shared view (FaultWindow::fill): the run is read once
  // into the thread's aligned bounce buffer (O_DIRECT where the kernel does
  // not cache the range, as read_into_fd; a long run in pieces, each put as
  // it arrives: Backend::read_aligned_streaming); the pages map() installs here
  // anyway go in by UFFDIO_COPY: the kernel allocates the frames, adds them to
  // the memfd and maps them in this view in one ioctl, without the memfd's
  // inode lock that pwrite takes (DESIGN section 2, "Filling by UFFDIO_COPY";
  // M6.17). The others (read-around probes, a store's page, POISONed ones)
  // are pwritten from the same buffer. DONTWAKE: install_window wakes the
  // threads after the EOF recheck (R2; FaultWindow::wake_copied).
  FL_BUG_ON(huge() || !m.shared || how.size() != copied.size());
  const uint64_t n = how.size();
  std::fill(copied.begin(), copied.end(), 0);
  std::byte* const buf = aligned_bounce(n << page_shift_);
  if (!buf) return fill(pg, n);  // no memory for a buffer: the pwrite path's own
  const EngineCore::FillScope in_flight(*core);
  const uint64_t off = pg << page_shift_;
  const uint64_t len = fill_bytes(pg, n);  // (UFFDIO_COPY past the memfd's size: EFAULT)
  if (len == 0) return -EINVAL;
  const uint64_t pages = (len + page_size() - 1) >> page_shift_;
  // Pages [a, b) of the run, page a's data at src and the others after it:
  // COPY or pwrite by `how`.
  auto put = [&](uint64_t a, uint64_t b, const std::byte* src) {
    int err = 0;
    for_each_run(b - a, [](uint64_t) { return true; },
                 [&](uint64_t x, uint64_t y) { return how[a + x] == how[a + y]; },
                 [&](uint64_t ri, uint64_t rj) {
                   const uint64_t i = a + ri, j = a + rj;
                   const uint64_t s = i << page_shift_, e = std::min<uint64_t>(j << page_shift_, len);
                   // The data of byte `at` of the run.
                   auto from = [&](uint64_t at) { return src + ((i - a) << page_shift_) + (at - s); };
                   uint64_t at = s;
                   if (how[i] != kFillWrite) {
                     while (at < e) {
                       const auto res = m.uffd->copy(m.addr_of(pg) + at, from(at), e - at,
                                                     how[i] == kFillCopyWp, /*dontwake=*/true);
                       count(&Counters::install_calls);
                       if (res.err == 0) {
                         at = e;
                       } else if (res.done > 0) {  // EAGAIN: stopped part-way (a frame present)
                         at += static_cast<uint64_t>(res.done);
                       } else if (res.err == -EEXIST || res.err == -EAGAIN || res.err == -ENOENT) {
                         // A frame in the memfd (old bytes of a failed fill), the
                         // view changing (mmap_changing) or gone: pwrite below.
                         break;
                       } else {
                         // EFAULT: past the memfd's size (R2 and R3 rule it out; a
                         // pwrite would extend the memfd); EINVAL, ENOMEM: no fill.
                         err = res.err;
                         break;
                       }
                     }
                     for (uint64_t k = i; k < (at >> page_shift_); ++k) copied[k] = 1;
                     count(&Counters::pages_installed, (at - s) >> page_shift_);
                     count(&Counters::pages_copied, (at - s) >> page_shift_);
                   }
                   // The rest goes into the memfd as before (map() CONTINUEs it).
                   if (err == 0 && at < e) err = pwrite_full(memfd_, from(at), e - at, off + at);
                   return err == 0;
                 });
    return err;
  };
  // A long run (a readahead window) is put as its pieces arrive (from the
  // backend's memory, or buf): the copies overlap the device's reads of the
  // pieces after them. A piece's last page cut short (the object's end) is
  // kept in buf and put, zero-padded, after the read. Pieces out of order,
  // past the run, or after one cut short inside a page (the contract,
  // Backend::Arrival: whole pages but at the end) end the read with EIO.
  uint64_t put_end = 0;  // pages put so far
  size_t handed = 0;     // bytes handed over
  auto on_piece = [&](const std::byte* data, size_t at, size_t got) -> int {
    if (at != handed || got == 0 || got > len - at || (handed & (page_size() - 1))) return -EIO;
    handed += got;
    const uint64_t whole = got >> page_shift_;
    if (whole) {
      if (const int e = put(put_end, put_end + whole, data)) return e;
      put_end += whole;
    }
    const size_t tail = got & (page_size() - 1);
    if (tail) std::memmove(buf + at + (whole << page_shift_), data + (whole << page_shift_), tail);
    return 0;
  };
  const Backend::Arrival arrived = std::ref(on_piece);  // (no allocation per fill)
  if (int e = read_zero_padded(buf, off, len, &arrived, &handed)) return e;
  return put_end < pages ? put(put_end, pages, buf + (put_end << page_shift_)) : 0;
}

uint64_t FileImpl::lock_run(uint64_t pg, uint64_t n) {
  index_.get(pg)->lock();  // R12: first page with a sleeping lock ...
  uint64_t k = 1;
  while (k < n && index_.get(pg + k)->trylock()) ++k;  // ... the rest only try-locked
  return k;
}

void FileImpl::unlock_run(uint64_t pg, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) index_.find(pg + i)->unlock();
}

int FileImpl::make_uptodate(uint64_t pg, uint64_t n) {
  uint64_t i = 0;
  while (i < n) {
    if (Page* p = index_.find(pg + i); p->test(PG_uptodate)) {
      p->set(PG_referenced);  // read or written through the API: in use (reclaim, R9)
      count(&Counters::cache_hits);
      ++i;
      continue;
    }
    uint64_t j = i + 1;
    while (j < n && !index_.find(pg + j)->test(PG_uptodate)) ++j;
    // The memory limit (issue 16): reclaim first if the fill would pass it
    // (try-locks only: these pages are held; no wait under them).
    const uint64_t charged = charge(j - i, j - i, /*may_wait=*/false);
    const int fill_err = fill(pg + i, j - i);
    if (fill_err == 0)
      for (uint64_t k = i; k < j; ++k) {
        Page* p = index_.find(pg + k);
        p->clear(PG_error);
        mark_uptodate(pg + k, p);
      }
    uncharge(charged);
    if (int e = fill_err) {
      count(&Counters::read_errors);
      for (uint64_t k = i; k < j; ++k) index_.find(pg + k)->set(PG_error);
      return e;
    }
    count(&Counters::pages_filled, j - i);
    count(&Counters::cache_misses, j - i);
    i = j;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// read / write

Status FileImpl::read(uint64_t off, std::span<std::byte> out, size_t& done) {
  done = 0;
  if (out.empty()) return {};
  const uint64_t want_end = out.size() > ~uint64_t{0} - off ? ~uint64_t{0} : off + out.size();
  const uint64_t ps = page_size();
  uint64_t pos = off;
  while (pos < want_end) {
    // Per batch: the size lock and the invalidate_lock shared (fills exclude
    // invalidation, R1), the pages locked, their frames copied into engine
    // memory; then every lock is dropped before the caller's buffer is
    // touched (R11: it may be a faultline view, of this File too, whose
    // fault takes the invalidate_lock shared: behind a waiting truncate or
    // invalidate that would deadlock with a writer-preferring lock).
    uint64_t len = 0;
    const Status s = [&]() -> Status {
      SharedLock size_guard(i_rwsem_);
      SharedLock inval(invalidate_lock_);
      const uint64_t size = i_size();
      if (pos >= size) return {};
      const uint64_t end = std::min<uint64_t>(size, want_end);
      const uint64_t pg = pos >> page_shift_;
      const uint64_t last_pg = (end - 1) >> page_shift_;
      const uint64_t want = std::min<uint64_t>(last_pg - pg + 1, io_batch_pages());
      LockedRun run(*this, pg, want);
      const uint64_t n = run.size();
      if (int e = make_uptodate(pg, n)) return {e, "faultline: read of " + key};
      const uint64_t chunk = std::min<uint64_t>(end, (pg + n) * ps) - pos;
      FL_POINT("read.before_copy");
      if (!FL_RULE(11)) {  // breaker: copy straight into the caller's buffer, locks held
        const ssize_t r = ::pread(memfd_, out.data() + (pos - off), chunk, static_cast<off_t>(pos));
        len = r < 0 ? 0 : static_cast<uint64_t>(r);
        return {};
      }
      auto& buf = bounce(chunk);
      const ssize_t r = ::pread(memfd_, buf.data(), chunk, static_cast<off_t>(pos));
      const int err = errno;
      run.unlock();
      if (r < 0) return {-err, "faultline: pread(memfd)"};
      len = static_cast<uint64_t>(r);
      return {};
    }();
    if (!s.ok()) return s;
    if (len == 0) break;
    if (FL_RULE(11)) {
      FL_POINT("read.before_user_copy");  // no lock of this File held here
      std::memcpy(out.data() + (pos - off), bounce(len).data(), len);
    }
    pos += len;
    done = pos - off;
  }
  return {};
}

Status FileImpl::extend(uint64_t new_size) {
  const uint64_t old = i_size();
  if (new_size <= old) return {};
  const uint64_t ps = page_size();
  const uint64_t frames = (new_size + ps - 1) & ~(ps - 1);
  if (huge() && frames > alias_len_)
    return {-EFBIG, "faultline: " + key + " cannot grow past the 2 MiB-frame limit"};
  // The memfd grows first, then i_size: a fault that sees the new size finds
  // the frames there.
  if (::ftruncate(memfd_, static_cast<off_t>(frames)) != 0)
    return Status::from_errno("faultline: ftruncate(memfd) to extend " + key);
  if (old & (ps - 1)) {
    // Bytes past the old EOF in its page may hold junk stored through a
    // mapping; the grown file must read zeros there.
    const PageLock lock(index_.get(old >> page_shift_));
    Page* p = lock.page();
    if (p->test(PG_uptodate) && huge()) {
      // hugetlb: zero in place through the alias view (the frame exists: the
      // page is uptodate and locked).
      std::memset(alias_ + old, 0, ps - (old & (ps - 1)));
    } else if (p->test(PG_uptodate)) {
      if (int e = pwrite_zeros(memfd_, ps - (old & (ps - 1)), old))
        return {e, "faultline: zeroing the old EOF page"};
    }
  }
  i_size_.store(new_size, std::memory_order_release);
  return {};
}

Status FileImpl::write(uint64_t off, std::span<const std::byte> in) {
  if (in.empty()) return {};
  if (!backend().writable()) return {-EROFS, "faultline: write to read-only " + key};
  const uint64_t end = off + in.size();
  if (end < off || (end >> page_shift_) >= PageIndex::kMaxPages)
    return {-EFBIG, "faultline: write beyond the largest file size"};
  for (uint64_t pos = off; pos < end;)
    if (Status s = write_batch(pos, end, in.data() + (pos - off)); !s.ok()) return s;
  // balance_dirty_pages: the writer (no locks held) waits for the flusher.
  core->throttle_writer();
  return {};
}

Status FileImpl::write_batch(uint64_t& pos, uint64_t end, const std::byte* src) {
  const uint64_t ps = page_size();
  const uint64_t pg = pos >> page_shift_;
  const uint64_t last_pg = (end - 1) >> page_shift_;
  const uint64_t want = std::min<uint64_t>(last_pg - pg + 1, io_batch_pages());
  const uint64_t chunk_end_max = std::min<uint64_t>(end, (pg + want) * ps);
  // R11: copy the caller's bytes into engine memory before any page lock.
  // (Not the thread's bounce buffer: the fill below uses that.)
  const std::vector<std::byte> own(src, src + (chunk_end_max - pos));
  std::unique_lock<SleepingRwLock> excl(i_rwsem_, std::defer_lock);
  std::shared_lock<SleepingRwLock> shared(i_rwsem_, std::defer_lock);
  if (Status s = lock_size_for_write(chunk_end_max, excl, shared); !s.ok()) return s;
  SharedLock inval(invalidate_lock_);  // fills exclude invalidation (R1)
  LockedRun run(*this, pg, want);
  const uint64_t n = run.size();
  // R7 (W11): stable pages — no page under write-back changes.
  for (uint64_t i = 0; i < n; ++i) wait_stable(index_.find(pg + i));
  const uint64_t chunk_end = std::min<uint64_t>(chunk_end_max, (pg + n) * ps);
  if (int e = read_partial_pages(pos, chunk_end))
    return {e, "faultline: read before partial write of " + key};
  if (Status s = copy_into_frames(pos, chunk_end, own.data()); !s.ok()) return s;
  for (uint64_t i = 0; i < n && ((pg + i) << page_shift_) < chunk_end; ++i) {
    Page* p = index_.find(pg + i);
    mark_uptodate(pg + i, p);
    mark_dirty(p);
  }
  pos = chunk_end;
  return {};
}

Status FileImpl::lock_size_for_write(uint64_t write_end, std::unique_lock<SleepingRwLock>& excl,
                                   std::shared_lock<SleepingRwLock>& shared) {
  for (;;) {
    const bool grow = write_end > i_size();
    FL_POINT("write.before_size_lock");
    if (grow) {
      excl.lock();
      i_rwsem_.AssertHeld();     // the analysis cannot follow excl / shared
      return extend(write_end);  // a no-op if it grew meanwhile
    }
    shared.lock();
    // R3 (F12): "no extend" holds only if decided under the size lock: a
    // truncate in between would leave the pwrite below past the memfd's
    // end, which extends it behind i_size (dirty pages past EOF).
    if (!FL_RULE(3) || write_end <= i_size()) return {};
    shared.unlock();
  }
}

int FileImpl::read_partial_pages(uint64_t pos, uint64_t chunk_end) {
  const uint64_t ps = page_size();
  const uint64_t pg = pos >> page_shift_;
  FL_BUG_ON(!index_.find(pg)->locked());
  if (!index_.find(pg)->test(PG_uptodate) && (pos & (ps - 1)))
    if (int e = make_uptodate(pg, 1)) return e;
  const uint64_t lp = (chunk_end - 1) >> page_shift_;
  if ((chunk_end & (ps - 1)) && chunk_end < i_size() && !index_.find(lp)->test(PG_uptodate))
    return make_uptodate(lp, 1);
  return 0;
}

Status FileImpl::copy_into_frames(uint64_t pos, uint64_t chunk_end, const std::byte* src) {
  const uint64_t len = chunk_end - pos;
  if (!huge()) {
    if (int e = pwrite_full(memfd_, src, len, pos)) return {e, "faultline: pwrite(memfd)"};
    return {};
  }
  // hugetlb: no pwrite; copy through the alias view into frames allocated
  // first (an empty pool is ENOMEM here, not a SIGBUS in the memcpy).
  const uint64_t ps = page_size();
  const uint64_t pg = pos >> page_shift_;
  const uint64_t lp = (chunk_end - 1) >> page_shift_;
  const uint64_t fs = pg << page_shift_;
  const uint64_t fe = std::min<uint64_t>((lp + 1) << page_shift_, eof_pages() << page_shift_);
  if (int err = alloc_frames(fs, fe - fs))
    return {err, "faultline: allocating 2 MiB frames for a write to " + key};
  // A page that was not uptodate and is not covered to its end (the write
  // ends at EOF) must read zeros past the write: its frame may hold the
  // bytes of a failed fill.
  if ((chunk_end & (ps - 1)) && !index_.find(lp)->test(PG_uptodate))
    std::memset(alias_ + chunk_end, 0, ps - (chunk_end & (ps - 1)));
  std::memcpy(alias_ + pos, src, len);
  return {};
}

void FileImpl::set_options(const FileOptions& o) {
  stable_pages_ = o.stable_pages;
  async_ = o.dirty_tracking == DirtyTracking::Async;
  harvested_ms_.store(core->now_ms(), std::memory_order_relaxed);  // the first scan: one expiry on
}

}  // namespace faultline::detail
