/* The C API from C: every call's results and error codes, a C backend.
 * Compiled as C99 (no C++ in this file); each CHECK prints the failing line. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faultline/faultline.h"

static int failures = 0;
#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__,    \
              __LINE__, #cond, fl_last_error());                                 \
      failures++;                                                                \
    }                                                                            \
  } while (0)
#define CHECK_EQ(a, b)                                                           \
  do {                                                                           \
    long long a_ = (long long)(a), b_ = (long long)(b);                          \
    if (a_ != b_) {                                                              \
      fprintf(stderr, "%s:%d: %s = %lld, expected %s = %lld (last error: %s)\n", \
              __FILE__, __LINE__, #a, a_, #b, b_, fl_last_error());              \
      failures++;                                                                \
    }                                                                            \
  } while (0)

enum { PAGE = 4096 };

static unsigned char pattern(uint64_t i) { return (unsigned char)(i * 7 + (i >> 12)); }

/* ---- a C backend: an object in memory, with call counters -------------- */
struct membe {
  unsigned char *data;
  uint64_t size, cap;
  int reads, writes, mkwrites, syncs, releases, truncates, punches;
  uint64_t refuse_mkwrite_at; /* page_mkwrite of this offset fails with -ENOSPC */
  int short_writes;           /* writes left that store half and return a byte count */
};

static int64_t mem_size(void *ctx) { return (int64_t)((struct membe *)ctx)->size; }
static ssize_t mem_read(void *ctx, uint64_t off, void *buf, size_t len) {
  struct membe *m = ctx;
  __atomic_fetch_add(&m->reads, 1, __ATOMIC_SEQ_CST); /* engine threads */
  if (off >= m->size) return 0;
  if (len > m->size - off) len = m->size - off;
  memcpy(buf, m->data + off, len);
  return (ssize_t)len;
}
static int mem_grow(struct membe *m, uint64_t end) {
  if (end > m->cap) {
    unsigned char *p = realloc(m->data, end);
    if (!p) return -ENOMEM;
    memset(p + m->cap, 0, end - m->cap);
    m->data = p;
    m->cap = end;
  }
  return 0;
}
static int mem_write(void *ctx, uint64_t off, const void *buf, size_t len) {
  struct membe *m = ctx;
  __atomic_fetch_add(&m->writes, 1, __ATOMIC_SEQ_CST); /* engine threads */
  if (mem_grow(m, off + len)) return -ENOMEM;
  /* A broken backend: pwrite's habit of a short byte count, not 0 / -errno. */
  const int short_write = __atomic_load_n(&m->short_writes, __ATOMIC_SEQ_CST) > 0;
  if (short_write) {
    __atomic_fetch_sub(&m->short_writes, 1, __ATOMIC_SEQ_CST);
    len /= 2;
  }
  memcpy(m->data + off, buf, len);
  if (off + len > m->size) m->size = off + len;
  return short_write ? (int)len : 0;
}
static int mem_mkwrite(void *ctx, uint64_t off, size_t len) {
  struct membe *m = ctx;
  (void)len;
  __atomic_fetch_add(&m->mkwrites, 1, __ATOMIC_SEQ_CST); /* engine threads */
  return off == m->refuse_mkwrite_at ? -ENOSPC : 0;
}
static int mem_truncate(void *ctx, uint64_t n) {
  struct membe *m = ctx;
  __atomic_fetch_add(&m->truncates, 1, __ATOMIC_SEQ_CST); /* engine threads */
  if (mem_grow(m, n)) return -ENOMEM;
  if (n < m->size) memset(m->data + n, 0, m->size - n);
  m->size = n;
  return 0;
}
static int mem_punch(void *ctx, uint64_t off, uint64_t len) {
  struct membe *m = ctx;
  __atomic_fetch_add(&m->punches, 1, __ATOMIC_SEQ_CST); /* engine threads */
  if (off < m->size) memset(m->data + off, 0, (off + len > m->size ? m->size : off + len) - off);
  return 0;
}
static int mem_sync(void *ctx) { __atomic_fetch_add(&((struct membe *)ctx)->syncs, 1, __ATOMIC_SEQ_CST); return 0; }
static void mem_release(void *ctx) { __atomic_fetch_add(&((struct membe *)ctx)->releases, 1, __ATOMIC_SEQ_CST); }

