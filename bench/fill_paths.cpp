// fill_paths: ways to fill 4 KiB frames of a memfd from a regular (ext4) backing file.
//
//   pread_pwrite : pread(backing) into a buffer + pwrite(memfd) at the same offset
//   sendfile     : lseek(private description of the memfd) + sendfile(out, backing, &in_off)
//                  (private description = open("/proc/self/fd/<memfd>", O_RDWR), as a
//                  handler thread would own)
//   splice       : backing -> pipe -> memfd with explicit offsets (pipe = min(batch, 1 MiB))
//   copy_file_range is probed once at start-up (EXDEV expected) and not benchmarked.
//
//   e2e_<method> : a MAP_SHARED view of the memfd registered MISSING|MINOR|WP on a uffd;
//                  one handler thread fills the batch around each fault with <method> and
//                  UFFDIO_CONTINUE(MODE_WP)s it; the benchmark thread reads every page in order.
//   kernel_mmap_backing : reference, the kernel's own mmap of the backing file (read every page).
//
// Every pass covers the whole backing file (256 MiB by default, FILL_PATHS_MB to change);
// between passes (not timed) the memfd is punched (PUNCH_HOLE|KEEP_SIZE) so each fill
// allocates fresh frames; for /cold the backing file is fsync'ed and fadvise(DONTNEED)'ed.
// /warm reads the file once with read(2) before the pass loop (ext4 then keeps large folios).
// Times are wall-clock (UseRealTime); ns_per_page is wall ns per 4 KiB page.
//
// Build: g++ -O2 -std=c++20 bench/fill_paths.cpp -lbenchmark -lpthread
// The backing file lives in $FILL_PATHS_DIR (default /var/tmp) and is unlinked right after
// creation (the fd keeps it alive), so it disappears when the process exits.

#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

namespace {

constexpr size_t kPage = 4096;

int g_back = -1;   // backing file (ext4)
int g_memfd = -1;  // frames
size_t g_size = 0;
size_t g_pages = 0;
uint64_t g_expect_sum = 0;  // sum of the first u64 of every page of the backing file

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fill_paths: %s: %s (errno %d)\n", what, std::strerror(errno), errno);
  std::exit(2);
}

void punch_memfd() {
  if (fallocate(g_memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)g_size) != 0)
    die("fallocate(PUNCH_HOLE)");
}

void drop_backing_cache() {
  if (fsync(g_back) != 0) die("fsync");
  int e = posix_fadvise(g_back, 0, 0, POSIX_FADV_DONTNEED);
  if (e != 0) { errno = e; die("posix_fadvise(DONTNEED)"); }
}

void warm_backing_cache() {
  static std::vector<char> buf(1 << 20);
  for (size_t off = 0; off < g_size; off += buf.size())
    if (pread(g_back, buf.data(), buf.size(), (off_t)off) < 0) die("pread warm");
}

void prepare_pass(bool cold) {
  punch_memfd();
  if (cold) drop_backing_cache();
}

// ---------------------------------------------------------------------------------------
// Fillers: fill [off, off+len) of the memfd from the same range of the backing file.

struct Filler {
  virtual ~Filler() = default;
  virtual void fill(size_t off, size_t len) = 0;
};

struct PreadPwrite final : Filler {
  std::vector<char> buf;
  explicit PreadPwrite(size_t batch_bytes) : buf(batch_bytes) {
    std::memset(buf.data(), 1, buf.size());  // pre-fault the bounce buffer
  }
  void fill(size_t off, size_t len) override {
    size_t done = 0;
    while (done < len) {
      ssize_t n = pread(g_back, buf.data(), len - done, (off_t)(off + done));
      if (n <= 0) die("pread");
      size_t w = 0;
      while (w < (size_t)n) {
        ssize_t m = pwrite(g_memfd, buf.data() + w, (size_t)n - w, (off_t)(off + done + w));
        if (m <= 0) die("pwrite");
        w += (size_t)m;
      }
      done += (size_t)n;
    }
  }
};

struct Sendfile final : Filler {
  int out = -1;  // private open file description of the memfd
  Sendfile() {
    std::string p = "/proc/self/fd/" + std::to_string(g_memfd);
    out = open(p.c_str(), O_RDWR | O_CLOEXEC);
    if (out < 0) die("open /proc/self/fd/<memfd>");
  }
  ~Sendfile() override { close(out); }
  void fill(size_t off, size_t len) override {
    if (lseek(out, (off_t)off, SEEK_SET) != (off_t)off) die("lseek");
    off_t in_off = (off_t)off;
    size_t done = 0;
    while (done < len) {
      ssize_t n = sendfile(out, g_back, &in_off, len - done);
      if (n <= 0) die("sendfile");
      done += (size_t)n;
    }
  }
};

