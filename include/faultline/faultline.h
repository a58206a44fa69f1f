/* faultline — the C API (C99; plain types only, so FFI bindings can use it).
 *
 * An engine (one per process is typical) caches files in user space on
 * userfaultfd; fl_mmap gives views of a cached file that are used with plain
 * loads and stores. The calls are named after the POSIX calls whose semantics
 * they have (mmap, munmap, msync, ftruncate, fallocate, pread, pwrite, fsync).
 *
 * Errors: every call that can fail returns a negative errno (as liburing):
 * 0 or a count on success, -EINVAL for bad arguments (NULL pointers, bad
 * flags, unaligned offsets, zero lengths), -EBADF for a handle that is closed
 * or was never returned by this library, -ESHUTDOWN for a file whose engine
 * was destroyed, and the backend's errno for its failures. No call crashes on
 * bad input. fl_last_error() gives a message for the human about the last
 * failing call of the calling thread; fl_strerror() names an errno value.
 *
 * Handles: fl_engine and fl_file pointers are opaque tokens checked on every
 * call, so using one after fl_engine_destroy / fl_close gives -EBADF (as with
 * a closed file descriptor, a token may be reused by a later open). All calls
 * are thread-safe.
 *
 * SIGBUS: as with mmap, a load or store past the page holding EOF, a backend
 * read error or a refused page_mkwrite gives the accessing thread SIGBUS.
 * fl_guard() runs a function and turns such a SIGBUS into -EFAULT.
 *
 * Linking: -lfaultline (pkg-config faultline; CMake find_package(faultline),
 * target faultline::faultline). The library is C++; its C entry points never
 * let an exception escape.
 */
#ifndef FAULTLINE_FAULTLINE_H
#define FAULTLINE_FAULTLINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- handles -------------------------------------------------------------- */

typedef struct fl_engine fl_engine; /* an engine: userfaultfd, fault threads, flusher */
typedef struct fl_file fl_file;     /* a handle onto one cached backing object */

/* ---- constants (the Linux values of the calls they are named after) ------- */

#define FL_PROT_READ 0x1   /* = PROT_READ */
#define FL_PROT_WRITE 0x2  /* = PROT_WRITE */
#define FL_MAP_SHARED 0x01  /* = MAP_SHARED: stores reach the file, coherent with every view */
#define FL_MAP_PRIVATE 0x02 /* = MAP_PRIVATE: copy-on-write, never written back */
#define FL_MS_ASYNC 1       /* = MS_ASYNC */
#define FL_MS_SYNC 4        /* = MS_SYNC */
#define FL_FALLOC_FL_KEEP_SIZE 0x01  /* = FALLOC_FL_KEEP_SIZE */
#define FL_FALLOC_FL_PUNCH_HOLE 0x02 /* = FALLOC_FL_PUNCH_HOLE */
#define FL_O_RDONLY 0       /* = O_RDONLY */
#define FL_O_RDWR 02        /* = O_RDWR */
#define FL_O_CREAT 0100     /* = O_CREAT */

/* ---- engine --------------------------------------------------------------- */

/* Engine settings. Always fill with fl_config_init() first, then change
 * fields: later versions may add fields at the end (struct_size tells which
 * ones the caller knows). Pages are 4 KiB units. */
typedef struct fl_config {
  uint32_t struct_size;            /* the caller's sizeof(fl_config), set by fl_config_init */
  uint32_t fault_threads;          /* fault-handler threads (default 2) */
  uint64_t fault_around_pages;     /* pages installed per non-sequential fault (default 256) */
  uint64_t readahead_max_pages;    /* largest sequential window (default 1024) */
  uint64_t read_around_pages;      /* read-around hint for random faults (default 1024) */
  uint64_t write_around_max_pages; /* sequential store window (default 1024) */
  int32_t flusher;                 /* 1: background write-back thread (default), 0: off */
  uint32_t flush_interval_ms;      /* flusher period (default 1000) */
  uint32_t dirty_expire_ms;        /* age at which dirty pages are written back (default 30000) */
  uint32_t fault_mode;             /* FL_FAULT_HANDLER_THREADS (default) or
                                      FL_FAULT_FAULTING_THREAD: see fl_handle_sigbus */
  uint64_t dirty_background_pages; /* background write-back threshold (default 10% of RAM) */
  uint64_t dirty_limit_pages;      /* stores past it are throttled (default 20% of RAM) */
  uint64_t memory_limit_pages;     /* cache limit over all files; 0 = none (default: half
                                      the process's memory cgroup limit, none without one) */
  /* Warnings (THP settings, fallbacks): called with a message that is not
   * NUL-terminated; NULL = stderr. log_ctx is passed back. */
  void (*log)(void *log_ctx, const char *msg, size_t len);
  void *log_ctx;
  /* Added after the first release (a struct_size without them gets the defaults): */
  uint32_t readahead_windows;      /* windows a sequential stream keeps read ahead, 1-8
                                      (default 1; 2 scans faster, see engine.hpp) */
  uint32_t reserved0;              /* 0 */
} fl_config;

