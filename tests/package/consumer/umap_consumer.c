/* Out-of-tree UMap program (our own) on the installed UMap API: map a file,
 * sort it in place, flush, check. Built with find_package (faultline::umap),
 * pkg-config faultline-umap, and plain -lumap. */
#define _GNU_SOURCE
#include <umap/umap.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

int main(void) {
  char path[] = "/tmp/faultline-umap-consumer-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 1;
  enum { N = 1 << 18 };
  uint32_t *v = malloc(N * sizeof *v);
  for (uint32_t i = 0; i < N; i++) v[i] = (i * 2654435761u) ^ 0x5bd1e995u;
  if (pwrite(fd, v, N * sizeof *v, 0) != (ssize_t)(N * sizeof *v)) return 1;
  uint32_t *a = umap(NULL, N * sizeof *a, PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0);
  if (a == UMAP_FAILED) { perror("umap"); return 1; }
  qsort(a, N, sizeof *a, cmp);
  if (umap_flush() != 0) { perror("umap_flush"); return 1; }
  if (pread(fd, v, N * sizeof *v, 0) != (ssize_t)(N * sizeof *v)) return 1;
  for (uint32_t i = 1; i < N; i++)
    if (v[i - 1] > v[i]) { fprintf(stderr, "umap_consumer: file not sorted at %u\n", i); return 1; }
  if (uunmap(a, N * sizeof *a) != 0) { perror("uunmap"); return 1; }
  close(fd);
  unlink(path);
  free(v);
  printf("umap_consumer: ok\n");
  return 0;
}