struct Splice final : Filler {
  int p[2] = {-1, -1};
  size_t pipe_bytes = 0;
  explicit Splice(size_t batch_bytes) {
    if (pipe2(p, O_CLOEXEC) != 0) die("pipe2");
    size_t want = batch_bytes < (1u << 20) ? batch_bytes : (1u << 20);
    int r = fcntl(p[1], F_SETPIPE_SZ, (int)want);
    if (r < 0) die("F_SETPIPE_SZ");
    pipe_bytes = (size_t)r;
  }
  ~Splice() override { close(p[0]); close(p[1]); }
  void fill(size_t off, size_t len) override {
    loff_t in_off = (loff_t)off, out_off = (loff_t)off;
    size_t done = 0;
    while (done < len) {
      size_t chunk = len - done < pipe_bytes ? len - done : pipe_bytes;
      ssize_t n = splice(g_back, &in_off, p[1], nullptr, chunk, SPLICE_F_MOVE);
      if (n <= 0) die("splice in");
      ssize_t left = n;
      while (left > 0) {
        ssize_t m = splice(p[0], nullptr, g_memfd, &out_off, (size_t)left, SPLICE_F_MOVE);
        if (m <= 0) die("splice out");
        left -= m;
      }
      done += (size_t)n;
    }
  }
};

enum Method { kPreadPwrite = 0, kSendfile = 1, kSplice = 2 };
const char* const kMethodName[] = {"pread_pwrite", "sendfile", "splice"};

Filler* make_filler(int method, size_t batch_bytes) {
  switch (method) {
    case kPreadPwrite: return new PreadPwrite(batch_bytes);
    case kSendfile: return new Sendfile();
    default: return new Splice(batch_bytes);
  }
}

// Check one filler's result against the backing file (outside any timing).
void verify_fill(int method, size_t batch_pages) {
  punch_memfd();
  Filler* f = make_filler(method, batch_pages * kPage);
  size_t check = 8 << 20;  // first 8 MiB is enough
  for (size_t off = 0; off < check; off += batch_pages * kPage) f->fill(off, batch_pages * kPage);
  delete f;
  std::vector<char> a(check), b(check);
  if (pread(g_back, a.data(), check, 0) != (ssize_t)check) die("verify pread back");
  if (pread(g_memfd, b.data(), check, 0) != (ssize_t)check) die("verify pread memfd");
  if (std::memcmp(a.data(), b.data(), check) != 0) {
    std::fprintf(stderr, "fill_paths: VERIFY FAILED for %s batch %zu\n", kMethodName[method],
                 batch_pages);
    std::exit(3);
  }
}

// ---------------------------------------------------------------------------------------
// Pure fill benchmarks.