/* ---- helpers ------------------------------------------------------------- */
struct touch { volatile unsigned char *p; unsigned char v; int store; };
static void do_touch(void *arg) {
  struct touch *t = arg;
  if (t->store) *t->p = t->v;
  else t->v = *t->p;
}

static void test_bad_input(void) {
  fl_engine *e = (fl_engine *)0x1;
  fl_file *f = (fl_file *)0x1;
  void *addr = (void *)0x1;
  CHECK_EQ(fl_engine_create(NULL, NULL), -EINVAL);
  fl_config c;
  memset(&c, 0, sizeof c); /* not initialised */
  CHECK_EQ(fl_engine_create(&c, &e), -EINVAL);
  CHECK(e == NULL);
  CHECK_EQ(fl_engine_destroy(NULL), -EBADF);
  CHECK_EQ(fl_engine_destroy((fl_engine *)&c), -EBADF);
  CHECK_EQ(fl_close(NULL), -EBADF);
  CHECK_EQ(fl_close((fl_file *)&c), -EBADF);
  CHECK_EQ(fl_open(NULL, "/etc/hostname", FL_O_RDONLY, NULL, &f), -EBADF);
  CHECK(f == NULL);
  CHECK_EQ(fl_open(NULL, "/etc/hostname", FL_O_RDONLY, NULL, NULL), -EINVAL);
  CHECK_EQ(fl_mmap(NULL, PAGE, FL_PROT_READ, FL_MAP_SHARED, 0, &addr), -EBADF);
  CHECK(addr == NULL);
  CHECK_EQ(fl_munmap(NULL, PAGE), -EINVAL);
  CHECK_EQ(fl_munmap(&c, PAGE), -EINVAL);
  CHECK_EQ(fl_msync(&c, PAGE, FL_MS_SYNC), -ENOMEM);
  CHECK_EQ(fl_pread(NULL, &c, 1, 0), -EBADF);
  CHECK_EQ(fl_pwrite(NULL, &c, 1, 0), -EBADF);
  CHECK_EQ(fl_fsync(NULL), -EBADF);
  CHECK_EQ(fl_ftruncate(NULL, 0), -EBADF);
  CHECK_EQ(fl_fallocate(NULL, FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE, 0, 1), -EBADF);
  CHECK_EQ(fl_invalidate(NULL, 0, 1), -EBADF);
  CHECK_EQ(fl_file_size(NULL), -EBADF);
  CHECK_EQ(fl_page_size(NULL), -EBADF);
  fl_stats s;
  CHECK_EQ(fl_stats_file(NULL, &s), -EBADF);
  CHECK_EQ(fl_stats_engine(NULL, &s), -EBADF);
  CHECK_EQ(fl_engine_reclaim(NULL, 1), -EBADF);
  CHECK_EQ(fl_guard(NULL, NULL, NULL), -EINVAL);
  CHECK(strlen(fl_last_error()) > 0);
  CHECK(strcmp(fl_strerror(-EBADF), fl_strerror(EBADF)) == 0);
  CHECK(strlen(fl_strerror(-EINVAL)) > 0);
  CHECK(strlen(fl_version()) >= 5);
}

