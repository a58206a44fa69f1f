/* A small key-value store on a shared writable faultline mapping.
 *
 * The file is a table of fixed slots. Each slot keeps two value buffers and
 * the index of the committed one; a put writes the other buffer, msyncs it to
 * the file, then flips the index (one aligned 4-byte store) and msyncs and
 * fsyncs again. A crash at any point leaves either the old or the new value
 * committed, never a torn one. The demo writes keys, "crashes" in the middle
 * of a put (the new value written, the flip not), reopens the file with a new
 * engine and checks every committed value.
 *
 *   kvstore [DIR]     (default /var/tmp; the file is removed at the end)
 */
#define _GNU_SOURCE
#include <faultline/faultline.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SLOTS = 1024, KEY = 48, VAL = 100 };
struct slot {
  uint32_t used;       /* 1 once the key is committed */
  uint32_t cur;        /* which of val[] is committed */
  char key[KEY];
  char val[2][VAL];
  char pad[256 - 8 - KEY - 2 * VAL];
};
_Static_assert(sizeof(struct slot) == 256, "slot size");

struct kv {
  fl_engine *e;
  fl_file *f;
  struct slot *t;
  size_t len;
};

static int die(const char *what, int r) {
  fprintf(stderr, "kvstore: %s: %s (%s)\n", what, fl_strerror(r), fl_last_error());
  exit(1);
}

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
  return h;
}

/* msync of the page(s) holding [p, p+n) */
static void sync_range(void *p, size_t n) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095, end = (uintptr_t)p + n;
  int r = fl_msync((void *)a, end - a, FL_MS_SYNC);
  if (r) die("fl_msync", r);
}

static void kv_open(struct kv *kv, const char *path) {
  int r;
  if ((r = fl_engine_create(NULL, &kv->e))) die("fl_engine_create", r);
  if ((r = fl_open(kv->e, path, FL_O_RDWR | FL_O_CREAT, NULL, &kv->f))) die("fl_open", r);
  kv->len = SLOTS * sizeof(struct slot);
  if (fl_file_size(kv->f) < (int64_t)kv->len && (r = fl_ftruncate(kv->f, kv->len))) die("fl_ftruncate", r);
  void *p;
  if ((r = fl_mmap(kv->f, kv->len, FL_PROT_READ | FL_PROT_WRITE, FL_MAP_SHARED, 0, &p))) die("fl_mmap", r);
  kv->t = p;
}

static void kv_close(struct kv *kv) {
  fl_munmap(kv->t, kv->len);
  fl_close(kv->f);
  fl_engine_destroy(kv->e);
}

static struct slot *find(struct kv *kv, const char *key, int create) {
  for (uint64_t i = hash(key) % SLOTS, n = 0; n < SLOTS; i = (i + 1) % SLOTS, n++) {
    struct slot *s = &kv->t[i];
    if (s->used && strcmp(s->key, key) == 0) return s;
    if (!s->used) {
      if (!create) return NULL;
      memset(s, 0, sizeof *s);
      snprintf(s->key, KEY, "%s", key);
      return s;
    }
  }
  return NULL;
}

/* crash_before_flip: stop after writing the new value (a simulated crash) */
static int kv_put(struct kv *kv, const char *key, const char *val, int crash_before_flip) {
  struct slot *s = find(kv, key, 1);
  if (!s) return -1;
  const uint32_t next = s->used ? !s->cur : 0;
  snprintf(s->val[next], VAL, "%s", val);
  sync_range(s, sizeof *s);        /* the new value is in the file ... */
  if (crash_before_flip) return 0;
  __atomic_store_n(s->used ? &s->cur : &s->used, s->used ? next : 1, __ATOMIC_RELEASE);
  sync_range(s, sizeof *s);        /* ... before the flip that commits it */
  int r = fl_fsync(kv->f);         /* and durable on the device */
  if (r) die("fl_fsync", r);
  return 0;
}

static const char *kv_get(struct kv *kv, const char *key) {
  struct slot *s = find(kv, key, 0);
  return s ? s->val[s->cur] : NULL;
}

int main(int argc, char **argv) {
  char path[512];
  snprintf(path, sizeof path, "%s/faultline-kv-%d.db", argc > 1 ? argv[1] : "/var/tmp", (int)getpid());
  unlink(path);
  struct kv kv;
  kv_open(&kv, path);
  char k[KEY], v[VAL];
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    snprintf(v, sizeof v, "value-%d", i);
    kv_put(&kv, k, v, 0);
  }
  for (int i = 0; i < 200; i += 4) { /* updates */
    snprintf(k, sizeof k, "key-%d", i);
    snprintf(v, sizeof v, "updated-%d", i);
    kv_put(&kv, k, v, 0);
  }
  kv_put(&kv, "key-1", "torn?", 1);   /* "crash" in the middle of an update */
  kv_put(&kv, "key-new", "never", 1); /* and of an insert */
  fl_stats st;
  fl_stats_file(kv.f, &st);
  kv_close(&kv);

  kv_open(&kv, path); /* a new engine: everything comes from the file */
  int bad = 0;
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof k, "key-%d", i);
    snprintf(v, sizeof v, i % 4 ? "value-%d" : "updated-%d", i);
    const char *got = kv_get(&kv, k);
    if (!got || strcmp(got, v) != 0) {
      fprintf(stderr, "kvstore: %s = %s, expected %s\n", k, got ? got : "(none)", v);
      bad++;
    }
  }
  if (kv_get(&kv, "key-new")) { fprintf(stderr, "kvstore: uncommitted insert visible\n"); bad++; }
  kv_close(&kv);
  unlink(path);
  printf("kvstore: 200 keys, 50 updates, 2 interrupted puts: %s after reopening (%llu pages "
         "written back by %llu dirtyings while writing)\n", bad ? "MISMATCH" : "all committed values intact",
         (unsigned long long)st.pages_written_back, (unsigned long long)st.pages_dirtied);
  return bad ? 1 : 0;
}
