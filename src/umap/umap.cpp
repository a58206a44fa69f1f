// UMap's API (include/umap/umap.h) on the faultline engine: one Engine per
// process, made at the first umap() from UMap's environment settings; each
// region is a shared writable (or read-only) Mapping of a File, so UMap's
// UMAP_PRIVATE regions write their stores back, as UMap's do.
#include "umap/umap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "faultline/faultline.hpp"

namespace {

using faultline::kBasePageSize;
using faultline::kHugePageSize;

/// UMap's settings as this process's environment gives them, and what the
/// engine made of them (what umapcfg_get_* report).
struct Settings {
  uint64_t page_size = kBasePageSize;  // UMAP_PAGESIZE
  uint64_t buf_pages = 0;              // UMAP_BUFSIZE, in UMap pages
  uint64_t fillers = 1;                // UMAP_PAGE_FILLERS
  int high_water = 90;                 // UMAP_EVICT_HIGH_WATER_THRESHOLD
  uint64_t read_ahead = 0;             // UMAP_READ_AHEAD (UMap pages), 0 = engine default
  faultline::EngineConfig engine;      // what the engine is made with
};

/// A non-negative integer environment value; nullopt when unset; a message
/// and nullopt when it is not a number.
std::optional<uint64_t> env_u64(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v, &end, 0);
  if (errno || *end || v[0] == '-') {
    std::fprintf(stderr, "umap (faultline): ignoring %s=%s: not a non-negative integer\n", name, v);
    return std::nullopt;
  }
  return x;
}

Settings read_settings() {
  Settings s;
  if (auto v = env_u64("UMAP_PAGESIZE")) {
    if (*v == 0 || *v % kBasePageSize)
      std::fprintf(stderr, "umap (faultline): ignoring UMAP_PAGESIZE=%llu: not a multiple of %zu\n",
                   static_cast<unsigned long long>(*v), kBasePageSize);
    else
      s.page_size = *v;
  }
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  s.fillers = cpus;
  if (auto v = env_u64("UMAP_PAGE_FILLERS")) {
    if (*v == 0 || *v > 256)
      std::fprintf(stderr, "umap (faultline): ignoring UMAP_PAGE_FILLERS=%llu (1..256)\n",
                   static_cast<unsigned long long>(*v));
    else
      s.fillers = *v;
  }
  (void)env_u64("UMAP_PAGE_EVICTORS");  // accepted: the engine has one flusher (umap.h)
  if (auto v = env_u64("UMAP_EVICT_HIGH_WATER_THRESHOLD")) {
    if (*v == 0 || *v > 100)
      std::fprintf(stderr, "umap (faultline): ignoring UMAP_EVICT_HIGH_WATER_THRESHOLD=%llu (1..100)\n",
                   static_cast<unsigned long long>(*v));
    else
      s.high_water = static_cast<int>(*v);
  }
  if (auto v = env_u64("UMAP_EVICT_LOW_WATER_THRESHOLD"); v && *v > static_cast<uint64_t>(s.high_water))
    std::fprintf(stderr, "umap (faultline): UMAP_EVICT_LOW_WATER_THRESHOLD=%llu is above the high "
                 "water mark; the engine evicts to 15/16 of its limit\n", static_cast<unsigned long long>(*v));
  // UMap's default buffer: 90% of free memory.
  const long avail = ::sysconf(_SC_AVPHYS_PAGES);
  const long psz = ::sysconf(_SC_PAGESIZE);
  const uint64_t free_bytes = avail > 0 && psz > 0 ? static_cast<uint64_t>(avail) * psz : uint64_t{1} << 30;
  s.buf_pages = std::max<uint64_t>(1, free_bytes / 10 * 9 / s.page_size);
  if (auto v = env_u64("UMAP_BUFSIZE")) {
    if (*v == 0)
      std::fprintf(stderr, "umap (faultline): ignoring UMAP_BUFSIZE=0\n");
    else
      s.buf_pages = *v;
  }
  if (auto v = env_u64("UMAP_READ_AHEAD")) s.read_ahead = *v;

  faultline::EngineConfig& e = s.engine;
  if (const char* v = std::getenv("FAULTLINE_FAULT_MODE"); v && *v) {
    if (std::string_view(v) == "thread")
      e.fault_mode = faultline::FaultMode::FaultingThread;
    else if (std::string_view(v) != "handler")
      std::fprintf(stderr, "umap (faultline): ignoring FAULTLINE_FAULT_MODE=%s: handler or thread\n", v);
  }
  e.fault_threads = static_cast<unsigned>(s.fillers);
  e.max_fault_threads = std::max(e.max_fault_threads, e.fault_threads);  // grows on demand
  const uint64_t unit = s.page_size / kBasePageSize;  // one UMap page in 4 KiB pages
  e.fault_around_pages = std::max<uint64_t>(e.fault_around_pages, unit);
  if (s.read_ahead) e.readahead_max_pages = std::max<uint64_t>(1, s.read_ahead * unit);
  // The buffer bounds the engine's cache; eviction starts at the high water
  // mark, as UMap's evictors do.
  const uint64_t limit = s.buf_pages * unit / 100 * static_cast<uint64_t>(s.high_water);
  e.memory_limit_pages = std::max<uint64_t>(limit, unit);
  // A buffer smaller than the fault-around window: faults fill no more than
  // it holds (the engine refuses a limit below its window, EINVAL).
  e.fault_around_pages = std::min<uint64_t>(e.fault_around_pages, e.memory_limit_pages);
  return s;
}