static void test_file(fl_engine *e, const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/capi-file.bin", dir);
  const uint64_t size = 3 * PAGE + 100;
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  unsigned char *buf = malloc(size);
  for (uint64_t i = 0; i < size; i++) buf[i] = pattern(i);
  CHECK_EQ(pwrite(fd, buf, size, 0), (long long)size);

  fl_file *f = NULL;
  CHECK_EQ(fl_open(e, path, FL_O_RDWR | 01000000 /* O_CLOEXEC: not accepted */, NULL, &f), -EINVAL);
  CHECK_EQ(fl_open(e, path, 01 /* O_WRONLY */, NULL, &f), -EINVAL);
  CHECK_EQ(fl_open(e, "/nonexistent/faultline-capi", FL_O_RDONLY, NULL, &f), -ENOENT);
  CHECK_EQ(fl_open(e, dir, FL_O_RDONLY, NULL, &f), -EINVAL); /* a directory */
  CHECK_EQ(fl_open(e, NULL, FL_O_RDONLY, NULL, &f), -EINVAL);
  fl_file_options bad;
  memset(&bad, 0, sizeof bad);
  CHECK_EQ(fl_open(e, path, FL_O_RDWR, &bad, &f), -EINVAL);
  fl_file_options o;
  fl_file_options_init(&o);
  o.frames = 7;
  CHECK_EQ(fl_open(e, path, FL_O_RDWR, &o, &f), -EINVAL);
  fl_file_options_init(&o);
  CHECK_EQ(fl_open(e, path, FL_O_RDWR, &o, &f), 0);
  CHECK(f != NULL);
  CHECK_EQ(fl_file_size(f), (long long)size);
  CHECK_EQ(fl_page_size(f), PAGE);

  /* mmap: bad arguments */
  void *a = NULL;
  CHECK_EQ(fl_mmap(f, size, 0, FL_MAP_SHARED, 0, &a), -EINVAL);
  CHECK_EQ(fl_mmap(f, size, FL_PROT_READ | 4 /* EXEC */, FL_MAP_SHARED, 0, &a), -EINVAL);
  CHECK_EQ(fl_mmap(f, size, FL_PROT_READ, FL_MAP_SHARED | FL_MAP_PRIVATE, 0, &a), -EINVAL);
  CHECK_EQ(fl_mmap(f, size, FL_PROT_READ, 0, 0, &a), -EINVAL);
  CHECK_EQ(fl_mmap(f, size, FL_PROT_READ, FL_MAP_SHARED, 100, &a), -EINVAL);
  CHECK_EQ(fl_mmap(f, 0, FL_PROT_READ, FL_MAP_SHARED, 0, &a), -EINVAL);
  CHECK_EQ(fl_mmap(f, size, FL_PROT_READ, FL_MAP_SHARED, 0, NULL), -EINVAL);

  /* a shared writable view: reads the file, stores reach it after msync */
  CHECK_EQ(fl_mmap(f, size, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &a), 0);
  unsigned char *p = a;
  CHECK(p != NULL && memcmp(p, buf, size) == 0);
  p[10] = 0xAB;
  p[2 * PAGE + 5] = 0xCD;
  CHECK_EQ(fl_msync(p + 1, PAGE, FL_MS_SYNC), -EINVAL);     /* unaligned */
  CHECK_EQ(fl_msync(p, PAGE, 12345), -EINVAL);               /* bad flags */
  CHECK_EQ(fl_msync(p, 64 * PAGE, FL_MS_SYNC), -ENOMEM);     /* past the view */
  CHECK_EQ(fl_msync(p, size, FL_MS_SYNC), 0);
  unsigned char b = 0;
  CHECK_EQ(pread(fd, &b, 1, 10), 1);
  CHECK_EQ(b, 0xAB);
  CHECK_EQ(pread(fd, &b, 1, 2 * PAGE + 5), 1);
  CHECK_EQ(b, 0xCD);

  /* pread / pwrite coherent with the view */
  unsigned char rb[16];
  CHECK_EQ(fl_pread(f, rb, sizeof rb, 2 * PAGE), 16);
  CHECK_EQ(rb[5], 0xCD);
  CHECK_EQ(fl_pread(f, rb, sizeof rb, size - 4), 4); /* short at EOF */
  CHECK_EQ(fl_pread(f, rb, sizeof rb, size + 10), 0);
  CHECK_EQ(fl_pread(f, NULL, 4, 0), -EINVAL);
  CHECK_EQ(fl_pread(f, NULL, 0, 0), 0);
  const unsigned char wb[3] = {1, 2, 3};
  CHECK_EQ(fl_pwrite(f, wb, 3, PAGE + 1), 3);
  CHECK(p[PAGE + 1] == 1 && p[PAGE + 2] == 2 && p[PAGE + 3] == 3);
  CHECK_EQ(fl_pwrite(f, NULL, 3, 0), -EINVAL);
  CHECK_EQ(fl_fsync(f), 0);
  CHECK_EQ(pread(fd, &b, 1, PAGE + 2), 1);
  CHECK_EQ(b, 2);

  /* a private view: copy-on-write, never written back */
  void *pa = NULL;
  CHECK_EQ(fl_mmap(f, PAGE, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_PRIVATE, PAGE, &pa), 0);
  ((unsigned char *)pa)[0] = 0x77;
  CHECK_EQ(fl_munmap(pa, PAGE), 0);
  CHECK_EQ(fl_fsync(f), 0);
  CHECK_EQ(pread(fd, &b, 1, PAGE), 1);
  CHECK_EQ(b, pattern(PAGE));

  /* fallocate: punch a hole; other modes refused */
  CHECK_EQ(fl_fallocate(f, FL_FALLOC_FL_PUNCH_HOLE, PAGE, PAGE), -EOPNOTSUPP);
  CHECK_EQ(fl_fallocate(f, 0, PAGE, PAGE), -EOPNOTSUPP);
  CHECK_EQ(fl_fallocate(f, FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE, PAGE, 0), -EINVAL);
  CHECK_EQ(fl_fallocate(f, FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE, PAGE, PAGE), 0);
  CHECK(p[PAGE] == 0 && p[2 * PAGE - 1] == 0 && p[2 * PAGE] == pattern(2 * PAGE));
  CHECK_EQ(fl_file_size(f), (long long)size);

  /* invalidate: data changed underneath becomes visible */
  b = 0x5A;
  CHECK_EQ(pwrite(fd, &b, 1, 3 * PAGE), 1);
  CHECK_EQ(fl_invalidate(f, 3 * PAGE, PAGE), 0);
  CHECK_EQ(p[3 * PAGE], 0x5A);

  /* ftruncate: access past the page holding EOF gets SIGBUS -> -EFAULT */
  CHECK_EQ(fl_ftruncate(f, PAGE + 10), 0);
  CHECK_EQ(fl_file_size(f), PAGE + 10);
  struct touch t = {p + 2 * PAGE, 0, 0};
  fl_bus_error be = {0, 0};
  CHECK_EQ(fl_guard(do_touch, &t, &be), -EFAULT);
  CHECK(be.addr == (void *)(p + 2 * PAGE));
  t.p = p + PAGE + 100; /* inside the EOF page: zeros past EOF */
  CHECK_EQ(fl_guard(do_touch, &t, NULL), 0);
  CHECK_EQ(t.v, 0);
  unsigned char cb[8];
  CHECK_EQ(fl_guarded_copy(cb, p + 3 * PAGE, sizeof cb), -EFAULT);
  CHECK_EQ(fl_guarded_copy(cb, p, sizeof cb), 0);
  CHECK_EQ(cb[0], pattern(0));
  struct stat st;
  CHECK_EQ(fstat(fd, &st), 0);
  CHECK_EQ(st.st_size, PAGE + 10);

  fl_stats s;
  CHECK_EQ(fl_stats_file(f, NULL), -EINVAL);
  CHECK_EQ(fl_stats_file(f, &s), 0);
  CHECK(s.pages_filled > 0 && s.pages_written_back > 0 && s.pages_truncated > 0);
  CHECK_EQ(fl_stats_engine(e, &s), 0);
  CHECK(s.pages_filled > 0);

  /* munmap: whole views only */
  CHECK_EQ(fl_munmap(p, PAGE), -EINVAL);
  CHECK_EQ(fl_munmap(p + PAGE, 2 * PAGE), -EINVAL);
  CHECK_EQ(fl_munmap(p, size - 50), 0); /* rounds up to the same pages */
  CHECK_EQ(fl_munmap(p, size), -EINVAL);
  CHECK_EQ(fl_msync(p, PAGE, FL_MS_SYNC), -ENOMEM);

  /* read-only handle */
  fl_file *ro = NULL;
  CHECK_EQ(fl_open(e, path, FL_O_RDONLY, NULL, &ro), 0);
  CHECK_EQ(fl_mmap(ro, PAGE, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &a), -EACCES);
  CHECK_EQ(fl_mmap(ro, PAGE, FL_PROT_READ, FL_MAP_SHARED, 0, &a), 0);
  CHECK_EQ(((unsigned char *)a)[10], 0xAB);
  CHECK_EQ(fl_munmap(a, PAGE), 0);
  CHECK_EQ(fl_mmap(ro, PAGE, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_PRIVATE, 0, &a), 0);
  CHECK_EQ(fl_munmap(a, PAGE), 0);
  CHECK_EQ(fl_pwrite(ro, wb, 1, 0), -EBADF);
  CHECK_EQ(fl_ftruncate(ro, 0), -EINVAL);
  CHECK_EQ(fl_fallocate(ro, FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE, 0, 1), -EBADF);
  CHECK_EQ(fl_file_size(ro), PAGE + 10);
  CHECK_EQ(fl_close(ro), 0);

  /* closed handle */
  CHECK_EQ(fl_close(f), 0);
  CHECK_EQ(fl_close(f), -EBADF);
  CHECK_EQ(fl_pread(f, rb, 1, 0), -EBADF);
  CHECK_EQ(fl_mmap(f, PAGE, FL_PROT_READ, FL_MAP_SHARED, 0, &a), -EBADF);
  close(fd);
  unlink(path);
  free(buf);
}

