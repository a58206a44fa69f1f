// faultline CLI — `bench --out-of-core`: one measurement of one method on one
// workload (ooc_workload.hpp), run inside the child process: the method's
// view of the file, the touching threads, the memory sampler, the measured
// window, and the result.
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
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "bench/direct_io.hpp"
#include "bench/words.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"
#include "faultline/backend.hpp"
#include "faultline/constants.hpp"
#include "faultline/file.hpp"
#include "faultline/guarded.hpp"
#include "faultline/mapping.hpp"

namespace faultline::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = kBasePageSize;

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

/// The file's bytes in the kernel's page cache: cachestat(2) (Linux 6.5),
/// which walks only the cached pages; else mincore through one untouched
/// PROT_READ view (mincore charges nothing), which looks up every page of the
/// file. Sampled every 50 ms beside the touching threads: with mincore over a
/// 2 GiB file the sampler took ~18% of this 2-CPU machine's time (perf,
/// 2026-12-07), CPU the touching threads of every method then lacked.
class KernelCacheProbe {
 public:
  KernelCacheProbe(const std::string& path, uint64_t size)
      : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)), size_(size) {
    if (!fd_) throw_errno("open '" + path + "'");
    if (cachestat_bytes()) return;
    vec_.resize((size + kPage - 1) / kPage);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd_.get(), 0);
    if (p == MAP_FAILED) throw_errno("mmap (mincore probe)");
    base_ = p;
  }
  ~KernelCacheProbe() {
    if (base_) ::munmap(base_, size_);
  }
  uint64_t bytes() {
    if (!base_) return cachestat_bytes().value_or(0);
    if (::mincore(base_, size_, vec_.data()) != 0) return 0;
    uint64_t n = 0;
    for (unsigned char v : vec_) n += v & 1;
    return n * kPage;
  }

 private:
  std::optional<uint64_t> cachestat_bytes() const {
    struct {
      uint64_t off, len;
    } range{0, size_};
    struct {
      uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
    } cs{};
    constexpr long kSysCachestat = 451;
    if (::syscall(kSysCachestat, fd_.get(), &range, &cs, 0) != 0) return std::nullopt;
    return cs.nr_cache * kPage;
  }

  UniqueFd fd_;
  void* base_ = nullptr;  // the mincore view, only without cachestat
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
  std::optional<DirectBuffer> buf;
  if (touch.direct_fd >= 0) buf.emplace(kPage, /*huge=*/false);
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
  // Huge pages: one DMA segment per read, the device's speed (M6.16).
  DirectBuffer buf(kOocScanReadBytes, /*huge=*/true);
  uint64_t n = 0, sum = 0;
  for (;;) {
    if (stop.load(std::memory_order_relaxed)) break;
    const uint64_t off = cursor.fetch_add(kOocScanReadBytes);
    if (off >= size) break;
    const uint64_t want = std::min<uint64_t>(kOocScanReadBytes, size - off);
    const auto t0 = Clock::now();
    const int64_t r = pread_upto(fd, buf.get(), kOocScanReadBytes, want, off);
    if (r < 0) throw std::system_error(static_cast<int>(-r), std::generic_category(), "O_DIRECT pread");
    const auto got = static_cast<uint64_t>(r);
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


// ---------------------------------------------------------------------------
// The method's view of the file.

/// A faultline Mapping (with its Engine and File), the kernel's mmap, or an
/// O_DIRECT descriptor; `touch` reads a page through it. Torn down in reverse.
struct MethodView {
  std::optional<Engine> engine;
  std::optional<File> file;
  std::optional<Mapping> mapping;
  UniqueFd fd;
  void* kview = nullptr;
  uint64_t kview_len = 0;
  Toucher touch;

  MethodView() = default;
  MethodView(const MethodView&) = delete;
  MethodView& operator=(const MethodView&) = delete;
  ~MethodView() {
    if (kview) ::munmap(kview, kview_len);
  }
};

/// faultline: Engine (memory limit = the plan's) + File + Mapping. False, with
/// r's stated skip, when there is no engine here or no huge page pool.
bool open_faultline(const OocPlan& plan, MethodView& v, OocResult& r) {
  EngineConfig cfg = plan.config;
  cfg.memory_limit_pages = plan.limit_bytes / kPage;
  if (plan.method == OocMethod::FaultlineSelf) cfg.fault_mode = FaultMode::FaultingThread;
  try {
    v.engine.emplace(cfg);
  } catch (const std::system_error& e) {
    set_error(r, true, fmt::format("no faultline engine here: {}", e.what()));
    return false;
  }
  FileOptions fo;
  fo.frame_size = plan.method == OocMethod::Faultline2M ? FrameSize::k2M : FrameSize::k4K;
  try {
    v.file.emplace(v.engine->open(make_file_backend(plan.path, /*writable=*/false), fo));
  } catch (const std::system_error& e) {
    if (e.code().value() != ENOMEM || fo.frame_size != FrameSize::k2M) throw;
    set_error(r, true, e.what());  // the huge page pool is too small
    return false;
  }
  v.mapping.emplace(v.file->map(0, plan.size, Access::ReadOnly));
  v.touch.base = v.mapping->data();
  r.have_engine = 1;
  return true;
}

/// mmap, mmap-random: the kernel's shared read-only mapping (MADV_RANDOM).
void open_kernel_view(const OocPlan& plan, MethodView& v) {
  v.fd.reset(::open(plan.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!v.fd) throw_errno("open '" + plan.path + "'");
  void* p = ::mmap(nullptr, plan.size, PROT_READ, MAP_SHARED, v.fd.get(), 0);
  if (p == MAP_FAILED) throw_errno("mmap '" + plan.path + "'");
  v.kview = p;
  v.kview_len = plan.size;
  if (plan.method == OocMethod::MmapRandom && ::madvise(p, plan.size, MADV_RANDOM) != 0)
    throw_errno("madvise(MADV_RANDOM)");
  v.touch.base = static_cast<const std::byte*>(p);
}

void open_direct(const OocPlan& plan, MethodView& v) {
  v.fd.reset(::open(plan.path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (!v.fd) throw_errno("open '" + plan.path + "' with O_DIRECT");
  v.touch.direct_fd = v.fd.get();
}

/// False (r says why) when the method is a stated skip here.
bool open_view(const OocPlan& plan, MethodView& v, OocResult& r) {
  switch (plan.method) {
    case OocMethod::Faultline:
    case OocMethod::FaultlineSelf:
    case OocMethod::Faultline2M: return open_faultline(plan, v, r);
    case OocMethod::Direct: open_direct(plan, v); return true;
    default: open_kernel_view(plan, v); return true;
  }
}

// ---------------------------------------------------------------------------
// Memory: sampled every 50 ms over the whole run (frames + kernel cache).

class MemorySampler {
 public:
  MemorySampler(const OocPlan& plan, const Engine* engine, OocResult& r)
      : probe_(plan.path, plan.size), engine_(engine), r_(r), thread_([this] { loop(); }) {}
  ~MemorySampler() { stop(); }
  /// Stops sampling and takes one last sample (after the touching threads).
  void finish() {
    stop();
    sample();
  }

 private:
  void stop() {
    stop_.store(true, std::memory_order_relaxed);
    if (thread_.joinable()) thread_.join();
  }
  void loop() {
    while (!stop_.load(std::memory_order_relaxed)) {
      sample();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void sample() {
    const uint64_t frames = engine_ ? engine_->stats().cached_pages * kPage : 0;
    const uint64_t kc = probe_.bytes();
    ++r_.mem_samples;
    if (frames + kc >= r_.peak_mem_bytes) {
      r_.peak_mem_bytes = frames + kc;
      r_.peak_frames_bytes = frames;
      r_.peak_kcache_bytes = kc;
    }
  }

  KernelCacheProbe probe_;
  const Engine* engine_;
  OocResult& r_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once the rest is set
};

// ---------------------------------------------------------------------------
// The touching threads of one run and what they share. scan+hot: thread 0 is
// the hot thread, 1..threads scan.

struct Run {
  Run(const OocPlan& p, const Toucher& t, const Engine* e)
      : plan(p), touch(t), engine(e), view(p.method != OocMethod::Direct),
        scan(p.workload == OocWorkload::Scan), scan_hot(p.workload == OocWorkload::ScanHot),
        direct_scan(!view && scan),
        nthreads(view ? p.threads : direct_scan ? kOocScanDepth : p.direct_depth),
        total(scan_hot ? nthreads + 1 : nthreads), pt(total) {}

  const OocPlan& plan;
  const Toucher& touch;
  const Engine* engine;
  const bool view, scan, scan_hot, direct_scan;
  const unsigned nthreads, total;
  std::vector<PerThread> pt;
  std::atomic<bool> stop{false}, scan_stop{false}, measuring{false}, go_scan{false}, hot_warm{false};
  std::atomic<uint64_t> cursor{0};
  std::vector<std::thread> threads;

  /// Pages [first, last) of scan part k of `parts`.
  std::pair<uint64_t, uint64_t> scan_part(unsigned k, unsigned parts) const {
    const uint64_t per = (plan.pages + parts - 1) / parts;
    return {std::min(plan.pages, k * per), std::min(plan.pages, (k + 1) * per)};
  }
  Snap snap() const {
    Snap s;
    s.t = Clock::now();
    for (unsigned k = scan_hot ? 1 : 0; k < total; ++k) s.touches += pt[k].touches.load(std::memory_order_relaxed);
    if (scan_hot) s.hot = pt[0].touches.load(std::memory_order_relaxed);
    s.io = io_read_bytes();
    s.majflt = major_faults();
    if (engine) s.st = engine->stats();
    return s;
  }
  bool all_done(unsigned from) const {
    for (unsigned k = from; k < total; ++k)
      if (!pt[k].done.load(std::memory_order_acquire)) return false;
    return true;
  }
  void sleep_until(Clock::time_point t, unsigned done_from) const {
    while (Clock::now() < t && !all_done(done_from)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
};

/// scan+hot's hot thread: one pass over its hot set in random order (untimed
/// warm-up; in page order it would be a strided scan that read-around turns
/// into a read of the whole file), then random touches on it only.
void hot_thread(Run& run, PerThread& me) {
  PageGen g(OocWorkload::Hotset, run.plan.pages, 77, /*hot_only=*/true);
  uint64_t s = 0;
  std::optional<DirectBuffer> buf;
  if (run.touch.direct_fd >= 0) buf.emplace(kPage, /*huge=*/false);
  std::vector<uint64_t> order(g.hot_pages());
  std::iota(order.begin(), order.end(), uint64_t{0});
  std::shuffle(order.begin(), order.end(), std::mt19937_64(77));
  for (uint64_t i : order) {
    if (run.stop.load(std::memory_order_relaxed)) break;
    s += run.touch(g.hot_page(i), buf ? buf->get() : nullptr);
  }
  me.sum = s;
  run.hot_warm.store(true, std::memory_order_release);
  random_loop(me, run.touch, g, run.stop, run.measuring);
}

/// Thread k's touches, by workload.
void touch_thread(Run& run, unsigned k) {
  PerThread& me = run.pt[k];
  if (run.scan_hot && k == 0) {
    hot_thread(run, me);
  } else if (run.scan_hot) {
    while (!run.go_scan.load(std::memory_order_acquire) && !run.stop.load(std::memory_order_relaxed))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto [a, b] = run.scan_part(k - 1, run.nthreads);
    scan_loop(me, run.touch.base, a, b, run.scan_stop);
  } else if (run.direct_scan) {
    direct_scan_loop(me, run.touch.direct_fd, run.plan.size, run.cursor, run.stop);
  } else if (run.scan) {
    const auto [a, b] = run.scan_part(k, run.nthreads);
    scan_loop(me, run.touch.base, a, b, run.stop);
  } else {
    random_loop(me, run.touch, PageGen(run.plan.workload, run.plan.pages, 1000 + k), run.stop,
                run.measuring);
  }
}

/// The measured window, as snapshots at its start and end. scan: the whole
/// scan (or --seconds); scan+hot: the hot thread alone for half the time
/// (hot_before_per_s: its second half), then the scans beside it; else the
/// second half.
std::pair<Snap, Snap> measured_window(Run& run, OocResult& r) {
  const auto seconds = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(run.plan.seconds));
  Snap a, b;
  if (run.scan) {
    a = run.snap();
    run.sleep_until(a.t + seconds, 0);
    b = run.snap();
  } else if (run.scan_hot) {
    while (!run.hot_warm.load(std::memory_order_acquire) && !run.pt[0].done.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // Alone for half the run, measured over its second half (the engine's
    // aging ahead of reclaim settles in the first).
    std::this_thread::sleep_for(seconds / 4);
    const Snap h0 = run.snap();
    std::this_thread::sleep_for(seconds / 4);
    a = run.snap();
    r.hot_before_per_s = static_cast<double>(a.hot - h0.hot) / std::chrono::duration<double>(a.t - h0.t).count();
    run.measuring.store(true);
    run.go_scan.store(true, std::memory_order_release);
    run.sleep_until(a.t + seconds, 1);
    b = run.snap();
    run.scan_stop.store(true);
  } else {
    const auto t0 = Clock::now();
    run.sleep_until(t0 + seconds / 2, 0);
    run.measuring.store(true);
    a = run.snap();
    run.sleep_until(t0 + seconds, 0);
    b = run.snap();
  }
  return {a, b};
}

// ---------------------------------------------------------------------------
// The result.

/// The engine counters reported over the measured window (b - a).
struct CounterDelta {
  uint64_t OocResult::*out;
  uint64_t Stats::*in;
};
constexpr CounterDelta kEngineCounters[] = {
    {&OocResult::cache_hits, &Stats::cache_hits},
    {&OocResult::cache_misses, &Stats::cache_misses},
    {&OocResult::pages_reclaimed, &Stats::pages_reclaimed},
    {&OocResult::reclaim_runs, &Stats::reclaim_runs},
    {&OocResult::missing_faults, &Stats::missing_faults},
    {&OocResult::minor_faults, &Stats::minor_faults},
    {&OocResult::engine_bytes_read, &Stats::bytes_read},
    {&OocResult::pages_filled, &Stats::pages_filled},
    {&OocResult::readaround_hits, &Stats::readaround_hits},
    {&OocResult::readaround_misses, &Stats::readaround_misses},
    {&OocResult::readaround_off, &Stats::readaround_off},
    {&OocResult::pages_read_around, &Stats::pages_read_around},
    {&OocResult::pages_copied, &Stats::pages_copied},
};

/// Touch rates over the window; scan+hot: the hot thread's, kept or not.
void set_rates(OocResult& r, const Run& run, const Snap& a, const Snap& b) {
  r.measured_s = std::chrono::duration<double>(b.t - a.t).count();
  const uint64_t hot = b.hot - a.hot;
  r.touches = (b.touches - a.touches) + hot;
  r.touches_per_s = static_cast<double>(run.scan_hot ? hot : r.touches) / r.measured_s;
  if (run.scan_hot) {
    r.hot_during_per_s = static_cast<double>(hot) / r.measured_s;
    r.hot_kept = r.hot_before_per_s > 0 ? r.hot_during_per_s / r.hot_before_per_s : 0;
  }
  if (run.scan || run.scan_hot)
    r.scan_gib_s = static_cast<double>((b.touches - a.touches) * kPage) / double(uint64_t{1} << 30) / r.measured_s;
  r.device_read_bytes = b.io - a.io;
}

/// Misses: faultline's cache misses (a miss of a 2 MiB File reads a whole
/// frame: the touches it served count as hits, as for 4 KiB frames), the
/// kernel's major faults, or every direct touch (no cache).
void set_misses(OocResult& r, const Run& run, const Snap& a, const Snap& b) {
  if (run.engine) {
    for (const CounterDelta& c : kEngineCounters) r.*c.out = b.st.*c.in - a.st.*c.in;
    r.peak_fault_threads = b.st.peak_fault_threads;
    r.peak_fills_in_flight = b.st.peak_fills_in_flight;
    r.misses = r.cache_misses;
  } else if (run.view) {
    r.misses = b.majflt - a.majflt;
  } else {
    r.misses = r.touches;
  }
  r.misses = std::min(r.misses, r.touches);
  r.hit_ratio = r.touches ? 1.0 - static_cast<double>(r.misses) / static_cast<double>(r.touches) : 0;
}

/// The touch latency: scan+hot's is the hot thread's (pt[0]), the others' all
/// threads'. False (r failed) when a thread failed.
bool set_latency(OocResult& r, const Run& run) {
  Hist hist;
  for (const auto& p : run.pt) {
    if (!p.error.empty()) {
      set_error(r, false, p.error);
      return false;
    }
    hist.merge(p.hist);
  }
  if (run.scan_hot) hist = run.pt[0].hist;
  r.p50_ns = hist.quantile(0.5);
  r.p99_ns = hist.quantile(0.99);
  return true;
}

OocResult measure(const OocPlan& plan) {
  OocResult r;
  MethodView v;
  if (!open_view(plan, v, r)) return r;
  MemorySampler sampler(plan, v.engine ? &*v.engine : nullptr, r);
  Run run(plan, v.touch, v.engine ? &*v.engine : nullptr);
  r.depth = run.view ? 0 : run.nthreads;
  for (unsigned k = 0; k < run.total; ++k)
    run.threads.emplace_back([&run, k] { guarded_run(run.pt[k], run.view, [&] { touch_thread(run, k); }); });
  const auto [a, b] = measured_window(run, r);
  run.stop.store(true);
  run.scan_stop.store(true);
  for (auto& t : run.threads) t.join();
  sampler.finish();
  if (!set_latency(r, run)) return r;
  set_rates(r, run, a, b);
  set_misses(r, run, a, b);
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
