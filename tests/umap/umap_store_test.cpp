// Umap::umap_ex with a Store of our own (in memory): the region reads the
// store, stores reach write_to_store by umap_flush / uunmap; Store::make_store
// over a file descriptor.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include <umap/umap.h>

namespace {
int failures = 0;
#define CHECK(c)                                                       \
  do {                                                                 \
    if (!(c)) {                                                        \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c); \
      failures++;                                                      \
    }                                                                  \
  } while (0)

class MemStore : public Umap::Store {
 public:
  explicit MemStore(std::size_t n) : data(n) {
    for (std::size_t i = 0; i < n; i++) data[i] = static_cast<char>(i * 13);
  }
  ssize_t read_from_store(char* buf, std::size_t nb, off_t off) override {
    std::lock_guard lk(mu);
    reads++;
    if (static_cast<std::size_t>(off) >= data.size()) return 0;
    nb = std::min(nb, data.size() - off);
    std::memcpy(buf, data.data() + off, nb);
    return static_cast<ssize_t>(nb);
  }
  ssize_t write_to_store(char* buf, std::size_t nb, off_t off) override {
    std::lock_guard lk(mu);
    writes++;
    if (off + nb > data.size()) return -1;
    std::memcpy(data.data() + off, buf, nb);
    return static_cast<ssize_t>(nb);
  }
  int read_calls() { std::lock_guard lk(mu); return reads; }   // counted on the engine's threads
  int write_calls() { std::lock_guard lk(mu); return writes; }
  std::mutex mu;
  std::vector<char> data;
  int reads = 0, writes = 0;
};
}  // namespace

int main() {
  const std::size_t n = 256 * 1024;
  MemStore store(n);
  char* p = static_cast<char*>(Umap::umap_ex(nullptr, n, PROT_READ | PROT_WRITE, UMAP_PRIVATE, -1, 0, &store));
  CHECK(p != UMAP_FAILED);
  if (p == UMAP_FAILED) return 1;
  CHECK(p[5] == static_cast<char>(5 * 13));
  CHECK(p[n - 1] == static_cast<char>((n - 1) * 13));
  CHECK(store.read_calls() > 0);
  p[4096] = 'x';
  p[n - 1] = 'y';
  CHECK(umap_flush() == 0);
  CHECK(store.write_calls() > 0);
  CHECK(store.data[4096] == 'x' && store.data[n - 1] == 'y');
  p[8192] = 'z';
  CHECK(uunmap(p, n) == 0);
  CHECK(store.data[8192] == 'z');

  // Two regions on one Store (one File, one cache): the second, further out
  // than the first reached, grows the File and reads the store there.
  {
    MemStore two(n);
    const std::size_t half = n / 2;
    char* a = static_cast<char*>(Umap::umap_ex(nullptr, half, PROT_READ | PROT_WRITE, UMAP_PRIVATE, -1, 0, &two));
    char* b = static_cast<char*>(Umap::umap_ex(nullptr, half, PROT_READ | PROT_WRITE, UMAP_PRIVATE, -1,
                                               static_cast<off_t>(half), &two));
    CHECK(a != UMAP_FAILED && b != UMAP_FAILED);
    if (a != UMAP_FAILED && b != UMAP_FAILED) {
      CHECK(a[7] == static_cast<char>(7 * 13));
      CHECK(b[9] == static_cast<char>((half + 9) * 13));
      CHECK(b[half - 1] == static_cast<char>((n - 1) * 13));
      b[half - 1] = 'w';
      CHECK(uunmap(b, half) == 0);
      CHECK(two.data[n - 1] == 'w');
      CHECK(uunmap(a, half) == 0);
    }
  }

  // Store::make_store over a file descriptor, through umap_ex.
  char path[] = "/tmp/faultline-umap-store-XXXXXX";
  const int fd = mkstemp(path);
  CHECK(fd >= 0);
  std::vector<char> buf(65536, 'a');
  CHECK(pwrite(fd, buf.data(), buf.size(), 0) == static_cast<ssize_t>(buf.size()));
  Umap::Store* fs = Umap::Store::make_store(nullptr, buf.size(), 4096, fd);
  CHECK(fs != nullptr);
  errno = 0;
  CHECK(Umap::Store::make_store(nullptr, 4096, 4096, -1) == nullptr && errno == EBADF);
  char* q = static_cast<char*>(Umap::umap_ex(nullptr, buf.size(), PROT_READ | PROT_WRITE, UMAP_PRIVATE, fd, 0, fs));
  CHECK(q != UMAP_FAILED);
  if (q != UMAP_FAILED) {
    CHECK(q[100] == 'a');
    q[100] = 'b';
    CHECK(uunmap(q, buf.size()) == 0);
    char c = 0;
    CHECK(pread(fd, &c, 1, 100) == 1 && c == 'b');
  }
  delete fs;
  close(fd);
  unlink(path);
  if (failures) return 1;
  std::printf("umap store: ok\n");
  return 0;
}
