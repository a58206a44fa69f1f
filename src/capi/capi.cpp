// The C API (include/faultline/faultline.h) over the C++ classes: opaque
// handles checked against registries (a closed handle is -EBADF, never a
// dangling pointer dereference), every exception turned into -errno plus a
// thread-local message.
#include "faultline/faultline.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <unordered_map>

#include "faultline/faultline.hpp"

static_assert(FL_PROT_READ == PROT_READ && FL_PROT_WRITE == PROT_WRITE);
static_assert(FL_MAP_SHARED == MAP_SHARED && FL_MAP_PRIVATE == MAP_PRIVATE);
static_assert(FL_MS_ASYNC == MS_ASYNC && FL_MS_SYNC == MS_SYNC);
static_assert(FL_FALLOC_FL_KEEP_SIZE == FALLOC_FL_KEEP_SIZE &&
              FL_FALLOC_FL_PUNCH_HOLE == FALLOC_FL_PUNCH_HOLE);
static_assert(FL_O_RDONLY == O_RDONLY && FL_O_RDWR == O_RDWR && FL_O_CREAT == O_CREAT);

namespace {

using faultline::Engine;
using faultline::File;
using faultline::Mapping;

thread_local std::string t_error;

int fail(int err, const std::string& what) {
  t_error = what;
  return -err;
}

/// Runs fn, turning exceptions into -errno and the message (no exception
/// crosses the C boundary).
template <class Fn>
auto guard_call(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::system_error& e) {
    const int v = e.code().value();
    return fail(v > 0 ? v : EIO, e.what());
  } catch (const std::bad_alloc&) {
    return fail(ENOMEM, "faultline: out of memory");
  } catch (const std::exception& e) {
    return fail(EIO, e.what());
  } catch (...) {
    return fail(EIO, "faultline: unknown error");
  }
}

struct EngineState {
  explicit EngineState(faultline::EngineConfig cfg) : engine(std::move(cfg)) {}
  Engine engine;
};

struct FileState {
  std::shared_ptr<EngineState> eng;
  File file;
  // Opened for writing (FL_O_RDWR). The File may be writable through another
  // handle onto the same object; this handle's own mode decides, as a file
  // descriptor's does.
  bool writable = true;
  // Calls share it; fl_close takes it exclusively, so a close never runs
  // under another thread's call on the same handle.
  std::shared_mutex mu;
};

struct View {
  std::shared_ptr<Mapping> map;
  std::size_t len = 0;        // the view's length rounded up to its page size
  std::size_t page = 0;
  EngineState* owner = nullptr;
};

std::mutex g_mu;  // guards the three registries
std::unordered_map<const void*, std::shared_ptr<EngineState>> g_engines;
std::unordered_map<const void*, std::shared_ptr<FileState>> g_files;
std::map<uintptr_t, View> g_views;  // by start address

std::shared_ptr<EngineState> find_engine(const fl_engine* e) {
  std::lock_guard lk(g_mu);
  auto it = g_engines.find(e);
  return it == g_engines.end() ? nullptr : it->second;
}
std::shared_ptr<FileState> find_file(const fl_file* f) {
  std::lock_guard lk(g_mu);
  auto it = g_files.find(f);
  return it == g_files.end() ? nullptr : it->second;
}

int bad_engine() { return fail(EBADF, "faultline: not an open fl_engine handle"); }
int bad_file() { return fail(EBADF, "faultline: not an open fl_file handle"); }

/// Runs fn(FileState&) under the handle's shared lock; -EBADF for a closed
/// or unknown handle.
template <class Fn>
auto with_file(fl_file* f, Fn&& fn) -> decltype(fn(std::declval<FileState&>())) {
  auto st = find_file(f);
  if (!st) return bad_file();
  std::shared_lock lk(st->mu);
  if (!st->file.is_open()) return bad_file();
  return guard_call([&] { return fn(*st); });
}

/// The view containing [addr, addr+len) (len may be 0): the map entry, or
/// g_views.end(). Caller holds g_mu.
std::map<uintptr_t, View>::iterator view_of(uintptr_t a) {
  auto it = g_views.upper_bound(a);
  if (it == g_views.begin()) return g_views.end();
  --it;
  if (a >= it->first + it->second.len) return g_views.end();
  return it;
}