const Settings& settings() {
  static const Settings s = read_settings();
  return s;
}

struct Region {
  faultline::File file;
  faultline::Mapping map;
  uint64_t off = 0;      // file offset of the region's start
  std::size_t len = 0;
};

std::mutex g_mu;
faultline::Engine* g_engine = nullptr;  // made at the first umap(), closed at exit
std::map<uintptr_t, std::unique_ptr<Region>> g_regions;
bool g_warned_2m = false;

void close_at_exit() {
  std::lock_guard lk(g_mu);
  g_regions.clear();  // each region's view writes back as its last user goes
  if (g_engine) g_engine->close();
}

/// The engine; made under g_mu.
faultline::Engine& engine() {
  if (!g_engine) {
    g_engine = new faultline::Engine(settings().engine);  // lives until exit
    std::atexit(close_at_exit);
  }
  return *g_engine;
}

void* failed(int err) {
  errno = err;
  return UMAP_FAILED;
}

/// A UMap Store as a faultline Backend.
class StoreBackend final : public faultline::Backend {
 public:
  StoreBackend(Umap::Store* store, uint64_t size) : store_(store), size_(size) {}
  std::string identity() const override {
    char b[48];
    std::snprintf(b, sizeof b, "umap-store:%p", static_cast<void*>(store_));
    return b;
  }
  bool writable() const override { return true; }
  int64_t size() override { return static_cast<int64_t>(size_.load()); }
  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    std::size_t n = buf.size();
    const uint64_t size = size_.load();
    if (off >= size) return 0;
    n = std::min<uint64_t>(n, size - off);
    const ssize_t r = store_->read_from_store(reinterpret_cast<char*>(buf.data()), n, static_cast<off_t>(off));
    if (r < 0) return errno > 0 ? -errno : -EIO;
    return std::min<ssize_t>(r, static_cast<ssize_t>(n));
  }
  int write(uint64_t off, std::span<const std::byte> buf) override {
    const uint64_t size = size_.load();
    if (off >= size) return 0;  // the tail of the last page past the store's end
    const std::size_t n = std::min<uint64_t>(buf.size(), size - off);
    // UMap's interface takes a non-const buffer; the store must not change it.
    auto* p = const_cast<char*>(reinterpret_cast<const char*>(buf.data()));
    const ssize_t r = store_->write_to_store(p, n, static_cast<off_t>(off));
    if (r < 0) return errno > 0 ? -errno : -EIO;
    return static_cast<std::size_t>(r) == n ? 0 : -EIO;
  }
  /// A Store has no size of its own: the File covers the regions mapped on
  /// it so far, and grows (never shrinks) when a later region on the same
  /// Store (the same File: one identity, one cache) reaches further.
  int truncate(uint64_t new_size) override {
    if (new_size < size_.load()) return -EOPNOTSUPP;
    size_.store(new_size);
    return 0;
  }
  int punch_hole(uint64_t, uint64_t) override { return -EOPNOTSUPP; }
  bool can_punch_hole() const override { return false; }
  int sync() override { return 0; }

 private:
  Umap::Store* store_;
  std::atomic<uint64_t> size_;
};

