/* sum_file.c through UMap's API: the same lazy sum of a file's 64-bit words,
 * written as a UMap program (umap / uunmap), linked with -lumap.
 *
 *   umap_sum [FILE]      (no FILE: makes a 32 MiB scratch file, removes it)
 */
#define _GNU_SOURCE
#include <umap/umap.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char scratch[] = "/var/tmp/faultline-umap-sum-XXXXXX";
  const char *path = argc > 1 ? argv[1] : scratch;
  if (argc <= 1) {
    int fd = mkstemp(scratch);
    if (fd < 0) { perror("mkstemp"); return 1; }
    static uint64_t chunk[1 << 16];
    for (uint64_t i = 0, w = 0; i < 64; i++) {
      for (size_t j = 0; j < sizeof chunk / 8; j++) chunk[j] = w++;
      if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) { perror("write"); return 1; }
    }
    close(fd);
  }
  int fd = open(path, O_RDONLY);
  if (fd < 0) { perror(path); return 1; }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size == 0) { fprintf(stderr, "umap_sum: empty or unreadable\n"); return 1; }
  const size_t size = (size_t)st.st_size;
  const uint64_t *w = umap(NULL, size, PROT_READ, UMAP_PRIVATE, fd, 0);
  if (w == UMAP_FAILED) { perror("umap"); return 1; }
  uint64_t sum = 0;
  for (size_t i = 0; i < size / 8; i++) sum += w[i];
  for (size_t i = size & ~(size_t)7; i < size; i++) sum += ((const unsigned char *)w)[i];
  if (uunmap((void *)w, size) != 0) { perror("uunmap"); return 1; }

  static unsigned char buf[1 << 20];
  uint64_t ref = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i + 8 <= n; i += 8) { uint64_t x; memcpy(&x, buf + i, 8); ref += x; }
    for (ssize_t i = n & ~7; i < n; i++) ref += buf[i];
  }
  close(fd);
  if (argc <= 1) unlink(scratch);
  printf("umap_sum: %zu bytes, sum %llu (read(2): %llu), UMap page %llu B, %llu fillers\n", size,
         (unsigned long long)sum, (unsigned long long)ref,
         (unsigned long long)umapcfg_get_umap_page_size(), (unsigned long long)umapcfg_get_num_fillers());
  return sum == ref ? 0 : 1;
}
