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
#include "faultline/constants.hpp"
#include "common/interrupt.hpp"
#include "bench/kernel_cache.hpp"
#include "bench/ooc_cgroup.hpp"
#include "bench/ooc_workload.hpp"
#include "bench/table.hpp"
#include "common/scratch_file.hpp"
#include "common/size_arg.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace faultline::cli {

namespace {

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
const std::vector<OocMethod> kAllMethods = {OocMethod::Faultline, OocMethod::FaultlineSelf,
                                            OocMethod::Faultline2M,
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
bool faultline_method(OocMethod m) {
  return m == OocMethod::Faultline || m == OocMethod::FaultlineSelf || m == OocMethod::Faultline2M;
}

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

// ---------------------------------------------------------------------------
// One measurement in a child process.

/// The child's side: enter `cg` (when given), measure, send the result
/// through `wr`, exit.
[[noreturn]] void child_main(const OocPlan& plan, const MemoryCgroup* cg, int wr) {
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
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
    const ssize_t n = ::write(wr, b + done, sizeof r - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::_exit(0);
}

/// The parent's side: the child's result from `rd`, until `timeout_s` passes,
/// the child dies, or the user interrupts. Returns the bytes read.
size_t read_result(int rd, OocResult& r, double timeout_s, bool& timed_out,
                   std::optional<Interrupted>& interrupted) {
  size_t got = 0;
  char* b = reinterpret_cast<char*>(&r);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (got < sizeof r) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd pf{rd, POLLIN, 0};
    const int n = ::poll(&pf, 1, static_cast<int>(std::min<long long>(left, 1000)));
    try {
      throw_if_interrupted();
    } catch (const Interrupted& e) {
      interrupted = e;
      break;
    }
    if (n <= 0) continue;
    const ssize_t k = ::read(rd, b + got, sizeof r - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;  // the child died
    got += static_cast<size_t>(k);
  }
  return got;
}

/// A failed row saying why the child gave no result.
OocResult child_failure(bool timed_out, double timeout_s, int status, const MemoryCgroup* cg) {
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
    rd.reset();
    child_main(plan, cg, wr.get());
  }
  wr.reset();
  OocResult r;
  bool timed_out = false;
  std::optional<Interrupted> interrupted;
  const size_t got = read_result(rd.get(), r, timeout_s, timed_out, interrupted);
  if (got < sizeof r) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (interrupted) throw *interrupted;
  if (got == sizeof r) return r;
  return child_failure(timed_out, timeout_s, status, cg);
}

// ---------------------------------------------------------------------------
// The report.

/// Bytes read from the device per byte touched.
double device_ramp(const OocResult& r) {
  return r.touches ? double(r.device_read_bytes) / double(r.touches * kBasePageSize) : 0.0;
}

/// faultline rows: bytes read from the backend (Stats::bytes_read) per byte
/// touched, over the measured window.
double backend_ramp(const OocResult& r) {
  return r.touches ? double(r.engine_bytes_read) / double(r.touches * kBasePageSize) : 0.0;
}

std::string mib(uint64_t b) { return fmt::format("{:.0f}", double(b) / double(1 << 20)); }

/// What the report states about the whole run.
struct OocRun {
  uint64_t file = 0;
  uint64_t limit = 0;
  double seconds = 0;
  EngineConfig cfg;
  unsigned depth = 0;          ///< direct: reads in flight
  std::string cg_version = "none";
};

/// A value only some rows have: "-" for the others.
std::string fixed_or_dash(bool have, double v) { return have ? fixed(v, 3) : std::string("-"); }

using OocCol = Column<RowOut, OocRun>;
/// The table's columns (rows that ran; failed and skipped rows say why instead).
constexpr OocCol kOocColumns[] = {
    {"method", -12, [](const RowOut& o, const OocRun&) -> std::string { return to_string(o.method); }},
    {"workload", -9, [](const RowOut& o, const OocRun&) -> std::string { return to_string(o.workload); }},
    {"thr", 3, [](const RowOut& o, const OocRun&) { return fmt::format("{}", o.threads); }},
    {"touches/s", 12, [](const RowOut& o, const OocRun&) { return fixed(o.r.touches_per_s, 0); }},
    {"hit", 6, [](const RowOut& o, const OocRun&) { return fixed(o.r.hit_ratio, 3); }},
    {"lru", 6, [](const RowOut& o, const OocRun&) { return fixed_or_dash(o.lru >= 0, o.lru); }},
    {"ramp", 9, [](const RowOut& o, const OocRun&) { return fixed(device_ramp(o.r), 3); }},
    {"peak_MiB", 8, [](const RowOut& o, const OocRun&) { return mib(o.r.peak_mem_bytes); }},
    {"xlimit", 6,
     [](const RowOut& o, const OocRun& run) {
       return fixed(double(o.r.peak_mem_bytes) / double(run.limit), 2);
     }},
    {"p50_us", 9, [](const RowOut& o, const OocRun&) { return fixed(o.r.p50_ns / 1e3, 1); }},
    {"p99_us", 9, [](const RowOut& o, const OocRun&) { return fixed(o.r.p99_ns / 1e3, 1); }},
    {"hot_kept", 8,
     [](const RowOut& o, const OocRun&) {
       return fixed_or_dash(o.workload == OocWorkload::ScanHot, o.r.hot_kept);
     }},
    {"scanGiB/s", 8, [](const RowOut& o, const OocRun&) { return fixed_or_dash(o.r.scan_gib_s > 0, o.r.scan_gib_s); }},
    {"cgpeakMiB", 9,
     [](const RowOut& o, const OocRun&) {
       return o.cgroup_peak >= 0 ? mib(static_cast<uint64_t>(o.cgroup_peak)) : std::string("-");
     }},
};

std::string cgroup_note(const OocRun& run) {
  return run.cg_version == "none"
             ? std::string("(none: those rows skipped)")
             : fmt::format("({}) limited to the same bytes + {} for the process itself (cgpeak: "
                           "the cgroup's own peak)",
                           run.cg_version, format_size(kCgroupSlack));
}

void print_table_header(const OocRun& run) {
  const EngineConfig& cfg = run.cfg;
  fmt::print("faultline bench --out-of-core: file {} of random data, limit {} (faultline: "
             "memory_limit_pages; mmap/mmap-random: a memory cgroup {}), {:.1f} s per run; cold "
             "start for every run (fsync + POSIX_FADV_DONTNEED, checked with mincore)\n",
             format_size(run.file), format_size(run.limit), cgroup_note(run), run.seconds);
  fmt::print("faultline: {} EngineConfig (fault_threads={} fault_around_pages={} "
             "read_around_pages={} readahead_max_pages={} readahead_windows={}), no advice; "
             "direct: O_DIRECT, {} 4 KiB reads in flight (scan: {} reads of {} in flight, into 2 MiB huge pages where the kernel gives them)\n",
             cfg.fault_around_pages == EngineConfig{}.fault_around_pages &&
                     cfg.readahead_max_pages == EngineConfig{}.readahead_max_pages &&
                     cfg.readahead_windows == EngineConfig{}.readahead_windows
                 ? "default"
                 : "given",
             cfg.fault_threads, cfg.fault_around_pages, cfg.read_around_pages,
             cfg.readahead_max_pages, cfg.readahead_windows, run.depth, kOocScanDepth, format_size(kOocScanReadBytes));
  fmt::print("measured: the second half of each run (scan: the whole scan; scan+hot: one hot-set "
             "thread while `thr` threads scan, against the same thread alone before: hot_kept); touch = one "
             "8-byte load of a 4 KiB page; hit = a touch that read nothing from the device "
             "(faultline: Stats::cache_misses, kernel: major faults); lru = hit ratio of an "
             "offline LRU of the limit's pages on the same generator; ramp = bytes read from the "
             "device (/proc/self/io) / (touches x 4 KiB; faultline: also bytes read from the "
             "backend, Stats::bytes_read, per byte touched below); peak = max over 50 ms samples of "
             "engine frames + the file's pages in the kernel's cache (cachestat, else mincore)\n\n");
}

/// The faultline rows' engine counters over the measured window.
void print_engine_counters(const std::vector<RowOut>& rows) {
  std::string eng;
  for (const auto& o : rows)
    if (o.r.have_engine && !o.r.failed && !o.r.skipped)
      eng += fmt::format("\n  {} {} {}: cache hits {} misses {} (ratio {:.3f}), filled {} "
                         "({} by UFFDIO_COPY), "
                         "reclaimed {} in {} runs, faults missing {} minor {}; backend bytes "
                         "read per byte touched {:.3f}; read-around hits {} misses {} (off {}), "
                         "pages read around {}; "
                         "peak fault threads {}, peak fills in flight {}",
                         to_string(o.method), to_string(o.workload), o.threads, o.r.cache_hits,
                         o.r.cache_misses,
                         o.r.cache_hits + o.r.cache_misses
                             ? double(o.r.cache_hits) / double(o.r.cache_hits + o.r.cache_misses)
                             : 0.0,
                         o.r.pages_filled, o.r.pages_copied, o.r.pages_reclaimed, o.r.reclaim_runs,
                         o.r.missing_faults, o.r.minor_faults, backend_ramp(o.r),
                         o.r.readaround_hits, o.r.readaround_misses, o.r.readaround_off,
                         o.r.pages_read_around, o.r.peak_fault_threads,
                         o.r.peak_fills_in_flight);
  if (!eng.empty()) fmt::print("\nengine counters over the measured window:{}\n", eng);
}

void print_table(const std::vector<RowOut>& rows, const OocRun& run) {
  print_table_header(run);
  fmt::print("{}\n", column_titles(kOocColumns));
  for (const auto& o : rows) {
    if (o.r.failed || o.r.skipped)
      fmt::print("{:<12} {:<9} {:>3} {}: {}\n", to_string(o.method), to_string(o.workload), o.threads,
                 o.r.skipped ? "skipped" : "FAILED", o.r.error);
    else
      fmt::print("{}\n", column_cells(kOocColumns, o, run));
  }
  print_engine_counters(rows);
}

std::string json_common(const RowOut& o, const OocRun& run) {
  const OocResult& r = o.r;
  return fmt::format(
      "{{\"op\":\"out-of-core\",\"method\":\"{}\",\"workload\":\"{}\",\"threads\":{},"
      "\"touches_per_s\":{:.6g},\"read_amplification\":{:.6g},\"peak_mem_bytes\":{},"
      "\"limit_bytes\":{},\"hit_ratio\":{:.6g},\"file_bytes\":{},\"seconds\":{:.6g},"
      "\"measured_s\":{:.6g},\"touches\":{},\"misses\":{},\"device_read_bytes\":{},"
      "\"peak_frames_bytes\":{},\"peak_kernel_cache_bytes\":{},\"mem_samples\":{},"
      "\"p50_ns\":{:.6g},\"p99_ns\":{:.6g},\"cgroup\":\"{}\"",
      to_string(o.method), to_string(o.workload), o.threads, r.touches_per_s, device_ramp(r),
      r.peak_mem_bytes, run.limit, r.hit_ratio, run.file, run.seconds, r.measured_s, r.touches,
      r.misses, r.device_read_bytes, r.peak_frames_bytes, r.peak_kcache_bytes, r.mem_samples,
      r.p50_ns, r.p99_ns, o.cgroup);
}

/// The keys only some rows have: cgroup, LRU reference, scan+hot, scan, direct.
std::string json_extras(const RowOut& o, const OocRun& run) {
  const OocResult& r = o.r;
  std::string line;
  if (o.cgroup_peak >= 0)
    line += fmt::format(",\"cgroup_peak_bytes\":{},\"cgroup_limit_bytes\":{}", o.cgroup_peak,
                        run.limit + kCgroupSlack);
  if (o.lru >= 0) line += fmt::format(",\"lru_hit_ratio\":{:.6g}", o.lru);
  if (o.workload == OocWorkload::ScanHot)
    line += fmt::format(",\"hot_kept\":{:.6g},\"hot_before_per_s\":{:.6g},\"hot_during_per_s\":{:.6g}",
                        r.hot_kept, r.hot_before_per_s, r.hot_during_per_s);
  if (r.scan_gib_s > 0) line += fmt::format(",\"scan_gib_per_s\":{:.6g}", r.scan_gib_s);
  if (r.depth) line += fmt::format(",\"depth\":{}", r.depth);
  return line;
}

std::string json_engine(const OocResult& r, const EngineConfig& cfg) {
  return fmt::format(
      ",\"cache_hits\":{},\"cache_misses\":{},\"pages_filled\":{},\"pages_copied\":{},"
      "\"pages_reclaimed\":{},"
      "\"reclaim_runs\":{},\"missing_faults\":{},\"minor_faults\":{},"
      "\"bytes_read\":{},\"backend_read_amplification\":{:.6g},\"readaround_hits\":{},"
      "\"readaround_misses\":{},\"readaround_off\":{},\"pages_read_around\":{},"
      "\"fault_threads\":{},\"fault_around_pages\":{},"
      "\"peak_fault_threads\":{},\"peak_fills_in_flight\":{}",
      r.cache_hits, r.cache_misses, r.pages_filled, r.pages_copied, r.pages_reclaimed,
      r.reclaim_runs,
      r.missing_faults, r.minor_faults, r.engine_bytes_read, backend_ramp(r), r.readaround_hits,
      r.readaround_misses, r.readaround_off, r.pages_read_around, cfg.fault_threads,
      cfg.fault_around_pages, r.peak_fault_threads, r.peak_fills_in_flight);
}

void print_json(const std::vector<RowOut>& rows, const OocRun& run) {
  for (const auto& o : rows) {
    if (o.r.failed || o.r.skipped) continue;
    std::string line = json_common(o, run) + json_extras(o, run);
    if (o.r.have_engine) line += json_engine(o.r, run.cfg);
    line += "}\n";
    std::fputs(line.c_str(), stdout);
  }
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------
// The run: options, the scratch file, every (workload, threads, method).

/// --limit, rounded down to whole pages; it must hold the largest window a
/// fault fills (and a 2 MiB frame).
uint64_t limit_arg(const BenchOptions& o, const EngineConfig& cfg) {
  const auto limit_v = parse_size(o.limit);
  if (!limit_v || *limit_v == 0) throw std::runtime_error("--limit '" + o.limit + "' is not a size");
  const uint64_t limit = *limit_v / kBasePageSize * kBasePageSize;
  const uint64_t window = std::max<uint64_t>({cfg.fault_around_pages, cfg.readahead_max_pages,
                                              cfg.read_around_pages}) * kBasePageSize;
  if (limit < std::max<uint64_t>(window, kHugePageSize))
    throw std::runtime_error(fmt::format("--limit {}: smaller than one fault window of the "
                                         "default configuration ({}): at least {}",
                                         o.limit, format_size(window),
                                         format_size(std::max<uint64_t>(window, kHugePageSize))));
  return limit;
}

/// --file-size (default 8 x the limit), rounded up to whole pages.
uint64_t file_size_arg(const BenchOptions& o, uint64_t limit) {
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
  return file;
}

/// --threads: a comma list of touching-thread counts (default 1,2).
std::vector<unsigned> thread_counts_arg(const BenchOptions& o) {
  std::vector<unsigned> counts;
  for (const auto& t : split(o.threads_arg.empty() ? "1,2" : o.threads_arg)) {
    unsigned v = 0;
    try {
      v = static_cast<unsigned>(std::stoul(t));
    } catch (const std::exception&) {
    }
    if (v < 1 || v > 256) throw std::runtime_error("--threads: '" + t + "' is not a count in 1..256");
    counts.push_back(v);
  }
  return counts;
}

/// The default EngineConfig; --fault-around / --readahead-max given: those
/// windows instead (the header line prints the configuration used).
EngineConfig engine_config(const BenchOptions& o) {
  EngineConfig cfg;
  cfg.log = [](std::string_view m) { fmt::print(stderr, "{}\n", m); };
  if (o.fault_around != cfg.fault_around_pages) cfg.fault_around_pages = o.fault_around;
  if (o.readahead_max != cfg.readahead_max_pages) cfg.readahead_max_pages = o.readahead_max;
  if (o.readahead_windows != cfg.readahead_windows) cfg.readahead_windows = o.readahead_windows;
  cfg.fault_poll_us = o.fault_poll_us;
  return cfg;
}

/// The kernel rows need a memory cgroup: probe once, say why not. Returns its
/// version, or "none".
std::string probe_cgroup(uint64_t limit) {
  std::string why;
  auto probe = MemoryCgroup::make(fmt::format("faultline-ooc-{}-probe", ::getpid()),
                                  limit + kCgroupSlack, why);
  if (probe) return probe->version();
  fmt::print(stderr, "faultline bench: skipping the mmap and mmap-random rows: {} (they must run "
                     "in a memory cgroup limited to {}; run as root)\n",
             why, format_size(limit));
  return "none";
}

/// direct: no cache, its own concurrency: once per workload (the first thread
/// count), and no scan+hot (there is nothing for a scan to flush).
bool runs(OocMethod m, OocWorkload w, size_t thread_index) {
  return !(m == OocMethod::Direct && (thread_index > 0 || w == OocWorkload::ScanHot));
}

/// The offline LRU hit ratio of the random workloads (-1: none).
double lru_reference(OocWorkload w, uint64_t pages, uint64_t limit) {
  if (w != OocWorkload::Uniform && w != OocWorkload::Hotset && w != OocWorkload::Zipf) return -1;
  const uint64_t len = std::clamp<uint64_t>(8 * (limit / kBasePageSize), 4'000'000, 20'000'000);
  return offline_lru_hit_ratio(w, pages, limit / kBasePageSize, len);
}

/// What the rows share: the options, the scratch file, the run's settings.
struct OocBench {
  const BenchOptions& o;
  const ScratchFile& scratch;
  const OocRun& run;
  std::vector<unsigned> thread_counts;
  std::vector<OocWorkload> workloads;
  std::vector<OocMethod> methods;
  size_t total = 0;  ///< rows to run
  size_t n = 0;      ///< rows begun
};

OocPlan plan_for(const OocBench& b, const RowOut& row) {
  OocPlan plan;
  plan.path = b.scratch.path();
  plan.size = b.run.file;
  plan.pages = b.run.file / kBasePageSize;
  plan.limit_bytes = b.run.limit;
  plan.workload = row.workload;
  plan.method = row.method;
  plan.threads = row.threads;
  plan.seconds = b.o.seconds;
  plan.direct_depth = b.run.depth;
  plan.config = b.run.cfg;
  plan.config.log = {};
  return plan;
}

void print_progress(const OocBench& b, const RowOut& row) {
  const OocResult& r = row.r;
  if (r.failed || r.skipped)
    fmt::print(stderr, "[{:>3}/{}] {:<12} {:<9} threads {:>2}: {}: {}\n", b.n, b.total,
               to_string(row.method), to_string(row.workload), row.threads,
               r.skipped ? "skipped" : "FAILED", r.error);
  else
    fmt::print(stderr,
               "[{:>3}/{}] {:<12} {:<9} threads {:>2}: {:>11.0f} touches/s  hit {:.3f}  "
               "ramp {:.2f}  peak {} MiB{}\n",
               b.n, b.total, to_string(row.method), to_string(row.workload), row.threads,
               r.touches_per_s, r.hit_ratio, device_ramp(r), mib(r.peak_mem_bytes),
               row.workload == OocWorkload::ScanHot ? fmt::format("  hot_kept {:.3f}", r.hot_kept)
                                                    : "");
}

/// One row: in a fresh memory cgroup (kernel rows; faultline rows with
/// --faultline-in-cgroup) or skipped without one; the file cold; a child.
RowOut run_row(OocBench& b, OocMethod m, OocWorkload w, unsigned threads, double lru) {
  RowOut row{m, w, m == OocMethod::Direct ? b.run.depth : threads, {}};
  if (w == OocWorkload::Scan && m == OocMethod::Direct) row.threads = kOocScanDepth;
  row.lru = lru;
  ++b.n;
  std::unique_ptr<MemoryCgroup> cg;
  if (kernel_method(m) || (faultline_method(m) && b.o.faultline_in_cgroup)) {
    std::string why;
    cg = MemoryCgroup::make(fmt::format("faultline-ooc-{}-{}", ::getpid(), b.n),
                            b.run.limit + kCgroupSlack, why);
    if (!cg) {
      row.r.skipped = 1;
      std::snprintf(row.r.error, sizeof row.r.error, "no memory cgroup: %s", why.c_str());
      return row;
    }
    row.cgroup = cg->version();
  }
  UniqueFd control(::open(b.scratch.path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!control) throw_errno("open '" + b.scratch.path() + "'");
  const double resident = make_cold(control.get(), b.run.file);
  if (resident > kColdThreshold)
    fmt::print(stderr, "faultline bench: warning: {:.1f}% of the file stays cached before this run\n",
               resident * 100);
  row.r = run_child(plan_for(b, row), cg.get(), 120 + 4 * b.o.seconds);
  if (cg) row.cgroup_peak = cg->peak_bytes();
  print_progress(b, row);
  return row;
}

std::vector<RowOut> run_rows(OocBench& b) {
  for (auto w : b.workloads)
    for (size_t ti = 0; ti < b.thread_counts.size(); ++ti)
      for (auto m : b.methods) b.total += runs(m, w, ti);
  std::vector<RowOut> rows;
  for (auto w : b.workloads) {
    const double lru = lru_reference(w, b.run.file / kBasePageSize, b.run.limit);
    for (size_t ti = 0; ti < b.thread_counts.size(); ++ti)
      for (auto m : b.methods) {
        if (!runs(m, w, ti)) continue;
        throw_if_interrupted();
        rows.push_back(run_row(b, m, w, b.thread_counts[ti], lru));
      }
  }
  return rows;
}

}  // namespace

int run_ooc_bench(const BenchOptions& o) {
  InterruptGuard interrupts;
  OocRun run;
  run.cfg = engine_config(o);
  run.limit = limit_arg(o, run.cfg);
  run.file = file_size_arg(o, run.limit);
  run.seconds = o.seconds;
  if (!(o.seconds > 0) || o.seconds > 3600) throw std::runtime_error("--seconds: between 0 and 3600");
  auto thread_counts = thread_counts_arg(o);
  auto workloads = pick(o.workload, kAllWorkloads, "workload");
  auto methods = pick(o.methods, kAllMethods, "method");

  ScratchFile scratch(kScratchParent, run.file);
  fill_with_random_data(scratch, run.file, kDataSeed, [] { throw_if_interrupted(); });
  run.depth = o.direct_depth ? o.direct_depth
                             : std::min(kMaxDirectDepth, std::max(1u, device_depth(scratch.path())));
  run.cg_version = probe_cgroup(run.limit);

  OocBench b{o, scratch, run, std::move(thread_counts), std::move(workloads), std::move(methods)};
  const std::vector<RowOut> rows = run_rows(b);
  if (o.json) print_json(rows, run);
  else print_table(rows, run);
  const bool failed = std::any_of(rows.begin(), rows.end(), [](const RowOut& r) { return r.r.failed; });
  if (failed) fmt::print(stderr, "faultline bench: error: some measurements failed (see above)\n");
  return failed ? 1 : 0;
}

}  // namespace faultline::cli