static void test_backend(fl_engine *e) {
  struct membe m;
  memset(&m, 0, sizeof m);
  m.size = 4 * PAGE;
  CHECK_EQ(mem_grow(&m, m.size), 0);
  for (uint64_t i = 0; i < m.size; i++) m.data[i] = pattern(i);
  m.refuse_mkwrite_at = 3 * PAGE;

  fl_backend_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.struct_size = sizeof ops;
  ops.size = mem_size;
  fl_file *f = NULL;
  CHECK_EQ(fl_open_backend(e, "mem", &ops, &m, NULL, &f), -EINVAL); /* no read */
  ops.read = mem_read;
  ops.write = mem_write;
  ops.page_mkwrite = mem_mkwrite;
  ops.truncate = mem_truncate;
  ops.punch_hole = mem_punch;
  ops.sync = mem_sync;
  ops.release = mem_release;
  CHECK_EQ(fl_open_backend(e, NULL, &ops, &m, NULL, &f), -EINVAL);
  CHECK_EQ(fl_open_backend(e, "mem", NULL, &m, NULL, &f), -EINVAL);
  CHECK_EQ(fl_open_backend(e, "mem", &ops, &m, NULL, &f), 0);
  CHECK_EQ(fl_file_size(f), 4 * PAGE);

  void *a = NULL;
  CHECK_EQ(fl_mmap(f, 4 * PAGE, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &a), 0);
  unsigned char *p = a;
  CHECK_EQ(p[PAGE + 1], pattern(PAGE + 1));
  CHECK(__atomic_load_n(&m.reads, __ATOMIC_SEQ_CST) > 0);
  p[PAGE] = 0x11; /* page_mkwrite, dirty */
  CHECK(__atomic_load_n(&m.mkwrites, __ATOMIC_SEQ_CST) >= 1);
  /* a refused page_mkwrite: the store gets SIGBUS, turned into -EFAULT */
  struct touch t = {p + 3 * PAGE, 0x22, 1};
  CHECK_EQ(fl_guard(do_touch, &t, NULL), -EFAULT);
  CHECK_EQ(fl_fsync(f), 0);
  CHECK_EQ(m.data[PAGE], 0x11);
  CHECK_EQ(m.data[3 * PAGE], pattern(3 * PAGE));
  CHECK(__atomic_load_n(&m.writes, __ATOMIC_SEQ_CST) >= 1 && __atomic_load_n(&m.syncs, __ATOMIC_SEQ_CST) == 1);

  /* A write op returning a (short) byte count is an I/O error, not success:
   * the page stays dirty and the next fsync, with a working write, stores it. */
  p[2 * PAGE + PAGE - 1] = 0x33;
  __atomic_store_n(&m.short_writes, 1, __ATOMIC_SEQ_CST);
  CHECK_EQ(fl_fsync(f), -EIO);
  CHECK(m.data[2 * PAGE + PAGE - 1] != 0x33); /* the half it dropped */
  CHECK_EQ(fl_fsync(f), 0);
  CHECK_EQ(m.data[2 * PAGE + PAGE - 1], 0x33);

  CHECK_EQ(fl_fallocate(f, FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE, 0, PAGE), 0);
  CHECK_EQ(m.punches, 1);
  CHECK_EQ(p[5], 0);
  CHECK_EQ(fl_ftruncate(f, 2 * PAGE), 0);
  CHECK_EQ(m.truncates, 1);
  CHECK_EQ(m.size, 2 * PAGE);

  /* a second open of the same identity: the same cache, its ctx released at once */
  struct membe other;
  memset(&other, 0, sizeof other);
  fl_file *f2 = NULL;
  CHECK_EQ(fl_open_backend(e, "mem", &ops, &other, NULL, &f2), 0);
  CHECK_EQ(other.releases, 1);
  unsigned char rb = 0;
  CHECK_EQ(fl_pread(f2, &rb, 1, PAGE), 1);
  CHECK_EQ(rb, 0x11);
  CHECK_EQ(fl_close(f2), 0);

  CHECK_EQ(fl_munmap(a, 4 * PAGE), 0);
  CHECK_EQ(fl_close(f), 0);
  CHECK_EQ(m.releases, 1); /* last handle and view gone */

  /* a read-only backend (no write op) */
  ops.write = NULL;
  CHECK_EQ(fl_open_backend(e, "mem-ro", &ops, &m, NULL, &f), 0);
  CHECK_EQ(fl_mmap(f, PAGE, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &a), -EACCES);
  CHECK_EQ(fl_pwrite(f, &rb, 1, 0), -EROFS);
  CHECK_EQ(fl_close(f), 0);
  free(m.data);
}

