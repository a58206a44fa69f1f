/* A faultline backend written in C: a compressing in-memory store. Each 4 KiB
 * page is kept run-length encoded (pairs of count, byte); the engine caches
 * the decompressed pages, and the program uses them through a plain mapping.
 * The demo fills 16 MiB with long runs, writes it back, drops the cache,
 * punches a hole and checks everything read back through the backend.
 *
 *   c_backend
 */
#define _GNU_SOURCE
#include <faultline/faultline.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PG = 4096 };

struct rle_store {
  uint64_t size;
  uint64_t npages;
  unsigned char **blob; /* per page: RLE data, NULL = zeros */
  size_t *blen;
  uint64_t stored;      /* compressed bytes held */
  int writes, reads;
  pthread_mutex_t mu; /* the engine calls the vtable from several threads */
};

static size_t rle_encode(const unsigned char *in, size_t n, unsigned char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    size_t run = 1;
    while (i + run < n && run < 255 && in[i + run] == in[i]) run++;
    out[o++] = (unsigned char)run;
    out[o++] = in[i];
    i += run;
  }
  return o;
}
static void rle_decode(const unsigned char *in, size_t n, unsigned char *out) {
  for (size_t i = 0, o = 0; i + 1 < n; i += 2, o += in[i - 2]) memset(out + o, in[i + 1], in[i]);
}

static int grow(struct rle_store *s, uint64_t pages) {
  if (pages <= s->npages) return 0;
  unsigned char **b = realloc(s->blob, pages * sizeof *b);
  if (!b) return -ENOMEM;
  s->blob = b;
  size_t *l = realloc(s->blen, pages * sizeof *l);
  if (!l) return -ENOMEM;
  s->blen = l;
  for (uint64_t p = s->npages; p < pages; p++) { s->blob[p] = NULL; s->blen[p] = 0; }
  s->npages = pages;
  return 0;
}
static void drop(struct rle_store *s, uint64_t p) {
  s->stored -= s->blen[p];
  free(s->blob[p]);
  s->blob[p] = NULL;
  s->blen[p] = 0;
}
static void get_page(struct rle_store *s, uint64_t p, unsigned char *out) {
  memset(out, 0, PG);
  if (p < s->npages && s->blob[p]) rle_decode(s->blob[p], s->blen[p], out);
}
static int put_page(struct rle_store *s, uint64_t p, const unsigned char *in) {
  static __thread unsigned char tmp[2 * PG];
  size_t n = rle_encode(in, PG, tmp);
  unsigned char *b = malloc(n);
  if (!b) return -ENOMEM;
  memcpy(b, tmp, n);
  drop(s, p);
  s->blob[p] = b;
  s->blen[p] = n;
  s->stored += n;
  return 0;
}

/* ---- the vtable: called from the engine's threads, so each call locks ---- */
#define LOCKED(s, call)                   \
  do {                                    \
    pthread_mutex_lock(&(s)->mu);         \
    __typeof__(call) r_ = (call);         \
    pthread_mutex_unlock(&(s)->mu);       \
    return r_;                            \
  } while (0)