/// A Backend whose calls go to a C vtable.
class CBackend final : public faultline::Backend {
 public:
  CBackend(std::string id, const fl_backend_ops& ops, void* ctx)
      : id_(std::move(id)), ops_(ops), ctx_(ctx) {}
  ~CBackend() override {
    if (ops_.release) ops_.release(ctx_);
  }
  std::string identity() const override { return "c:" + id_; }
  bool writable() const override { return ops_.write != nullptr; }
  int64_t size() override {
    const int64_t s = ops_.size(ctx_);
    return s < 0 && s < -4095 ? -EIO : s;  // a size below -MAX_ERRNO is no errno
  }
  ssize_t read(uint64_t off, std::span<std::byte> buf) override {
    const ssize_t r = ops_.read(ctx_, off, buf.data(), buf.size());
    // More bytes than asked is a broken backend: an I/O error, not an overrun.
    if (r > static_cast<ssize_t>(buf.size())) return -EIO;
    return r;
  }
  int write(uint64_t off, std::span<const std::byte> buf) override {
    if (!ops_.write) return -EROFS;
    return status(ops_.write(ctx_, off, buf.data(), buf.size()));
  }
  int page_mkwrite(uint64_t off, size_t len) override {
    return ops_.page_mkwrite ? status(ops_.page_mkwrite(ctx_, off, len)) : 0;
  }
  int truncate(uint64_t new_size) override {
    return ops_.truncate ? status(ops_.truncate(ctx_, new_size)) : -EOPNOTSUPP;
  }
  int punch_hole(uint64_t off, uint64_t len) override {
    return ops_.punch_hole ? status(ops_.punch_hole(ctx_, off, len)) : -EOPNOTSUPP;
  }
  bool can_punch_hole() const override { return ops_.punch_hole != nullptr; }
  int sync() override { return ops_.sync ? status(ops_.sync(ctx_)) : 0; }

 private:
  /// The C ops return 0 or a negative errno. Anything else is a broken
  /// backend and becomes -EIO: a write returning a byte count (pwrite's
  /// habit) may have been short, and taking it as success would drop the
  /// dirty page with data the object never got.
  static int status(int r) { return r == 0 || (r < 0 && r >= -4095) ? r : -EIO; }

  std::string id_;
  fl_backend_ops ops_;
  void* ctx_;
};

int check_options(const fl_file_options* o, faultline::FileOptions& out) {
  if (!o) return 0;
  if (o->struct_size < sizeof(fl_file_options))
    return fail(EINVAL, "faultline: fl_file_options not initialised (fl_file_options_init)");
  if (o->frames != FL_FRAMES_4K && o->frames != FL_FRAMES_2M)
    return fail(EINVAL, "faultline: fl_file_options.frames must be FL_FRAMES_4K or FL_FRAMES_2M");
  out.frame_size = o->frames == FL_FRAMES_2M ? faultline::FrameSize::k2M : faultline::FrameSize::k4K;
  out.stable_pages = o->stable_pages != 0;
  out.dirty_tracking = o->async_dirty ? faultline::DirtyTracking::Async : faultline::DirtyTracking::Mkwrite;
  return 0;
}

int register_file(std::shared_ptr<EngineState> eng, File f, bool writable, fl_file** out) {
  auto st = std::make_shared<FileState>();
  st->eng = std::move(eng);
  st->file = std::move(f);
  st->writable = writable;
  std::lock_guard lk(g_mu);
  *out = reinterpret_cast<fl_file*>(st.get());
  g_files.emplace(st.get(), std::move(st));
  return 0;
}

void copy_stats(const faultline::Stats& s, fl_stats* o) {
  *o = fl_stats{};
  o->missing_faults = s.missing_faults;
  o->minor_faults = s.minor_faults;
  o->wp_faults = s.wp_faults;
  o->pages_filled = s.pages_filled;
  o->pages_installed = s.pages_installed;
  o->pages_fault_around = s.pages_fault_around;
  o->pages_dirtied = s.pages_dirtied;
  o->pages_written_back = s.pages_written_back;
  o->bytes_read = s.bytes_read;
  o->bytes_written = s.bytes_written;
  o->read_errors = s.read_errors;
  o->write_errors = s.write_errors;
  o->mkwrite_errors = s.mkwrite_errors;
  o->sigbus_sent = s.sigbus_sent;
  o->pages_invalidated = s.pages_invalidated;
  o->invalidate_conflicts = s.invalidate_conflicts;
  o->pages_truncated = s.pages_truncated;
  o->pages_punched = s.pages_punched;
  o->pages_laundered = s.pages_laundered;
  o->pages_write_around = s.pages_write_around;
  o->dirty_pages = s.dirty_pages;
  o->fault_retries = s.fault_retries;
  o->pages_reclaimed = s.pages_reclaimed;
  o->cached_pages = s.cached_pages;
  o->stores_throttled = s.stores_throttled;
}

}  // namespace