/* A new file `name` in dir (its path in path[512]), `size` bytes, opened
 * read-write in e (*f) and mapped shared read-write over `len` bytes. */
static void *new_mapped_file(fl_engine *e, const char *dir, const char *name, char *path,
                             uint64_t size, size_t len, fl_file **f) {
  snprintf(path, 512, "%s/%s", dir, name);
  *f = NULL;
  CHECK_EQ(fl_open(e, path, FL_O_RDWR | FL_O_CREAT, NULL, f), 0);
  CHECK_EQ(fl_ftruncate(*f, size), 0);
  void *a = NULL;
  CHECK_EQ(fl_mmap(*f, len, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &a), 0);
  return a;
}

/* The byte at off of the file at path, read with pread(2). */
static unsigned char file_byte(const char *path, off_t off) {
  int fd = open(path, O_RDONLY);
  unsigned char b = 0;
  CHECK_EQ(pread(fd, &b, 1, off), 1);
  close(fd);
  return b;
}

static void test_destroy(const char *dir) {
  fl_config c;
  fl_config_init(&c);
  c.flusher = 0;
  c.fault_threads = 0;
  fl_engine *e = NULL;
  CHECK_EQ(fl_engine_create(&c, &e), -EINVAL);
  c.fault_threads = 1;
  /* readahead_windows: 1-8; a struct_size from before it was added leaves
   * it at its default (the bytes past that size are not read). */
  CHECK_EQ(c.readahead_windows, 1u);
  c.readahead_windows = 0;
  CHECK_EQ(fl_engine_create(&c, &e), -EINVAL);
  c.readahead_windows = 9;
  CHECK_EQ(fl_engine_create(&c, &e), -EINVAL);
  c.struct_size = (uint32_t)offsetof(fl_config, readahead_windows);
  CHECK_EQ(fl_engine_create(&c, &e), 0);
  CHECK_EQ(fl_engine_destroy(e), 0);
  c.struct_size = (uint32_t)offsetof(fl_config, readahead_windows) - 1;
  CHECK_EQ(fl_engine_create(&c, &e), -EINVAL);
  /* A program built against the first release's header calls the
   * fl_config_init symbol (no macro then): it writes that struct's bytes
   * only, not the fields added since. */
  fl_config old_cfg;
  memset(&old_cfg, 0xa5, sizeof old_cfg);
  (fl_config_init)(&old_cfg);
  CHECK_EQ(old_cfg.struct_size, (uint32_t)offsetof(fl_config, readahead_windows));
  CHECK_EQ(old_cfg.readahead_windows, 0xa5a5a5a5u);
  CHECK_EQ(fl_engine_create(&old_cfg, &e), 0);
  CHECK_EQ(fl_engine_destroy(e), 0);
  fl_config_init(&c);
  CHECK_EQ(c.struct_size, (uint32_t)sizeof c);
  CHECK_EQ(old_cfg.fault_threads, c.fault_threads);
  CHECK_EQ(old_cfg.memory_limit_pages, c.memory_limit_pages);
  c.flusher = 0;
  c.fault_threads = 1;
  c.readahead_windows = 8;
  CHECK_EQ(fl_engine_create(&c, &e), 0);
  char path[512];
  fl_file *f = NULL;
  void *a = new_mapped_file(e, dir, "capi-destroy.bin", path, 2 * PAGE, 2 * PAGE, &f);
  ((unsigned char *)a)[PAGE] = 9;
  CHECK_EQ(fl_engine_destroy(e), 0); /* writes back, unmaps */
  CHECK_EQ(fl_engine_destroy(e), -EBADF);
  CHECK_EQ(fl_munmap(a, 2 * PAGE), -EINVAL); /* already gone with the engine */
  CHECK_EQ(fl_pread(f, path, 1, 0), -ESHUTDOWN);
  CHECK_EQ(fl_close(f), 0);
  CHECK_EQ(file_byte(path, PAGE), 9);
  unlink(path);
}