/* Fills *cfg with the defaults. No-op for NULL. A macro over
 * fl_config_init_sized, so the library writes exactly the fields this header
 * declares (a program built against an older header gets the older symbol,
 * which writes only the first release's fields). */
void fl_config_init_sized(fl_config *cfg, size_t size);
void fl_config_init(fl_config *cfg);
#define fl_config_init(cfg) fl_config_init_sized((cfg), sizeof *(cfg))

/* fl_config.fault_mode (faultline/engine.hpp FaultMode). HANDLER_THREADS: the
 * engine's threads resolve faults; every access works. FAULTING_THREAD: each
 * faulting thread resolves its own fault in a SIGBUS handler the engine
 * installs (faster: no thread hand-off); a kernel-mode access to a page not
 * yet installed (read(2) into a view, O_DIRECT, futexes, mlock) then fails
 * with EFAULT, and a SIGBUS handler installed after the engine must call
 * fl_handle_sigbus first. A thread that blocks SIGBUS is killed by its first
 * fault. fl_backend_ops callbacks then run on the faulting thread, inside
 * its SIGBUS handler: a callback must not take a lock that thread may hold
 * while it touches a view (it would wait for itself). */
#define FL_FAULT_HANDLER_THREADS 0u
#define FL_FAULT_FAULTING_THREAD 1u

/* For a program's own SA_SIGINFO SIGBUS handler with FL_FAULT_FAULTING_THREAD
 * engines: call it first with the handler's three arguments. 1: a fault on
 * an engine's view, resolved (return from the handler; the access retries);
 * 0: a SIGBUS that is not the engine's to resolve (past EOF, an I/O error,
 * another mapping). */
int fl_handle_sigbus(int sig, void *siginfo, void *ucontext);

/* Creates an engine. cfg may be NULL (defaults). On success stores the
 * handle in *out and returns 0. Errors: -EINVAL (out NULL, cfg->struct_size
 * too small, fault_threads 0, fault_mode unknown, readahead_windows not in
 * 1-8, other settings the engine refuses: see fl_last_error), -ENOTSUP (kernel lacks a userfaultfd
 * feature), -EPERM (no permission for a userfaultfd that serves kernel-mode
 * faults: root, /dev/userfaultfd or sysctl vm.unprivileged_userfaultfd=1). */
int fl_engine_create(const fl_config *cfg, fl_engine **out);

/* Writes back every file, unmaps every view of this engine (their addresses
 * become invalid), stops the threads and frees the engine. fl_file handles of
 * the engine stay valid as handles but their calls return -ESHUTDOWN; close
 * them with fl_close. Returns 0 or -EBADF. */
int fl_engine_destroy(fl_engine *engine);

/* Evicts up to `pages` (4 KiB units) clean cached pages now, as under memory
 * pressure. Returns the count freed (>= 0) or a negative errno. */
int64_t fl_engine_reclaim(fl_engine *engine, uint64_t pages);

/* ---- opening files -------------------------------------------------------- */

#define FL_FRAMES_4K 0 /* 4 KiB frames (shmem memfd) */
#define FL_FRAMES_2M 1 /* 2 MiB frames (hugetlb memfd; needs a huge page pool) */

/* Per-file choices (made by the first open of an object). Fill with
 * fl_file_options_init() first. */
typedef struct fl_file_options {
  uint32_t struct_size;    /* sizeof(fl_file_options), set by fl_file_options_init */
  uint32_t frames;         /* FL_FRAMES_4K (default) or FL_FRAMES_2M */
  int32_t stable_pages;    /* 1: a store to a page under write-back waits for it */
  int32_t async_dirty;     /* 1: dirty tracking by WP_ASYNC + PAGEMAP_SCAN (Linux >= 6.7) */
} fl_file_options;

void fl_file_options_init(fl_file_options *opts);

/* Opens the local file `path`. flags: FL_O_RDONLY or FL_O_RDWR, optionally
 * | FL_O_CREAT (mode 0644); anything else is -EINVAL. opts may be NULL.
 * Like a file descriptor, a FL_O_RDONLY handle cannot write (fl_pwrite,
 * fl_ftruncate, fl_fallocate, writable shared views) even when another
 * handle onto the same file can.
 * Errors: -ENOENT, -EACCES, ... as open(2); -EINVAL for a path that is not a
 * regular file; -ENOMEM for FL_FRAMES_2M when the huge page pool is too
 * small (fl_last_error names the sysctl). */
