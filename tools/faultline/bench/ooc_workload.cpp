#include "bench/ooc_workload.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "bench/words.hpp"
#include "faultline/backend.hpp"
#include "faultline/constants.hpp"
#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = kBasePageSize;

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;  // splitmix64's increment

/// Touch latency histogram: log2 buckets split in 8 (about 9% resolution).
struct Hist {
  std::array<uint64_t, 64 * 8> n{};
  void add(uint64_t ns) {
    if (ns < 8) {
      ++n[ns];
      return;
    }
    const unsigned lg = 63u - static_cast<unsigned>(__builtin_clzll(ns));  // >= 3
    const unsigned sub = static_cast<unsigned>((ns >> (lg - 3)) & 7);
    ++n[lg * 8 + sub];
  }
  void merge(const Hist& o) {
    for (size_t i = 0; i < n.size(); ++i) n[i] += o.n[i];
  }
  /// The bucket's lower bound, for the q-quantile.
  double quantile(double q) const {
    const uint64_t total = std::accumulate(n.begin(), n.end(), uint64_t{0});
    if (total == 0) return 0;
    const auto want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
    uint64_t seen = 0;
    for (size_t i = 0; i < n.size(); ++i) {
      seen += n[i];
      if (seen >= std::max<uint64_t>(want, 1)) {
        if (i < 8) return static_cast<double>(i);
        const unsigned lg = static_cast<unsigned>(i / 8), sub = static_cast<unsigned>(i % 8);
        return std::ldexp(8.0 + sub, static_cast<int>(lg) - 3);
      }
    }
    return 0;
  }
};

uint64_t io_read_bytes() {
  std::ifstream f("/proc/self/io");
  std::string k;
  uint64_t v;
  while (f >> k >> v)
    if (k == "read_bytes:") return v;
  return 0;
}

uint64_t major_faults() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_majflt);
}

/// The file's bytes in the kernel's page cache, through one untouched
/// PROT_READ view (mincore charges nothing).
class KernelCacheProbe {
 public:
  KernelCacheProbe(const std::string& path, uint64_t size) : size_(size), vec_((size + kPage - 1) / kPage) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("open '" + path + "'");
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED) throw_errno("mmap (mincore probe)");
    base_ = p;
  }
  ~KernelCacheProbe() { ::munmap(base_, size_); }
  uint64_t bytes() {
    if (::mincore(base_, size_, vec_.data()) != 0) return 0;
    uint64_t n = 0;
    for (unsigned char v : vec_) n += v & 1;
    return n * kPage;
  }

 private:
  void* base_ = nullptr;
  uint64_t size_;
  std::vector<unsigned char> vec_;
};

struct alignas(64) PerThread {
  std::atomic<uint64_t> touches{0};
  std::atomic<bool> done{false};
  Hist hist;
  uint64_t sum = 0;
  std::string error;
};

struct Snap {
  Clock::time_point t;
  uint64_t touches = 0, hot = 0, io = 0, majflt = 0;
  Stats st{};
};

}  // namespace

const char* to_string(OocWorkload w) {
  switch (w) {
    case OocWorkload::Uniform: return "uniform";
    case OocWorkload::Hotset: return "hotset";
    case OocWorkload::Zipf: return "zipf";
    case OocWorkload::Scan: return "scan";
    case OocWorkload::ScanHot: return "scan+hot";
  }
  return "?";
}