/* FL_FAULT_FAULTING_THREAD: stores and loads through a view resolved by the
 * faulting thread itself; a program handler installed later calls
 * fl_handle_sigbus first; a bad fault_mode is EINVAL. */
static sigjmp_buf g_jump;
static volatile int g_real_sigbus;
static void program_sigbus(int sig, siginfo_t *info, void *uctx) {
  if (fl_handle_sigbus(sig, info, uctx)) return;
  g_real_sigbus++;
  siglongjmp(g_jump, 1);
}

static void test_faulting_thread(const char *dir) {
  fl_config c;
  fl_config_init(&c);
  CHECK_EQ(c.fault_mode, FL_FAULT_HANDLER_THREADS);
  c.fault_mode = 7;
  fl_engine *e = NULL;
  CHECK_EQ(fl_engine_create(&c, &e), -EINVAL);
  c.fault_mode = FL_FAULT_FAULTING_THREAD;
  CHECK_EQ(fl_engine_create(&c, &e), 0);
  char path[512];
  fl_file *f = NULL;
  void *a = new_mapped_file(e, dir, "capi-faulting-thread.bin", path, 4 * PAGE, 8 * PAGE, &f);
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = program_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  CHECK_EQ(sigaction(SIGBUS, &sa, &old), 0);
  unsigned char *p = (unsigned char *)a;
  for (int i = 0; i < 4; i++) p[i * PAGE + 1] = (unsigned char)(i + 1);
  int sum = 0;
  for (int i = 0; i < 4; i++) sum += p[i * PAGE + 1];
  CHECK_EQ(sum, 10);
  CHECK_EQ(g_real_sigbus, 0);
  if (sigsetjmp(g_jump, 1) == 0) sum += ((volatile unsigned char *)p)[6 * PAGE]; /* past EOF */
  CHECK_EQ(g_real_sigbus, 1);
  CHECK_EQ(sigaction(SIGBUS, &old, NULL), 0);
  CHECK_EQ(fl_msync(p, 4 * PAGE, FL_MS_SYNC), 0);
  CHECK_EQ(file_byte(path, 3 * PAGE + 1), 4);
  CHECK_EQ(fl_munmap(a, 8 * PAGE), 0);
  CHECK_EQ(fl_close(f), 0);
  CHECK_EQ(fl_engine_destroy(e), 0);
  unlink(path);
}

int main(void) {
  char dir[] = "/tmp/faultline-capi-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 2;
  }
  test_bad_input();
  fl_engine *e = NULL;
  int r = fl_engine_create(NULL, &e);
  if (r != 0) {
    fprintf(stderr, "fl_engine_create: %s (%s)\n", fl_strerror(r), fl_last_error());
    return 1;
  }
  test_file(e, dir);
  test_backend(e);
  CHECK_EQ(fl_engine_destroy(e), 0);
  test_destroy(dir);
  test_faulting_thread(dir);
  rmdir(dir);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("capi: all checks passed\n");
  return 0;
}
