#include "bench/out_of_core.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/command.hpp"
#include "common/data_gen.hpp"
#include "faultline/constants.hpp"
#include "common/interrupt.hpp"
#include "bench/kernel_cache.hpp"
#include "bench/ooc_cgroup.hpp"
#include "bench/ooc_workload.hpp"
#include "common/scratch_file.hpp"
#include "common/size_arg.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

constexpr const char* kScratchParent = "/var/tmp";
constexpr uint64_t kDataSeed = 0x6f6f632d62656e63ull;  // "ooc-benc"
constexpr unsigned kMaxDirectDepth = 32;
/// The measuring process's own memory (binary, libraries, stacks, heap) on top
/// of the limit in its cgroup: with the bare limit a small one OOM-killed the
/// kernel's mmap (its 8 MiB read-around here, locked while in flight, plus
/// the process, passed a 4 MiB cgroup). The runs used 64 MiB.
constexpr uint64_t kCgroupSlack = uint64_t{16} << 20;

const std::vector<OocWorkload> kAllWorkloads = {OocWorkload::Uniform, OocWorkload::Hotset,
                                                OocWorkload::Zipf, OocWorkload::Scan,
                                                OocWorkload::ScanHot};
const std::vector<OocMethod> kAllMethods = {OocMethod::Faultline, OocMethod::Faultline2M,
                                            OocMethod::Mmap, OocMethod::MmapRandom,
                                            OocMethod::Direct};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

template <class E>
std::vector<E> pick(const std::string& arg, const std::vector<E>& all, const char* what) {
  if (arg == "all") return all;
  std::vector<E> out;
  for (const auto& name : split(arg)) {
    const auto it = std::find_if(all.begin(), all.end(), [&](E e) { return name == to_string(e); });
    if (it == all.end()) {
      std::string names;
      for (E e : all) names += std::string(names.empty() ? "" : ", ") + to_string(e);
      throw std::runtime_error(fmt::format("--{} {}: unknown (one or more of: {}; or all)", what, name, names));
    }
    if (std::find(out.begin(), out.end(), *it) == out.end()) out.push_back(*it);
  }
  if (out.empty()) throw std::runtime_error(fmt::format("--{}: nothing selected", what));
  return out;
}

bool kernel_method(OocMethod m) { return m == OocMethod::Mmap || m == OocMethod::MmapRandom; }
bool faultline_method(OocMethod m) { return m == OocMethod::Faultline || m == OocMethod::Faultline2M; }

/// The device's queue depth for `path` (the sum of its hardware queues'
/// tags in sysfs), or 0 when unknown.
unsigned device_depth(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  const std::string base = fmt::format("/sys/dev/block/{}:{}", major(st.st_dev), minor(st.st_dev));
  for (const std::string& dev : {base, base + "/.."}) {  // a partition's parent holds mq/
    unsigned total = 0;
    for (unsigned q = 0; q < 256; ++q) {
      std::ifstream f(fmt::format("{}/mq/{}/nr_tags", dev, q));
      unsigned v = 0;
      if (!(f >> v)) break;
      total += v;
    }
    if (total) return total;
  }
  return 0;
}

/// Cold: the file dropped from the kernel's page cache (fsync +
/// POSIX_FADV_DONTNEED, checked with mincore); as root, drop_caches when
/// pages of it stay. Returns the fraction still resident.
double make_cold(int fd, uint64_t size) {
  CacheResult cr = drop_from_page_cache(fd, size);
  if (cr.resident > kColdThreshold && ::geteuid() == 0) {
    ::sync();
    if (FILE* f = std::fopen("/proc/sys/vm/drop_caches", "we")) {
      std::fputs("1", f);
      std::fclose(f);
    }
    cr = drop_from_page_cache(fd, size);
  }
  return cr.resident;
}

struct RowOut {
  OocMethod method;
  OocWorkload workload;
  unsigned threads;
  OocResult r;
  std::string cgroup = "none";
  int64_t cgroup_peak = -1;
  double lru = -1;  ///< offline LRU hit ratio of the workload (-1: none)
};