const char* to_string(OocMethod m) {
  switch (m) {
    case OocMethod::Faultline: return "faultline";
    case OocMethod::Faultline2M: return "faultline-2M";
    case OocMethod::Mmap: return "mmap";
    case OocMethod::MmapRandom: return "mmap-random";
    case OocMethod::Direct: return "direct";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// PageGen

PageGen::PageGen(OocWorkload w, uint64_t pages, uint64_t seed, bool hot_only)
    : w_(w), pages_(std::max<uint64_t>(pages, 1)), state_(mix64(seed + kGolden)), hot_only_(hot_only) {
  hot_ = std::max<uint64_t>(1, pages_ / kOocHotFraction);
  if (w_ == OocWorkload::Zipf) {
    const double n = static_cast<double>(pages_);
    for (uint64_t i = 1; i <= pages_; ++i) zetan_ += 1.0 / std::pow(static_cast<double>(i), kOocZipfTheta);
    const double zeta2 = 1.0 + std::pow(0.5, kOocZipfTheta);
    alpha_ = 1.0 / (1.0 - kOocZipfTheta);
    eta_ = (1.0 - std::pow(2.0 / n, 1.0 - kOocZipfTheta)) / (1.0 - zeta2 / zetan_);
    half_pow_ = std::pow(0.5, kOocZipfTheta);
    scatter_ = 0x9e3779b97f4a7c15ull % pages_ | 1;
    while (std::gcd(scatter_, pages_) != 1) scatter_ += 2;
  }
}

uint64_t PageGen::rnd() {
  state_ += kGolden;
  return mix64(state_ + kGolden);
}

uint64_t PageGen::hot_page(uint64_t i) const {
  const uint64_t pg = i * kOocHotFraction + mix64((i ^ 0x686f74) + kGolden) % kOocHotFraction;
  return std::min(pg, pages_ - 1);
}

uint64_t PageGen::next() {
  if (hot_only_) return hot_page(rnd() % hot_);
  switch (w_) {
    case OocWorkload::Hotset:
      if (unit() < kOocHotShare) return hot_page(rnd() % hot_);
      return rnd() % pages_;
    case OocWorkload::Zipf: {
      const double u = unit(), uz = u * zetan_;
      uint64_t rank;
      if (uz < 1.0) rank = 0;
      else if (uz < 1.0 + half_pow_) rank = 1;
      else
        rank = std::min<uint64_t>(
            pages_ - 1,
            static_cast<uint64_t>(static_cast<double>(pages_) * std::pow(eta_ * u - eta_ + 1.0, alpha_)));
      return static_cast<uint64_t>((static_cast<unsigned __int128>(rank) * scatter_) % pages_);
    }
    default:
      return rnd() % pages_;
  }
}

double offline_lru_hit_ratio(OocWorkload w, uint64_t pages, uint64_t capacity, uint64_t length) {
  if (pages == 0 || capacity == 0 || length == 0) return 0;
  constexpr uint32_t kNil = UINT32_MAX;
  std::vector<uint32_t> prev(pages, kNil), next(pages, kNil);
  std::vector<uint8_t> in(pages, 0);
  uint32_t head = kNil, tail = kNil;  // head: most recent
  uint64_t size = 0, hits = 0, counted = 0;
  auto unlink = [&](uint32_t p) {
    if (prev[p] != kNil) next[prev[p]] = next[p]; else head = next[p];
    if (next[p] != kNil) prev[next[p]] = prev[p]; else tail = prev[p];
  };
  auto push_front = [&](uint32_t p) {
    prev[p] = kNil;
    next[p] = head;
    if (head != kNil) prev[head] = p;
    head = p;
    if (tail == kNil) tail = p;
  };
  PageGen g(w, pages, 1);
  for (uint64_t i = 0; i < length; ++i) {
    const auto p = static_cast<uint32_t>(g.next());
    const bool hit = in[p];
    if (i >= length / 2) {
      ++counted;
      hits += hit;
    }
    if (hit) {
      unlink(p);
    } else {
      if (size == capacity) {
        const uint32_t v = tail;
        unlink(v);
        in[v] = 0;
        --size;
      }
      in[p] = 1;
      ++size;
    }
    push_front(p);
  }
  return counted ? static_cast<double>(hits) / static_cast<double>(counted) : 0;
}

// ---------------------------------------------------------------------------
// One measurement

namespace {

/// What a touch is: a load through a view, or a 4 KiB O_DIRECT read.
struct Toucher {
  const std::byte* base = nullptr;  // views
  int direct_fd = -1;               // direct
  uint64_t operator()(uint64_t pg, std::byte* buf) const {
    if (base) return load_word(base + pg * kPage);
    ssize_t n;
    do n = ::pread(direct_fd, buf, kPage, static_cast<off_t>(pg * kPage));
    while (n < 0 && errno == EINTR);
    if (n < 0) throw std::system_error(errno, std::generic_category(), "O_DIRECT pread");
    return load_word(buf);
  }
};

/// A page-aligned buffer for O_DIRECT (huge pages where the pool has them).
struct DirectBuf {
  explicit DirectBuf(uint64_t len) : len_(len) {
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap (O_DIRECT buffer)");
    p_ = static_cast<std::byte*>(p);
  }
  ~DirectBuf() { ::munmap(p_, len_); }
  std::byte* get() const { return p_; }

 private:
  std::byte* p_;
  uint64_t len_;
};

/// Runs fn in a SIGBUS guard (views); a SIGBUS or an exception becomes the
/// thread's error.
void guarded_run(PerThread& me, bool view, const std::function<void()>& fn) {
  try {
    if (!view) fn();
    else if (const auto bus = guarded(fn))
      me.error = fmt::format("SIGBUS (si_code {}) at {}", bus->code, bus->addr);
  } catch (const std::exception& e) {
    me.error = e.what();
  }
  me.done.store(true, std::memory_order_release);
}

/// Random touches (uniform, hotset, zipf, scan+hot's hot thread) until stop.
void random_loop(PerThread& me, const Toucher& touch, PageGen gen, const std::atomic<bool>& stop,
                 const std::atomic<bool>& measuring) {
  std::optional<DirectBuf> buf;
  if (touch.direct_fd >= 0) buf.emplace(kPage);
  std::byte* b = buf ? buf->get() : nullptr;
  uint64_t n = 0, sum = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (++n % kOocLatencyEvery == 0) {
      const uint64_t pg = gen.next();
      const auto t0 = Clock::now();
      sum += touch(pg, b);
      const auto t1 = Clock::now();
      if (measuring.load(std::memory_order_relaxed))
        me.hist.add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    } else {
      sum += touch(gen.next(), b);
    }
    me.touches.store(n, std::memory_order_relaxed);
  }
  me.sum = sum;
}

/// A sequential scan of pages [first, last) through a view.
void scan_loop(PerThread& me, const std::byte* base, uint64_t first, uint64_t last,
               const std::atomic<bool>& stop) {
  uint64_t n = 0, sum = 0;
  for (uint64_t pg = first; pg < last && !stop.load(std::memory_order_relaxed); ++pg) {
    if (++n % kOocLatencyEvery == 0) {
      const auto t0 = Clock::now();
      sum += load_word(base + pg * kPage);
      me.hist.add(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    } else {
      sum += load_word(base + pg * kPage);
    }
    me.touches.store(n, std::memory_order_relaxed);
  }
  me.sum = sum;
}

/// The direct scan: kOocScanReadBytes O_DIRECT reads taken in file order from
/// a shared cursor; a read's pages count as touched (latency: one read).
void direct_scan_loop(PerThread& me, int fd, uint64_t size, std::atomic<uint64_t>& cursor,
                      const std::atomic<bool>& stop) {
  DirectBuf buf(kOocScanReadBytes);
  uint64_t n = 0, sum = 0;
  for (;;) {
    if (stop.load(std::memory_order_relaxed)) break;
    const uint64_t off = cursor.fetch_add(kOocScanReadBytes);
    if (off >= size) break;
    const uint64_t want = std::min<uint64_t>(kOocScanReadBytes, size - off);
    const auto t0 = Clock::now();
    uint64_t got = 0;
    while (got < want) {
      const ssize_t r = ::pread(fd, buf.get() + got, kOocScanReadBytes - got, static_cast<off_t>(off + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw std::system_error(errno, std::generic_category(), "O_DIRECT pread");
      if (r == 0) break;
      got += static_cast<uint64_t>(r);
    }
    me.hist.add(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    for (uint64_t o = 0; o < got; o += kPage) sum += load_word(buf.get() + o);
    n += (got + kPage - 1) / kPage;
    me.touches.store(n, std::memory_order_relaxed);
  }
  me.sum = sum;
}

void set_error(OocResult& r, bool skip, const std::string& msg) {
  (skip ? r.skipped : r.failed) = 1;
  std::snprintf(r.error, sizeof r.error, "%s", msg.c_str());
}

OocResult measure(const OocPlan& plan) {
  OocResult r;
  const bool view = plan.method != OocMethod::Direct;
  const bool is_fl = plan.method == OocMethod::Faultline || plan.method == OocMethod::Faultline2M;
  // The method's view of the file (or the O_DIRECT descriptor).
  std::optional<Engine> engine;
  std::optional<File> file;
  std::optional<Mapping> mapping;
  UniqueFd fd;
  void* kview = nullptr;
  Toucher touch;
  if (is_fl) {
    EngineConfig cfg = plan.config;
    cfg.memory_limit_pages = plan.limit_bytes / kPage;
    try {
      engine.emplace(cfg);
    } catch (const std::system_error& e) {
      set_error(r, true, fmt::format("no faultline engine here: {}", e.what()));
      return r;
    }
    FileOptions fo;
    fo.frame_size = plan.method == OocMethod::Faultline2M ? FrameSize::k2M : FrameSize::k4K;
    try {
      file.emplace(engine->open(make_file_backend(plan.path, /*writable=*/false), fo));
    } catch (const std::system_error& e) {
      if (e.code().value() != ENOMEM || fo.frame_size != FrameSize::k2M) throw;
      set_error(r, true, e.what());  // the huge page pool is too small
      return r;
    }
    mapping.emplace(file->map(0, plan.size, Access::ReadOnly));
    touch.base = mapping->data();
    r.have_engine = 1;
  } else if (view) {
    fd.reset(::open(plan.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("open '" + plan.path + "'");
    kview = ::mmap(nullptr, plan.size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (kview == MAP_FAILED) throw_errno("mmap '" + plan.path + "'");
    if (plan.method == OocMethod::MmapRandom && ::madvise(kview, plan.size, MADV_RANDOM) != 0)
      throw_errno("madvise(MADV_RANDOM)");
    touch.base = static_cast<const std::byte*>(kview);
  } else {
    fd.reset(::open(plan.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (!fd) throw_errno("open '" + plan.path + "' with O_DIRECT");
    touch.direct_fd = fd.get();
  }
  struct Unmap {
    void* p;
    uint64_t len;
    ~Unmap() {
      if (p && p != MAP_FAILED) ::munmap(p, len);
    }
  } unmap_kview{kview, plan.size};

  // Memory: sampled every 50 ms over the whole run (frames + kernel cache).
  KernelCacheProbe probe(plan.path, plan.size);
  std::atomic<bool> sampler_stop{false};
  auto sample = [&] {
    const uint64_t frames = engine ? engine->stats().cached_pages * kPage : 0;
    const uint64_t kc = probe.bytes();
    ++r.mem_samples;
    if (frames + kc >= r.peak_mem_bytes) {
      r.peak_mem_bytes = frames + kc;
      r.peak_frames_bytes = frames;
      r.peak_kcache_bytes = kc;
    }
  };
  std::thread sampler([&] {
    while (!sampler_stop.load(std::memory_order_relaxed)) {
      sample();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  const OocWorkload w = plan.workload;
  const bool scan = w == OocWorkload::Scan;
  const bool scan_hot = w == OocWorkload::ScanHot;
  const bool direct_scan = !view && scan;
  unsigned nthreads = plan.threads;
  if (!view) nthreads = direct_scan ? kOocScanDepth : plan.direct_depth;
  r.depth = view ? 0 : nthreads;
  // scan+hot: thread 0 is the hot thread, 1..threads scan.
  const unsigned total = scan_hot ? nthreads + 1 : nthreads;
  std::vector<PerThread> pt(total);
  std::atomic<bool> stop{false}, scan_stop{false}, measuring{false}, go_scan{false};
  std::atomic<uint64_t> cursor{0};
  std::vector<std::thread> threads;
  const auto scan_part = [&](unsigned k, unsigned parts) {
    const uint64_t per = (plan.pages + parts - 1) / parts;
    return std::pair<uint64_t, uint64_t>{std::min(plan.pages, k * per), std::min(plan.pages, (k + 1) * per)};
  };
  const auto snap = [&] {
    Snap s;
    s.t = Clock::now();
    for (unsigned k = scan_hot ? 1 : 0; k < total; ++k) s.touches += pt[k].touches.load(std::memory_order_relaxed);
    if (scan_hot) s.hot = pt[0].touches.load(std::memory_order_relaxed);
    s.io = io_read_bytes();
    s.majflt = major_faults();
    if (engine) s.st = engine->stats();
    return s;
  };
  const auto all_done = [&](unsigned from) {
    for (unsigned k = from; k < total; ++k)
      if (!pt[k].done.load(std::memory_order_acquire)) return false;
    return true;
  };
  const auto sleep_until = [&](Clock::time_point t, unsigned done_from) {
    while (Clock::now() < t && !all_done(done_from)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  };
  const auto seconds = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(plan.seconds));
  std::atomic<bool> hot_warm{false};

  for (unsigned k = 0; k < total; ++k) {
    threads.emplace_back([&, k] {
      guarded_run(pt[k], view, [&] {
        if (scan_hot && k == 0) {
          // The hot thread: one pass over its hot set (untimed warm-up), then
          // random touches on it only.
          PageGen g(OocWorkload::Hotset, plan.pages, 77, /*hot_only=*/true);
          uint64_t s = 0;
          std::optional<DirectBuf> buf;
          if (touch.direct_fd >= 0) buf.emplace(kPage);
          for (uint64_t i = 0; i < g.hot_pages() && !stop.load(std::memory_order_relaxed); ++i)
            s += touch(g.hot_page(i), buf ? buf->get() : nullptr);
          pt[k].sum = s;
          hot_warm.store(true, std::memory_order_release);
          random_loop(pt[k], touch, g, stop, measuring);
        } else if (scan_hot) {
          while (!go_scan.load(std::memory_order_acquire) && !stop.load(std::memory_order_relaxed))
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          const auto [a, b] = scan_part(k - 1, nthreads);
          scan_loop(pt[k], touch.base, a, b, scan_stop);
        } else if (direct_scan) {
          direct_scan_loop(pt[k], touch.direct_fd, plan.size, cursor, stop);
        } else if (scan) {
          const auto [a, b] = scan_part(k, nthreads);
          scan_loop(pt[k], touch.base, a, b, stop);
        } else {
          random_loop(pt[k], touch, PageGen(w, plan.pages, 1000 + k), stop, measuring);
        }
      });
    });
  }

  Snap a, b;
  Hist hist;
  if (scan) {
    a = snap();
    sleep_until(a.t + seconds, 0);
    b = snap();
  } else if (scan_hot) {
    while (!hot_warm.load(std::memory_order_acquire) && !pt[0].done.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const Snap h0 = snap();
    std::this_thread::sleep_for(seconds / 2);
    a = snap();
    r.hot_before_per_s = static_cast<double>(a.hot - h0.hot) / std::chrono::duration<double>(a.t - h0.t).count();
    measuring.store(true);
    go_scan.store(true, std::memory_order_release);
    sleep_until(a.t + seconds, 1);
    b = snap();
    scan_stop.store(true);
  } else {
    const auto t0 = Clock::now();
    sleep_until(t0 + seconds / 2, 0);
    measuring.store(true);
    a = snap();
    sleep_until(t0 + seconds, 0);
    b = snap();
  }
  stop.store(true);
  scan_stop.store(true);
  for (auto& t : threads) t.join();
  sampler_stop.store(true);
  sampler.join();
  sample();
  for (auto& p : pt) {
    if (!p.error.empty()) {
      set_error(r, false, p.error);
      return r;
    }
    hist.merge(p.hist);
  }
  // For scan+hot the latency is the hot thread's (pt[0]); scans: their own.
  if (scan_hot) {
    hist = pt[0].hist;
  }

  r.measured_s = std::chrono::duration<double>(b.t - a.t).count();
  const uint64_t hot = b.hot - a.hot;
  r.touches = (b.touches - a.touches) + hot;
  r.touches_per_s = static_cast<double>(scan_hot ? hot : r.touches) / r.measured_s;
  if (scan_hot) {
    r.hot_during_per_s = static_cast<double>(hot) / r.measured_s;
    r.hot_kept = r.hot_before_per_s > 0 ? r.hot_during_per_s / r.hot_before_per_s : 0;
  }
  if (scan || scan_hot)
    r.scan_gib_s = static_cast<double>((b.touches - a.touches) * kPage) / double(uint64_t{1} << 30) / r.measured_s;
  r.device_read_bytes = b.io - a.io;
  if (engine) {
    r.cache_hits = b.st.cache_hits - a.st.cache_hits;
    r.cache_misses = b.st.cache_misses - a.st.cache_misses;
    r.pages_reclaimed = b.st.pages_reclaimed - a.st.pages_reclaimed;
    r.reclaim_runs = b.st.reclaim_runs - a.st.reclaim_runs;
    r.missing_faults = b.st.missing_faults - a.st.missing_faults;
    r.minor_faults = b.st.minor_faults - a.st.minor_faults;
    r.engine_bytes_read = b.st.bytes_read - a.st.bytes_read;
    r.pages_filled = b.st.pages_filled - a.st.pages_filled;
    r.readaround_hits = b.st.readaround_hits - a.st.readaround_hits;
    r.readaround_misses = b.st.readaround_misses - a.st.readaround_misses;
    r.readaround_off = b.st.readaround_off - a.st.readaround_off;
    r.pages_read_around = b.st.pages_read_around - a.st.pages_read_around;
    r.peak_fault_threads = b.st.peak_fault_threads;
    r.peak_fills_in_flight = b.st.peak_fills_in_flight;
    // A miss of a 2 MiB File reads a whole frame: count the touches it served
    // as the faulting one only (the others are hits), as for 4 KiB frames.
    r.misses = r.cache_misses;
  } else if (view) {
    r.misses = b.majflt - a.majflt;
  } else {
    r.misses = r.touches;  // no cache: every touch reads the device
  }
  r.misses = std::min(r.misses, r.touches);
  r.hit_ratio = r.touches ? 1.0 - static_cast<double>(r.misses) / static_cast<double>(r.touches) : 0;
  r.p50_ns = hist.quantile(0.5);
  r.p99_ns = hist.quantile(0.99);
  return r;
}

}  // namespace

OocResult run_ooc_measurement(const OocPlan& plan) {
  try {
    return measure(plan);
  } catch (const std::exception& e) {
    OocResult r;
    set_error(r, false, e.what());
    return r;
  }
}

}  // namespace faultline::cli