extern "C" {

int fl_handle_sigbus(int sig, void* siginfo, void* ucontext) {
  return faultline::handle_sigbus(sig, siginfo, ucontext) ? 1 : 0;
}

// fl_config as first released (up to log_ctx): the smallest struct_size
// fl_engine_create accepts, and all fl_config_init (the first release's
// symbol, which a program built against that header calls) may write.
constexpr size_t kConfigFirstSize = offsetof(fl_config, readahead_windows);
static_assert(sizeof(void*) != 8 || kConfigFirstSize == 96, "fl_config's first release changed");

namespace {
fl_config config_defaults() {
  const faultline::EngineConfig d{};
  fl_config c{};
  c.struct_size = sizeof(fl_config);
  c.fault_threads = d.fault_threads;
  c.fault_around_pages = d.fault_around_pages;
  c.readahead_max_pages = d.readahead_max_pages;
  c.read_around_pages = d.read_around_pages;
  c.write_around_max_pages = d.write_around_max_pages;
  c.flusher = d.flusher ? 1 : 0;
  c.flush_interval_ms = d.flush_interval_ms;
  c.dirty_expire_ms = d.dirty_expire_ms;
  c.fault_mode = FL_FAULT_HANDLER_THREADS;
  c.dirty_background_pages = d.dirty_background_pages;
  c.dirty_limit_pages = d.dirty_limit_pages;
  c.memory_limit_pages = d.memory_limit_pages;
  c.readahead_windows = static_cast<uint32_t>(d.readahead_windows);
  return c;
}
}  // namespace

void fl_config_init_sized(fl_config* cfg, size_t size) {
  if (!cfg || size < kConfigFirstSize) return;
  size = std::min(size, sizeof(fl_config));
  fl_config c = config_defaults();
  c.struct_size = static_cast<uint32_t>(size);
  std::memcpy(cfg, &c, size);  // the fields the caller's header has, no more
}

// (In parentheses: the header's macro of that name calls fl_config_init_sized.)
void(fl_config_init)(fl_config* cfg) { fl_config_init_sized(cfg, kConfigFirstSize); }

int fl_engine_create(const fl_config* cfg, fl_engine** out) {
  if (!out) return fail(EINVAL, "faultline: fl_engine_create: out is NULL");
  *out = nullptr;
  fl_config c = config_defaults();
  if (cfg) {
    // A caller built against an older header passes the fields it knows
    // (struct_size); those added since keep their defaults.
    if (cfg->struct_size < kConfigFirstSize)
      return fail(EINVAL, "faultline: fl_config not initialised (fl_config_init)");
    std::memcpy(&c, cfg, std::min<size_t>(cfg->struct_size, sizeof(fl_config)));
    c.struct_size = sizeof(fl_config);
  }
  if (c.fault_threads == 0) return fail(EINVAL, "faultline: fl_config.fault_threads must be > 0");
  if (c.fault_mode != FL_FAULT_HANDLER_THREADS && c.fault_mode != FL_FAULT_FAULTING_THREAD)
    return fail(EINVAL, "faultline: fl_config.fault_mode must be FL_FAULT_HANDLER_THREADS or "
                        "FL_FAULT_FAULTING_THREAD");
  return guard_call([&] {
    faultline::EngineConfig e;
    e.fault_threads = c.fault_threads;
    // The pool grows on demand from fault_threads (EngineConfig::max_fault_threads).
    e.max_fault_threads = std::max(e.max_fault_threads, c.fault_threads);
    e.fault_around_pages = c.fault_around_pages;
    e.readahead_max_pages = c.readahead_max_pages;
    e.read_around_pages = c.read_around_pages;
    e.write_around_max_pages = c.write_around_max_pages;
    e.flusher = c.flusher != 0;
    e.flush_interval_ms = c.flush_interval_ms;
    e.dirty_expire_ms = c.dirty_expire_ms;
    e.dirty_background_pages = c.dirty_background_pages;
    e.dirty_limit_pages = c.dirty_limit_pages;
    e.memory_limit_pages = c.memory_limit_pages;
    e.readahead_windows = c.readahead_windows;
    e.fault_mode = c.fault_mode == FL_FAULT_FAULTING_THREAD ? faultline::FaultMode::FaultingThread
                                                           : faultline::FaultMode::HandlerThreads;
    if (c.log) {
      auto fn = c.log;
      void* ctx = c.log_ctx;
      e.log = [fn, ctx](std::string_view m) { fn(ctx, m.data(), m.size()); };
    }
    auto st = std::make_shared<EngineState>(std::move(e));
    std::lock_guard lk(g_mu);
    *out = reinterpret_cast<fl_engine*>(st.get());
    g_engines.emplace(st.get(), std::move(st));
    return 0;
  });
}

int fl_engine_destroy(fl_engine* engine) {
  std::shared_ptr<EngineState> st;
  std::vector<std::shared_ptr<Mapping>> views;
  {
    std::lock_guard lk(g_mu);
    auto it = g_engines.find(engine);
    if (it == g_engines.end()) return bad_engine();
    st = std::move(it->second);
    g_engines.erase(it);
    for (auto v = g_views.begin(); v != g_views.end();) {
      if (v->second.owner == st.get()) {
        views.push_back(std::move(v->second.map));
        v = g_views.erase(v);
      } else {
        ++v;
      }
    }
  }
  return guard_call([&] {
    views.clear();  // each view: wait for faults in flight, munmap (R13)
    st->engine.close();
    return 0;
  });
}

int64_t fl_engine_reclaim(fl_engine* engine, uint64_t pages) {
  auto st = find_engine(engine);
  if (!st) return bad_engine();
  return guard_call([&]() -> int64_t { return static_cast<int64_t>(st->engine.reclaim(pages)); });
}

void fl_file_options_init(fl_file_options* opts) {
  if (!opts) return;
  *opts = fl_file_options{};
  opts->struct_size = sizeof(fl_file_options);
  opts->frames = FL_FRAMES_4K;
}

int fl_open(fl_engine* engine, const char* path, int flags, const fl_file_options* opts, fl_file** out) {
  if (!out) return fail(EINVAL, "faultline: fl_open: out is NULL");
  *out = nullptr;
  if (!path) return fail(EINVAL, "faultline: fl_open: path is NULL");
  const int acc = flags & O_ACCMODE;
  if ((flags & ~(O_ACCMODE | O_CREAT)) != 0 || (acc != O_RDONLY && acc != O_RDWR))
    return fail(EINVAL, "faultline: fl_open: flags must be FL_O_RDONLY or FL_O_RDWR, optionally | FL_O_CREAT");
  faultline::FileOptions fo;
  if (int r = check_options(opts, fo)) return r;
  auto st = find_engine(engine);
  if (!st) return bad_engine();
  return guard_call([&] {
    auto backend = faultline::make_file_backend(path, acc == O_RDWR, (flags & O_CREAT) != 0);
    return register_file(st, st->engine.open(std::move(backend), fo), acc == O_RDWR, out);
  });
}

int fl_open_backend(fl_engine* engine, const char* identity, const fl_backend_ops* ops, void* ctx,
                    const fl_file_options* opts, fl_file** out) {
  if (!out) return fail(EINVAL, "faultline: fl_open_backend: out is NULL");
  *out = nullptr;
  if (!identity || !ops) return fail(EINVAL, "faultline: fl_open_backend: identity or ops is NULL");
  if (ops->struct_size < sizeof(fl_backend_ops))
    return fail(EINVAL, "faultline: fl_backend_ops.struct_size must be sizeof(fl_backend_ops)");
  if (!ops->size || !ops->read)
    return fail(EINVAL, "faultline: fl_backend_ops needs size and read");
  faultline::FileOptions fo;
  if (int r = check_options(opts, fo)) return r;
  auto st = find_engine(engine);
  if (!st) return bad_engine();
  return guard_call([&] {
    auto backend = std::make_shared<CBackend>(identity, *ops, ctx);
    return register_file(st, st->engine.open(std::move(backend), fo), true, out);
  });
}

int fl_close(fl_file* file) {
  std::shared_ptr<FileState> st;
  {
    std::lock_guard lk(g_mu);
    auto it = g_files.find(file);
    if (it == g_files.end()) return bad_file();
    st = std::move(it->second);
    g_files.erase(it);
  }
  std::unique_lock lk(st->mu);  // waits for calls in flight on this handle
  return guard_call([&] {
    st->file.close();
    return 0;
  });
}

int64_t fl_file_size(fl_file* file) {
  return with_file(file, [](FileState& s) -> int64_t { return static_cast<int64_t>(s.file.size()); });
}

int64_t fl_page_size(fl_file* file) {
  return with_file(file, [](FileState& s) -> int64_t { return static_cast<int64_t>(s.file.page_size()); });
}

int fl_mmap(fl_file* file, size_t len, int prot, int flags, uint64_t off, void** addr) {
  if (!addr) return fail(EINVAL, "faultline: fl_mmap: addr is NULL");
  *addr = nullptr;
  if (prot != FL_PROT_READ && prot != (FL_PROT_READ | FL_PROT_WRITE))
    return fail(EINVAL, "faultline: fl_mmap: prot must be FL_PROT_READ or FL_PROT_READ|FL_PROT_WRITE");
  if (flags != FL_MAP_SHARED && flags != FL_MAP_PRIVATE)
    return fail(EINVAL, "faultline: fl_mmap: flags must be FL_MAP_SHARED or FL_MAP_PRIVATE");
  return with_file(file, [&](FileState& s) {
    const bool write = prot & FL_PROT_WRITE;
    const bool shared = flags == FL_MAP_SHARED;
    if (write && shared && !(s.writable && s.file.writable()))
      return fail(EACCES, "faultline: fl_mmap: writable shared view of a read-only file");
    auto m = std::make_shared<Mapping>(
        s.file.map(off, len, write ? faultline::Access::ReadWrite : faultline::Access::ReadOnly,
                   shared ? faultline::Sharing::Shared : faultline::Sharing::Private));
    const std::size_t ps = s.file.page_size();
    View v{m, (len + ps - 1) & ~(ps - 1), ps, s.eng.get()};
    *addr = m->data();
    std::lock_guard lk(g_mu);
    g_views.emplace(reinterpret_cast<uintptr_t>(m->data()), std::move(v));
    return 0;
  });
}

int fl_munmap(void* addr, size_t len) {
  std::shared_ptr<Mapping> m;
  {
    std::lock_guard lk(g_mu);
    auto it = g_views.find(reinterpret_cast<uintptr_t>(addr));
    if (it == g_views.end()) return fail(EINVAL, "faultline: fl_munmap: not the start of a faultline view");
    const std::size_t ps = it->second.page;
    if (len == 0 || ((len + ps - 1) & ~(ps - 1)) != it->second.len)
      return fail(EINVAL, "faultline: fl_munmap: len must cover the whole view (partial unmaps are not supported)");
    m = std::move(it->second.map);
    g_views.erase(it);
  }
  return guard_call([&] {
    m.reset();  // waits for faults in flight, munmaps (R13)
    return 0;
  });
}

int fl_msync(void* addr, size_t len, int flags) {
  std::shared_ptr<Mapping> m;
  const auto a = reinterpret_cast<uintptr_t>(addr);
  {
    std::lock_guard lk(g_mu);
    auto it = view_of(a);
    if (it == g_views.end())
      return fail(ENOMEM, "faultline: fl_msync: address not inside a faultline view");
    m = it->second.map;
  }
  return guard_call([&] {
    m->msync(addr, len, flags);  // EINVAL / ENOMEM / write-back errors as msync(2)
    return 0;
  });
}

ssize_t fl_pread(fl_file* file, void* buf, size_t count, uint64_t off) {
  if (count == 0) return with_file(file, [](FileState&) -> ssize_t { return 0; });
  if (!buf) return fail(EINVAL, "faultline: fl_pread: buf is NULL");
  if (count > SSIZE_MAX) return fail(EINVAL, "faultline: fl_pread: count too large");
  return with_file(file, [&](FileState& s) -> ssize_t {
    return static_cast<ssize_t>(s.file.read(off, {static_cast<std::byte*>(buf), count}));
  });
}

ssize_t fl_pwrite(fl_file* file, const void* buf, size_t count, uint64_t off) {
  if (count == 0) return with_file(file, [](FileState&) -> ssize_t { return 0; });
  if (!buf) return fail(EINVAL, "faultline: fl_pwrite: buf is NULL");
  if (count > SSIZE_MAX) return fail(EINVAL, "faultline: fl_pwrite: count too large");
  return with_file(file, [&](FileState& s) -> ssize_t {
    if (!s.writable) return fail(EBADF, "faultline: fl_pwrite: handle not open for writing");
    return static_cast<ssize_t>(s.file.write(off, {static_cast<const std::byte*>(buf), count}));
  });
}

int fl_fsync(fl_file* file) {
  return with_file(file, [](FileState& s) {
    s.file.fsync();
    return 0;
  });
}

int fl_ftruncate(fl_file* file, uint64_t length) {
  if (length > static_cast<uint64_t>(INT64_MAX)) return fail(EINVAL, "faultline: fl_ftruncate: length too large");
  return with_file(file, [&](FileState& s) {
    if (!s.writable) return fail(EINVAL, "faultline: fl_ftruncate: handle not open for writing");
    s.file.truncate(length);
    return 0;
  });
}

int fl_fallocate(fl_file* file, int mode, uint64_t off, uint64_t len) {
  if (mode != (FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE))
    return fail(EOPNOTSUPP, "faultline: fl_fallocate: only FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE is supported");
  if (len == 0) return fail(EINVAL, "faultline: fl_fallocate: len is 0");
  if (off + len < off) return fail(EINVAL, "faultline: fl_fallocate: range overflows");
  return with_file(file, [&](FileState& s) {
    if (!s.writable) return fail(EBADF, "faultline: fl_fallocate: handle not open for writing");
    s.file.punch_hole(off, len);
    return 0;
  });
}

int fl_invalidate(fl_file* file, uint64_t off, uint64_t len) {
  return with_file(file, [&](FileState& s) {
    const auto failed = s.file.invalidate(off, len);
    if (!failed.empty())
      return fail(EIO, "faultline: fl_invalidate: " + std::to_string(failed.size()) +
                           " page(s) could not be written back (first at offset " +
                           std::to_string(failed.front()) + "); they stay cached and dirty");
    return 0;
  });
}

int fl_stats_file(fl_file* file, fl_stats* out) {
  if (!out) return fail(EINVAL, "faultline: fl_stats_file: out is NULL");
  return with_file(file, [&](FileState& s) {
    copy_stats(s.file.stats(), out);
    return 0;
  });
}

int fl_stats_engine(fl_engine* engine, fl_stats* out) {
  if (!out) return fail(EINVAL, "faultline: fl_stats_engine: out is NULL");
  auto st = find_engine(engine);
  if (!st) return bad_engine();
  return guard_call([&] {
    copy_stats(st->engine.stats(), out);
    return 0;
  });
}

int fl_guard(void (*fn)(void* arg), void* arg, fl_bus_error* err) {
  if (!fn) return fail(EINVAL, "faultline: fl_guard: fn is NULL");
  const auto bus = faultline::guarded([&] { fn(arg); });
  if (!bus) return 0;
  if (err) {
    err->addr = bus->addr;
    err->code = bus->code;
  }
  char msg[96];
  std::snprintf(msg, sizeof msg, "faultline: SIGBUS at %p (si_code %d)", bus->addr, bus->code);
  return fail(EFAULT, msg);
}

int fl_guarded_copy(void* dst, const void* src, size_t n) {
  if (n && (!dst || !src)) return fail(EINVAL, "faultline: fl_guarded_copy: NULL buffer");
  struct Args {
    void* d;
    const void* s;
    size_t n;
  } a{dst, src, n};
  return fl_guard([](void* p) {
    auto* x = static_cast<Args*>(p);
    std::memcpy(x->d, x->s, x->n);
  }, &a, nullptr);
}

const char* fl_last_error(void) { return t_error.c_str(); }

const char* fl_strerror(int err) {
  thread_local char buf[128];
  const int e = err < 0 ? -err : err;
  // GNU strerror_r returns the message (possibly not in buf).
  return strerror_r(e, buf, sizeof buf);
}

const char* fl_version(void) { return FAULTLINE_VERSION_STRING; }

}  // extern "C"