static int64_t size_locked(struct rle_store *s) { return (int64_t)s->size; }
static int64_t be_size(void *ctx) { LOCKED((struct rle_store *)ctx, size_locked(ctx)); }
static ssize_t read_locked(struct rle_store *s, uint64_t off, void *buf, size_t len) {
  s->reads++;
  if (off >= s->size) return 0;
  if (len > s->size - off) len = s->size - off;
  unsigned char page[PG];
  for (size_t done = 0; done < len;) {
    const uint64_t p = (off + done) / PG, in = (off + done) % PG;
    size_t n = PG - in < len - done ? PG - in : len - done;
    get_page(s, p, page);
    memcpy((unsigned char *)buf + done, page + in, n);
    done += n;
  }
  return (ssize_t)len;
}
static ssize_t be_read(void *ctx, uint64_t off, void *buf, size_t len) {
  LOCKED((struct rle_store *)ctx, read_locked(ctx, off, buf, len));
}
static int write_locked(struct rle_store *s, uint64_t off, const void *buf, size_t len) {
  s->writes++;
  int r = grow(s, (off + len + PG - 1) / PG);
  if (r) return r;
  unsigned char page[PG];
  for (size_t done = 0; done < len;) {
    const uint64_t p = (off + done) / PG, in = (off + done) % PG;
    size_t n = PG - in < len - done ? PG - in : len - done;
    get_page(s, p, page);
    memcpy(page + in, (const unsigned char *)buf + done, n);
    if ((r = put_page(s, p, page))) return r;
    done += n;
  }
  if (off + len > s->size) s->size = off + len;
  return 0;
}
static int be_write(void *ctx, uint64_t off, const void *buf, size_t len) {
  LOCKED((struct rle_store *)ctx, write_locked(ctx, off, buf, len));
}
static int zero_range(struct rle_store *s, uint64_t off, uint64_t len) {
  unsigned char page[PG];
  for (uint64_t x = off; x < off + len;) {
    const uint64_t p = x / PG, in = x % PG;
    uint64_t n = PG - in < off + len - x ? PG - in : off + len - x;
    if (p < s->npages) {
      if (n == PG) {
        drop(s, p);
      } else {
        get_page(s, p, page);
        memset(page + in, 0, n);
        int r = put_page(s, p, page);
        if (r) return r;
      }
    }
    x += n;
  }
  return 0;
}
static int truncate_locked(struct rle_store *s, uint64_t n) {
  if (n < s->size) {
    int r = zero_range(s, n, s->npages * PG - n);
    if (r) return r;
  }
  s->size = n;
  return 0;
}
static int be_truncate(void *ctx, uint64_t n) { LOCKED((struct rle_store *)ctx, truncate_locked(ctx, n)); }
static int be_punch(void *ctx, uint64_t off, uint64_t len) {
  LOCKED((struct rle_store *)ctx, zero_range(ctx, off, len));
}
static void be_release(void *ctx) {
  struct rle_store *s = ctx;
  for (uint64_t p = 0; p < s->npages; p++) free(s->blob[p]);
  free(s->blob);
  free(s->blen);
  s->blob = NULL;
  s->npages = 0;
}

static unsigned char expect(uint64_t i) { return (unsigned char)(i / 1000); } /* runs of 1000 */

int main(void) {
  static struct rle_store store;
  pthread_mutex_init(&store.mu, NULL);
  fl_backend_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.struct_size = sizeof ops;
  ops.size = be_size;
  ops.read = be_read;
  ops.write = be_write;
  ops.truncate = be_truncate;
  ops.punch_hole = be_punch;
  ops.release = be_release;

  fl_engine *e;
  fl_file *f;
  void *v;
  int r;
  const uint64_t size = 16 << 20;
  if ((r = fl_engine_create(NULL, &e)) || (r = fl_open_backend(e, "rle:demo", &ops, &store, NULL, &f)) ||
      (r = fl_ftruncate(f, size)) ||
      (r = fl_mmap(f, size, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &v))) {
    fprintf(stderr, "c_backend: %s (%s)\n", fl_strerror(r), fl_last_error());
    return 1;
  }
  unsigned char *p = v;
  for (uint64_t i = 0; i < size; i++) p[i] = expect(i);
  if ((r = fl_msync(p, size, FL_MS_SYNC))) { fprintf(stderr, "msync: %s\n", fl_last_error()); return 1; }
  pthread_mutex_lock(&store.mu);
  const uint64_t compressed = store.stored;
  pthread_mutex_unlock(&store.mu);
  /* drop the cache: every page now comes back through be_read */
  if ((r = fl_invalidate(f, 0, size))) { fprintf(stderr, "invalidate: %s\n", fl_last_error()); return 1; }
  if ((r = fl_fallocate(f, FL_FALLOC_FL_PUNCH_HOLE | FL_FALLOC_FL_KEEP_SIZE, PG, 3 * PG))) {
    fprintf(stderr, "punch: %s\n", fl_last_error());
    return 1;
  }
  uint64_t bad = 0;
  for (uint64_t i = 0; i < size; i++) {
    const unsigned char want = i >= PG && i < 4 * PG ? 0 : expect(i);
    if (p[i] != want) bad++;
  }
  fl_stats st;
  fl_stats_file(f, &st);
  fl_munmap(p, size);
  fl_close(f);
  fl_engine_destroy(e);
  printf("c_backend: 16 MiB held in %llu compressed bytes (%.0fx), %llu pages written back, "
         "%llu read back, %llu wrong bytes\n", (unsigned long long)compressed,
         (double)size / (double)(compressed ? compressed : 1), (unsigned long long)st.pages_written_back,
         (unsigned long long)st.pages_filled, (unsigned long long)bad);
  return bad == 0 && store.blob == NULL ? 0 : 1; /* release ran: the engine let go of the store */
}