void BM_fill(benchmark::State& state, int method, bool cold) {
  const size_t batch = (size_t)state.range(0);
  const size_t bb = batch * kPage;
  Filler* f = make_filler(method, bb);
  if (!cold) warm_backing_cache();
  uint64_t pages = 0;
  for (auto _ : state) {
    state.PauseTiming();
    prepare_pass(cold);
    state.ResumeTiming();
    for (size_t off = 0; off < g_size; off += bb) f->fill(off, bb < g_size - off ? bb : g_size - off);
    pages += g_pages;
  }
  delete f;
  state.SetItemsProcessed((int64_t)pages);
  state.counters["ns_per_page"] = benchmark::Counter(
      (double)pages, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------------------
// End to end through userfaultfd.

struct UffdStats {
  std::atomic<uint64_t> events{0}, missing{0}, minor{0}, eexist{0}, eagain{0};
};

void handler_loop(int uffd, int stopfd, char* base, int method, size_t batch, UffdStats* st,
                  std::atomic<int>* err) {
  Filler* f = make_filler(method, batch * kPage);
  uffd_msg msgs[32];
  for (;;) {
    pollfd pf[2] = {{uffd, POLLIN, 0}, {stopfd, POLLIN, 0}};
    if (poll(pf, 2, -1) < 0) {
      if (errno == EINTR) continue;
      err->store(errno);
      break;
    }
    if (pf[1].revents) break;
    ssize_t n = read(uffd, msgs, sizeof msgs);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      err->store(errno);
      break;
    }
    for (size_t i = 0; i < (size_t)n / sizeof(uffd_msg); ++i) {
      const uffd_msg& m = msgs[i];
      if (m.event != UFFD_EVENT_PAGEFAULT) continue;
      st->events.fetch_add(1, std::memory_order_relaxed);
      if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
        st->minor.fetch_add(1, std::memory_order_relaxed);
      else
        st->missing.fetch_add(1, std::memory_order_relaxed);
      size_t page = (size_t)(m.arg.pagefault.address - (uintptr_t)base) / kPage;
      size_t start = page / batch * batch;
      size_t end = start + batch < g_pages ? start + batch : g_pages;
      f->fill(start * kPage, (end - start) * kPage);
      size_t s = start;
      while (s < end) {
        uffdio_continue c{};
        c.range.start = (uintptr_t)base + s * kPage;
        c.range.len = (end - s) * kPage;
        c.mode = UFFDIO_CONTINUE_MODE_WP;
        if (ioctl(uffd, UFFDIO_CONTINUE, &c) == 0) break;
        if (errno == EEXIST) { st->eexist.fetch_add(1); break; }
        if (errno == EAGAIN && c.mapped > 0) {
          st->eagain.fetch_add(1);
          s += (size_t)c.mapped / kPage + 1;  // skip the already-mapped page
          continue;
        }
        err->store(errno);
        // wake the faulting thread anyway so the benchmark cannot hang
        uffdio_range r{(uintptr_t)base + page * kPage, kPage};
        ioctl(uffd, UFFDIO_WAKE, &r);
        break;
      }
    }
  }
  delete f;
}

void BM_e2e(benchmark::State& state, int method, bool cold) {
  const size_t batch = (size_t)state.range(0);
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (uffd < 0) die("userfaultfd");
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = 0;
  if (ioctl(uffd, UFFDIO_API, &api) != 0) die("UFFDIO_API");
  char* base = (char*)mmap(nullptr, g_size, PROT_READ | PROT_WRITE, MAP_SHARED, g_memfd, 0);
  if (base == MAP_FAILED) die("mmap memfd");
  uffdio_register reg{};
  reg.range.start = (uintptr_t)base;
  reg.range.len = g_size;
  // MODE_WP registration is required for UFFDIO_CONTINUE_MODE_WP (else CONTINUE: EINVAL).
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) die("UFFDIO_REGISTER");
  int stopfd = eventfd(0, EFD_CLOEXEC);
  UffdStats st;
  std::atomic<int> err{0};
  std::thread h(handler_loop, uffd, stopfd, base, method, batch, &st, &err);
  if (!cold) warm_backing_cache();
  uint64_t pages = 0;
  bool bad = false;
  for (auto _ : state) {
    state.PauseTiming();
    prepare_pass(cold);  // punch zaps the PTEs in this view too
    state.ResumeTiming();
    uint64_t sum = 0;
    for (size_t p = 0; p < g_pages; ++p) sum += *(volatile uint64_t*)(base + p * kPage);
    benchmark::DoNotOptimize(sum);
    if (sum != g_expect_sum) bad = true;
    pages += g_pages;
  }
  uint64_t one = 1;
  if (write(stopfd, &one, sizeof one) != sizeof one) die("eventfd write");
  h.join();
  close(stopfd);
  ioctl(uffd, UFFDIO_UNREGISTER, &reg.range);
  munmap(base, g_size);
  close(uffd);
  if (bad) state.SkipWithError("data mismatch");
  if (err.load()) state.SkipWithError(("handler errno " + std::to_string(err.load())).c_str());
  double iters = (double)state.iterations();
  state.SetItemsProcessed((int64_t)pages);
  state.counters["ns_per_page"] = benchmark::Counter(
      (double)pages, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["events_per_pass"] = (double)st.events.load() / iters;
  state.counters["minor_per_pass"] = (double)st.minor.load() / iters;
  state.counters["eexist"] = (double)st.eexist.load();
  state.counters["eagain"] = (double)st.eagain.load();
}

// Reference: the kernel's own mmap of the backing file.
void BM_kernel_mmap(benchmark::State& state, bool cold) {
  if (!cold) warm_backing_cache();
  uint64_t pages = 0;
  bool bad = false;
  for (auto _ : state) {
    state.PauseTiming();
    if (cold) drop_backing_cache();
    state.ResumeTiming();
    char* m = (char*)mmap(nullptr, g_size, PROT_READ, MAP_SHARED, g_back, 0);
    if (m == MAP_FAILED) die("mmap backing");
    uint64_t sum = 0;
    for (size_t p = 0; p < g_pages; ++p) sum += *(volatile uint64_t*)(m + p * kPage);
    benchmark::DoNotOptimize(sum);
    if (sum != g_expect_sum) bad = true;
    state.PauseTiming();
    munmap(m, g_size);
    state.ResumeTiming();
    pages += g_pages;
  }
  if (bad) state.SkipWithError("data mismatch");
  state.SetItemsProcessed((int64_t)pages);
  state.counters["ns_per_page"] = benchmark::Counter(
      (double)pages, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------------------

void setup_files() {
  const char* dir = std::getenv("FILL_PATHS_DIR");
  if (!dir) dir = "/var/tmp";
  size_t mb = 256;
  if (const char* s = std::getenv("FILL_PATHS_MB")) mb = std::strtoul(s, nullptr, 10);
  g_size = mb << 20;
  g_pages = g_size / kPage;
  std::string path = std::string(dir) + "/fill_paths_backing." + std::to_string(getpid());
  g_back = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (g_back < 0) die("create backing file");
  unlink(path.c_str());  // deleted now; the fd keeps it alive until exit
  std::vector<uint64_t> buf((1 << 20) / 8);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t off = 0; off < g_size; off += 1 << 20) {
    for (auto& w : buf) {  // xorshift64: incompressible, distinct per page
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      w = x;
    }
    for (size_t p = 0; p < (1 << 20) / kPage; ++p) g_expect_sum += buf[p * (kPage / 8)];
    if (pwrite(g_back, buf.data(), 1 << 20, (off_t)off) != 1 << 20) die("write backing");
  }
  if (fsync(g_back) != 0) die("fsync backing");
  g_memfd = (int)syscall(SYS_memfd_create, "fill_paths", MFD_CLOEXEC);
  if (g_memfd < 0) die("memfd_create");
  if (ftruncate(g_memfd, (off_t)g_size) != 0) die("ftruncate memfd");
  std::printf("backing: %s (%zu MiB, unlinked), memfd %zu MiB\n", path.c_str(), mb, mb);
}

void probe_copy_file_range() {
  loff_t in = 0, out = 0;
  ssize_t r = copy_file_range(g_back, &in, g_memfd, &out, 64 * kPage, 0);
  if (r < 0)
    std::printf("copy_file_range(ext4 -> memfd, 256 KiB): -1 errno %d (%s) -> not benchmarked\n",
                errno, std::strerror(errno));
  else
    std::printf("copy_file_range(ext4 -> memfd, 256 KiB): returned %zd (works!)\n", r);
}

void probe_continue_wp_without_wp_registration() {
  // Does UFFDIO_CONTINUE_MODE_WP need the range registered with MODE_WP?
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  uffdio_api api{UFFD_API, 0, 0};
  if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) != 0) die("probe uffd");
  std::printf("UFFDIO_API features 0 -> kernel offers 0x%llx (MINOR_SHMEM bit %s)\n",
              (unsigned long long)api.features,
              (api.features & UFFD_FEATURE_MINOR_SHMEM) ? "set" : "clear");
  punch_memfd();
  char* v = (char*)mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, g_memfd, 0);
  uffdio_register reg{};
  reg.range = {(uintptr_t)v, kPage};
  reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) die("probe register");
  PreadPwrite f(kPage);
  f.fill(0, kPage);
  uffdio_continue c{};
  c.range = {(uintptr_t)v, kPage};
  c.mode = UFFDIO_CONTINUE_MODE_WP;
  int r = ioctl(uffd, UFFDIO_CONTINUE, &c);
  std::printf("CONTINUE_MODE_WP on a MISSING|MINOR (no WP) registration: %s (errno %d)\n",
              r == 0 ? "ok" : std::strerror(errno), r == 0 ? 0 : errno);
  munmap(v, kPage);
  close(uffd);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  setup_files();
  probe_copy_file_range();
  probe_continue_wp_without_wp_registration();
  for (int m : {kPreadPwrite, kSendfile, kSplice})
    for (size_t b : {64, 2048}) verify_fill(m, b);
  std::printf("verify: all three fill methods copy the data exactly\n");

  const std::vector<int64_t> batches = {64, 128, 256, 512, 1024, 2048};
  for (bool cold : {false, true}) {
    const char* temp = cold ? "cold" : "warm";
    for (int m : {kPreadPwrite, kSendfile, kSplice}) {
      auto* b = benchmark::RegisterBenchmark(
          (std::string("fill/") + kMethodName[m] + "/" + temp).c_str(),
          [m, cold](benchmark::State& s) { BM_fill(s, m, cold); });
      for (auto x : batches) b->Arg(x);
      b->ArgName("batch")->UseRealTime()->Unit(benchmark::kMillisecond);
    }
  }
  for (bool cold : {false, true}) {
    const char* temp = cold ? "cold" : "warm";
    for (int m : {kPreadPwrite, kSendfile, kSplice}) {
      auto* b = benchmark::RegisterBenchmark(
          (std::string("e2e/") + kMethodName[m] + "/" + temp).c_str(),
          [m, cold](benchmark::State& s) { BM_e2e(s, m, cold); });
      for (auto x : batches) b->Arg(x);
      b->ArgName("batch")->UseRealTime()->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark((std::string("kernel_mmap_backing/") + temp).c_str(),
                                 [cold](benchmark::State& s) { BM_kernel_mmap(s, cold); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  close(g_memfd);
  close(g_back);
  return 0;
}
