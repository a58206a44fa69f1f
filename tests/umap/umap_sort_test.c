/* A UMap-style program (our own): map a file with umap(), sort it in place,
 * umap_flush(), check the file is sorted and holds the same values, uunmap().
 * Plus umap's bad input, umap_prefetch, two coherent regions, and with
 * --expect-env the settings the test's environment gives (CTest sets
 * UMAP_PAGESIZE=16384 UMAP_BUFSIZE=64 UMAP_PAGE_FILLERS=3 ... so the buffer,
 * 1 MiB x 80%, is smaller than the file). C99. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <umap/umap.h>

static int failures = 0;
#define CHECK(c)                                                              \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (errno %d: %s)\n", __FILE__,   \
              __LINE__, #c, errno, strerror(errno));                          \
      failures++;                                                             \
    }                                                                         \
  } while (0)

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t next(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
  return *s * 2685821657736338717ULL;
}

static void bad_input(const char *dir, int fd) {
  int ro = open("/etc/hostname", O_RDONLY);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  int p[2];
  CHECK(pipe(p) == 0);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, -1, 0) == UMAP_FAILED && errno == EBADF);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, 12345, 0) == UMAP_FAILED && errno == EBADF);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, dfd, 0) == UMAP_FAILED && errno == EACCES);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, p[0], 0) == UMAP_FAILED && errno == EACCES);
  errno = 0; CHECK(umap(NULL, 0, PROT_READ, UMAP_PRIVATE, fd, 0) == UMAP_FAILED && errno == EINVAL);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, 0, fd, 0) == UMAP_FAILED && errno == EINVAL);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE | UMAP_FIXED, fd, 0) == UMAP_FAILED && errno == EINVAL);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ | PROT_EXEC, UMAP_PRIVATE, fd, 0) == UMAP_FAILED && errno == EINVAL);
  errno = 0; CHECK(umap(NULL, 4096, PROT_NONE, UMAP_PRIVATE, fd, 0) == UMAP_FAILED && errno == EINVAL);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, fd, 100) == UMAP_FAILED && errno == EINVAL);
  errno = 0; CHECK(umap(NULL, 4096, PROT_READ, UMAP_PRIVATE, fd, -4096) == UMAP_FAILED && errno == EINVAL);
  if (ro >= 0) {
    errno = 0;
    CHECK(umap(NULL, 4096, PROT_READ | PROT_WRITE, UMAP_PRIVATE, ro, 0) == UMAP_FAILED && errno == EACCES);
  }
  errno = 0; CHECK(uunmap(NULL, 4096) == -1 && errno == EINVAL);
  errno = 0; CHECK(uunmap(&failures, 4096) == -1 && errno == EINVAL);
  umap_prefetch(-1, NULL);
  umap_prefetch(3, NULL);
  struct umap_prefetch_item junk[2] = {{NULL}, {&failures}};
  umap_prefetch(2, junk); /* not regions: skipped */
  umap_fetch_and_pin(NULL, 4096);
  close(p[0]); close(p[1]); close(dfd);
  if (ro >= 0) close(ro);
}