/// Runs one measurement in a child process (in `cg` when given). Never leaves
/// the child behind: a child that does not answer in time is killed.
OocResult run_child(const OocPlan& plan, const MemoryCgroup* cg, double timeout_s) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    rd.reset();
    OocResult r;
    if (cg) {
      if (int e = cg->enter(0); e != 0) {
        r.skipped = 1;
        std::snprintf(r.error, sizeof r.error, "cannot enter the memory cgroup %s: %s",
                      cg->path().c_str(), std::strerror(e));
      }
    }
    if (!r.skipped) r = run_ooc_measurement(plan);
    const char* b = reinterpret_cast<const char*>(&r);
    size_t done = 0;
    while (done < sizeof r) {
      const ssize_t n = ::write(wr.get(), b + done, sizeof r - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  wr.reset();
  OocResult r;
  size_t got = 0;
  char* b = reinterpret_cast<char*>(&r);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  bool timed_out = false;
  std::optional<Interrupted> interrupted;
  while (got < sizeof r) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pf{rd.get(), POLLIN, 0};
    const int n = ::poll(&pf, 1, static_cast<int>(std::min<long long>(left, 1000)));
    try {
      throw_if_interrupted();
    } catch (const Interrupted& e) {
      interrupted = e;
      break;
    }
    if (n <= 0) continue;
    const ssize_t k = ::read(rd.get(), b + got, sizeof r - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;  // the child died
    got += static_cast<size_t>(k);
  }
  if (got < sizeof r) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (interrupted) throw *interrupted;
  if (got == sizeof r) return r;
  OocResult f;
  f.failed = 1;
  std::string why;
  if (timed_out) why = fmt::format("no result within {:.0f} s: the child was killed", timeout_s);
  else if (WIFSIGNALED(status))
    why = fmt::format("the measuring process died of {}{}", ::strsignal(WTERMSIG(status)),
                      cg && cg->oom_kills() > 0 ? " (OOM-killed in its memory cgroup)" : "");
  else why = fmt::format("the measuring process exited with {} and no result", WEXITSTATUS(status));
  std::snprintf(f.error, sizeof f.error, "%s", why.c_str());
  return f;
}

/// faultline rows: bytes read from the backend (Stats::bytes_read) per byte
/// touched, over the measured window.
double backend_ramp(const OocResult& r) {
  return r.touches ? double(r.engine_bytes_read) / double(r.touches * kBasePageSize) : 0.0;
}

std::string mib(uint64_t b) { return fmt::format("{:.0f}", double(b) / double(1 << 20)); }

void print_table(const std::vector<RowOut>& rows, uint64_t file, uint64_t limit, double seconds,
                 const EngineConfig& cfg, const std::string& cg_note, unsigned depth) {
  fmt::print("faultline bench --out-of-core: file {} of random data, limit {} (faultline: "
             "memory_limit_pages; mmap/mmap-random: a memory cgroup {}), {:.1f} s per run; cold "
             "start for every run (fsync + POSIX_FADV_DONTNEED, checked with mincore)\n",
             format_size(file), format_size(limit), cg_note, seconds);
  fmt::print("faultline: {} EngineConfig (fault_threads={} fault_around_pages={} "
             "read_around_pages={} readahead_max_pages={}), no advice; direct: O_DIRECT, {} "
             "4 KiB reads in flight (scan: {} reads of {} in flight)\n",
             cfg.fault_around_pages == EngineConfig{}.fault_around_pages ? "default" : "--fault-around",
             cfg.fault_threads, cfg.fault_around_pages, cfg.read_around_pages,
             cfg.readahead_max_pages, depth, kOocScanDepth, format_size(kOocScanReadBytes));
  fmt::print("measured: the second half of each run (scan: the whole scan; scan+hot: one hot-set "
             "thread while `thr` threads scan, against the same thread alone before: hot_kept); touch = one "
             "8-byte load of a 4 KiB page; hit = a touch that read nothing from the device "
             "(faultline: Stats::cache_misses, kernel: major faults); lru = hit ratio of an "
             "offline LRU of the limit's pages on the same generator; ramp = bytes read from the "
             "device (/proc/self/io) / (touches x 4 KiB; faultline: also bytes read from the "
             "backend, Stats::bytes_read, per byte touched below); peak = max over 50 ms samples of "
             "engine frames + the file's pages in the kernel's cache (mincore)\n\n");
  fmt::print("{:<12} {:<9} {:>3} {:>12} {:>6} {:>6} {:>9} {:>8} {:>6} {:>9} {:>9} {:>8} {:>8} {:>9}\n",
             "method", "workload", "thr", "touches/s", "hit", "lru", "ramp", "peak_MiB", "xlimit",
             "p50_us", "p99_us", "hot_kept", "scanGiB/s", "cgpeakMiB");
  for (const auto& o : rows) {
    const OocResult& r = o.r;
    if (r.failed || r.skipped) {
      fmt::print("{:<12} {:<9} {:>3} {}: {}\n", to_string(o.method), to_string(o.workload), o.threads,
                 r.skipped ? "skipped" : "FAILED", r.error);
      continue;
    }
    fmt::print("{:<12} {:<9} {:>3} {:>12.0f} {:>6.3f} {:>6} {:>9.3f} {:>8} {:>6.2f} {:>9.1f} {:>9.1f} {:>8} {:>8} {:>9}\n",
               to_string(o.method), to_string(o.workload), o.threads, r.touches_per_s, r.hit_ratio,
               o.lru >= 0 ? fmt::format("{:.3f}", o.lru) : "-",
               r.touches ? double(r.device_read_bytes) / double(r.touches * kBasePageSize) : 0.0,
               mib(r.peak_mem_bytes), double(r.peak_mem_bytes) / double(limit), r.p50_ns / 1e3,
               r.p99_ns / 1e3,
               o.workload == OocWorkload::ScanHot ? fmt::format("{:.3f}", r.hot_kept) : "-",
               r.scan_gib_s > 0 ? fmt::format("{:.3f}", r.scan_gib_s) : "-",
               o.cgroup_peak >= 0 ? mib(static_cast<uint64_t>(o.cgroup_peak)) : "-");
  }
  std::string eng;
  for (const auto& o : rows)
    if (o.r.have_engine && !o.r.failed && !o.r.skipped)
      eng += fmt::format("\n  {} {} {}: cache hits {} misses {} (ratio {:.3f}), filled {}, "
                         "reclaimed {} in {} runs, faults missing {} minor {}; backend bytes "
                         "read per byte touched {:.3f}; read-around hits {} misses {} (off {}), "
                         "pages read around {}; "
                         "peak fault threads {}, peak fills in flight {}",
                         to_string(o.method), to_string(o.workload), o.threads, o.r.cache_hits,
                         o.r.cache_misses,
                         o.r.cache_hits + o.r.cache_misses
                             ? double(o.r.cache_hits) / double(o.r.cache_hits + o.r.cache_misses)
                             : 0.0,
                         o.r.pages_filled, o.r.pages_reclaimed, o.r.reclaim_runs,
                         o.r.missing_faults, o.r.minor_faults, backend_ramp(o.r),
                         o.r.readaround_hits, o.r.readaround_misses, o.r.readaround_off,
                         o.r.pages_read_around, o.r.peak_fault_threads,
                         o.r.peak_fills_in_flight);
  if (!eng.empty()) fmt::print("\nengine counters over the measured window:{}\n", eng);
}

void print_json(const std::vector<RowOut>& rows, uint64_t file, uint64_t limit, double seconds,
                const EngineConfig& cfg) {
  for (const auto& o : rows) {
    const OocResult& r = o.r;
    if (r.failed || r.skipped) continue;
    std::string line = fmt::format(
        "{{\"op\":\"out-of-core\",\"method\":\"{}\",\"workload\":\"{}\",\"threads\":{},"
        "\"touches_per_s\":{:.6g},\"read_amplification\":{:.6g},\"peak_mem_bytes\":{},"
        "\"limit_bytes\":{},\"hit_ratio\":{:.6g},\"file_bytes\":{},\"seconds\":{:.6g},"
        "\"measured_s\":{:.6g},\"touches\":{},\"misses\":{},\"device_read_bytes\":{},"
        "\"peak_frames_bytes\":{},\"peak_kernel_cache_bytes\":{},\"mem_samples\":{},"
        "\"p50_ns\":{:.6g},\"p99_ns\":{:.6g},\"cgroup\":\"{}\"",
        to_string(o.method), to_string(o.workload), o.threads, r.touches_per_s,
        r.touches ? double(r.device_read_bytes) / double(r.touches * kBasePageSize) : 0.0,
        r.peak_mem_bytes, limit, r.hit_ratio, file, seconds, r.measured_s, r.touches, r.misses,
        r.device_read_bytes, r.peak_frames_bytes, r.peak_kcache_bytes, r.mem_samples, r.p50_ns,
        r.p99_ns, o.cgroup);
    if (o.cgroup_peak >= 0)
      line += fmt::format(",\"cgroup_peak_bytes\":{},\"cgroup_limit_bytes\":{}", o.cgroup_peak,
                          limit + kCgroupSlack);
    if (o.lru >= 0) line += fmt::format(",\"lru_hit_ratio\":{:.6g}", o.lru);
    if (o.workload == OocWorkload::ScanHot)
      line += fmt::format(",\"hot_kept\":{:.6g},\"hot_before_per_s\":{:.6g},\"hot_during_per_s\":{:.6g}",
                          r.hot_kept, r.hot_before_per_s, r.hot_during_per_s);
    if (r.scan_gib_s > 0) line += fmt::format(",\"scan_gib_per_s\":{:.6g}", r.scan_gib_s);
    if (r.depth) line += fmt::format(",\"depth\":{}", r.depth);
    if (r.have_engine)
      line += fmt::format(
          ",\"cache_hits\":{},\"cache_misses\":{},\"pages_filled\":{},\"pages_reclaimed\":{},"
          "\"reclaim_runs\":{},\"missing_faults\":{},\"minor_faults\":{},"
          "\"bytes_read\":{},\"backend_read_amplification\":{:.6g},\"readaround_hits\":{},"
          "\"readaround_misses\":{},\"readaround_off\":{},\"pages_read_around\":{},"
          "\"fault_threads\":{},\"fault_around_pages\":{},"
          "\"peak_fault_threads\":{},\"peak_fills_in_flight\":{}",
          r.cache_hits, r.cache_misses, r.pages_filled, r.pages_reclaimed, r.reclaim_runs,
          r.missing_faults, r.minor_faults, r.engine_bytes_read, backend_ramp(r),
          r.readaround_hits, r.readaround_misses, r.readaround_off, r.pages_read_around,
          cfg.fault_threads, cfg.fault_around_pages, r.peak_fault_threads,
          r.peak_fills_in_flight);
    line += "}\n";
    std::fputs(line.c_str(), stdout);
  }
  std::fflush(stdout);
}

}  // namespace

