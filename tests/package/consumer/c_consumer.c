/* Out-of-tree C program on the installed C API: maps a file it writes,
 * checks the bytes through the view, stores through it, msyncs, checks the
 * file. Exit 0 when every check holds. */
#define _GNU_SOURCE
#include <faultline/faultline.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N (64 * 4096 + 123)

static int die(const char *what, int r) {
  fprintf(stderr, "c_consumer: %s: %s (%s)\n", what, fl_strerror(r), fl_last_error());
  return 1;
}

int main(void) {
  char path[] = "/tmp/faultline-consumer-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 1;
  static unsigned char buf[N];
  for (size_t i = 0; i < N; i++) buf[i] = (unsigned char)(i % 251);
  if (pwrite(fd, buf, N, 0) != N) return 1;

  fl_engine *e;
  fl_file *f;
  void *v;
  int r = fl_engine_create(NULL, &e);
  if (r) return die("fl_engine_create", r);
  if ((r = fl_open(e, path, FL_O_RDWR, NULL, &f))) return die("fl_open", r);
  if ((r = fl_mmap(f, N, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &v))) return die("fl_mmap", r);
  unsigned char *p = v;
  if (memcmp(p, buf, N) != 0) { fprintf(stderr, "c_consumer: view differs from the file\n"); return 1; }
  p[N - 1] = 0xEE;
  if ((r = fl_msync(p, N, FL_MS_SYNC))) return die("fl_msync", r);
  unsigned char b = 0;
  if (pread(fd, &b, 1, N - 1) != 1 || b != 0xEE) { fprintf(stderr, "c_consumer: store not in the file\n"); return 1; }
  if (fl_mmap(f, N, FL_PROT_READ, 0x7, 0, &v) != -22) { fprintf(stderr, "c_consumer: bad flags accepted\n"); return 1; }
  if ((r = fl_munmap(p, N))) return die("fl_munmap", r);
  if ((r = fl_close(f))) return die("fl_close", r);
  if ((r = fl_engine_destroy(e))) return die("fl_engine_destroy", r);
  close(fd);
  unlink(path);
  printf("c_consumer: ok (faultline %s)\n", fl_version());
  return 0;
}