int fl_open(fl_engine *engine, const char *path, int flags, const fl_file_options *opts,
            fl_file **out);

/* A backend written in C: the engine calls these to fill, write back and
 * resize the object (from its own threads, possibly several at once). Every
 * call returns a negative errno on failure; ctx is the pointer given to
 * fl_open_backend. Offsets of read/write are multiples of the file's page
 * size. The int-returning ops return 0 or a negative errno: any other value
 * (a byte count, a positive errno) is taken as -EIO, so a short write is
 * never taken as written. */
typedef struct fl_backend_ops {
  uint32_t struct_size; /* sizeof(fl_backend_ops) */
  uint32_t reserved0;
  /* Required: current size in bytes. */
  int64_t (*size)(void *ctx);
  /* Required: read up to len bytes at off into buf; returns bytes read
   * (short only at the object's end: the engine zero-fills the rest). */
  ssize_t (*read)(void *ctx, uint64_t off, void *buf, size_t len);
  /* Write all len bytes at off; 0 on success. NULL: the object is read-only
   * (writable shared views are refused with -EACCES, writes with -EROFS). */
  int (*write)(void *ctx, uint64_t off, const void *buf, size_t len);
  /* Optional: a clean page [off, off+len) is about to become writable in a
   * shared view; may allocate space or refuse (the storing thread then gets
   * SIGBUS). NULL: always allowed. */
  int (*page_mkwrite)(void *ctx, uint64_t off, size_t len);
  /* Optional: set the size. NULL: fl_ftruncate returns -EOPNOTSUPP. */
  int (*truncate)(void *ctx, uint64_t new_size);
  /* Optional: deallocate [off, off+len) (reads zeros afterwards). NULL:
   * fl_fallocate(PUNCH_HOLE) returns -EOPNOTSUPP. */
  int (*punch_hole)(void *ctx, uint64_t off, uint64_t len);
  /* Optional: make written data durable. NULL: nothing to do. */
  int (*sync)(void *ctx);
  /* Optional: called once when the engine no longer uses the backend (the
   * last handle and view of the file are gone), to free ctx. */
  void (*release)(void *ctx);
} fl_backend_ops;

/* Opens an object served by a C backend. `identity` names the object: two
 * opens with the same identity give two handles onto one cache (the ops and
 * ctx of the first open are kept; the second's release is called at once).
 * ops is copied. Errors: -EINVAL (NULL engine/identity/ops/out, a required
 * op missing, struct_size too small), the backend's size() error. */
int fl_open_backend(fl_engine *engine, const char *identity, const fl_backend_ops *ops,
                    void *ctx, const fl_file_options *opts, fl_file **out);

/* Closes a handle. Views made through it stay valid until fl_munmap; the
 * last handle and view of a file write its dirty pages back. 0 or -EBADF. */
int fl_close(fl_file *file);

/* Size in bytes (>= 0) or a negative errno. */
int64_t fl_file_size(fl_file *file);
/* Page (frame) size of the file's cache in bytes, or a negative errno. */
int64_t fl_page_size(fl_file *file);

/* ---- views ---------------------------------------------------------------- */

/* mmap(2) of [off, off+len) of the file: on success stores the view's address
 * in *addr and returns 0. prot: FL_PROT_READ or FL_PROT_READ|FL_PROT_WRITE.
 * flags: exactly one of FL_MAP_SHARED / FL_MAP_PRIVATE. off must be a
 * multiple of the page size (fl_page_size), len > 0; the view may extend past
 * EOF (access past the page holding EOF gets SIGBUS, as mmap). The engine
 * chooses the address. Errors: -EINVAL (bad prot/flags, unaligned off, len 0,
 * addr NULL, a private view of a 2 MiB-frame file), -EACCES (writable shared
 * view of a read-only file, as mmap), -EBADF, -ESHUTDOWN. */
int fl_mmap(fl_file *file, size_t len, int prot, int flags, uint64_t off, void **addr);

/* munmap(2) of a whole view: addr must be an address fl_mmap returned and
 * len its length (any length that rounds up to the same pages). Waits for
 * faults in flight on the view. Unlike munmap, part of a view cannot be
 * unmapped (-EINVAL), and an address that is not a view is -EINVAL. */
int fl_munmap(void *addr, size_t len);

/* msync(2): writes the dirty pages of [addr, addr+len) back. addr must be page
 * aligned and inside a view; flags FL_MS_SYNC (write and wait; returns a
 * write-back error this view has not yet seen, once) or FL_MS_ASYNC (start
 * it and return). Errors: -EINVAL (unaligned addr, bad flags), -ENOMEM (the
 * range is not inside one view), -EIO etc. from write-back. */