int run_ooc_bench(const BenchOptions& o) {
  InterruptGuard interrupts;
  const auto limit_v = parse_size(o.limit);
  if (!limit_v || *limit_v == 0) throw std::runtime_error("--limit '" + o.limit + "' is not a size");
  const uint64_t limit = *limit_v / kBasePageSize * kBasePageSize;
  EngineConfig cfg;
  cfg.log = [](std::string_view m) { fmt::print(stderr, "{}\n", m); };
  // --fault-around given: that window instead of the default (the header
  // line prints the configuration used).
  if (o.fault_around != cfg.fault_around_pages) cfg.fault_around_pages = o.fault_around;
  // A limit must hold the largest window a fault fills (and a 2 MiB frame).
  const uint64_t window = std::max<uint64_t>({cfg.fault_around_pages, cfg.readahead_max_pages,
                                              cfg.read_around_pages}) * kBasePageSize;
  if (limit < std::max<uint64_t>(window, kHugePageSize))
    throw std::runtime_error(fmt::format("--limit {}: smaller than one fault window of the "
                                         "default configuration ({}): at least {}",
                                         o.limit, format_size(window),
                                         format_size(std::max<uint64_t>(window, kHugePageSize))));
  uint64_t file = 8 * limit;
  if (!o.file_size.empty()) {
    const auto v = parse_size(o.file_size);
    if (!v || *v == 0) throw std::runtime_error("--file-size '" + o.file_size + "' is not a size");
    file = (*v + kBasePageSize - 1) / kBasePageSize * kBasePageSize;
  }
  if (file > uint64_t{UINT32_MAX} * kBasePageSize) throw std::runtime_error("--file-size: too large");
  if (file <= limit)
    fmt::print(stderr, "faultline bench: note: the file ({}) fits in the limit ({}): not out of core\n",
               format_size(file), format_size(limit));
  if (!(o.seconds > 0) || o.seconds > 3600) throw std::runtime_error("--seconds: between 0 and 3600");
  std::vector<unsigned> thread_counts;
  for (const auto& t : split(o.threads_arg.empty() ? "1,2" : o.threads_arg)) {
    unsigned v = 0;
    try {
      v = static_cast<unsigned>(std::stoul(t));
    } catch (const std::exception&) {
    }
    if (v < 1 || v > 256) throw std::runtime_error("--threads: '" + t + "' is not a count in 1..256");
    thread_counts.push_back(v);
  }
  const auto workloads = pick(o.workload, kAllWorkloads, "workload");
  const auto methods = pick(o.methods, kAllMethods, "method");

  ScratchFile scratch(kScratchParent, file);
  fmt::print(stderr, "faultline bench: writing {} of pseudo-random data to {} ({})\n", format_size(file),
             scratch.path(), fs_type_name(scratch.path()));
  write_random_bytes(scratch.fd(), file, kDataSeed, [] { throw_if_interrupted(); });
  if (::fsync(scratch.fd()) != 0) throw_errno("fsync '" + scratch.path() + "'");
  const uint64_t pages = file / kBasePageSize;

  unsigned depth = o.direct_depth;
  if (depth == 0) depth = std::min(kMaxDirectDepth, std::max(1u, device_depth(scratch.path())));

  // The kernel rows need a memory cgroup: probe once, say why not.
  std::string cg_why;
  std::string cg_version = "none";
  {
    auto probe = MemoryCgroup::make(fmt::format("faultline-ooc-{}-probe", ::getpid()),
                                    limit + kCgroupSlack, cg_why);
    if (probe) cg_version = probe->version();
    else
      fmt::print(stderr, "faultline bench: skipping the mmap and mmap-random rows: {} (they must run "
                         "in a memory cgroup limited to {}; run as root)\n",
                 cg_why, format_size(limit));
  }

  std::vector<RowOut> rows;
  std::map<OocWorkload, double> lru;
  const double timeout = 120 + 4 * o.seconds;
  size_t n = 0, total = 0;
  for (auto w : workloads)
    for (size_t ti = 0; ti < thread_counts.size(); ++ti)
      for (auto m : methods)
        if (!(m == OocMethod::Direct && (ti > 0 || w == OocWorkload::ScanHot))) ++total;
  for (auto w : workloads) {
    if (w == OocWorkload::Uniform || w == OocWorkload::Hotset || w == OocWorkload::Zipf) {
      const uint64_t len = std::clamp<uint64_t>(8 * (limit / kBasePageSize), 4'000'000, 20'000'000);
      lru[w] = offline_lru_hit_ratio(w, pages, limit / kBasePageSize, len);
    }
    for (size_t ti = 0; ti < thread_counts.size(); ++ti) {
      for (auto m : methods) {
        // direct: no cache, its own concurrency: once per workload (and no
        // scan+hot: there is nothing for a scan to flush).
        if (m == OocMethod::Direct && (ti > 0 || w == OocWorkload::ScanHot)) continue;
        throw_if_interrupted();
        RowOut row{m, w, m == OocMethod::Direct ? depth : thread_counts[ti], {}};
        if (w == OocWorkload::Scan && m == OocMethod::Direct) row.threads = kOocScanDepth;
        if (lru.count(w)) row.lru = lru[w];
        ++n;
        std::unique_ptr<MemoryCgroup> cg;
        const bool want_cg = kernel_method(m) || (faultline_method(m) && o.faultline_in_cgroup);
        if (want_cg) {
          std::string why;
          cg = MemoryCgroup::make(fmt::format("faultline-ooc-{}-{}", ::getpid(), n),
                                  limit + kCgroupSlack, why);
          if (!cg) {
            row.r.skipped = 1;
            std::snprintf(row.r.error, sizeof row.r.error, "no memory cgroup: %s", why.c_str());
            rows.push_back(row);
            continue;
          }
          row.cgroup = cg->version();
        }
        OocPlan plan;
        plan.path = scratch.path();
        plan.size = file;
        plan.pages = pages;
        plan.limit_bytes = limit;
        plan.workload = w;
        plan.method = m;
        plan.threads = row.threads;
        plan.seconds = o.seconds;
        plan.direct_depth = depth;
        plan.config = cfg;
        plan.config.log = {};
        UniqueFd control(::open(scratch.path().c_str(), O_RDONLY | O_CLOEXEC));
        if (!control) throw_errno("open '" + scratch.path() + "'");
        const double resident = make_cold(control.get(), file);
        if (resident > kColdThreshold)
          fmt::print(stderr, "faultline bench: warning: {:.1f}% of the file stays cached before this run\n",
                     resident * 100);
        row.r = run_child(plan, cg.get(), timeout);
        if (cg) row.cgroup_peak = cg->peak_bytes();
        const OocResult& r = row.r;
        if (r.failed || r.skipped)
          fmt::print(stderr, "[{:>3}/{}] {:<12} {:<9} threads {:>2}: {}: {}\n", n, total, to_string(m),
                     to_string(w), row.threads, r.skipped ? "skipped" : "FAILED", r.error);
        else
          fmt::print(stderr,
                     "[{:>3}/{}] {:<12} {:<9} threads {:>2}: {:>11.0f} touches/s  hit {:.3f}  "
                     "ramp {:.2f}  peak {} MiB{}\n",
                     n, total, to_string(m), to_string(w), row.threads, r.touches_per_s, r.hit_ratio,
                     r.touches ? double(r.device_read_bytes) / double(r.touches * kBasePageSize) : 0.0,
                     mib(r.peak_mem_bytes),
                     w == OocWorkload::ScanHot ? fmt::format("  hot_kept {:.3f}", r.hot_kept) : "");
        rows.push_back(std::move(row));
      }
    }
  }
  const std::string cg_note =
      cg_version == "none" ? std::string("(none: those rows skipped)")
                           : fmt::format("({}) limited to the same bytes + {} for the process "
                                         "itself (cgpeak: the cgroup's own peak)",
                                         cg_version, format_size(kCgroupSlack));
  if (o.json) print_json(rows, file, limit, o.seconds, cfg);
  else print_table(rows, file, limit, o.seconds, cfg, cg_note, depth);
  const bool failed = std::any_of(rows.begin(), rows.end(), [](const RowOut& r) { return r.r.failed; });
  if (failed) fmt::print(stderr, "faultline bench: error: some measurements failed (see above)\n");
  return failed ? 1 : 0;
}

}  // namespace faultline::cli
