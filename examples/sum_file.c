/* Lazily sum a large file: map it through faultline and add up its 64-bit
 * words; only the pages touched are read (here: all of them, once, in order,
 * so readahead fetches them in large runs). Checks the sum against read(2).
 *
 *   sum_file [FILE]      (no FILE: makes a 32 MiB scratch file, removes it)
 */
#define _GNU_SOURCE
#include <faultline/faultline.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, int r) {
  fprintf(stderr, "sum_file: %s: %s (%s)\n", what, fl_strerror(r), fl_last_error());
  return 1;
}

int main(int argc, char **argv) {
  char scratch[] = "/var/tmp/faultline-sum-XXXXXX";
  const char *path = argc > 1 ? argv[1] : scratch;
  if (argc <= 1) { /* a 32 MiB file of known words */
    int fd = mkstemp(scratch);
    if (fd < 0) { perror("mkstemp"); return 1; }
    static uint64_t chunk[1 << 16];
    for (uint64_t i = 0, w = 0; i < 64; i++) {
      for (size_t j = 0; j < sizeof chunk / 8; j++) chunk[j] = w++;
      if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) { perror("write"); return 1; }
    }
    close(fd);
  }

  fl_engine *e;
  fl_file *f;
  void *v;
  int r;
  if ((r = fl_engine_create(NULL, &e))) return fail("fl_engine_create", r);
  if ((r = fl_open(e, path, FL_O_RDONLY, NULL, &f))) return fail("fl_open", r);
  const int64_t size = fl_file_size(f);
  if (size < 0) return fail("fl_file_size", (int)size);
  uint64_t sum = 0;
  if (size > 0) {
    if ((r = fl_mmap(f, (size_t)size, FL_PROT_READ, FL_MAP_SHARED, 0, &v))) return fail("fl_mmap", r);
    const uint64_t *w = v;
    for (int64_t i = 0; i < size / 8; i++) sum += w[i]; /* each first touch of a page faults it in */
    const unsigned char *tail = (const unsigned char *)v + (size & ~7);
    for (int64_t i = 0; i < (size & 7); i++) sum += tail[i];
    if ((r = fl_munmap(v, (size_t)size))) return fail("fl_munmap", r);
  }
  fl_stats st;
  fl_stats_file(f, &st);
  fl_close(f);
  fl_engine_destroy(e);

  /* the same sum with read(2) */
  int fd = open(path, O_RDONLY);
  if (fd < 0) { perror(path); return 1; }
  static unsigned char buf[1 << 20];
  uint64_t ref = 0, off = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i + 8 <= n; i += 8) { uint64_t x; memcpy(&x, buf + i, 8); ref += x; }
    for (ssize_t i = n & ~7; i < n; i++) ref += buf[i]; /* only at EOF: chunks are 8-aligned */
    off += (uint64_t)n;
  }
  close(fd);
  if (argc <= 1) unlink(scratch);
  printf("sum_file: %lld bytes, sum %llu (read(2): %llu), %llu pages filled, %llu faults\n",
         (long long)size, (unsigned long long)sum, (unsigned long long)ref,
         (unsigned long long)st.pages_filled,
         (unsigned long long)(st.missing_faults + st.minor_faults));
  return sum == ref ? 0 : 1;
}