/// A Store over a file descriptor (Store::make_store).
class FdStore final : public Umap::Store {
 public:
  explicit FdStore(int fd) : fd_(fd) {}
  ssize_t read_from_store(char* buf, std::size_t nb, off_t off) override {
    std::size_t done = 0;
    while (done < nb) {
      const ssize_t r = ::pread(fd_, buf + done, nb - done, off + static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return -1;
      if (r == 0) break;
      done += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(done);
  }
  ssize_t write_to_store(char* buf, std::size_t nb, off_t off) override {
    std::size_t done = 0;
    while (done < nb) {
      const ssize_t r = ::pwrite(fd_, buf + done, nb - done, off + static_cast<off_t>(done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return -1;
      done += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(done);
  }

 private:
  int fd_;
};

/// mmap(2)'s checks of a file descriptor for a region (write: PROT_WRITE):
/// 0 or the errno mmap would give; fd_writable: the fd is open O_RDWR.
int check_fd(int fd, bool write, bool& fd_writable) {
  struct stat st{};
  if (fd < 0 || ::fstat(fd, &st) != 0) return EBADF;
  if (!S_ISREG(st.st_mode)) return EACCES;  // mmap(2): a non-regular file
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return EBADF;
  const int acc = fl & O_ACCMODE;
  if (acc == O_WRONLY || (write && acc != O_RDWR)) return EACCES;  // as mmap(2)
  fd_writable = acc == O_RDWR;
  return 0;
}

/// Opens a region's File with UMAP_PAGESIZE's frames; 2 MiB frames fall back
/// to 4 KiB ones (warned once) when the huge page pool cannot hold them.
/// Caller holds g_mu. Throws.
faultline::File open_region_file(faultline::Engine& eng, const std::shared_ptr<faultline::Backend>& backend) {
  faultline::FileOptions fo;
  fo.frame_size = settings().page_size == kHugePageSize ? faultline::FrameSize::k2M : faultline::FrameSize::k4K;
  try {
    return eng.open(backend, fo);
  } catch (const std::system_error& e) {
    if (fo.frame_size != faultline::FrameSize::k2M || e.code().value() != ENOMEM) throw;
    if (!g_warned_2m) {
      std::fprintf(stderr, "umap (faultline): UMAP_PAGESIZE=2 MiB but %s; using 4 KiB frames\n", e.what());
      g_warned_2m = true;
    }
    fo.frame_size = faultline::FrameSize::k4K;
    return eng.open(backend, fo);
  }
}

void* map_region(std::size_t length, int prot, int flags, int fd, off_t offset, Umap::Store* store) {
  if (length == 0) return failed(EINVAL);
  if ((prot & ~(PROT_READ | PROT_WRITE)) || prot == PROT_NONE) return failed(EINVAL);
  if (flags & MAP_FIXED) return failed(EINVAL);  // the engine chooses the address (umap.h)
  if ((flags & ~(MAP_PRIVATE | MAP_SHARED)) || !(flags & (MAP_PRIVATE | MAP_SHARED))) return failed(EINVAL);
  if (offset < 0) return failed(EINVAL);
  const bool write = prot & PROT_WRITE;
  bool fd_writable = false;
  std::shared_ptr<faultline::Backend> backend;
  if (!store)
    if (int e = check_fd(fd, write, fd_writable)) return failed(e);
  try {
    std::lock_guard lk(g_mu);
    faultline::Engine& eng = engine();
    if (store) {
      backend = std::make_shared<StoreBackend>(store, static_cast<uint64_t>(offset) + length);
    } else {
      // The engine opens the file again by its /proc/self/fd name (its own
      // descriptor, same inode: every region of one file shares one cache),
      // writable whenever the fd is, so that a later writable region of the
      // same file finds a writable File (the first open's backend stays).
      backend = faultline::make_file_backend("/proc/self/fd/" + std::to_string(fd), fd_writable);
    }
    auto r = std::make_unique<Region>();
    r->file = open_region_file(eng, backend);
    // A Store's File is the first region's size: a later region on the same
    // Store that reaches further grows it (StoreBackend::truncate).
    const uint64_t end = static_cast<uint64_t>(offset) + length;
    if (store && r->file.size() < end) r->file.truncate(end);
    r->map = r->file.map(static_cast<uint64_t>(offset), length,
                         write ? faultline::Access::ReadWrite : faultline::Access::ReadOnly,
                         faultline::Sharing::Shared);
    r->off = static_cast<uint64_t>(offset);
    r->len = length;
    void* addr = r->map.data();
    g_regions.emplace(reinterpret_cast<uintptr_t>(addr), std::move(r));
    return addr;
  } catch (const std::system_error& e) {
    const int v = e.code().value();
    return failed(v == EROFS ? EACCES : v > 0 ? v : EIO);
  } catch (const std::bad_alloc&) {
    return failed(ENOMEM);
  } catch (const std::exception&) {
    return failed(EIO);
  }
}

/// Reads the pages of [a, a+len) of whichever region holds them into the
/// cache (File::read fills the cache; the view's next access is a minor
/// fault). Caller holds g_mu.
void fetch_locked(uintptr_t a, uint64_t len) {
  auto it = g_regions.upper_bound(a);
  if (it == g_regions.begin()) return;
  --it;
  Region& r = *it->second;
  if (a >= it->first + r.len) return;
  const uint64_t rel = a - it->first;
  len = std::min<uint64_t>(len, r.len - rel);
  thread_local std::vector<std::byte> scratch;
  scratch.resize(std::min<uint64_t>(len, 4u << 20));
  for (uint64_t done = 0; done < len;) {
    const uint64_t n = std::min<uint64_t>(scratch.size(), len - done);
    const std::size_t got = r.file.read(r.off + rel + done, {scratch.data(), n});
    if (got == 0) break;  // EOF
    done += got;
  }
}

}  // namespace

namespace Umap {

Store* Store::make_store(void* region, std::size_t rsize, std::size_t alignsize, int fd) {
  (void)region; (void)rsize; (void)alignsize;
  struct stat st{};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    errno = EBADF;
    return nullptr;
  }
  return new (std::nothrow) FdStore(fd);
}

void* umap_ex(void* addr, std::size_t length, int prot, int flags, int fd, off_t offset, Store* store) {
  (void)addr;  // a hint, as mmap without MAP_FIXED
  return map_region(length, prot, flags, fd, offset, store);
}

}  // namespace Umap

extern "C" {

void* umap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  return Umap::umap_ex(addr, length, prot, flags, fd, offset, nullptr);
}

int uunmap(void* addr, size_t length) {
  (void)length;  // the whole region goes (umap.h)
  std::unique_ptr<Region> r;
  {
    std::lock_guard lk(g_mu);
    auto it = g_regions.find(reinterpret_cast<uintptr_t>(addr));
    if (it == g_regions.end()) {
      errno = EINVAL;
      return -1;
    }
    r = std::move(it->second);
    g_regions.erase(it);
  }
  int err = 0;
  try {
    r->map.msync(r->map.data(), r->len, MS_SYNC);  // write back, see this view's errors (R8)
  } catch (const std::system_error& e) {
    err = e.code().value() > 0 ? e.code().value() : EIO;
  } catch (...) {
    err = EIO;
  }
  r.reset();  // unmaps (waits for faults in flight) and closes the handle
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

int umap_flush(void) {
  std::lock_guard lk(g_mu);
  int err = 0;
  for (auto& [a, r] : g_regions) {
    try {
      r->map.msync(r->map.data(), r->len, MS_SYNC);
    } catch (const std::system_error& e) {
      if (!err) err = e.code().value() > 0 ? e.code().value() : EIO;
    } catch (...) {
      if (!err) err = EIO;
    }
  }
  if (err) {
    errno = err;
    return -1;
  }
  return 0;
}

void umap_prefetch(int npages, struct umap_prefetch_item* page_array) {
  if (npages <= 0 || !page_array) return;
  const uint64_t ps = settings().page_size;
  std::lock_guard lk(g_mu);
  for (int i = 0; i < npages; i++) {
    try {
      fetch_locked(reinterpret_cast<uintptr_t>(page_array[i].page_base_addr), ps);
    } catch (...) {
      // A prefetch is a hint: a failed read shows again (SIGBUS) at the access.
    }
  }
}

void umap_fetch_and_pin(char* paddr, uint64_t size) {
  if (!paddr || size == 0) return;
  std::lock_guard lk(g_mu);
  try {
    fetch_locked(reinterpret_cast<uintptr_t>(paddr), size);
  } catch (...) {
    // As umap_prefetch: a hint.
  }
}

int umap_has_write_support(void) { return 1; }

long umapcfg_get_system_page_size(void) { return ::sysconf(_SC_PAGESIZE); }
uint64_t umapcfg_get_umap_page_size(void) { return settings().page_size; }
uint64_t umapcfg_get_max_pages_in_buffer(void) { return settings().buf_pages; }
uint64_t umapcfg_get_num_fillers(void) { return settings().engine.fault_threads; }
uint64_t umapcfg_get_num_evictors(void) { return 1; }  // the engine's flusher
uint64_t umapcfg_get_max_fault_events(void) { return settings().engine.fault_threads; }
uint64_t umapcfg_get_read_ahead(void) {
  return settings().engine.readahead_max_pages * kBasePageSize / settings().page_size;
}
int umapcfg_get_evict_high_water_threshold(void) { return settings().high_water; }
int umapcfg_get_evict_low_water_threshold(void) {
  return settings().high_water * 15 / 16;  // the engine evicts to 15/16 of its limit
}

}  // extern "C"