static void settings(int expect_env) {
  CHECK(umapcfg_get_system_page_size() == sysconf(_SC_PAGESIZE));
  CHECK(umap_has_write_support() == 1);
  CHECK(umapcfg_get_num_evictors() == 1);
  if (expect_env) {
    CHECK(umapcfg_get_umap_page_size() == 16384);
    CHECK(umapcfg_get_max_pages_in_buffer() == 64);
    CHECK(umapcfg_get_num_fillers() == 3);
    CHECK(umapcfg_get_max_fault_events() == 3);
    CHECK(umapcfg_get_evict_high_water_threshold() == 80);
    CHECK(umapcfg_get_evict_low_water_threshold() == 75);
    CHECK(umapcfg_get_read_ahead() == 8);
  } else {
    CHECK(umapcfg_get_umap_page_size() == (uint64_t)sysconf(_SC_PAGESIZE));
    CHECK(umapcfg_get_num_fillers() == (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
    CHECK(umapcfg_get_evict_high_water_threshold() == 90);
    CHECK(umapcfg_get_max_pages_in_buffer() > 0);
  }
}

int main(int argc, char **argv) {
  const int expect_env = argc > 1 && strcmp(argv[1], "--expect-env") == 0;
  char dir[] = "/tmp/faultline-umap-XXXXXX";
  if (!mkdtemp(dir)) return 2;
  char path[600];
  snprintf(path, sizeof path, "%s/data.bin", dir);
  const size_t n = (size_t)(2 << 20) / sizeof(uint64_t); /* 2 MiB of values */
  const size_t bytes = n * sizeof(uint64_t);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 2;
  uint64_t *vals = malloc(bytes);
  uint64_t seed = 0x9E3779B97F4A7C15ULL, sum = 0, xr = 0;
  for (size_t i = 0; i < n; i++) {
    vals[i] = next(&seed);
    sum += vals[i];
    xr ^= vals[i];
  }
  if (pwrite(fd, vals, bytes, 0) != (ssize_t)bytes) return 2;

  struct sigaction before;
  CHECK(sigaction(SIGBUS, NULL, &before) == 0);
  settings(expect_env);
  bad_input(dir, fd);

  /* map, sort in place, flush: the file is sorted before uunmap */
  uint64_t *a = umap(NULL, bytes, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
  CHECK(a != UMAP_FAILED);
  if (a == UMAP_FAILED) return 1;
  CHECK(memcmp(a, vals, bytes) == 0);
  /* FAULTLINE_FAULT_MODE=thread: the engine resolves faults in the faulting
   * thread, through the SIGBUS handler it installed at the first umap();
   * otherwise the disposition is left as it was (a sanitizer's, or none). */
  struct sigaction cur;
  CHECK(sigaction(SIGBUS, NULL, &cur) == 0);
  const char *mode = getenv("FAULTLINE_FAULT_MODE");
  const int in_thread = mode && strcmp(mode, "thread") == 0;
  CHECK(in_thread == (cur.sa_sigaction != before.sa_sigaction));
  qsort(a, n, sizeof *a, cmp_u64);
  CHECK(umap_flush() == 0);
  memset(vals, 0, bytes);
  CHECK(pread(fd, vals, bytes, 0) == (ssize_t)bytes);
  uint64_t s2 = 0, x2 = 0;
  int sorted = 1;
  for (size_t i = 0; i < n; i++) {
    s2 += vals[i];
    x2 ^= vals[i];
    if (i && vals[i - 1] > vals[i]) sorted = 0;
  }
  CHECK(sorted);
  CHECK(s2 == sum && x2 == xr);

  /* a second region of the same file (read-only, at an offset) sees the
   * first region's stores at once: regions are coherent on faultline */
  const size_t off = 64 * 1024;
  uint64_t *b = umap(NULL, 64 * 1024, PROT_READ, UMAP_PRIVATE, fd, off);
  CHECK(b != UMAP_FAILED);
  if (b != UMAP_FAILED) {
    struct umap_prefetch_item items[2] = {{b}, {(char *)b + 16384}};
    umap_prefetch(2, items);
    umap_fetch_and_pin((char *)b, 32768);
    CHECK(b[0] == a[off / 8]);
    a[off / 8] = 42;
    CHECK(b[0] == 42);
    CHECK(uunmap(b, 64 * 1024) == 0);
  }
  /* stores after the flush reach the file by uunmap */
  a[0] = 7;
  a[n - 1] = 8;
  CHECK(uunmap(a, bytes) == 0);
  errno = 0;
  CHECK(uunmap(a, bytes) == -1 && errno == EINVAL);
  uint64_t v = 0;
  CHECK(pread(fd, &v, 8, 0) == 8 && v == 7);
  CHECK(pread(fd, &v, 8, bytes - 8) == 8 && v == 8);
  CHECK(pread(fd, &v, 8, off) == 8 && v == 42);

  close(fd);
  unlink(path);
  rmdir(dir);
  free(vals);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("umap sort: ok (%zu values, UMap page %llu, buffer %llu pages)\n", n,
         (unsigned long long)umapcfg_get_umap_page_size(),
         (unsigned long long)umapcfg_get_max_pages_in_buffer());
  return 0;
}