int fl_msync(void *addr, size_t len, int flags);

/* ---- file calls ----------------------------------------------------------- */

/* pread(2): reads up to count bytes at off; returns the count (short at EOF, 0
 * at or past EOF) or a negative errno. Coherent with every view; buf may lie
 * in a view. */
ssize_t fl_pread(fl_file *file, void *buf, size_t count, uint64_t off);
/* pwrite(2): writes all count bytes at off, extending the file past EOF;
 * returns count or a negative errno (-EBADF: handle opened FL_O_RDONLY,
 * -EROFS: read-only backend). The pages are dirty until written back. */
ssize_t fl_pwrite(fl_file *file, const void *buf, size_t count, uint64_t off);
/* fsync(2): writes every dirty page back, then the backend's sync. Returns
 * 0, or a write-back error this handle has not yet seen (once per handle;
 * failed pages stay dirty and are retried). */
int fl_fsync(fl_file *file);
/* ftruncate(2): shrinks or extends. Pages past the new EOF are dropped in
 * every view (access past the page holding EOF gets SIGBUS), dirty data there
 * is discarded. -EINVAL for a handle opened FL_O_RDONLY (as ftruncate),
 * -EROFS read-only backend, -EOPNOTSUPP backend without truncate. */
int fl_ftruncate(fl_file *file, uint64_t length);
/* fallocate(2), the hole-punching mode only: mode must be
 * FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE; [off, off+len) then reads
 * zeros in every shared view and through fl_pread (private copies survive).
 * Other modes are -EOPNOTSUPP, as fallocate(2) for a file system without
 * them (PUNCH_HOLE without KEEP_SIZE is -EOPNOTSUPP there too); len 0 is
 * -EINVAL; -EBADF for a handle opened FL_O_RDONLY. */
int fl_fallocate(fl_file *file, int mode, uint64_t off, uint64_t len);
/* Drops the cached pages of [off, off+len) so the next access reads the
 * backend again (its data changed underneath); dirty pages are written back
 * first. Returns 0, or -EIO when some pages could not be written back: they
 * stay cached and dirty (fl_last_error gives the count), and fl_fsync
 * reports the error too. */
int fl_invalidate(fl_file *file, uint64_t off, uint64_t len);

/* ---- statistics ----------------------------------------------------------- */

/* A snapshot of counters (see faultline/stats.hpp for each one's meaning). */
typedef struct fl_stats {
  uint64_t missing_faults, minor_faults, wp_faults;
  uint64_t pages_filled, pages_installed, pages_fault_around, pages_dirtied;
  uint64_t pages_written_back, bytes_read, bytes_written;
  uint64_t read_errors, write_errors, mkwrite_errors, sigbus_sent;
  uint64_t pages_invalidated, invalidate_conflicts, pages_truncated, pages_punched;
  uint64_t pages_laundered, pages_write_around, dirty_pages, fault_retries;
  uint64_t pages_reclaimed, cached_pages, stores_throttled;
} fl_stats;

/* The file's statistics (shared by every handle onto it). 0 or -errno. */
int fl_stats_file(fl_file *file, fl_stats *out);
/* Totals over every file of the engine (cached_pages in 4 KiB pages). */
int fl_stats_engine(fl_engine *engine, fl_stats *out);

/* ---- SIGBUS guard --------------------------------------------------------- */

typedef struct fl_bus_error {
  void *addr; /* the faulting address */
  int code;   /* si_code (BUS_ADRERR, BUS_MCEERR_AR) */
} fl_bus_error;

/* Runs fn(arg). If fn's thread gets SIGBUS (access past EOF, backend I/O
 * error, refused page_mkwrite), returns -EFAULT (with the address in *err
 * when err is not NULL) instead of dying; otherwise 0. Thread-safe and nests;
 * a SIGBUS outside a guard goes to the handler installed before. fn is left
 * with siglongjmp: keep it to loads, stores and memcpy. -EINVAL for fn NULL. */
int fl_guard(void (*fn)(void *arg), void *arg, fl_bus_error *err);

/* memcpy(dst, src, n) under fl_guard: 0 or -EFAULT (for FFI callers that
 * cannot pass a C function). */
int fl_guarded_copy(void *dst, const void *src, size_t n);

/* ---- errors --------------------------------------------------------------- */

/* The message of the last failing call on this thread ("" if none); valid
 * until the thread's next failing call. */
const char *fl_last_error(void);
/* strerror for a value returned by this library (negative or positive). */
const char *fl_strerror(int err);

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *fl_version(void);

#ifdef __cplusplus
}
#endif

#endif /* FAULTLINE_FAULTLINE_H */
